"""The console's pages: a Starlette app that reads the audit trail and the checkpoints, and writes nothing.

- ``/`` the requests, newest first, with filters (URL, user, site, status, time) and pages of 50;
- ``/requests/{id}`` one request: its path through the graph (inline SVG) and step timeline (``agent.trace``),
  the message as written, how it was understood, the plan, every page × layer result with its evidence, the
  approval record and a link to its Slack thread; while it runs, ``/static/live.js`` polls
  ``/requests/{id}/progress`` and reloads the page when the record moves;
- ``/waiting`` the requests waiting for approval: who may approve and the time left;
- ``/stats`` charts drawn on the server (``agent.web.charts``).

Security (``agent/web/security.py``): GET and HEAD only; a token when one is set; a Content-Security-Policy
that allows the package's own script and style only. Every text goes through Jinja's autoescaping and, on its
way out, the audit's ``Redactor`` (the trace reads checkpoints, which hold the message as it was written); links
taken from records are only ever http(s).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agent.config import AppConfig
from agent.graph import build_graph
from agent.periods import parse_since, utc_now
from agent.storage import Storage
from agent.storage import browse
from agent.web import charts
from agent.web.security import ReadOnlyGate
from agent.words import took_words

log = logging.getLogger(__name__)

RUNNING = ("received", "waiting_approval")  # a page in one of these states keeps itself up to date
STATUS_WORDS = {
    "received": "running", "waiting_approval": "waiting for approval", "done": "done", "answered": "answered",
    "denied": "denied", "expired": "approval expired", "dry_run": "dry run", "error": "error",
    "interrupted": "interrupted",
}
DRAWINGS_KEPT = 256  # drawn paths kept in memory (a few KB each)
STATS_KEPT_SECONDS = 60  # the stats page's figures are reused this long: over 100,000 requests they take seconds
STATS_WINDOWS_KEPT = 32  # windows ("30d", "7d", a date…) whose figures are kept


class Console:
    """What every page reads from: the configuration, the storage, and the clock."""

    def __init__(self, config: AppConfig, storage: Storage, *, now: Callable[[], datetime] = utc_now):
        self.config = config
        self.storage = storage
        self.engine = storage.engine
        self.redact = storage.audit.redact
        self.now = now
        self._graph = None
        self._drawings: OrderedDict[str, str] = OrderedDict()
        self._stats: dict[str, tuple[float, Any]] = {}  # window -> (when computed, figures)
        self._lock = threading.Lock()  # the pages run on Starlette's thread pool (their reads block)

    @property
    def graph(self):
        """The compiled graph on the stored checkpoints, to read a waiting run's open approval request."""
        with self._lock:
            if self._graph is None:
                self._graph = build_graph().compile(checkpointer=self.storage.checkpointer)
            return self._graph

    def pending(self, thread_id: str) -> dict[str, Any] | None:
        """The open approval request of a waiting run (requester, reason, approvers, expires_at), or None."""
        return self.pending_many([thread_id]).get(thread_id)

    def pending_many(self, thread_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Thread id -> its open approval request, for those of ``thread_ids`` that wait: read in one query from
        the checkpoints' tables (``agent.storage.history``), else thread by thread through the graph."""
        from agent.storage.history import waiting_interrupts

        try:
            found = waiting_interrupts(self.storage.database, thread_ids, engine=self.engine)
            return {thread_id: dict(value) for thread_id, value in found.items() if isinstance(value, dict)}
        except Exception:  # noqa: BLE001 - the savers' tables changed shape: LangGraph reads them
            log.warning("reading waiting approvals the quick way failed; reading them through LangGraph",
                        exc_info=True)
        pending = {}
        for thread_id in thread_ids:
            try:
                snapshot = self.graph.get_state({"configurable": {"thread_id": thread_id}})
            except Exception:  # noqa: BLE001 - a page without the approval details, never an error page
                log.exception("could not read the checkpoint of thread %s", thread_id)
                continue
            if snapshot.interrupts:
                pending[thread_id] = dict(snapshot.interrupts[0].value)
        return pending

    def stats(self, window: str, since: datetime) -> tuple[dict[str, Any], list[dict], list[dict]]:
        """The stats page's figures for ``window`` (audit stats, requests per day, time to verified), computed at
        most once a ``STATS_KEPT_SECONDS``: over 100,000 requests they take seconds, and a chart of 30 days does
        not need them to the second."""
        with self._lock:
            kept = self._stats.get(window)
        if kept is not None and time.monotonic() - kept[0] < STATS_KEPT_SECONDS:
            return kept[1]
        figures = (self.storage.audit.stats(since=since), browse.daily_requests(self.engine, since, self.now()),
                   browse.time_to_verified(self.engine, since))
        with self._lock:
            self._stats[window] = (time.monotonic(), figures)
            while len(self._stats) > STATS_WINDOWS_KEPT:
                self._stats.pop(next(iter(self._stats)))
        return figures

    def checkpoint_marker(self, thread_id: str) -> str:
        """The thread's latest checkpoint id: it moves as each step of a run completes."""
        try:
            latest = self.storage.checkpointer.get_tuple({"configurable": {"thread_id": thread_id}})
        except Exception:  # noqa: BLE001
            return ""
        return str(latest.config["configurable"].get("checkpoint_id")) if latest else ""

    def trace(self, request_id: str) -> tuple[Any, Markup | None, str | None]:
        """(trace, its graph as inline SVG, why there is none). ``agent.trace`` rebuilds the run from the
        checkpoints and the audit; an old request whose checkpoints are gone still has its audit record."""
        try:
            from agent.trace import draw_trace, load_trace

            trace = load_trace(self.storage, request_id)
        except Exception as exc:  # noqa: BLE001 - the rest of the page is still worth showing
            log.info("no trace for request %s: %s", request_id, exc)
            return None, None, self.redact(str(exc)) or type(exc).__name__
        if not trace.steps:  # nothing to draw: the notes say why (its checkpoints are gone, say)
            return trace, None, None
        # graphviz takes a process and most of a page's time: a path drawn once is drawn again from memory
        key = json.dumps([trace.visited, trace.edge_counts, trace.node_seconds, trace.waiting_at], sort_keys=True)
        with self._lock:
            svg = self._drawings.get(key)
        if svg is None:
            try:
                drawn = draw_trace(trace, "svg")
                svg = inline_svg(drawn.decode() if isinstance(drawn, bytes) else drawn)
            except Exception as exc:  # noqa: BLE001 - the timeline does not need the drawing
                log.exception("could not draw the trace of request %s", request_id)
                return trace, None, self.redact(str(exc)) or type(exc).__name__
            with self._lock:
                self._drawings[key] = svg
                while len(self._drawings) > DRAWINGS_KEPT:
                    self._drawings.popitem(last=False)
        return trace, Markup(self.redact(svg)), None


# --- helpers the templates use ----------------------------------------------------------------------------

_PROLOG = re.compile(r"^\s*(<\?xml[^>]*\?>\s*)?(<!DOCTYPE[^>]*>\s*)?(<!--.*?-->\s*)*", re.DOTALL)
_ACTIVE = re.compile(r"<\s*(script|foreignObject|iframe|object|embed)\b|\bon[a-z]+\s*=|javascript:", re.IGNORECASE)


def inline_svg(svg: str) -> str:
    """Graphviz's SVG document as an element to put in the page: no XML prolog or doctype. Anything that could
    run (a script, an event handler, a javascript: link) refuses the drawing: graphviz escapes its labels, so
    that would mean something upstream went wrong, and the page shows the timeline without it."""
    svg = _PROLOG.sub("", svg, count=1)
    if not svg.startswith("<svg") or _ACTIVE.search(svg):
        raise ValueError("the drawing is not a plain SVG")
    return svg


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def clock(value: datetime | None) -> str:
    """A step's moment: the date is the request's, the milliseconds tell quick steps apart."""
    return value.strftime("%H:%M:%S.%f")[:-3] if value else "—"


def time_left(expires_at: Any, now: datetime) -> str:
    if not expires_at:
        return "no expiry"
    moment = expires_at if isinstance(expires_at, datetime) else datetime.fromisoformat(str(expires_at))
    left = (moment - now).total_seconds()
    if left <= 0:
        return "expired"
    return f"{int(left // 3600)} h {int(left % 3600 // 60)} min" if left >= 3600 else f"{int(left // 60)} min"


def slack_thread(thread_id: str, interface: str, slack_url: str | None) -> str | None:
    """The Slack thread of a request made in Slack (thread ids are ``CHANNEL:THREAD_TS``): the message itself
    with ``web.slack_url``, else the channel through Slack's redirect."""
    channel, _, ts = thread_id.partition(":")
    if interface != "slack" or not re.fullmatch(r"[A-Z0-9]+", channel) or not re.fullmatch(r"\d+\.\d+", ts):
        return None
    if slack_url:
        return f"{slack_url}/archives/{channel}/p{ts.replace('.', '')}"
    return f"https://slack.com/app_redirect?{urlencode({'channel': channel})}"


def approvers(config: AppConfig) -> list[str]:
    return [*config.approval.approvers, *(f"group {g}" for g in config.approval.approver_groups)]


def make_environment(redact: Callable[[str], str]) -> Environment:
    """Jinja with autoescaping everywhere and the audit's redaction on every value printed."""

    def finalize(value: Any) -> Any:
        if isinstance(value, Markup):
            return Markup(redact(str(value)))
        return redact(value) if isinstance(value, str) else value

    env = Environment(loader=PackageLoader("agent.web", "templates"), autoescape=select_autoescape(default=True),
                      finalize=finalize, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=when, clock=clock, seconds=took_words)
    env.globals.update(STATUS_WORDS=STATUS_WORDS)
    return env


# --- the pages ----------------------------------------------------------------------------------------------


def create_app(console: Console, *, token: str | None = None) -> Starlette:
    env = make_environment(console.redact)

    def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context), status_code=status_code)

    def request_filter(request: Request) -> tuple[browse.RequestFilter, dict[str, str], str | None]:
        q = {k: v.strip() for k, v in request.query_params.items() if k in
             ("url", "user", "site", "status", "since", "until") and v.strip()}
        problem = None
        try:
            since = parse_since(q.get("since"), console.now())
            until = parse_since(q.get("until"), console.now())
        except ValueError as exc:
            since = until = None
            problem = str(exc)
        wanted = browse.RequestFilter(url=q.get("url"), user=q.get("user"), site=q.get("site"),
                                      status=q.get("status"), since=since, until=until)
        return wanted, q, problem

    def requests_list(request: Request) -> Response:
        wanted, q, problem = request_filter(request)
        try:
            number = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            number = 1
        listed = browse.list_requests(console.engine, wanted, page=number)

        def page_link(n: int) -> str:
            return "/?" + urlencode({**q, "page": n})

        return page("requests.html", listed=listed, q=q, problem=problem,
                    sites=[site.name for site in console.config.sites],
                    statuses=list(browse.STATUS_FILTERS), page_link=page_link, nav="requests")

    def request_page(request: Request) -> Response:
        request_id = request.path_params["request_id"]
        record = browse.find_request(console.engine, request_id)
        if record is None:
            return page("missing.html", status_code=404, what=request_id, nav="requests")
        row = record.row
        trace, svg, no_trace = console.trace(request_id)
        pending = console.pending(row.thread_id) if row.status == "waiting_approval" else None
        live = row.status in RUNNING
        return page(
            "request.html", record=record, row=row, trace=trace, svg=svg, no_trace=no_trace, pending=pending,
            left=time_left(pending.get("expires_at"), console.now()) if pending else None,
            approvers=approvers(console.config), slack=slack_thread(row.thread_id, row.interface,
                                                                    console.config.web.slack_url),
            refusals=[d for d in record.decisions if d["status"] == "refused"],
            decided=[d for d in record.decisions if d["status"] != "refused"],
            live=live, live_url=f"/requests/{request_id}/progress",
            marker=marker_of(request_id, row.thread_id) if live else "", nav="requests")

    def marker_of(request_id: str, thread_id: str) -> str:
        return browse.progress_marker(console.engine, request_id) + "|" + console.checkpoint_marker(thread_id)

    def progress(request: Request) -> Response:
        request_id = request.path_params["request_id"]
        record = browse.find_request(console.engine, request_id)
        if record is None:
            return JSONResponse({"marker": ""}, status_code=404)
        return JSONResponse({"marker": marker_of(request_id, record.row.thread_id),
                             "running": record.row.status in RUNNING})

    def waiting(request: Request) -> Response:
        listed = browse.list_requests(console.engine, browse.RequestFilter(status="waiting_approval"), size=200)
        now = console.now()
        waiting_for = console.pending_many([row.thread_id for row in listed.rows])
        items = []
        for row in listed.rows:
            pending = waiting_for.get(row.thread_id) or {}
            items.append({"row": row, "pending": pending, "left": time_left(pending.get("expires_at"), now)})
        return page("waiting.html", items=items, approvers=approvers(console.config),
                    self_approval=console.config.approval.allow_self_approval, nav="waiting")

    def stats(request: Request) -> Response:
        window = request.query_params.get("since") or "30d"
        try:
            since = parse_since(window, console.now())
        except ValueError:
            window, since = "30d", parse_since("30d", console.now())
        figures, days, to_verified = console.stats(window, since)
        days = [{**day, "other": day["requests"] - day["verified"] - day["not_verified"]} for day in days]
        drawn = {
            "per_day": charts.stacked_columns(days, ("verified", "not_verified", "other"), "Requests per day"),
            "most_purged": charts.horizontal_bars(
                [(r["url"], {"value": r["requests"]}) for r in figures["most_purged"]], ("value",),
                "Most-purged pages"),
            "problems": charts.horizontal_bars(
                [(f"{r['site']} / {r['layer']}", r) for r in figures["problem_layers"]],
                ("stale", "failed", "unverified"), "Layers most often stale or failing"),
            "to_verified": charts.horizontal_bars(
                [(b["label"], {"value": b["requests"]}) for b in to_verified],
                ("value",), "Time from request to verified"),
        }
        return page("stats.html", figures=figures, charts=drawn, window=window, nav="stats")

    async def not_found(request: Request, exc: Exception) -> Response:
        return page("missing.html", status_code=404, what=request.url.path, nav="")

    routes = [
        Route("/", requests_list),
        Route("/requests/{request_id:str}", request_page),
        Route("/requests/{request_id:str}/progress", progress),
        Route("/waiting", waiting),
        Route("/stats", stats),
        Mount("/static", StaticFiles(packages=[("agent.web", "static")]), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(ReadOnlyGate, token=token)],
                     exception_handlers={404: not_found})
