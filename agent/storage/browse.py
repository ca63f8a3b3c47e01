"""The audit trail read a page at a time, for the web console (``agent/web/``): the requests list with its
filters, one request with everything recorded about it, and the figures behind the console's charts.

Read-only: nothing here writes. What it returns was redacted when it was written (``AuditStore``), so it is shown
as stored. Every query is bounded: a page of rows, a request's first ``MAX_ROWS`` plan items and results (a purge of
5,000 pages on five layers has 25,000 of each), so a page costs the same with 100 requests recorded or 100,000.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Date, Engine, and_, case, cast, func, select, union

from agent.storage.audit import NOT_CONFIRMED, normalised, url_hash
from agent.storage.tables import decisions, plan_items, requests, results

PAGE_SIZE = 50
MAX_ROWS = 200  # plan items and results shown on a request's page; the page says how many more there are
# the list counts the requests it matches up to this many ("1,000+"): a count costs a scan. At 10,000 the site
# filter's count took 200 ms at 100,000 requests (30,000 probes to find 10,000 matches), at 1,000 it takes 20 ms
COUNT_UP_TO = 1_000

# What the status filter offers: the request's own status, or its outcome (every page verified fresh, or not).
STATUS_FILTERS = {
    "running": ("status", "received"),
    "waiting_approval": ("status", "waiting_approval"),
    "verified": ("outcome", "verified"),
    "not_verified": ("outcome", "failed"),
    "denied": ("status", "denied"),
    "expired": ("status", "expired"),
    "dry_run": ("status", "dry_run"),
    "answered": ("status", "answered"),
    "error": ("status", "error"),
    "interrupted": ("status", "interrupted"),
}


class RequestFilter(BaseModel):
    url: str | None = None
    user: str | None = None
    site: str | None = None
    status: str | None = None  # a key of STATUS_FILTERS
    since: datetime | None = None
    until: datetime | None = None


class RequestRow(BaseModel):
    """One line of the requests list: who, what, how many pages, verified or not, how long it took."""

    id: str
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
    dry_run: bool
    page_count: int
    purge_count: int
    urls: list[str] = []  # the first page asked for (the list) or the first few (a request's page)

    @property
    def seconds(self) -> float | None:
        return (self.finished_at - self.received_at).total_seconds() if self.finished_at else None


class RequestPage(BaseModel):
    rows: list[RequestRow]
    page: int
    has_next: bool
    total: int  # at most COUNT_UP_TO + 1

    @property
    def counted(self) -> str:
        return f"{COUNT_UP_TO:,}+" if self.total > COUNT_UP_TO else f"{self.total:,}"


class RequestRecord(BaseModel):
    """Everything the audit trail holds about one request (plan and results capped at ``MAX_ROWS`` each)."""

    row: RequestRow
    understood_by: str | None
    llm_model: str | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    plan: list[dict[str, Any]]
    plan_total: int
    results: list[dict[str, Any]]
    results_total: int
    not_confirmed: int
    stale_found: int
    decisions: list[dict[str, Any]]


def _row(r: Any, urls: list[str] | None = None) -> RequestRow:
    return RequestRow(
        id=r["id"], thread_id=r["thread_id"], received_at=r["received_at"], finished_at=r["finished_at"],
        user=r["requested_by"], interface=r["interface"], channel=r["channel"], text=r["text"], intent=r["intent"],
        status=r["status"], outcome=r["outcome"], dry_run=bool(r["dry_run"]), page_count=r["page_count"],
        purge_count=r["purge_count"], urls=urls or [])


def _filtered(query, wanted: RequestFilter):
    if wanted.url:
        key = url_hash(normalised(wanted.url))
        # one IN over a UNION, not IN … OR IN …: PostgreSQL cannot join on an OR and tested every request
        # against both lists (110 ms at 100,000 requests); this way it looks up the few requests that match
        query = query.where(requests.c.id.in_(union(
            select(plan_items.c.request_id).where(plan_items.c.url_hash == key),
            select(results.c.request_id).where(results.c.url_hash == key))))
    if wanted.user:
        query = query.where(requests.c.requested_by == wanted.user)
    if wanted.site:
        # probed per request, newest first, in the (request_id, site) index alone: the newest 50 are found after
        # a few probes, and the count stops at COUNT_UP_TO
        query = query.where(select(plan_items.c.id).where(and_(plan_items.c.request_id == requests.c.id,
                                                               plan_items.c.site == wanted.site)).exists())
    if wanted.status in STATUS_FILTERS:
        column, value = STATUS_FILTERS[wanted.status]
        query = query.where(requests.c[column] == value)
    if wanted.since is not None:
        query = query.where(requests.c.received_at >= wanted.since)
    if wanted.until is not None:
        query = query.where(requests.c.received_at < wanted.until)
    return query


def list_requests(engine: Engine, wanted: RequestFilter, *, page: int = 1, size: int = PAGE_SIZE) -> RequestPage:
    """Requests newest first, one page of ``size``; ``total`` counts every request the filter matches."""
    page = max(1, page)
    # each row's first page asked for, read through the request_id index for the rows shown only: a purge of
    # 5,000 pages costs what one of 1 does
    first_url = (select(plan_items.c.url).where(and_(plan_items.c.request_id == requests.c.id, plan_items.c.requested))
                 .order_by(plan_items.c.id).limit(1).scalar_subquery().label("first_url"))
    newest_first = (requests.c.received_at.desc(), requests.c.id)
    shown = _filtered(select(requests.c.id), wanted).order_by(*newest_first).limit(size + 1).offset((page - 1) * size)
    with engine.connect() as db:
        ids = list(db.execute(shown).scalars())  # the page first, so rows skipped over cost no subquery
        rows = list(db.execute(select(requests, first_url).where(requests.c.id.in_(ids)).order_by(*newest_first))
                    .mappings()) if ids else []
        matching = _filtered(select(requests.c.id), wanted).limit(COUNT_UP_TO + 1).subquery()
        total = db.execute(select(func.count()).select_from(matching)).scalar_one()
    return RequestPage(rows=[_row(r, [r["first_url"]] if r["first_url"] else []) for r in rows[:size]], page=page,
                       has_next=len(rows) > size, total=total)


def find_request(engine: Engine, request_id: str) -> RequestRecord | None:
    """The request with its plan, results (failures first) and decisions; None when there is no such request."""
    with engine.connect() as db:
        r = db.execute(select(requests).where(requests.c.id == request_id)).mappings().first()
        if r is None:
            return None
        planned, in_order = _rows_of(plan_items, request_id)
        plan = [dict(p) for p in db.execute(
            select(plan_items).where(planned).order_by(*in_order).limit(MAX_ROWS)).mappings()]
        plan_total = db.execute(select(func.count()).select_from(plan_items)
                                .where(plan_items.c.request_id == request_id)).scalar_one()
        mine, in_order = _rows_of(results, request_id)
        outcome = [dict(o) for o in db.execute(  # failures first, without sorting every result of a big purge
            select(results).where(and_(mine, results.c.status.in_(NOT_CONFIRMED)))
            .order_by(*in_order).limit(MAX_ROWS)).mappings()]
        if len(outcome) < MAX_ROWS:
            outcome += [dict(o) for o in db.execute(
                select(results).where(and_(mine, results.c.status.not_in(NOT_CONFIRMED)))
                .order_by(*in_order).limit(MAX_ROWS - len(outcome))).mappings()]
        totals = db.execute(
            select(func.count(), func.sum(case((results.c.status.in_(NOT_CONFIRMED), 1), else_=0)),
                   func.sum(case((results.c.found_stale, 1), else_=0)))
            .where(results.c.request_id == request_id)).one()
        decided = [dict(d) for d in db.execute(
            select(decisions).where(decisions.c.request_id == request_id).order_by(decisions.c.decided_at,
                                                                                   decisions.c.id)).mappings()]
    requested = list(dict.fromkeys(p["url"] for p in plan if p["requested"]))
    return RequestRecord(
        row=_row(r, requested[:3]), understood_by=r["understood_by"], llm_model=r["llm_model"],
        input_tokens=r["input_tokens"], output_tokens=r["output_tokens"], total_tokens=r["total_tokens"],
        plan=plan, plan_total=plan_total, results=outcome, results_total=totals[0],
        not_confirmed=int(totals[1] or 0), stale_found=int(totals[2] or 0), decisions=decided)


def _rows_of(table: Any, request_id: str) -> tuple[Any, tuple[Any, Any]]:
    """(WHERE, ORDER BY) for a request's rows of ``table`` in id order, read along its (request_id, id) index.
    Said as a range (``BETWEEN r AND r``) and ordered by both columns on purpose: given ``request_id = r`` and
    ``ORDER BY id``, PostgreSQL drops the constant column from the order, takes the request's rows to be spread
    evenly over the table and walks the primary key looking for its first 200: half a second for a purge of
    5,000 pages among 600,000 rows (the whole table when the request is recent), 2 ms along the index."""
    return table.c.request_id.between(request_id, request_id), (table.c.request_id, table.c.id)


def progress_marker(engine: Engine, request_id: str) -> str:
    """Changes whenever the request's record does (status, results, decisions): what a running request's page
    polls to know it should show the next step."""
    with engine.connect() as db:
        r = db.execute(select(requests.c.status, requests.c.outcome, requests.c.finished_at, requests.c.page_count)
                       .where(requests.c.id == request_id)).first()
        if r is None:
            return ""
        counted = db.execute(select(func.count()).select_from(results)
                             .where(results.c.request_id == request_id)).scalar_one()
        decided = db.execute(select(func.count()).select_from(decisions)
                             .where(decisions.c.request_id == request_id)).scalar_one()
    return f"{r[0]}|{r[1]}|{r[2]}|{r[3]}|{counted}|{decided}"


# --- the figures behind the charts ----------------------------------------------------------------------------


def daily_requests(engine: Engine, since: datetime, now: datetime) -> list[dict[str, Any]]:
    """Every day (UTC) from ``since`` to ``now``: requests, and how many ended verified fresh or not (quiet days
    too, at zero, so the chart's days are evenly spaced)."""
    day = cast(requests.c.received_at, Date) if engine.dialect.name == "postgresql" else \
        func.date(requests.c.received_at)
    query = (select(day.label("day"), func.count(),
                    func.sum(case((requests.c.outcome == "verified", 1), else_=0)),
                    func.sum(case((requests.c.outcome == "failed", 1), else_=0)))
             .where(requests.c.received_at >= since).group_by(day).order_by(day))
    with engine.connect() as db:
        counted = {str(d): (n, int(v or 0), int(f or 0)) for d, n, v, f in db.execute(query)}
    days, day = [], since.date()
    while day <= now.date() and len(days) <= 366:
        n, v, f = counted.get(day.isoformat(), (0, 0, 0))
        days.append({"day": day.isoformat(), "requests": n, "verified": v, "not_verified": f})
        day += timedelta(days=1)
    return days


TIME_BUCKETS = (5, 15, 30, 60, 120, 300, 600)  # seconds from request to every page verified


def time_to_verified(engine: Engine, since: datetime) -> list[dict[str, Any]]:
    """How many verified requests took at most 5 s, 15 s, … and longer: a histogram, not just a median."""
    query = (select(requests.c.received_at, requests.c.finished_at)
             .where(and_(requests.c.received_at >= since, requests.c.outcome == "verified",
                         requests.c.finished_at.is_not(None))))
    counts = [0] * (len(TIME_BUCKETS) + 1)
    with engine.connect() as db:
        for received, finished in db.execute(query):
            seconds = (finished - received).total_seconds()
            counts[next((i for i, top in enumerate(TIME_BUCKETS) if seconds <= top), len(TIME_BUCKETS))] += 1
    labels = [f"≤ {top} s" if top < 60 else f"≤ {top // 60} min" for top in TIME_BUCKETS] + \
        [f"> {TIME_BUCKETS[-1] // 60} min"]
    return [{"label": label, "requests": n} for label, n in zip(labels, counts)]


def default_window(now: datetime, days: int = 30) -> datetime:
    return now - timedelta(days=days)

