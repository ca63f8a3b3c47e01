"""The console on a recorded audit trail: requests written through ``AuditStore``'s own recording calls (what the
Agent calls as a run goes), on SQLite and on the real PostgreSQL, and the app on that storage."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
from starlette.testclient import TestClient

from agent.config import AppConfig, parse_config
from agent.models import (
    ApprovalRecord, Intent, ItemResult, ItemStatus, Operation, PlanItem, RunResult,
)
from agent.state import checkpoint_serializer
from agent.storage import Storage
from agent.web.app import Console, create_app

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
SECRET = "s3cr3t-varnish-admin-token"
HOSTILE = ('<script>alert("owned")</script> please purge <javascript:alert(document.cookie)|this page> '
           f'https://shop.example/pricing token {SECRET}')


def console_config(database_url: str, tmp_path, **web) -> AppConfig:
    return parse_config({
        "sites": [{"name": "shop", "hosts": ["shop.example"], "origin": "http://127.0.0.1:9", "layers": ["varnish"]},
                  {"name": "blog", "hosts": ["blog.example"], "origin": "http://127.0.0.1:9", "layers": ["varnish"]}],
        "layers": [{"name": "varnish", "kind": "varnish", "endpoint": "http://127.0.0.1:9",
                    "credentials": {"token": SECRET}}],
        "approval": {"threshold": 1, "approvers": ["alice"]},
        "storage": {"sqlite_path": str(tmp_path / "state.sqlite"), "database_url": database_url},
        "web": web,
    })


def purge(storage: Storage, *, user: str, urls: list[str], at: datetime, text: str | None = None, site: str = "shop",
          status: ItemStatus = ItemStatus.PURGED_VERIFIED, seconds: float = 3.0, evidence: str = "MISS→fresh",
          channel: str | None = None, thread_id: str | None = None) -> str:
    """One purge request recorded the way the Agent records it: received, then its result."""
    audit = storage.audit
    thread = thread_id or f"t-{user}-{at.timestamp()}"
    request_id = audit.request_received(thread_id=thread, user=user, interface="slack" if channel else "cli",
                                        channel=channel, text=text or "purge " + " ".join(urls), dry_run=False, at=at)
    plan = [PlanItem(url=u, site=site, layer="varnish", operation=Operation.PURGE_URL, target=u,
                     reason="you asked for this page", requested=True) for u in urls]
    results = [ItemResult(url=u, layer="varnish", status=status, detail="purged", evidence=evidence, attempts=1)
               for u in urls]
    audit.request_updated(request_id, RunResult(thread_id=thread, intent=Intent.PURGE, reply="", urls=urls, plan=plan,
                                                pages=urls, results=results), at=at + timedelta(seconds=seconds))
    return request_id


@pytest.fixture
def open_console(database_url, tmp_path) -> Iterator[Callable[..., tuple[Storage, TestClient]]]:
    opened: list[Storage] = []

    def build(token: str | None = None, **web) -> tuple[Storage, TestClient]:
        config = console_config(database_url, tmp_path, **web)
        storage = Storage.open(config, serde=checkpoint_serializer())
        opened.append(storage)
        return storage, TestClient(create_app(Console(config, storage, now=lambda: NOW), token=token))

    yield build
    for storage in opened:
        storage.close()


@pytest.fixture
def recorded(open_console) -> tuple[Storage, TestClient, dict[str, str]]:
    """Five requests: bob's verified purge, carol's failed one on the blog, a hostile message, a denied request,
    and one still waiting (no checkpoint: written by the audit alone)."""
    storage, client = open_console(slack_url="https://acme.slack.com")
    ids = {
        "bob": purge(storage, user="bob", urls=["https://shop.example/pricing"], at=NOW - timedelta(days=2)),
        "carol": purge(storage, user="carol", urls=["https://blog.example/post"], site="blog",
                       at=NOW - timedelta(days=1), status=ItemStatus.FAILED, evidence="still HIT, Age: 300"),
        "hostile": purge(storage, user="mallory", urls=["https://shop.example/pricing"], text=HOSTILE,
                         at=NOW - timedelta(hours=5), channel="C0SHOP", thread_id="C0SHOP:1764072000.000100"),
    }
    audit = storage.audit
    denied = audit.request_received(thread_id="t-denied", user="dave", interface="cli", channel=None,
                                    text="purge https://shop.example/", dry_run=False, at=NOW - timedelta(hours=2))
    audit.decision_made(request_id=denied, thread_id="t-denied", user="dave", interface="cli", decision="approve",
                        status="refused", detail="dave: you may not approve your own request",
                        at=NOW - timedelta(hours=2))
    audit.decision_made(request_id=denied, thread_id="t-denied", user="alice", interface="cli", decision="deny",
                        status="denied", at=NOW - timedelta(hours=1))
    home = PlanItem(url="https://shop.example/", site="shop", layer="varnish", operation=Operation.PURGE_URL,
                    target="https://shop.example/", reason="you asked for this page", requested=True)
    audit.request_updated(denied, RunResult(thread_id="t-denied", intent=Intent.PURGE, reply="", plan=[home],
                                            pages=[home.url], approval=ApprovalRecord(status="denied", by="alice")),
                          at=NOW - timedelta(hours=1))
    ids["denied"] = denied
    return storage, client, ids
