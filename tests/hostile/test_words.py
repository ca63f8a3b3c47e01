"""Hostile input, issue 9 items 8, 9 and (part of) 10: words that must not purge, text that must not become
markup, and answers that must not say "fine" when they are not.

8. Questions and cancellations became purges with the rules: "is it safe to purge URL?", "should I purge URL?",
   "dry run: URL", "test only, don't actually purge URL", "wait, cancel that: URL", "ne pas purger URL" all
   planned and executed a purge under the threshold.
9. mrkdwn injection: backticks inside a rejected URL broke out of the code span, so
   <https://evil.example/`https://phish.example/login`|x> showed a live phishing link in the plan/approval card.
10. An expired approval exited 0 from `cachebot approve`; config errors said "Extra inputs are not permitted".

Everything runs on the real stack (nginx -> Varnish -> origin with Redis); Slack is the loopback Web API fake
with Bolt in HTTP mode; "nothing was purged" is checked where a visitor would see it (the edge still HITs).
"""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from agent.cli.main import app
from agent.config import ConfigError, parse_config
from agent.models import Intent
from tests.agent.conftest import clock, make_agent, through_edge, warm  # noqa: F401 (fixtures)
from tests.slack_app.conftest import (  # noqa: F401 (fixtures)
    CHANNEL,
    assert_inert,
    buttons,
    fake_slack,
    link_hosts,
    mrkdwn_objects,
    slack,
)

PRICING = "https://shop.example/pricing"
ATTACK = "<https://evil.example/`https://phish.example/login`|x>"


def still_cached(stack, path: str = "/pricing") -> bool:
    return through_edge(stack, path).headers["X-Cache-Status"] == "HIT"


# --- 8. words that hold a purge back ------------------------------------------------------------------------

THE_ISSUES_PHRASINGS = [
    (f"is it safe to purge <{PRICING}>?", Intent.ASK),
    (f"should I purge <{PRICING}>?", Intent.ASK),
    (f"dry run: <{PRICING}>", Intent.DRY_RUN),
    (f"test only, don't actually purge <{PRICING}>", Intent.DRY_RUN),
    (f"wait, cancel that: <{PRICING}>", Intent.CANCEL),
    (f"ne pas purger <{PRICING}>", Intent.CANCEL),
]
OUR_OWN = [  # the same in every language the rules claim, and a few more forms
    (f"what would happen if I purged <{PRICING}>?", Intent.ASK),
    (f"Ist es sicher, <{PRICING}> zu leeren?", Intent.ASK),
    (f"Faut-il vider le cache de <{PRICING}> ?", Intent.ASK),
    (f"¿Debería borrar la caché de <{PRICING}>?", Intent.ASK),
    (f"Moet ik de cache van <{PRICING}> legen?", Intent.ASK),
    (f"is <{PRICING}> safe to purge at peak time?", Intent.ASK),
    (f"Probelauf: <{PRICING}>", Intent.DRY_RUN),
    (f"Simulation : <{PRICING}>", Intent.DRY_RUN),
    (f"¿Qué borrarías para <{PRICING}>?", Intent.DRY_RUN),
    (f"Alleen testen, niet echt legen: <{PRICING}>", Intent.DRY_RUN),
    (f"Warte, abbrechen: <{PRICING}>", Intent.CANCEL),
    (f"no purgar <{PRICING}>", Intent.CANCEL),
    (f"niet purgen <{PRICING}>", Intent.CANCEL),
    (f"stop! don't purge <{PRICING}>", Intent.CANCEL),
]


@pytest.mark.parametrize(("message", "intent"), THE_ISSUES_PHRASINGS + OUR_OWN)
def test_words_that_hold_back_never_purge(fresh_stack, make_agent, message, intent):
    warm(fresh_stack, "/pricing", "/")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    result = make_agent(approval={"threshold": 20}).ask(message, user="mallory")

    assert result.intent == intent
    assert result.results == [] and result.pending is None
    assert "nothing was purged" in result.reply.lower() or "did not purge anything" in result.reply
    assert still_cached(fresh_stack) and "$10" in through_edge(fresh_stack, "/pricing").text


def test_a_polite_request_still_purges(fresh_stack, make_agent):
    warm(fresh_stack, "/pricing")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    result = make_agent(approval={"threshold": 20}).ask(f"can you purge <{PRICING}>?", user="bob")
    assert result.intent == Intent.PURGE and "$12" in through_edge(fresh_stack, "/pricing").text


def test_in_slack_a_question_waits_for_a_click(slack, fresh_stack):
    warm(fresh_stack, "/pricing")
    h = slack(approval={"threshold": 20})
    thread_ts = h.mention(f"should I purge <{PRICING}>?")
    [offer] = h.thread(thread_ts)
    assert [e["text"]["text"] for e in buttons(offer)][1] == "Just check them"
    assert not h.reports(thread_ts) and still_cached(fresh_stack)


# --- 9. nothing a user writes becomes Slack markup ------------------------------------------------------------

def every_block_sent(fake) -> list[dict]:
    """The mrkdwn objects of every message, update and ephemeral the app sent."""
    sent = []
    for method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
        for call in fake.calls_to(method):
            blocks = call.args.get("blocks")
            sent += mrkdwn_objects(json.loads(blocks) if isinstance(blocks, str) else blocks or [])
    return sent


def test_the_phishing_link_is_dead_in_the_plan_and_approval_card(slack, fresh_stack):
    h = slack()  # threshold 2: the pricing page and its dependents need approval, so the card is shown
    thread_ts = h.mention(f"purge {ATTACK} <{PRICING}>")
    card = h.approval_message(thread_ts)
    assert "phish.example" in json.dumps(card, ensure_ascii=False)  # shown, as text
    sent = every_block_sent(h.fake)
    assert sent
    for obj in sent:
        assert "phish.example" not in link_hosts(obj), obj["text"]
        assert "phish.example" not in link_hosts(obj, assume_autolink=True), obj["text"]  # even if verbatim failed
        assert_inert(obj)


@pytest.mark.parametrize("char", ["`", "<", ">", "&", "*", "_", "~"])
def test_each_markup_character_in_a_rejected_url_stays_text(slack, fresh_stack, char):
    h = slack(approval={"threshold": 20})
    hostile = f"https://evil.example/Q{char}Q/{char}bold{char}"
    h.mention(f"purge {hostile} and <{PRICING}>")
    for obj in every_block_sent(h.fake):
        text = obj["text"]
        assert obj.get("verbatim") is True
        assert_inert(obj)
        if char in "`<>&":
            assert f"Q{char}Q" not in text, text
        else:
            outside = "".join(part for i, part in enumerate(text.split("`")) if i % 2 == 0)
            assert f"{char}bold{char}" not in outside, text


# --- 10. answers that must not say "fine" ---------------------------------------------------------------------

def test_approving_an_expired_request_exits_non_zero(fresh_stack, tmp_path):
    data = fresh_stack.config_dict()
    data["storage"] = {"sqlite_path": str(tmp_path / "cli.sqlite")}
    data["approval"] = {"threshold": 1, "approvers": ["alice"], "expiry_minutes": 0.0001}  # gone in 6 ms
    config = tmp_path / "cachebot.yaml"
    config.write_text(yaml.safe_dump(data))
    runner = CliRunner()
    asked = runner.invoke(app, ["ask", f"purge {PRICING}", "--json", "--config", str(config), "--as", "bob"])
    thread = json.loads(asked.output)["thread_id"]
    for verb in ("approve", "deny"):
        late = runner.invoke(app, [verb, thread, "--config", str(config), "--as", "alice"])
        assert late.exit_code == 1 and "expired" in late.output, late.output


def test_an_unknown_config_key_is_named_not_extra_inputs(fresh_stack):
    data = fresh_stack.config_dict()
    data["sites"][0]["hostz"] = data["sites"][0]["hosts"]
    with pytest.raises(ConfigError) as error:
        parse_config(data)
    assert "sites[0].hostz: unknown key; did you mean hosts?" in str(error.value)
    data = fresh_stack.config_dict()
    data["layers"][0]["options"] = {**data["layers"][0].get("options", {}), "tiemout": 3}
    with pytest.raises(ConfigError) as error:
        parse_config(data)
    assert "layers[0].options.tiemout: unknown key" in str(error.value)
    assert "Extra inputs are not permitted" not in str(error.value)
