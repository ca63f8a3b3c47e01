"""Hostile URLs, end to end: what an attacker in a Slack channel can type must not purge more than it says, nor
make the report call fresh a page the edge still serves stale (issue 9, items 1, 2, 5 and 10).

The real demo stack (Redis app cache <- Varnish <- nginx) for what a visitor sees; the loopback Fastly and
webhook fakes, which record the exact request line, for what leaves cachebot on the wire.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.models import Intent, ItemStatus
from tests.agent.conftest import clock, make_agent, through_edge, warm  # noqa: F401 (fixtures)
from tests.fakes import FakeFastly, FakeWebhook

ABOUT = "https://shop.example/about"
STALE, FRESH = "We are a small shop", "Now with socks."


def edit_about(stack) -> None:
    """The about page is cached on every layer, then edited: the edge serves it stale until it is purged."""
    warm(stack, "/about")
    stack.content.edit("/about", FRESH)
    assert STALE in through_edge(stack, "/about").text


# --- item 2: dot segments made stale pages "verified fresh" ---------------------------------------------------


@pytest.mark.parametrize("written", ["https://shop.example/../about", "https://shop.example/%2e%2e/about",
                                     "https://shop.example/.%2E/about", "https://shop.example/a/..%2F..%2Fabout"])
def test_a_path_above_the_root_is_refused_and_nothing_is_reported_fresh(fresh_stack, make_agent, written):
    edit_about(fresh_stack)

    result = make_agent().ask(f"purge <{written}>", user="bob")

    assert result.urls == [] and result.results == [] and result.plan == []
    assert [r.input for r in result.rejected] == [written]
    assert "climbs above the site's root" in result.rejected[0].reason or "encoded slash" in result.rejected[0].reason
    assert "fresh" not in result.reply.lower() and not result.reply.startswith("Done")
    assert written in result.reply  # the person is told what was not touched, and why
    assert STALE in through_edge(fresh_stack, "/about").text  # still stale, and nobody claimed otherwise


def test_dot_segments_inside_the_site_purge_the_page_they_name_on_every_layer(fresh_stack, make_agent):
    # nginx's GET /purge/x/../about, Redis' key .../x/../about and the origin all used to disagree
    edit_about(fresh_stack)

    result = make_agent().ask("purge <https://shop.example/x/../about>", user="bob")

    assert result.urls == [ABOUT]
    assert {r.layer: r.status for r in result.results if r.url == ABOUT} == {
        "appcache": ItemStatus.PURGED_VERIFIED, "varnish": ItemStatus.PURGED_VERIFIED, "edge": ItemStatus.PURGED_VERIFIED}
    assert FRESH in through_edge(fresh_stack, "/about").text  # verified fresh, and really fresh


# --- item 1: dot segments escaped the layer's path ------------------------------------------------------------


@pytest.fixture
def fastly() -> Iterator[FakeFastly]:
    with FakeFastly() as fake:
        yield fake


@pytest.fixture
def hook() -> Iterator[FakeWebhook]:
    with FakeWebhook() as fake:
        yield fake


def sites_on(layer: str) -> list[dict]:
    return [{"name": "shop", "hosts": ["shop.example"], "layers": [layer], "discover_tags": False}]


def test_fastly_never_receives_anything_outside_purge_for_a_url_purge(make_agent, fastly):
    sid = fastly.service_id
    agent = make_agent(sites=sites_on("cdn"), layers=[{
        "name": "cdn", "kind": "fastly", "endpoint": fastly.url, "retries": 0,
        "credentials": {"api_key": fastly.key}, "options": {"service_id": sid}}])
    message = (
        f"purge <https://shop.example/../../service/{sid}/purge_all> "
        f"<https://shop.example/x/../../../service/{sid}/purge_all> "
        f"<https://shop.example/%2e%2e/%2e%2e/service/{sid}/purge_all> "
        f"<https://shop.example/..%2F..%2Fservice%2F{sid}%2Fpurge_all> "
        f"https://shop.example/a\\..\\..\\service/{sid}/purge_all "
        "<https://shop.example/pricing>"
    )

    result = agent.ask(message, user="bob")

    assert result.urls == ["https://shop.example/pricing"]
    assert len(result.rejected) == 5
    assert [r.path for r in fastly.requests] == ["/purge/shop.example/pricing"]
    assert fastly.purged("all") == []  # the whole service was purged this way before


def test_the_webhook_never_reaches_a_path_outside_its_templates_prefix(make_agent, hook):
    agent = make_agent(sites=sites_on("hook"), layers=[{
        "name": "hook", "kind": "webhook", "endpoint": hook.url, "retries": 0,
        "credentials": {"token": hook.token},
        "options": {"url_template": "{endpoint}/api/purge{path}", "headers": {"X-Api-Key": "{credentials.token}"},
                    "body_template": '{"url": "{url}"}'}}])
    message = (
        "purge <https://shop.example/../../../admin/flush> <https://shop.example/%2e%2e/%2e%2e/admin/flush> "
        "<https://shop.example/a/..%2F..%2F..%2Fadmin/flush> <https://shop.example/caf\u00e9/../sale>"
    )

    result = agent.ask(message, user="bob")

    assert result.urls == ["https://shop.example/sale"]
    assert [r.path for r in hook.requests] == ["/api/purge/sale"]
    assert all(r.path.startswith("/api/purge/") for r in hook.requests)


# --- item 5: a huge URL crashed the run; size bounds --------------------------------------------------------


def test_a_url_over_65536_characters_is_refused_and_the_others_are_purged(fresh_stack, make_agent):
    edit_about(fresh_stack)
    huge = "https://shop.example/" + "a" * 70_000
    agent = make_agent(sites=[{**fresh_stack.config_dict()["sites"][0], "discover_tags": False}])

    result = agent.ask(f"purge {huge} and <{ABOUT}>", user="bob")

    assert result.urls == [ABOUT]
    assert len(result.rejected) == 1 and "limits.max_url_length" in result.rejected[0].reason
    assert len(result.reply) < 5_000  # the 70,000 characters are not echoed back
    assert all(r.status == ItemStatus.PURGED_VERIFIED for r in result.results if r.url == ABOUT)
    assert FRESH in through_edge(fresh_stack, "/about").text
    history = agent.audit.history(url=ABOUT)
    assert len(history) == 1 and history[0].user == "bob"  # the audit has what was sent


def test_a_message_over_the_limit_is_refused_whole_naming_the_limit(fresh_stack, make_agent):
    edit_about(fresh_stack)
    agent = make_agent(limits={"max_message_chars": 2_000})

    result = agent.ask(f"purge <{ABOUT}> " + "please " * 400, user="bob")

    assert result.urls == [] and result.results == []
    assert "limits.max_message_chars" in result.reply and "2,000" in result.reply
    assert STALE in through_edge(fresh_stack, "/about").text


def test_purge_everything_in_a_message_over_the_limit_names_no_site(fresh_stack, make_agent):
    agent = make_agent(limits={"max_message_chars": 1_000})
    result = agent.ask("purge everything on shop " + "now " * 300, user="bob")
    assert result.intent == Intent.PURGE_ALL
    assert result.plan == [] and result.results == [] and not result.needs_approval
    assert "limits.max_message_chars" in result.reply


# --- item 10: trailing markup and punctuation ---------------------------------------------------------------


def test_a_trailing_tilde_is_kept_and_bold_markup_is_not_part_of_the_url(make_agent):
    result = make_agent().ask("purge https://shop.example/~team~ and *https://shop.example/pricing*",
                              user="bob", dry_run=True)
    assert result.urls == ["https://shop.example/~team~", "https://shop.example/pricing"]
