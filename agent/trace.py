"""What one request did and why: its steps through the graph, read back from the checkpoints and the audit trail.

``load_trace(storage, ref)`` finds the request (a request id, a thread id, a Slack permalink, or ``last``) and
rebuilds its run from what was saved while it went, so it works after a restart and on SQLite as on PostgreSQL:

- each checkpoint LangGraph wrote names the node that runs next (its ``updated_channels``: ``branch:to:<node>``)
  and carries that node's writes (``pending_writes``): what it changed, and where it routed (``branch:to:…``);
- the time between a step's checkpoint and the next one is the step's duration;
- an ``__interrupt__`` write without a ``__resume__`` is the approval the run waits at;
- the Agent marks each checkpoint with its request id, and a run picked up again after a crash with its attempt
  and when that attempt began (``agent.storage.checkpoints``): the step the dead process was running shows
  twice, once per attempt;
- the audit trail gives the request's status and who decided.

``draw_trace`` draws the graph with this run's path (``agent.drawing``). The sentences are in ``agent/words.py``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel

from agent.storage.history import ATTEMPT_KEY, REQUEST_ID_KEY, RESUMED_AT_KEY
from agent.words import change_summary, step_decision

START, END = "__start__", "__end__"
BRANCH = "branch:to:"
INTERRUPT, RESUME, ERROR = "__interrupt__", "__resume__", "__error__"
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
# https://acme.slack.com/archives/C0123/p1732540000123456?thread_ts=1732539999.000100&cid=C0123
PERMALINK = re.compile(r"^https?://[^/]+/archives/(?P<channel>[A-Z0-9]+)/p(?P<sec>\d{10})(?P<frac>\d{6})")


class TraceStep(BaseModel):
    attempt: int
    node: str
    started_at: datetime
    duration_s: float | None  # None: still running, waiting, or the process died in it
    decision: str | None  # "plan → approval: 84 purges is over the approval threshold of 20"
    changed: dict[str, str]  # state field -> a short summary of its new value
    goes_to: list[str] = []  # the nodes it routed to ("__end__" after report)
    outcome: str = "done"  # "done", "waiting", "died", "failed", "running"


class RunTrace(BaseModel):
    request_id: str
    thread_id: str
    status: str  # the audit's: done, waiting_approval, denied, error, interrupted, received (running)…
    attempts: int
    steps: list[TraceStep]
    waiting_at: str | None  # the node whose interrupt the run waits at
    edge_counts: dict[str, int]  # "plan->approval": 1
    node_seconds: dict[str, float]
    visited: list[str]  # nodes in the order first visited, "__start__" and "__end__" included
    message: str = ""
    user: str = ""
    received_at: datetime | None = None
    waiting_for: str | None = None  # what the interrupt asks (the approval's reason and approvers)
    notes: list[str] = []  # what else the trace knows: a run still marked executing, requests on the thread


class TraceNotFound(LookupError):
    """No request or run matches the reference given."""


# ------------------------------------------------------------------------------------------------- finding


def parse_permalink(ref: str) -> str | None:
    """The thread id (``CHANNEL:thread_ts``) a Slack message permalink points into, or None."""
    found = PERMALINK.match(ref.strip().strip("<>"))
    if not found:
        return None
    thread_ts = parse_qs(urlsplit(ref.strip().strip("<>")).query).get("thread_ts")
    ts = thread_ts[0] if thread_ts else f"{found['sec']}.{found['frac']}"
    return f"{found['channel']}:{ts}"


def find_request(storage: Any, ref: str) -> tuple[str, dict[str, Any] | None]:
    """(thread id, the request's audit row or None when the audit has none) for ``ref``."""
    ref = ref.strip()
    audit = storage.audit
    if ref == "last":
        row = audit.newest_request()
        if row is None:
            raise TraceNotFound("no request is recorded yet")
        return row["thread_id"], row
    if REQUEST_ID.match(ref) and (row := audit.request_row(ref)) is not None:
        return row["thread_id"], row
    thread_id = parse_permalink(ref) or ref
    rows = audit.thread_requests(thread_id)
    if rows:
        return thread_id, rows[-1]
    if _checkpoints(storage, thread_id):
        return thread_id, None
    raise TraceNotFound(f"no request or thread {ref!r} is recorded (a request id, a thread id, a Slack message "
                        "link, or `last`)")


# ------------------------------------------------------------------------------------------------- reading


def _checkpoints(storage: Any, thread_id: str) -> list[Any]:
    """The thread's checkpoints (``agent.storage.history.CheckpointRecord``), oldest first."""
    return storage.thread_history(thread_id)


def _segments(tuples: list[Any]) -> list[list[Any]]:
    """The thread's checkpoints split by request: each new message starts with an ``input`` checkpoint."""
    segments: list[list[Any]] = []
    for item in tuples:
        if item.metadata.get("source") == "input" or not segments:
            segments.append([])
        segments[-1].append(item)
    return segments


def _segment_of(segments: list[list[Any]], row: dict[str, Any] | None, rows: list[dict[str, Any]]) -> list[Any]:
    if not segments:
        return []
    if row is None:
        return segments[-1]
    for segment in segments:
        if any(t.metadata.get(REQUEST_ID_KEY) == row["id"] for t in segment):
            return segment
    # checkpoints written before requests were marked: the n-th newest request is the n-th newest input
    index = len(rows) - 1 - next((i for i, r in enumerate(rows) if r["id"] == row["id"]), len(rows) - 1)
    return segments[-1 - index] if index < len(segments) else []


def _node_of(item: Any, before: Any) -> str | None:
    """The node a checkpoint runs next: the one the previous step routed to (``branch:to:<node>``; one per step
    in this graph: no node fans out); the input checkpoint runs LangGraph's ``__start__``."""
    if item.metadata.get("source") == "input":
        return START
    for _task, channel, _value in (before.writes if before is not None else ()):
        if channel.startswith(BRANCH):
            return channel[len(BRANCH):]
    return None


def _attempt(item: Any) -> int:
    return int(item.metadata.get(ATTEMPT_KEY) or 1)


def _time(item: Any) -> datetime:
    return item.ts


@dataclass
class _Writes:
    changed: dict[str, Any] = field(default_factory=dict)
    goes_to: list[str] = field(default_factory=list)
    interrupt: Any = None
    resumed: bool = False
    error: Any = None


def _writes_of(item: Any) -> _Writes:
    writes = _Writes()
    for _task, channel, value in item.writes:
        if channel.startswith(BRANCH):
            writes.goes_to.append(channel[len(BRANCH):])
        elif channel == INTERRUPT:
            writes.interrupt = value
        elif channel == RESUME:
            writes.resumed = True
        elif channel == ERROR:
            writes.error = value
        elif not channel.startswith("__"):
            writes.changed[channel] = value
    return writes


def load_trace(storage: Any, ref: str) -> RunTrace:
    """The trace of the request ``ref`` names (see the module's docstring). ``storage``: an
    ``agent.storage.Storage`` opened with ``agent.state.checkpoint_serializer()``. Raises ``TraceNotFound``
    (a ``LookupError``) when nothing matches."""
    thread_id, row = find_request(storage, ref)
    rows = storage.audit.thread_requests(thread_id) if row is not None else []
    segment = _segment_of(_segments(_checkpoints(storage, thread_id)), row, rows)
    if not segment and row is None:
        raise TraceNotFound(f"nothing is recorded for {ref!r}")
    status = row["status"] if row else "unknown"
    running = storage.runs.get(thread_id) if getattr(storage, "runs", None) is not None else None
    decisions = storage.audit.decisions_of(row["id"]) if row else []
    trace = _build(segment, status=status, executing=running is not None, decisions=decisions)
    trace.request_id = row["id"] if row else str(segment[0].metadata.get(REQUEST_ID_KEY) or "")
    trace.thread_id = thread_id
    if row:
        trace.message, trace.user, trace.received_at = row["text"], row["requested_by"], row["received_at"]
    _redact(trace, storage.audit.redact)
    if len(rows) > 1:
        trace.notes.append(f"this is request {rows.index(row) + 1} of {len(rows)} on its thread")
    if not segment:
        trace.notes.append("its checkpoints are gone (the thread was cleared): only the audit record is left")
    return trace


def _build(segment: list[Any], *, status: str, executing: bool, decisions: list[Any]) -> RunTrace:
    steps: list[TraceStep] = []
    edges: Counter[str] = Counter()
    seconds: dict[str, float] = defaultdict(float)
    visited: list[str] = [START] if segment else []
    waiting_at = waiting_for = None
    refusals_seen = 0
    state: dict[str, Any] = {}
    for index, item in enumerate(segment):
        node = _node_of(item, segment[index - 1] if index else None)
        writes = _writes_of(item)
        state.update(writes.changed)
        following = segment[index + 1] if index + 1 < len(segment) else None
        if node == START:
            edges.update(f"{START}->{to}" for to in writes.goes_to)
            continue
        if node is None:
            continue
        if node not in visited:
            visited.append(node)
        started = _time(item)
        if following is not None and _attempt(following) > _attempt(item):
            # the process running this step died; the next attempt ran it again from its start
            steps.append(TraceStep(attempt=_attempt(item), node=node, started_at=started, duration_s=None,
                                   decision=step_decision(node, "died", {}, state), changed={}, outcome="died"))
            resumed = following.metadata.get(RESUMED_AT_KEY)
            started = datetime.fromisoformat(resumed) if resumed else started
        attempt = _attempt(following) if following is not None else _attempt(item)
        if writes.interrupt is not None and not writes.resumed and following is None:
            waiting_at, waiting_for = node, _interrupt_words(writes.interrupt)
            steps.append(TraceStep(attempt=attempt, node=node, started_at=started, duration_s=None,
                                   decision=step_decision(node, "waiting", {}, state, waiting=waiting_for),
                                   changed={}, outcome="waiting"))
            continue
        if following is None:  # the run has not reached its end and is not waiting: running, failed or died
            outcome = _stopped(writes, status, executing)
            steps.append(TraceStep(attempt=attempt, node=node, started_at=started, duration_s=None,
                                   decision=step_decision(node, outcome, {}, state, error=writes.error),
                                   changed={}, outcome=outcome))
            continue
        ended = _time(following) if following is not None else started
        duration = max(0.0, (ended - started).total_seconds())
        goes_to = writes.goes_to or [END]
        approval = writes.changed.get("approval")
        refusals = list(getattr(approval, "refusals", None) or [])
        refused = refusals[refusals_seen:] if node == "approval" and goes_to == ["approval"] else []
        refusals_seen = max(refusals_seen, len(refusals))
        steps.append(TraceStep(
            attempt=attempt, node=node, started_at=started, duration_s=duration,
            decision=step_decision(node, goes_to[0], writes.changed, state, refused=refused, decisions=decisions),
            changed={name: change_summary(value, name) for name, value in writes.changed.items()
                     if value is not None and value != ""},
            goes_to=goes_to))
        seconds[node] += duration
        edges.update(f"{node}->{to}" for to in goes_to)
        for to in goes_to:
            if to not in visited:
                visited.append(to)
    attempts = max((_attempt(item) for item in segment), default=1)
    return RunTrace(request_id="", thread_id="", status=status, attempts=attempts, steps=steps,
                    waiting_at=waiting_at, waiting_for=waiting_for, edge_counts=dict(edges),
                    node_seconds={k: round(v, 6) for k, v in seconds.items()}, visited=visited)


def _redact(trace: RunTrace, redact: Any) -> None:
    """Configuration secrets never reach a trace: what the checkpoints say (words people typed, a layer's error)
    passes the audit trail's redactor, as the audit's own texts did when they were written."""
    for step in trace.steps:
        step.decision = redact(step.decision) if step.decision else step.decision
        step.changed = {name: redact(summary) for name, summary in step.changed.items()}
    trace.waiting_for = redact(trace.waiting_for) if trace.waiting_for else trace.waiting_for


def _stopped(writes: _Writes, status: str, executing: bool) -> str:
    """How a step with no checkpoint after it ended: "failed" (an error was saved or recorded), "running" (its
    thread is still marked as sending purges: live, or its process died and recovery has not run yet), "died"."""
    if writes.error is not None or status == "error":
        return "failed"
    if executing or status == "received":
        return "running"
    return "died"


def _interrupt_words(value: Any) -> str:
    interrupts = value if isinstance(value, (list, tuple)) else [value]
    payload = getattr(interrupts[0], "value", interrupts[0]) if interrupts else {}
    if isinstance(payload, dict) and payload.get("kind") == "approval":
        return (f"{payload.get('reason')}; approvers: {payload.get('approvers')}; "
                f"expires {payload.get('expires_at')}")
    return str(payload)[:200]


# ------------------------------------------------------------------------------------------------- drawing


def draw_trace(trace: RunTrace, fmt: Literal["mermaid", "dot", "svg", "png"]) -> str | bytes:
    """The graph with this run's path: visited nodes and edges highlighted, how often each edge was taken, each
    node's total time, nodes not visited greyed out. ``svg`` and ``png`` are rendered by the local graphviz
    ``dot`` (offline; never mermaid.ink)."""
    from agent.drawing import RunPath, dot_with_path, mermaid_with_path, render_dot

    path = RunPath(visited=set(trace.visited), edge_counts=trace.edge_counts, node_seconds=trace.node_seconds,
                     waiting_at=trace.waiting_at)
    if fmt == "mermaid":
        return mermaid_with_path(path)
    text = dot_with_path(path)
    if fmt == "dot":
        return text
    if fmt in ("svg", "png"):
        return render_dot(text, fmt)
    raise ValueError(f"unknown format {fmt!r}: mermaid, dot, svg or png")
