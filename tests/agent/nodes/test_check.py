"""check never calls a page fresh just because it matches an origin that answers from a stale app cache."""

from __future__ import annotations

from agent.models import Intent
from tests.agent.conftest import warm


def test_match_with_an_app_cached_origin_is_not_called_fresh(fresh_stack, make_agent):
    warm(fresh_stack, "/pricing")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")  # Redis still holds the $10 rendering

    result = make_agent().ask("is https://shop.example/pricing cached?", user="bob")

    assert result.intent == Intent.CHECK
    by_layer = {c.layer: c for c in result.checks}
    assert by_layer["appcache"].cached is True
    assert by_layer["varnish"].cached is True and by_layer["varnish"].fresh is None
    assert "may itself be stale" in by_layer["varnish"].detail


# --- whatever the origin answers now: the same rules as verification ------------------------------------------

ABOUT = "https://shop.example/about"


def test_a_deleted_page_still_cached_is_stale_and_once_purged_gone_from_every_cache(fresh_stack, make_agent):
    warm(fresh_stack, "/about")
    fresh_stack.content.retire("/about")
    fresh_stack.flush_app_cache()  # the origin answers 410 now; varnish and nginx still hold the old 200
    agent = make_agent()

    before = agent.ask(f"is <{ABOUT}> stale?", user="bob")
    by_layer = {c.layer: c for c in before.checks}
    assert by_layer["varnish"].fresh is False and by_layer["edge"].fresh is False
    assert by_layer["edge"].origin_status == 410
    assert before.reply.startswith("Stale on varnish and edge: they still serve a page the origin has deleted "
                                   "(HTTP 410 there).\n"), before.reply

    agent.ask(f"purge <{ABOUT}>", user="bob")
    after = agent.ask(f"is <{ABOUT}> stale?", user="bob")
    assert {c.layer: c.fresh for c in after.checks if c.layer != "appcache"} == {"varnish": True, "edge": True}
    assert after.reply.startswith("Gone from every cache: the origin answers HTTP 410 (a deleted page).\n")
    assert "cannot compare" not in after.reply


def test_a_redirect_is_judged_by_status_and_location(fresh_stack, make_agent):
    warm(fresh_stack, "/about")
    fresh_stack.content.retire("/about", redirect_to="/pricing")
    fresh_stack.flush_app_cache()
    agent = make_agent()

    before = agent.ask(f"is <{ABOUT}> stale?", user="bob")
    assert before.reply.startswith("Stale on varnish and edge: they serve an old answer; the origin now redirects "
                                   "(HTTP 301).\n"), before.reply

    agent.ask(f"purge <{ABOUT}>", user="bob")
    fresh_stack.content.retire("/about", redirect_to="/")  # moved again: the caches' redirect is the old one
    fresh_stack.flush_app_cache()
    moved = agent.ask(f"is <{ABOUT}> stale?", user="bob")
    edge = next(c for c in moved.checks if c.layer == "edge")
    assert edge.fresh is False and "redirects to /pricing; the origin to /" in edge.detail

    agent.ask(f"purge <{ABOUT}>", user="bob")
    after = agent.ask(f"is <{ABOUT}> stale?", user="bob")
    assert after.reply.startswith("Every cache serves the origin's redirect (HTTP 301).\n"), after.reply


def test_a_failing_origin_means_it_cannot_tell(fresh_stack, make_agent):
    warm(fresh_stack, "/pricing")
    fresh_stack.flush_app_cache()
    content = fresh_stack.content.path
    content.rename(content.with_suffix(".away"))  # every page answers HTTP 500 at the origin
    agent = make_agent()
    try:
        result = agent.ask("is https://shop.example/pricing stale?", user="bob")
    finally:
        content.with_suffix(".away").rename(content)

    edge = next(c for c in result.checks if c.layer == "edge")
    assert edge.fresh is None and edge.origin_problem == "failing: 500"
    assert result.reply.startswith("Can't tell: the origin itself is failing: 500.\n"), result.reply
    assert agent.offer(result.thread_id) is None  # a purge now would swap the caches' good copy for the error
