"""`cachebot history`, `cachebot stats` (and `cachebot db prune`, on the same records) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from typer.testing import CliRunner

from agent.cli.main import app
from agent.storage.audit import AuditStore
from agent.storage.database import ENV_VAR
from tests.agent.storage.test_audit import HOME, STALE, F, V, seed

runner = CliRunner()


@pytest.fixture
def recorded(database_url, monkeypatch, tmp_path):
    """Requests an hour, two days and forty days old; the database named by $CACHEBOT_DATABASE_URL only."""
    now = datetime.now(timezone.utc)
    store = AuditStore.open(database_url)
    seed(store, user="bob", at=now - timedelta(hours=1), took=12, rows=[
        ("/pricing", "varnish", V), ("/pricing", "edge", V), ("/", "edge", V, False, HOME)])
    seed(store, user="carol", at=now - timedelta(days=2), took=40, interface="slack", channel="C0WEB",
         rows=[("/pricing", "varnish", V), ("/pricing", "edge", F, True, "you asked", STALE, True)])
    seed(store, user="bob", at=now - timedelta(days=40), took=5, rows=[("/about", "edge", V)])
    store.close()
    monkeypatch.setenv(ENV_VAR, database_url)
    monkeypatch.delenv("CACHEBOT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./cachebot.yaml: the environment alone names the database
    return database_url


def run(*args: str):
    outcome = runner.invoke(app, list(args))
    assert outcome.exit_code == 0, outcome.output
    return outcome.output


def test_history_json_newest_first(recorded):
    entries = json.loads(run("history", "--json"))
    assert [e["user"] for e in entries] == ["bob", "carol", "bob"]
    assert entries[1]["interface"] == "slack" and entries[1]["worked"] is False
    assert entries[0]["worked"] is True and entries[0]["urls"] == ["https://shop.example/pricing"]


def test_history_filters(recorded):
    by_url = json.loads(run("history", "--url", "https://shop.example/pricing", "--json"))
    assert [(e["user"], e["match"]["worked"]) for e in by_url] == [("bob", True), ("carol", False)]
    dependent = json.loads(run("history", "--url", "https://shop.example/", "--json"))
    assert [(e["user"], e["match"]["requested"], e["match"]["reason"]) for e in dependent] == [("bob", False, HOME)]
    assert [e["user"] for e in json.loads(run("history", "--user", "carol", "--json"))] == ["carol"]
    assert [e["user"] for e in json.loads(run("history", "--since", "24h", "--json"))] == ["bob"]
    assert len(json.loads(run("history", "--since", "7d", "--json"))) == 2
    since_date = (datetime.now(timezone.utc) - timedelta(days=3)).date().isoformat()
    assert len(json.loads(run("history", "--since", since_date, "--json"))) == 2


def test_history_text(recorded):
    text = run("history", "--url", "https://shop.example/pricing")
    lines = text.strip().splitlines()
    assert "bob (cli): https://shop.example/pricing → verified fresh" in lines[0]
    assert "carol (slack #C0WEB): https://shop.example/pricing → NOT confirmed fresh" in lines[1]
    assert "No purge requests recorded for that query." in run("history", "--user", "nobody")


def test_history_refuses_a_bad_since(recorded):
    outcome = runner.invoke(app, ["history", "--since", "someday"])
    assert outcome.exit_code == 2 and "not a time" in outcome.output


def test_stats(recorded):
    figures = json.loads(run("stats", "--json"))
    edge = next(r for r in figures["per_site_layer"] if r["layer"] == "edge")
    assert (edge["purged"], edge["verified"], edge["failed"], edge["stale"]) == (4, 3, 1, 1)
    assert figures["most_purged"][0]["path"] == "/pricing" and figures["most_purged"][0]["requests"] == 2
    assert figures["problem_layers"][0]["layer"] == "edge"
    assert figures["median_seconds_to_verified"] == pytest.approx(8.5)  # 12 s and 5 s; carol's never verified
    week = json.loads(run("stats", "--since", "7d", "--json"))
    assert week["requests"] == 2 and week["median_seconds_to_verified"] == pytest.approx(12)  # the 40-day-old one is out
    text = run("stats")
    assert "3 requests" in text and "Most purged pages" in text and "edge: 1 stale after purge, 1 failed" in text


def test_db_prune_uses_retention_days_from_the_config(recorded, tmp_path):
    config = tmp_path / "cachebot.yaml"
    config.write_text(yaml.safe_dump({
        "sites": [{"name": "shop", "hosts": ["shop.example"], "layers": ["edge"]}],
        "layers": [{"name": "edge", "kind": "nginx", "endpoint": "http://127.0.0.1:9"}],
        "storage": {"database_url": recorded, "retention_days": 30},
    }))
    assert "deleted 1 request(s) older than 30 days" in run("db", "prune", "--config", str(config))
    assert "deleted 1 request(s) older than 1 days" in run("db", "prune", "--days", "1")
    assert [e["user"] for e in json.loads(run("history", "--json"))] == ["bob"]
