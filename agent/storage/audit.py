"""The audit trail's store: who asked for what, from where, what was planned, who decided, what each layer did.

``AuditStore`` records (called by ``agent.service.agent.Agent``) and answers questions (``history``, ``stats``) for
the CLI, the Slack front end and the graph's ``history`` intent; the sentences people read from those answers
are in ``agent/words.py``. The tables are in ``agent/storage/tables.py``.

Never stored: configuration secrets. Every text written (the message, reasons, details, evidence) passes
through a ``Redactor`` (``agent/storage/redaction.py``).
"""

from __future__ import annotations

import hashlib
import statistics
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any, Iterable
from urllib.parse import urlsplit

from pydantic import BaseModel
from sqlalchemy import Engine, Integer, Table, and_, cast, delete, func, insert, or_, select, true, update

from agent.models import ItemStatus, RunResult
from agent.periods import utc_now
from agent.storage.database import make_engine, upsert_insert
from agent.storage.migrations import upgrade
from agent.storage.redaction import Redactor, secrets_of
from agent.storage.tables import AUDIT_CHILD_TABLES, AUDIT_TABLES, decisions, plan_items, requests, results
from agent.urls import normalise

PURGE_INTENTS = ("purge", "purge_all")
NOT_CONFIRMED = (ItemStatus.FAILED.value, ItemStatus.PURGED_UNVERIFIED.value)


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


# ------------------------------------------------------------------------------------------------- answers


class LayerOutcome(BaseModel):
    layer: str
    status: str
    detail: str = ""
    evidence: str = ""
    attempts: int = 0


class UrlMatch(BaseModel):
    """How the URL asked about figured in a request: named, or added as a dependent page (and why)."""

    url: str
    requested: bool
    reason: str = ""
    worked: bool | None = None  # True: every layer confirmed fresh; False: some not; None: nothing ran
    layers: list[LayerOutcome] = []


class DecisionEntry(BaseModel):
    by: str
    interface: str
    decision: str
    status: str  # approved, denied, expired, refused
    detail: str = ""
    at: datetime


class HistoryEntry(BaseModel):
    request_id: str
    thread_id: str
    received_at: datetime
    finished_at: datetime | None
    user: str
    interface: str
    channel: str | None
    text: str
    intent: str | None
    status: str
    outcome: str | None
    worked: bool | None
    dry_run: bool
    urls: list[str] = []
    page_count: int = 0
    purge_count: int = 0
    not_confirmed: list[str] = []
    decisions: list[DecisionEntry] = []
    approved_by: str | None = None
    match: UrlMatch | None = None
    token_usage: dict[str, Any] | None = None


def status_of(result: RunResult) -> str:
    if result.pending:
        return "waiting_approval"
    if result.approval.status in ("denied", "expired"):
        return result.approval.status
    if result.intent.value not in PURGE_INTENTS:
        return "answered"
    if result.dry_run:
        return "dry_run"
    return "done" if result.results else "answered"


def outcome_of(rows: list[dict[str, Any]] | list[Any]) -> str | None:
    statuses = [r["status"] for r in rows]
    if not statuses:
        return None
    return "failed" if any(s in NOT_CONFIRMED for s in statuses) else "verified"


# ------------------------------------------------------------------------------------------------- the store


class AuditStore:
    """Records and queries on one database (``agent.storage.database.make_engine``)."""

    def __init__(self, engine: Engine, *, config: Any = None, secrets: Iterable[str] | None = None):
        self.engine = engine
        self.config = config
        self.redact = Redactor(secrets_of(config) if secrets is None else secrets)

    @classmethod
    def open(cls, url: str, *, config: Any = None, migrate: bool = True) -> AuditStore:
        engine = make_engine(url)
        if migrate:
            upgrade(url, engine)
        return cls(engine, config=config)

    def close(self) -> None:
        self.engine.dispose()

    # --- recording ----------------------------------------------------------------------------------------

    def request_received(
        self, *, thread_id: str, user: str, interface: str, channel: str | None, text: str, dry_run: bool,
        at: datetime, request_id: str | None = None,
    ) -> str:
        """A new request's record. ``request_id``: the id its run's lease already carries; a record with that id
        is kept as it is (the process that made it died before the run started, and this is its takeover)."""
        request_id = request_id or uuid.uuid4().hex
        with self.engine.begin() as db:
            db.execute(upsert_insert(self.engine)(requests).values(
                id=request_id, thread_id=thread_id, requested_by=self.redact(user), interface=interface,
                channel=self.redact(channel) or None, text=self.redact(text), dry_run=dry_run, status="received",
                received_at=at,
            ).on_conflict_do_nothing(index_elements=[requests.c.id]))
        return request_id

    def request_updated(
        self, request_id: str, result: RunResult, *, at: datetime, purge_outcomes: list[dict[str, Any]] | None = None,
        in_progress: bool = False,
    ) -> None:
        """Bring a request's record up to date with the run's state: plan, status, results, tokens, finish.

        ``in_progress``: the run is still going (the plan was just made, or purges answered before verification):
        everything known so far is written, and the request stays "received", unfinished, without an outcome."""
        redact = self.redact
        usage = result.token_usage or {}
        finished = result.pending is None and not in_progress
        site_of_url = {item.url: item.site for item in result.plan}
        target_of = {(item.url, item.layer): item.target for item in result.plan}
        repaired = {(o.get("layer"), o.get("target")) for o in purge_outcomes or [] if o.get("repaired")}
        result_rows = [
            {
                "request_id": request_id, "url": r.url, "url_hash": url_hash(r.url),
                "site": site_of_url.get(r.url) or self._site_name(r.url), "path": _path(r.url), "layer": r.layer,
                "status": r.status.value, "detail": redact(r.detail), "evidence": redact(r.evidence),
                "attempts": r.attempts, "recorded_at": at,
                "found_stale": r.stale_after_purge or (r.layer, target_of.get((r.url, r.layer))) in repaired,
            }
            for r in result.results
        ]
        with self.engine.begin() as db:
            has_plan = db.execute(select(func.count()).select_from(plan_items)
                                  .where(plan_items.c.request_id == request_id)).scalar_one()
            if result.plan and not has_plan:
                db.execute(insert(plan_items), [
                    {"request_id": request_id, "url": i.url, "url_hash": url_hash(i.url), "site": i.site,
                     "layer": i.layer, "operation": i.operation.value, "target": redact(i.target),
                     "reason": redact(i.reason), "requested": i.requested}
                    for i in result.plan
                ])
            if result_rows:
                db.execute(delete(results).where(results.c.request_id == request_id))
                db.execute(insert(results), result_rows)
            db.execute(update(requests).where(requests.c.id == request_id).values(
                intent=result.intent.value, understood_by=result.understood_by, dry_run=result.dry_run,
                status="received" if in_progress else status_of(result),
                outcome=None if in_progress else outcome_of(result_rows),
                page_count=len(result.pages), purge_count=len({(i.layer, i.target) for i in result.plan}),
                llm_model=usage.get("model"), input_tokens=usage.get("input_tokens"),
                output_tokens=usage.get("output_tokens"), total_tokens=usage.get("total_tokens"),
                finished_at=at if finished else None,
            ))

    def request_failed(
        self, request_id: str, error: BaseException, *, at: datetime, result: RunResult | None = None,
        purge_outcomes: list[dict[str, Any]] | None = None,
    ) -> None:
        """The run stopped with ``error``. ``result``: what it had planned and sent by then, written first, so
        the record shows the purges that went out even though the run did not finish."""
        if result is not None:
            self.request_updated(request_id, result, at=at, purge_outcomes=purge_outcomes, in_progress=True)
        with self.engine.begin() as db:
            db.execute(update(requests).where(requests.c.id == request_id).values(
                status="error", outcome="failed", finished_at=at))

    def request_interrupted(self, request_id: str, *, detail: str = "", at: datetime) -> None:
        """The process sending this request's purges died and recovery could not finish it (agent/service/recovery.py)."""
        with self.engine.begin() as db:
            db.execute(update(requests).where(requests.c.id == request_id).values(
                status="interrupted", outcome="failed", finished_at=at))

    def answered_purges(self, request_id: str) -> dict[tuple[str, str], str]:
        """(url, layer) → status of every purge this request recorded as taken by its layer (purged, not cached)
        while it ran: what a run picked up again after a restart does not send a second time."""
        taken = (ItemStatus.PURGED_VERIFIED.value, ItemStatus.PURGED_UNVERIFIED.value, ItemStatus.NOT_CACHED.value)
        with self.engine.connect() as db:
            rows = db.execute(select(results.c.url, results.c.layer, results.c.status)
                              .where(results.c.request_id == request_id, results.c.status.in_(taken)))
            return {(url, layer): status for url, layer, status in rows}

    def latest_request(self, thread_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as db:
            row = db.execute(select(requests).where(requests.c.thread_id == thread_id)
                             .order_by(requests.c.received_at.desc()).limit(1)).mappings().first()
        return dict(row) if row else None

    def decision_made(
        self, *, request_id: str, thread_id: str, user: str, interface: str, decision: str, status: str,
        detail: str = "", at: datetime,
    ) -> None:
        with self.engine.begin() as db:
            db.execute(insert(decisions).values(
                request_id=request_id, thread_id=thread_id, decided_by=self.redact(user), interface=interface,
                decision=decision, status=status, detail=self.redact(detail), decided_at=at,
            ))

    # --- one request, for traces (agent/trace.py) ----------------------------------------------------------

    def request_row(self, request_id: str) -> dict[str, Any] | None:
        """The request's own row (no plan or results: a trace of 5,000 pages must not load 25,000 rows)."""
        with self.engine.connect() as db:
            row = db.execute(select(requests).where(requests.c.id == request_id)).mappings().first()
        return dict(row) if row else None

    def newest_request(self) -> dict[str, Any] | None:
        with self.engine.connect() as db:
            row = db.execute(select(requests).order_by(requests.c.received_at.desc(), requests.c.id.desc())
                             .limit(1)).mappings().first()
        return dict(row) if row else None

    def thread_requests(self, thread_id: str) -> list[dict[str, Any]]:
        """The thread's requests, oldest first."""
        with self.engine.connect() as db:
            return [dict(r) for r in db.execute(select(requests).where(requests.c.thread_id == thread_id)
                                                .order_by(requests.c.received_at, requests.c.id)).mappings()]

    def decisions_of(self, request_id: str) -> list[DecisionEntry]:
        with self.engine.connect() as db:
            rows = db.execute(select(decisions).where(decisions.c.request_id == request_id)
                              .order_by(decisions.c.decided_at, decisions.c.id)).mappings()
            return [DecisionEntry(by=d["decided_by"], interface=d["interface"], decision=d["decision"],
                                  status=d["status"], detail=d["detail"], at=d["decided_at"]) for d in rows]

    # --- retention ----------------------------------------------------------------------------------------

    def prune(self, *, older_than_days: float, now: datetime | None = None) -> int:
        """Delete requests received more than ``older_than_days`` ago, with their plan, decisions and results."""
        cutoff = (now or utc_now()) - timedelta(days=older_than_days)
        old = select(requests.c.id).where(requests.c.received_at < cutoff)
        with self.engine.begin() as db:
            for table in AUDIT_CHILD_TABLES:  # explicit: SQLite enforces ON DELETE CASCADE only with a pragma
                db.execute(delete(table).where(table.c.request_id.in_(old)))
            return db.execute(delete(requests).where(requests.c.received_at < cutoff)).rowcount or 0

    # --- queries ------------------------------------------------------------------------------------------

    def history(
        self, *, url: str | None = None, user: str | None = None, since: datetime | None = None,
        until: datetime | None = None, limit: int = 50, purges_only: bool = True, status: str | None = None,
    ) -> list[HistoryEntry]:
        """Requests newest first. ``url`` matches the normalised URL among the pages a request planned or
        purged (dependent pages included) and purge-everything requests on its site. ``status``: only requests
        in that status (``waiting_approval``…)."""
        query = select(requests)
        wanted = None
        if url is not None:
            wanted = normalised(url)
            key = url_hash(wanted)
            on_page = select(plan_items.c.request_id).where(plan_items.c.url_hash == key)
            in_results = select(results.c.request_id).where(results.c.url_hash == key)
            whole_site = select(plan_items.c.request_id).where(and_(
                plan_items.c.operation == "purge_all", plan_items.c.site.in_(self._sites_of(wanted) or [""])))
            query = query.where(or_(requests.c.id.in_(on_page), requests.c.id.in_(in_results),
                                    requests.c.id.in_(whole_site)))
        elif purges_only:
            query = query.where(requests.c.intent.in_(PURGE_INTENTS))
        if user is not None:
            query = query.where(requests.c.requested_by == user)
        if status is not None:
            query = query.where(requests.c.status == status)
        if since is not None:
            query = query.where(requests.c.received_at >= since)
        if until is not None:
            query = query.where(requests.c.received_at < until)
        query = query.order_by(requests.c.received_at.desc(), requests.c.id).limit(limit)
        with self.engine.connect() as db:
            rows = [dict(r) for r in db.execute(query).mappings()]
            ids = [r["id"] for r in rows]
            items = _grouped(db, plan_items, ids, plan_items.c.id)
            outcomes = _grouped(db, results, ids, results.c.id)
            decided = _grouped(db, decisions, ids, decisions.c.decided_at)
        return [self._entry(r, items[r["id"]], outcomes[r["id"]], decided[r["id"]], wanted) for r in rows]

    def stats(self, *, since: datetime | None = None, top: int = 10) -> dict[str, Any]:
        """Purges per site and layer, most-purged pages, the layers most often stale or failing, and the
        median time from request to every page verified."""
        in_window = requests.c.received_at >= since if since is not None else true()
        joined = results.join(requests, results.c.request_id == requests.c.id)
        with self.engine.connect() as db:
            by_status = db.execute(
                select(results.c.site, results.c.layer, results.c.status, func.count().label("n"),
                       func.sum(cast(results.c.found_stale, Integer)).label("stale"))
                .select_from(joined).where(in_window)
                .group_by(results.c.site, results.c.layer, results.c.status)
            ).all()
            most_purged = db.execute(
                select(results.c.site, results.c.url,
                       func.count(func.distinct(results.c.request_id)).label("requests"))
                .select_from(joined).where(and_(in_window, results.c.status != ItemStatus.SKIPPED.value))
                .group_by(results.c.site, results.c.url)
                .order_by(func.count(func.distinct(results.c.request_id)).desc(), results.c.url).limit(top)
            ).all()
            counts = dict(db.execute(
                select(requests.c.status, func.count()).where(in_window).group_by(requests.c.status)).all())
            outcomes = dict(db.execute(
                select(requests.c.outcome, func.count()).where(and_(in_window, requests.c.outcome.is_not(None)))
                .group_by(requests.c.outcome)).all())
            by_path = db.execute(
                select(results.c.site, results.c.path, func.count(func.distinct(results.c.request_id)))
                .select_from(joined).where(and_(in_window, results.c.status != ItemStatus.SKIPPED.value))
                .group_by(results.c.site, results.c.path)
            ).all()
            durations = db.execute(
                select(requests.c.received_at, requests.c.finished_at)
                .where(and_(in_window, requests.c.outcome == "verified", requests.c.finished_at.is_not(None)))
            ).all()
        layers: dict[tuple[str, str], dict[str, int]] = defaultdict(Counter)
        for site, layer, status, n, stale in by_status:
            layers[(site, layer)][status] += n
            layers[(site, layer)]["stale"] += int(stale or 0)
        per_layer = [
            {"site": site, "layer": layer,
             "purged": sum(c[s] for s in ("purged_verified", "purged_unverified", "failed", "not_cached")),
             "verified": c["purged_verified"], "unverified": c["purged_unverified"], "failed": c["failed"],
             "not_cached": c["not_cached"], "skipped": c["skipped"], "stale": c["stale"]}
            for (site, layer), c in sorted(layers.items())
        ]
        problems = sorted(
            ({"site": p["site"], "layer": p["layer"], "stale": p["stale"], "failed": p["failed"],
              "unverified": p["unverified"]} for p in per_layer if p["stale"] or p["failed"] or p["unverified"]),
            key=lambda p: (-(p["stale"] + p["failed"] + p["unverified"]), p["site"], p["layer"]),
        )
        seconds = [(finished - received).total_seconds() for received, finished in durations]
        sections: Counter[tuple[str, str]] = Counter()
        sites: Counter[str] = Counter()
        for site, path, n in by_path:
            sections[(site, section_of(path))] += n
        for p in per_layer:
            sites[p["site"]] += p["purged"]
        return {
            "since": since.isoformat() if since else None,
            "requests": sum(counts.values()),
            "by_status": dict(sorted(counts.items())),
            "verified_requests": outcomes.get("verified", 0),
            "failed_requests": outcomes.get("failed", 0),
            "per_site_layer": per_layer,
            "most_purged": [{"site": s, "url": u, "path": _path(u), "requests": n} for s, u, n in most_purged],
            "problem_layers": problems,
            "median_seconds_to_verified": statistics.median(seconds) if seconds else None,
            "top_sites": [{"site": s, "purged": n} for s, n in sorted(sites.items(), key=lambda x: (-x[1], x[0]))
                          if n][:top],
            "top_sections": [{"site": s, "section": sec, "purged": n} for (s, sec), n in
                             sorted(sections.items(), key=lambda x: (-x[1], x[0]))][:top],
            "top_layers": sorted(({"site": p["site"], "layer": p["layer"], "purged": p["purged"]}
                                  for p in per_layer if p["purged"]),
                                 key=lambda p: (-p["purged"], p["site"], p["layer"]))[:top],
        }

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every audit table (backups by hand, and the tests' "no secret anywhere" check)."""
        with self.engine.connect() as db:
            return {t.name: [dict(r) for r in db.execute(select(t)).mappings()] for t in AUDIT_TABLES}

    # --- helpers ------------------------------------------------------------------------------------------

    def _site_name(self, url: str) -> str:
        sites = self._sites_of(url)
        return sites[0] if sites else ""

    def _sites_of(self, url: str) -> list[str]:
        host = (urlsplit(url).hostname or "").lower()
        if self.config is not None:
            site = self.config.site_for_host(host)
            return [site.name] if site else []
        return []

    def _entry(self, row: dict[str, Any], items: list[dict], outcomes: list[dict], decided: list[dict],
               wanted: str | None) -> HistoryEntry:
        match = None
        if wanted is not None:
            layers = [LayerOutcome(layer=o["layer"], status=o["status"], detail=o["detail"], evidence=o["evidence"],
                                   attempts=o["attempts"]) for o in outcomes if o["url"] == wanted]
            planned = [i for i in items if i["url"] == wanted]
            whole = [i for i in items if i["operation"] == "purge_all"]
            reason = (planned or whole or [{}])[0].get("reason", "")
            ran = outcome_of([o for o in outcomes if o["url"] == wanted] or
                             ([o for o in outcomes] if whole and not planned else []))
            match = UrlMatch(url=wanted, requested=any(i["requested"] for i in planned) or bool(whole and not planned),
                             reason=reason, worked=None if ran is None else ran == "verified", layers=layers)
        effective = [d for d in decided if d["status"] != "refused"]
        usage = None
        if row["input_tokens"] is not None or row["output_tokens"] is not None:
            usage = {"model": row["llm_model"], "input_tokens": row["input_tokens"],
                     "output_tokens": row["output_tokens"], "total_tokens": row["total_tokens"]}
        return HistoryEntry(
            request_id=row["id"], thread_id=row["thread_id"], received_at=row["received_at"],
            finished_at=row["finished_at"], user=row["requested_by"], interface=row["interface"],
            channel=row["channel"], text=row["text"], intent=row["intent"], status=row["status"],
            outcome=row["outcome"], worked=None if row["outcome"] is None else row["outcome"] == "verified",
            dry_run=bool(row["dry_run"]),
            urls=list(dict.fromkeys(i["url"] for i in items if i["requested"])),
            page_count=row["page_count"], purge_count=row["purge_count"],
            not_confirmed=list(dict.fromkeys(o["url"] for o in outcomes if o["status"] in NOT_CONFIRMED)),
            decisions=[DecisionEntry(by=d["decided_by"], interface=d["interface"], decision=d["decision"],
                                     status=d["status"], detail=d["detail"], at=d["decided_at"]) for d in decided],
            approved_by=next((d["decided_by"] for d in reversed(effective) if d["status"] == "approved"), None),
            match=match, token_usage=usage,
        )


def _grouped(db, table: Table, ids: list[str], order) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for row in db.execute(select(table).where(table.c.request_id.in_(chunk)).order_by(order)).mappings():
            grouped[row["request_id"]].append(dict(row))
    return grouped


def _path(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def section_of(path: str) -> str:
    """The first path segment: ``/products/shoes/runner`` → ``/products``; the home page is ``/``."""
    first = (path or "/").split("?", 1)[0].strip("/").split("/", 1)[0]
    return f"/{first}"


def normalised(url: str) -> str:
    """The URL as the agent records it (``agent.urls.normalise``); Slack's ``<url|label>`` is unwrapped."""
    text = url.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].split("|", 1)[0]
    return normalise(text.replace("&amp;", "&"))
