"""The audit trail, on SQLite and on PostgreSQL: what is recorded, the queries, retention, and no secrets."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from agent.models import Intent, ItemResult, ItemStatus, Operation, PlanItem, RunResult
from agent.storage.audit import AuditStore
from tests.agent.conftest import warm
from tests.agent.test_approval import BIG

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
SHOP = "https://shop.example"
STALE = "purge accepted, but it still serves stale content"


def item(path: str, layer: str, requested: bool = True, reason: str = "you asked for this page") -> PlanItem:
    url = SHOP + path
    return PlanItem(url=url, site="shop", layer=layer, operation=Operation.PURGE_URL, target=url, reason=reason,
                    requested=requested)


def seed(store: AuditStore, *, user: str, at: datetime, took: float, rows: list[tuple], interface: str = "cli",
         channel: str | None = None) -> str:
    """Record one finished purge request: rows are (path, layer, status[, requested, reason, detail, stale])."""
    request_id = store.request_received(thread_id=f"t-{user}-{at:%H%M%S%f}", user=user, interface=interface,
                                        channel=channel, text=f"purge {SHOP}{rows[0][0]}", dry_run=False, at=at)
    plan, results = [], []
    for path, layer, status, *rest in rows:
        requested = rest[0] if rest else True
        reason = rest[1] if len(rest) > 1 else "you asked for this page"
        plan.append(item(path, layer, requested, reason))
        detail = rest[2] if len(rest) > 2 else "purged"
        stale = rest[3] if len(rest) > 3 else False
        results.append(ItemResult(url=SHOP + path, layer=layer, status=status, detail=detail, evidence="MISS→fresh",
                                  attempts=1, stale_after_purge=stale))
    result = RunResult(thread_id="x", intent=Intent.PURGE, reply="", urls=[SHOP + rows[0][0]], plan=plan,
                       pages=list(dict.fromkeys(i.url for i in plan)), results=results)
    store.request_updated(request_id, result, at=at + timedelta(seconds=took))
    return request_id


V, F, N = ItemStatus.PURGED_VERIFIED, ItemStatus.FAILED, ItemStatus.NOT_CACHED
HOME = "the home page shows the prices"


@pytest.fixture
def known(database_url):
    """Four requests with known outcomes (one ten days old)."""
    store = AuditStore.open(database_url)
    seed(store, user="bob", at=T0, took=10, rows=[
        ("/pricing", "varnish", V), ("/pricing", "edge", V),
        ("/", "varnish", V, False, HOME), ("/", "edge", V, False, HOME)])
    seed(store, user="carol", at=T0 + timedelta(hours=1), took=20, interface="slack", channel="C0WEB",
         rows=[("/pricing", "varnish", V), ("/pricing", "edge", F, True, "you asked", STALE, True)])
    seed(store, user="bob", at=T0 + timedelta(hours=2), took=30,
         rows=[("/products/shoes/runner", "varnish", V), ("/products/shoes/runner", "edge", V)])
    seed(store, user="bob", at=T0 - timedelta(days=10), took=100, rows=[("/pricing", "edge", V)])
    yield store
    store.close()


def test_history_by_url_matches_the_normalised_url_newest_first(known):
    entries = known.history(url="HTTPS://Shop.Example:443/pricing#top")
    assert [(e.user, e.received_at) for e in entries] == [
        ("carol", T0 + timedelta(hours=1)), ("bob", T0), ("bob", T0 - timedelta(days=10))]
    carol = entries[0]
    assert carol.match.worked is False and carol.worked is False
    assert {(o.layer, o.status) for o in carol.match.layers} == {("varnish", "purged_verified"), ("edge", "failed")}
    assert carol.interface == "slack" and carol.channel == "C0WEB"
    assert entries[1].match.worked is True


def test_history_by_url_includes_pages_added_as_dependents(known):
    [entry] = known.history(url=f"{SHOP}/")
    assert entry.user == "bob" and entry.match.requested is False and entry.match.reason == HOME
    assert entry.match.worked is True and entry.urls == [f"{SHOP}/pricing"]


def test_history_by_user_and_since(known):
    assert [e.received_at for e in known.history(user="bob")] == [
        T0 + timedelta(hours=2), T0, T0 - timedelta(days=10)]
    assert [e.user for e in known.history(since=T0 + timedelta(minutes=30))] == ["bob", "carol"]
    assert known.history(user="bob", since=T0 + timedelta(minutes=30), url=f"{SHOP}/pricing") == []
    assert known.history(user="nobody") == []


def test_stats_from_known_data(known):
    figures = known.stats()
    per = {(r["site"], r["layer"]): r for r in figures["per_site_layer"]}
    assert per[("shop", "varnish")] | {} == {"site": "shop", "layer": "varnish", "purged": 4, "verified": 4,
                                           "unverified": 0, "failed": 0, "not_cached": 0, "skipped": 0, "stale": 0}
    assert (per[("shop", "edge")]["purged"], per[("shop", "edge")]["verified"], per[("shop", "edge")]["failed"],
            per[("shop", "edge")]["stale"]) == (5, 4, 1, 1)
    assert figures["most_purged"][0] == {"site": "shop", "url": f"{SHOP}/pricing", "path": "/pricing", "requests": 3}
    assert figures["problem_layers"] == [{"site": "shop", "layer": "edge", "stale": 1, "failed": 1, "unverified": 0}]
    assert figures["median_seconds_to_verified"] == 30  # 10, 30 and 100 s; carol's did not verify
    assert figures["verified_requests"] == 3 and figures["failed_requests"] == 1

    recent = known.stats(since=T0 - timedelta(hours=1))
    assert recent["median_seconds_to_verified"] == 20  # 10 and 30 s
    assert recent["most_purged"][0]["requests"] == 2 and recent["requests"] == 3
    json.dumps(figures)  # JSON-ready as it is


def test_retention_prunes_old_requests_with_their_rows(known):
    assert known.prune(older_than_days=5, now=T0 + timedelta(days=1)) == 1
    rows = known.dump()
    assert len(rows["audit_requests"]) == 3
    assert all(r["received_at"] >= T0 for r in rows["audit_requests"])
    request_ids = {r["id"] for r in rows["audit_requests"]}
    assert all(r["request_id"] in request_ids for t in ("audit_results", "audit_plan_items") for r in rows[t])


def test_an_agent_prunes_on_start(make_agent, database_url, clock):
    store = AuditStore.open(database_url)
    seed(store, user="old", at=clock.now - timedelta(days=40), took=1, rows=[("/pricing", "edge", V)])
    seed(store, user="new", at=clock.now - timedelta(days=2), took=1, rows=[("/pricing", "edge", V)])
    store.close()
    agent = make_agent(storage={"database_url": database_url, "retention_days": 30})
    assert [e.user for e in agent.audit.history()] == ["new"]


# --- through the Agent, on the real stack ----------------------------------------------------------------------


def test_an_ask_records_request_plan_and_results(fresh_stack, make_agent, database_url, clock):
    warm(fresh_stack, "/pricing")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    agent = make_agent(storage={"database_url": database_url})
    result = agent.ask("old price on <https://shop.example/pricing>", user="bob")
    assert result.results

    rows = agent.audit.dump()
    [request] = rows["audit_requests"]
    assert request["thread_id"] == result.thread_id and request["requested_by"] == "bob"
    assert request["interface"] == "cli" and request["channel"] is None
    assert request["text"] == "old price on <https://shop.example/pricing>"
    assert (request["intent"], request["status"], request["outcome"]) == ("purge", "done", "verified")
    assert request["received_at"] == clock.now and request["finished_at"] == clock.now
    plan = {(p["url"], p["layer"]): p for p in rows["audit_plan_items"]}
    assert plan[("https://shop.example/pricing", "varnish")]["requested"] is True
    home = plan[("https://shop.example/", "edge")]
    assert home["requested"] is False and "home page" in home["reason"]
    assert {p["operation"] for p in rows["audit_plan_items"]} <= {o.value for o in Operation}
    recorded = {(r["url"], r["layer"]): r for r in rows["audit_results"]}
    assert len(recorded) == len(result.results)
    for r in result.results:
        row = recorded[(r.url, r.layer)]
        assert (row["status"], row["attempts"], row["evidence"]) == (r.status.value, r.attempts, r.evidence)
        assert row["site"] == "shop"
    assert recorded[("https://shop.example/pricing", "varnish")]["evidence"]  # the verification evidence


def test_a_dry_run_is_recorded_as_one(make_agent, database_url):
    agent = make_agent(storage={"database_url": database_url})
    agent.ask("purge https://shop.example/pricing", user="dora", dry_run=True, channel="C0WEB")
    [entry] = agent.audit.history(user="dora")
    assert entry.status == "dry_run" and entry.dry_run and entry.interface == "slack" and entry.channel == "C0WEB"
    assert entry.finished_at is not None and entry.worked is None


def test_decisions_record_who_when_and_where_refusals_included(make_agent, database_url, clock):
    agent = make_agent(storage={"database_url": database_url},
                       approval={"threshold": 2, "approvers": ["alice"], "expiry_minutes": 30})
    waiting = agent.ask(BIG, user="bob", channel="C0WEB")
    [pending] = agent.audit.history(user="bob")
    assert pending.status == "waiting_approval" and pending.finished_at is None and pending.purge_count > 2

    clock.advance(minutes=1)
    agent.decide(waiting.thread_id, "approve", user="mallory")
    clock.advance(minutes=1)
    agent.decide(waiting.thread_id, "approve", user="alice", interface="cli")

    [entry] = agent.audit.history(user="bob")
    assert [(d.by, d.status, d.interface, d.decision) for d in entry.decisions] == [
        ("mallory", "refused", "slack", "approve"),  # by default: where the request came from
        ("alice", "approved", "cli", "approve"),
    ]
    assert "not an approver" in entry.decisions[0].detail
    assert entry.decisions[1].at == clock.now and entry.approved_by == "alice"
    assert entry.status == "done" and entry.finished_at == clock.now and entry.worked is not None


def test_a_denial_is_recorded(make_agent, database_url):
    agent = make_agent(storage={"database_url": database_url},
                       approval={"threshold": 2, "approvers": ["alice"], "expiry_minutes": 30})
    waiting = agent.ask(BIG, user="bob")
    agent.decide(waiting.thread_id, "deny", user="alice")
    [entry] = agent.audit.history(user="bob")
    assert entry.status == "denied" and [(d.by, d.status) for d in entry.decisions] == [("alice", "denied")]
    assert agent.audit.dump()["audit_results"] == []


def test_the_history_intent_answers_from_the_audit_trail(fresh_stack, make_agent, database_url):
    warm(fresh_stack, "/pricing")
    agent = make_agent(storage={"database_url": database_url})
    agent.ask("purge https://shop.example/pricing", user="bob")

    who = agent.ask("who cleared https://shop.example/pricing?", user="carol")
    assert who.intent == Intent.HISTORY
    assert "bob (cli)" in who.reply and "verified fresh" in who.reply and "2026-11-25 12:00 UTC" in who.reply

    today = agent.ask("what was purged today?", user="carol")
    assert "Purges today:" in today.reply and "bob" in today.reply and "shop.example/pricing" in today.reply

    nothing = agent.ask("who cleared https://shop.example/products/hats/beanie?", user="carol")
    assert "no record" in nothing.reply


SECRET = "s3cr3t-Token-9f8e7d6c"


def test_no_secret_reaches_the_audit_tables(fresh_stack, make_agent, database_url):
    data = fresh_stack.config_dict()
    hook = {"name": "hook", "kind": "webhook", "endpoint": "http://127.0.0.1:9", "retries": 0,
            "credentials": {"token": SECRET},
            "options": {"url_template": "{endpoint}/purge?url={url}",
                        "headers": {"Authorization": "Bearer {credentials.token}"}}}
    agent = make_agent(storage={"database_url": database_url},
                       layers=[*data["layers"], hook],
                       sites=[{**data["sites"][0], "layers": [*data["sites"][0]["layers"], "hook"]}],
                       approval={"threshold": 2, "approvers": ["alice"], "expiry_minutes": 30})
    # the secret pasted into a message, and a URL with a password in it
    asked = agent.ask(f"purge https://shop.example/pricing please, token {SECRET} and redis://:{SECRET}@x/0",
                      user="bob")
    done = agent.decide(asked.thread_id, "approve", user="alice")
    assert any(r.layer == "hook" and r.status == ItemStatus.FAILED for r in done.results)
    waiting = agent.ask(BIG + f" {SECRET}", user="bob")
    agent.decide(waiting.thread_id, "approve", user=f"mallory {SECRET}")

    rows = agent.audit.dump()
    assert rows["audit_requests"] and rows["audit_results"] and rows["audit_decisions"]
    everything = json.dumps(rows, default=str)
    assert SECRET not in everything
    assert "[redacted]" in rows["audit_requests"][0]["text"] or "[redacted]" in rows["audit_requests"][1]["text"]
