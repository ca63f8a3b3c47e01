"""Active expiry: an approval nobody decided on in time is ended when it expires, not when someone clicks late.

``expire_overdue_approvals(agent, notify)`` is a periodic job: every replica runs it on its sweeper
(``agent/service/sweeper.py``; the Slack app adds it in ``SlackFrontEnd.sweeper``). Each run:

1. finds the pending approvals past their expiry (``Agent.overdue_approvals``: the audit's waiting requests,
   confirmed against their checkpoints) and, for each, takes the thread's lock **without waiting** (another
   replica expiring it, or a person clicking on it right now, holds it: skipped, looked at again next time),
   checks again under the lock and decides it as expired through the graph (``Agent.expire``: the approval
   node's own expiry path; nothing is purged, the audit says "expired");
2. tells the front end once (``notify``: the card says "Expired at … — nothing was purged" with a Request again
   button, the requester is told in the thread). Once across replicas and restarts: still under the thread's
   lock, the notice is given unless the claim ``expired-told:<thread>:<request>`` exists, and that claim is
   taken after ``notify`` returned. A notifier that fails (Slack down past its retries) raises, the claim is not
   taken, and a later run tells it again; so does a process that died between expiring and telling (step 1 of a
   later run finds nothing to expire, but the request is among ``Agent.recently_expired``).

A late click on an expired card ends the same way: the Slack front end calls ``tell_expired`` after the graph
said "expired", and the same lock and claim keep it to one notice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.models import RunResult
    from agent.service.agent import Agent

log = logging.getLogger(__name__)

NOTICE_WINDOW = timedelta(minutes=30)  # beyond the expiry: a notice owed after a crash is still given (claims
# are kept at least an hour, so the claim of a notice given outlives this window)


@dataclass(frozen=True)
class Expired:
    """An approval that expired undecided, for the front end to tell: where it was asked, by whom, when it
    expired, and its request (the Request again button names the thread and this request)."""

    thread_id: str
    request_id: str
    interface: str | None
    channel: str | None
    requester: str
    expires_at: datetime | None
    result: RunResult


Notify = Callable[[Expired], Any]


async def expire_overdue_approvals(agent: Agent, notify: Notify | None = None) -> int:
    """The periodic job: expire every overdue approval and tell each once. Returns how many this call expired.
    The Agent is synchronous (each graph run has an event loop of its own), so the work runs in a thread."""
    return await asyncio.to_thread(expire_overdue, agent, notify)


def expire_overdue(agent: Agent, notify: Notify | None = None) -> int:
    expired: list[str] = []
    for thread_id in agent.overdue_approvals():
        try:
            if expire_one(agent, thread_id, notify):
                expired.append(thread_id)
        except Exception:
            log.exception("could not expire the approval of %s", thread_id)
    window = NOTICE_WINDOW + timedelta(minutes=agent.config.approval.expiry_minutes)
    for thread_id, request_id in agent.recently_expired(within=window):
        if thread_id in expired or agent.storage.claims.claimed(notice_key(thread_id, request_id)):
            continue  # (one just expired here was told, or tried, a moment ago)
        try:
            tell_expired(agent, thread_id, notify)
        except Exception:
            log.exception("could not tell %s that its approval expired", thread_id)
    return len(expired)


def expire_one(agent: Agent, thread_id: str, notify: Notify | None = None) -> bool:
    """Expire one thread's approval if it is still pending and due, and tell it. True when this call expired it."""
    with agent.locks.try_hold(thread_id) as got:
        if not got:  # a replica is expiring it, or someone is deciding on it right now: look again next time
            return False
        result = agent.expire(thread_id)
        if result is None:
            return False
        log.info("the approval of %s expired undecided", thread_id)
        _tell_held(agent, thread_id, notify)
        return True


def tell_expired(agent: Agent, thread_id: str, notify: Notify | None) -> bool:
    """Give the notice of an expired approval once (see the module's docstring). True when this call gave it."""
    with agent.locks.try_hold(thread_id) as got:
        if not got:  # whoever holds it tells it, or the next run does
            return False
        return _tell_held(agent, thread_id, notify)


def _tell_held(agent: Agent, thread_id: str, notify: Notify | None) -> bool:
    if notify is None:  # no front end to tell here (the terminal): leave the notice to one that has one
        return False
    item = expired_item(agent, thread_id)
    if item is None:
        return False
    key = notice_key(thread_id, item.request_id)
    if agent.storage.claims.claimed(key):
        return False
    try:
        notify(item)
    except Exception:  # not told (Slack down past its retries): no claim, so a later sweep tells it
        log.exception("could not tell %s that its approval expired; trying again later", thread_id)
        return False
    agent.storage.claims.claim(key)
    return True


def expired_item(agent: Agent, thread_id: str) -> Expired | None:
    """The thread's latest request when it ended expired, as the notifier needs it; else None."""
    result = agent.result(thread_id)
    request = agent.audit.latest_request(thread_id)
    if result.pending or result.approval.status != "expired" or request is None:
        return None
    values = agent.snapshot(thread_id).values
    plan = values.get("plan")
    return Expired(thread_id=thread_id, request_id=request["id"], interface=request.get("interface"),
                   channel=request.get("channel"), requester=str(values.get("user") or ""),
                   expires_at=plan.expires_at if plan is not None else None, result=result)


def notice_key(thread_id: str, request_id: str) -> str:
    return f"expired-told:{thread_id}:{request_id}"
