"""The audit trail: who asked for what, from where, what was planned, who decided, what each layer did.

``AuditStore`` records (called by ``agent.runner.Agent``) and answers questions (``history``, ``stats``) for
the CLI, the Slack front end and the graph's ``history`` intent. Tables are created by Alembic
(``agent/migrations``); the definitions below mirror the migrations for queries.

Never stored: configuration secrets. Every text written (the message, reasons, details, evidence) passes
through ``Redactor``, which replaces each secret value found in the config (layer credentials, secret-looking
options and headers, passwords in endpoints and the database URL, the LLM API key) and any password in a URL's
userinfo with ``[redacted]``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import statistics
import uuid
from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr
from sqlalchemy import (
    Boolean, Column, DateTime, Engine, ForeignKey, Integer, MetaData, String, Table, Text, TypeDecorator, and_,
    cast, delete, func, insert, or_, select, true, update,
)

from agent.models import ItemStatus, RunResult

log = logging.getLogger(__name__)

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 4  # shorter values would redact ordinary words; such "secrets" protect nothing anyway
PURGE_INTENTS = ("purge", "purge_all")
NOT_CONFIRMED = (ItemStatus.FAILED.value, ItemStatus.PURGED_UNVERIFIED.value)
STILL_STALE = "still serves stale content"  # agent.nodes.verify.STILL_STALE


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in and out, on SQLite (no time zones) as on PostgreSQL (timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


metadata = MetaData()

requests = Table(
    "audit_requests", metadata,
    Column("id", String(32), primary_key=True),
    Column("thread_id", String(128), nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("interface", String(20), nullable=False),
    Column("channel", String(200)),
    Column("text", Text, nullable=False),
    Column("intent", String(20)),
    Column("understood_by", String(20)),
    Column("dry_run", Boolean, nullable=False, default=False),
    Column("status", String(20), nullable=False),
    Column("outcome", String(20)),
    Column("page_count", Integer, nullable=False, default=0),
    Column("purge_count", Integer, nullable=False, default=0),
    Column("llm_model", String(100)),
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("total_tokens", Integer),
    Column("received_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
)

plan_items = Table(
    "audit_plan_items", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(32), ForeignKey("audit_requests.id", ondelete="CASCADE"), nullable=False),
    Column("url", Text, nullable=False),
    Column("url_hash", String(64), nullable=False),
    Column("site", String(100), nullable=False),
    Column("layer", String(100), nullable=False),
    Column("operation", String(20), nullable=False),
    Column("target", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("requested", Boolean, nullable=False),
)

decisions = Table(
    "audit_decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(32), ForeignKey("audit_requests.id", ondelete="CASCADE"), nullable=False),
    Column("thread_id", String(128), nullable=False),
    Column("decided_by", String(200), nullable=False),
    Column("interface", String(20), nullable=False),
    Column("decision", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("decided_at", UTCDateTime, nullable=False),
)

results = Table(
    "audit_results", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(32), ForeignKey("audit_requests.id", ondelete="CASCADE"), nullable=False),
    Column("url", Text, nullable=False),
    Column("url_hash", String(64), nullable=False),
    Column("site", String(100), nullable=False),
    Column("path", Text, nullable=False),
    Column("layer", String(100), nullable=False),
    Column("status", String(20), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("evidence", Text, nullable=False, default=""),
    Column("attempts", Integer, nullable=False, default=0),
    Column("found_stale", Boolean, nullable=False, default=False),
    Column("recorded_at", UTCDateTime, nullable=False),
)

CHILD_TABLES = (results, decisions, plan_items)
ALL_TABLES = (requests, plan_items, decisions, results)


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


# ------------------------------------------------------------------------------------------------- secrets

_SECRETISH = re.compile(r"(token|secret|password|passwd|key|auth|credential|signature|cookie)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s/:@]*:)([^\s@/]+)@", re.IGNORECASE)


def secrets_of(config: Any) -> set[str]:
    """Every secret value the configuration holds (``AppConfig``), plus the database URL's password."""
    found: set[str] = set()
    if config is None:
        return found

    def reveal(value: Any) -> str | None:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        return value if isinstance(value, str) else None

    def secretish(values: Any, named: bool = False) -> None:
        if isinstance(values, dict):
            for key, value in values.items():
                secretish(value, named or bool(_SECRETISH.search(str(key))))
        elif isinstance(values, (list, tuple)):
            for value in values:
                secretish(value, named)
        elif (text := reveal(values)) and (named or isinstance(values, SecretStr)):
            # "Bearer abc…": the credential part too, so it is caught wherever it shows up alone
            found.add(text)
            found.update(part for part in text.split() if len(part) >= 8)

    for layer in getattr(config, "layers", []):
        for value in layer.credentials.values():
            found.add(value.get_secret_value())
        secretish(layer.options)
        if layer.endpoint and (password := _password_in(layer.endpoint)):
            found.add(password)
    llm = getattr(config, "llm", None)
    if llm is not None and llm.api_key is not None:
        found.add(llm.api_key.get_secret_value())
    if os.environ.get("OPENAI_API_KEY"):
        found.add(os.environ["OPENAI_API_KEY"])
    storage = getattr(config, "storage", None)
    for url in (os.environ.get("CACHEBOT_DATABASE_URL"), getattr(storage, "database_url", None)):
        if url and (password := _password_in(url)):
            found.add(password)
    return {secret for secret in found if secret and len(secret) >= MIN_SECRET_LENGTH}


def _password_in(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()):
        # longest first, so a secret that contains another is replaced whole
        self.secrets = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)

    def __call__(self, text: str | None) -> str:
        if not text:
            return text or ""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)


# ------------------------------------------------------------------------------------------------- since

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    """``24h``, ``7d``, ``30m``, ``2w``, a date (``2026-11-01``, midnight UTC) or an ISO datetime."""
    if not value:
        return None
    now = now or utc_now()
    if match := _RELATIVE.match(value):
        return now - timedelta(**{_UNITS[match.group(2).lower()]: float(match.group(1))})
    if value.strip().lower() == "today":
        return datetime.combine(now.date(), time(), timezone.utc)
    if value.strip().lower() == "yesterday":
        return datetime.combine(now.date() - timedelta(days=1), time(), timezone.utc)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            return datetime.combine(date.fromisoformat(value.strip()), time(), timezone.utc)
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a time: use 24h, 7d, 30m, 2w, or a date like 2026-11-01") from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


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
    """Records and queries on one database (``agent.storage.make_engine``)."""

    def __init__(self, engine: Engine, *, config: Any = None, secrets: Iterable[str] | None = None):
        self.engine = engine
        self.config = config
        self.redact = Redactor(secrets_of(config) if secrets is None else secrets)

    @classmethod
    def open(cls, url: str, *, config: Any = None, migrate: bool = True) -> AuditStore:
        from agent.storage.database import make_engine
        from agent.storage.migrations import upgrade

        engine = make_engine(url)
        if migrate:
            upgrade(url, engine)
        return cls(engine, config=config)

    def close(self) -> None:
        self.engine.dispose()

    # --- recording ----------------------------------------------------------------------------------------

    def request_received(
        self, *, thread_id: str, user: str, interface: str, channel: str | None, text: str, dry_run: bool,
        at: datetime,
    ) -> str:
        request_id = uuid.uuid4().hex
        with self.engine.begin() as db:
            db.execute(insert(requests).values(
                id=request_id, thread_id=thread_id, requested_by=self.redact(user), interface=interface,
                channel=self.redact(channel) or None, text=self.redact(text), dry_run=dry_run, status="received", received_at=at,
            ))
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
                "found_stale": STILL_STALE in r.detail or (r.layer, target_of.get((r.url, r.layer))) in repaired,
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
        """The process sending this request's purges died and recovery could not finish it (agent/recovery.py)."""
        with self.engine.begin() as db:
            db.execute(update(requests).where(requests.c.id == request_id).values(
                status="interrupted", outcome="failed", finished_at=at))

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

    # --- retention ----------------------------------------------------------------------------------------

    def prune(self, *, older_than_days: float, now: datetime | None = None) -> int:
        """Delete requests received more than ``older_than_days`` ago, with their plan, decisions and results."""
        cutoff = (now or utc_now()) - timedelta(days=older_than_days)
        old = select(requests.c.id).where(requests.c.received_at < cutoff)
        with self.engine.begin() as db:
            for table in CHILD_TABLES:  # explicit: SQLite enforces ON DELETE CASCADE only with a pragma
                db.execute(delete(table).where(table.c.request_id.in_(old)))
            return db.execute(delete(requests).where(requests.c.received_at < cutoff)).rowcount or 0

    # --- queries ------------------------------------------------------------------------------------------

    def history(
        self, *, url: str | None = None, user: str | None = None, since: datetime | None = None,
        until: datetime | None = None, limit: int = 50, purges_only: bool = True,
    ) -> list[HistoryEntry]:
        """Requests newest first. ``url`` matches the normalised URL among the pages a request planned or
        purged (dependent pages included) and purge-everything requests on its site."""
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
            return {t.name: [dict(r) for r in db.execute(select(t)).mappings()] for t in ALL_TABLES}

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


def digest_text(figures: dict[str, Any], *, days: float | None = None) -> str:
    """The weekly digest (Slack mrkdwn): volume, top sites/sections/layers, most purged paths, layers most
    often stale, median request → verified. Built from ``AuditStore.stats``."""
    median = figures.get("median_seconds_to_verified")
    period = f"the last {days:g} days" if days else "all time"
    lines = [f"*cachebot weekly digest* — {period}",
             f"{figures['requests']} requests: {figures['verified_requests']} verified fresh, "
             f"{figures['failed_requests']} not confirmed. Median request → verified: "
             + ("n/a" if median is None else f"{median:.1f} s")]

    def listing(title: str, rows: list[str]) -> None:
        lines.append(f"*{title}*")
        lines.extend(f"• {row}" for row in rows[:5]) if rows else lines.append("• none")

    listing("Top sites", [f"{r['site']}: {r['purged']} purges" for r in figures.get("top_sites", [])])
    listing("Top sections", [f"{r['site']} {r['section']}: {r['purged']} requests"
                             for r in figures.get("top_sections", [])])
    listing("Top layers", [f"{r['site']}/{r['layer']}: {r['purged']} purges" for r in figures.get("top_layers", [])])
    listing("Most purged paths", [f"{r['requests']}× {r['site']} {r['path']}" for r in figures.get("most_purged", [])])
    listing("Layers stale most often", [
        f"{r['site']}/{r['layer']}: {r['stale']} stale after purge, {r['failed']} failed, {r['unverified']} unverified"
        for r in figures.get("problem_layers", [])])
    return "\n".join(lines)


def normalised(url: str) -> str:
    """The URL as the agent records it (``agent.urls.normalise``); Slack's ``<url|label>`` is unwrapped."""
    from agent.urls import normalise

    text = url.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].split("|", 1)[0]
    return normalise(text.replace("&amp;", "&"))


# ------------------------------------------------------------------------------------------------- words


def describe(entry: HistoryEntry) -> str:
    """One line for people: when, who, from where, what, and whether it worked."""
    when = entry.received_at.strftime("%Y-%m-%d %H:%M UTC")
    where = entry.interface + (f" #{entry.channel}" if entry.channel else "")
    if entry.match is not None:
        what = entry.match.url + ("" if entry.match.requested else f" (added: {entry.match.reason})")
        worked = entry.match.worked
    else:
        first = entry.urls[:2]
        what = ", ".join(first) + (f" and {len(entry.urls) - 2} more" if len(entry.urls) > 2 else "")
        what = what or f"{entry.page_count} pages"
        worked = entry.worked
    verdict = {
        "waiting_approval": "waiting for approval", "denied": "denied", "expired": "approval expired",
        "dry_run": "dry run, nothing sent", "error": "error", "received": "in progress",
    }.get(entry.status) or ("verified fresh" if worked else "NOT confirmed fresh" if worked is False else entry.status)
    approved = f", approved by {entry.approved_by}" if entry.approved_by else ""
    return f"{when} — {entry.user} ({where}): {what} → {verdict}{approved}"


_LAST_N = re.compile(r"\b(?:last|past|previous)\s+(\d+)\s*(hours?|days?|weeks?)\b", re.IGNORECASE)


def window_in(message: str, now: datetime) -> tuple[datetime | None, datetime | None, str]:
    """The time window a history question names: (since, until, how to say it). Default: the last 7 days."""
    words = message.lower()
    midnight = datetime.combine(now.astimezone(timezone.utc).date(), time(), timezone.utc)
    if match := _LAST_N.search(words):
        n, unit = int(match.group(1)), match.group(2).rstrip("s") + "s"
        return now - timedelta(**{unit: n}), None, f"in the last {n} {unit if n != 1 else unit[:-1]}"
    if re.search(r"\b(today|heute|aujourd'hui|hoy|vandaag)\b", words):
        return midnight, None, "today"
    if re.search(r"\b(yesterday|gestern|hier|ayer|gisteren)\b", words):
        return midnight - timedelta(days=1), midnight, "yesterday"
    if re.search(r"\b(this|last|past) week\b", words):
        return now - timedelta(days=7), None, "in the last 7 days"
    if re.search(r"\b(this|last|past) month\b", words):
        return now - timedelta(days=30), None, "in the last 30 days"
    return now - timedelta(days=7), None, "in the last 7 days"


def answer_history(store: AuditStore, message: str, urls: list[str], now: datetime, limit: int = 10) -> str:
    """The graph's answer to "what was purged today?" / "who cleared <url>?"."""
    if urls:
        lines = []
        for url in urls[:5]:
            entries = store.history(url=url, limit=limit)
            if not entries:
                lines.append(f"I have no record of {url} being purged.")
                continue
            lines.append(f"{url} — {len(entries)} request(s), newest first:")
            lines += [f"  • {describe(entry)}" for entry in entries]
        return "\n".join(lines)
    since, until, said = window_in(message, now)
    entries = store.history(since=since, until=until, limit=limit + 1)
    if not entries:
        return f"Nothing was purged {said}."
    shown = entries[:limit]
    more = " (the newest ones; `cachebot history` lists all)" if len(entries) > limit else ""
    lines = [f"Purges {said}{more}:"]
    lines += [f"  • {describe(entry)}" for entry in shown]
    return "\n".join(lines)
