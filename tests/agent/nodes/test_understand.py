"""Questions, dry runs and cancellations on the real stack: planned or answered, never purged.

Each test warms a page through nginx -> varnish -> origin first, so "nothing was purged" is checked where a
visitor would see it: the edge still answers HIT with the old content.
"""

from __future__ import annotations

import pytest

from agent.models import Intent
from agent.service.agent import NothingPending
from tests.agent.conftest import through_edge, warm

PRICING = "https://shop.example/pricing"


def still_cached(stack, path: str = "/pricing") -> bool:
    return through_edge(stack, path).headers["X-Cache-Status"] == "HIT"


@pytest.mark.parametrize("message", [
    f"is it safe to purge <{PRICING}>?",
    f"should I purge <{PRICING}>?",
    f"what would happen if I purged <{PRICING}>?",
    f"Soll ich den Cache für <{PRICING}> leeren?",
    f"¿Es seguro purgar <{PRICING}>?",
])
def test_a_question_about_purging_plans_purges_nothing_and_offers(fresh_stack, make_agent, message):
    warm(fresh_stack, "/pricing", "/")
    result = make_agent().ask(message, user="bob")

    assert result.intent == Intent.ASK
    assert result.plan and result.results == [] and result.pending is None
    assert result.urls == [PRICING]
    assert "nothing was purged" in result.reply
    assert f"Purge these {len(result.pages)} pages, or just check them?" in result.reply
    assert PRICING in result.reply
    assert still_cached(fresh_stack)


@pytest.mark.parametrize("message", [
    f"dry run: <{PRICING}>",
    f"test only, don't actually purge <{PRICING}>",
    f"what would you purge for <{PRICING}>?",
    f"Probelauf: <{PRICING}>",
])
def test_a_dry_run_shows_the_plan_and_says_nothing_was_purged(fresh_stack, make_agent, message):
    warm(fresh_stack, "/pricing", "/")
    result = make_agent().ask(message, user="bob")

    assert result.intent == Intent.DRY_RUN and result.dry_run
    assert result.plan and result.results == [] and result.pending is None
    assert result.reply.startswith("Dry run: nothing was purged. The plan:")
    assert PRICING in result.reply and "https://shop.example/" in result.reply  # the home page shows the prices
    assert still_cached(fresh_stack)


def test_a_dry_run_over_the_threshold_says_it_would_need_approval_and_asks_nobody(fresh_stack, make_agent):
    warm(fresh_stack, "/pricing")
    result = make_agent(approval={"threshold": 1}).ask(f"dry run: <{PRICING}>", user="bob")
    assert result.pending is None and result.needs_approval  # what a real run would report; nobody is asked
    assert "A real purge would need approval" in result.reply
    assert still_cached(fresh_stack)


@pytest.mark.parametrize("message", [
    f"wait, cancel that: <{PRICING}>",
    f"ne pas purger <{PRICING}>",
    f"stop! don't purge <{PRICING}>",
    "never mind",
    f"Wacht, annuleer dat: <{PRICING}>",
])
def test_a_cancellation_purges_nothing_and_says_so(fresh_stack, make_agent, message):
    warm(fresh_stack, "/pricing")
    result = make_agent().ask(message, user="bob")

    assert result.intent == Intent.CANCEL
    assert result.plan == [] and result.results == [] and result.pending is None
    assert result.reply == "Cancelled: I did not purge anything for this message."
    assert still_cached(fresh_stack)


def test_a_polite_request_is_a_purge(fresh_stack, make_agent):
    warm(fresh_stack, "/pricing")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    result = make_agent().ask(f"can you purge <{PRICING}>?", user="bob")
    assert result.intent == Intent.PURGE and result.results
    assert "$12" in through_edge(fresh_stack, "/pricing").text


def test_a_question_about_the_whole_site_is_answered_in_words(fresh_stack, make_agent):
    warm(fresh_stack, "/pricing")
    result = make_agent().ask("should we purge the whole site before the launch?", user="bob")
    assert result.intent == Intent.ASK and result.plan == [] and result.pending is None
    assert "always needs approval" in result.reply and "purge everything on <site>" in result.reply
    assert still_cached(fresh_stack)


# --- the offer: "Purge these N pages" / "Just check them" --------------------------------------------------

def test_taking_the_offer_purges_exactly_the_asked_urls_as_the_taker(fresh_stack, make_agent):
    warm(fresh_stack, "/pricing", "/about")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    agent = make_agent()
    asked = agent.ask(f"is it safe to purge <{PRICING}>?", user="bob", thread_id="t1")
    offer = agent.offer("t1")
    assert offer is not None and offer.urls == [PRICING] and offer.pages == len(asked.pages)

    result = agent.take_offer("t1", offer.id, "purge", user="carol")

    assert result.intent == Intent.PURGE and result.understood_by == "choice"
    assert {r.url for r in result.results} == set(asked.pages)  # the plan the question showed, no more
    assert "$12" in through_edge(fresh_stack, "/pricing").text
    assert still_cached(fresh_stack, "/about")
    [purged] = agent.audit.history(limit=5)  # the history lists purges: the question was none
    assert (purged.user, purged.intent, purged.urls) == ("carol", "purge", [PRICING])
    assert agent.offer("t1") is None  # answered: the buttons do nothing any more
    with pytest.raises(NothingPending):
        agent.take_offer("t1", offer.id, "purge", user="carol")


def test_the_offer_keeps_the_approval_rules(fresh_stack, make_agent):
    warm(fresh_stack, "/pricing")
    agent = make_agent(approval={"threshold": 1})
    agent.ask(f"should I purge <{PRICING}>?", user="bob", thread_id="t1")
    result = agent.take_offer("t1", agent.offer("t1").id, "purge", user="bob")
    assert result.pending is not None and result.results == []
    assert still_cached(fresh_stack)


def test_just_check_them_looks_without_purging(fresh_stack, make_agent):
    warm(fresh_stack, "/pricing")
    agent = make_agent()
    agent.ask(f"should I purge <{PRICING}>?", user="bob", thread_id="t1")
    result = agent.take_offer("t1", agent.offer("t1").id, "check", user="bob")
    assert result.intent == Intent.CHECK and result.checks and result.results == []
    assert still_cached(fresh_stack)


def test_an_old_offer_cannot_act_on_a_newer_request(fresh_stack, make_agent):
    warm(fresh_stack, "/pricing", "/about")
    agent = make_agent()
    agent.ask(f"should I purge <{PRICING}>?", user="bob", thread_id="t1")
    old = agent.offer("t1")
    agent.ask("should I purge <https://shop.example/about>?", user="bob", thread_id="t1")
    with pytest.raises(NothingPending):
        agent.take_offer("t1", old.id, "purge", user="bob")
    assert still_cached(fresh_stack) and still_cached(fresh_stack, "/about")
