"""The jobs the Slack front end passes around: typed, immutable and picklable (they cross process boundaries).

A listener acks and hands on an *intake* job (what Slack sent, untouched); intake (``Handlers.handle``:
filters, claims, the first reply) returns the *run* job to start, or None; ``dispatch.py`` runs both on thread
pools or worker processes and ``Handlers.handle`` does the work. Nothing here refers to a method by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, Protocol

# --- intake: what a listener hands on --------------------------------------------------------------------


@dataclass(frozen=True)
class NewEvent:
    """A message event (``app_mention``, ``message``) as Slack delivered it."""

    event: dict[str, Any]
    event_id: str | None
    bot_user_id: str | None
    retry_num: str | None  # X-Slack-Retry-Num: a redelivery of an event we may already have taken


@dataclass(frozen=True)
class ApprovalClick:
    """A click on Approve or Deny: the signed payload and the action."""

    body: dict[str, Any]
    action: dict[str, Any]


@dataclass(frozen=True)
class OfferClick:
    """A click on "Purge these N pages" or "Just check them"."""

    body: dict[str, Any]
    action: dict[str, Any]


@dataclass(frozen=True)
class RequestAgainClick:
    """A click on Request again, on an expired approval card (or a copy of it)."""

    body: dict[str, Any]
    action: dict[str, Any]


@dataclass(frozen=True)
class SlashCommand:
    """A ``/cachebot`` command: the form fields Slack posted (``command``, ``text``, ``user_id``, ``channel_id``,
    ``trigger_id``, ``response_url``…), untouched."""

    command: dict[str, Any]


@dataclass(frozen=True)
class MessageShortcut:
    """The message shortcut "Clear caches for links in this message" (a ``message_action`` payload)."""

    body: dict[str, Any]


@dataclass(frozen=True)
class ModalSubmitted:
    """The shortcut's modal submitted (a ``view_submission`` payload): which of its links to clear."""

    body: dict[str, Any]


@dataclass(frozen=True)
class HomeOpened:
    """Someone opened the app's Home (``app_home_opened``; ``tab`` "home" or "messages")."""

    user: str
    tab: str


@dataclass(frozen=True)
class AssistantThreadStarted:
    """Someone opened a new assistant thread with the app (``assistant_thread_started``)."""

    channel: str
    thread_ts: str
    user: str


IntakeJob = (NewEvent | ApprovalClick | OfferClick | RequestAgainClick | SlashCommand | MessageShortcut
             | ModalSubmitted | HomeOpened | AssistantThreadStarted)


# --- runs: what intake (or start-up) asks to run -----------------------------------------------------------


@dataclass(frozen=True)
class AnswerRequest:
    """Run a new request and answer it in its thread (``status_ts``: the "Looking at…" message to replace)."""

    channel: str
    thread_ts: str
    thread_id: str
    user: str
    message: str
    status_ts: str | None
    intent: str | None = None  # "purge" | "check" when the surface already says which (a command, the modal)
    assistant: bool = False  # an assistant thread: its status line shows what the run is doing
    key: str | None = None  # the request's lease (what intake claimed): run only if nobody picked it up meanwhile


@dataclass(frozen=True)
class AnswerPrivately:
    """Run a request whose answer only its asker sees (``/cachebot check``), through the command's
    ``response_url``."""

    channel: str
    thread_id: str
    user: str
    message: str
    intent: str  # "check"
    response_url: str


@dataclass(frozen=True)
class ApplyDecision:
    """Resume a run waiting for approval with a claimed decision (``claim``: released if it never lands).
    ``channel``/``thread_ts`` are the run's, wherever the click came from."""

    channel: str
    thread_ts: str
    thread_id: str
    interrupt_id: str
    decision: str  # "approve" | "deny"
    clicker: str
    message_ts: str | None  # the message clicked: the card in the thread, or a copy (``clicked_in``)
    claim: str
    clicked_in: str = ""  # the channel of a copy clicked (approvers' channel, a DM); "" for the run's channel


@dataclass(frozen=True)
class TakeOffer:
    """Run the clicker's answer to an offer ("purge" or "check") for exactly the offer's URLs."""

    channel: str
    thread_ts: str
    thread_id: str
    offer_id: str
    choice: str  # "purge" | "check"
    clicker: str
    status_ts: str | None
    key: str | None = None  # the request's lease, as for AnswerRequest


@dataclass(frozen=True)
class RequestAgain:
    """Send an expired request (``request_id``, the thread's latest) back for a fresh approval, as ``clicker``
    asked (``claim``: released when policy refuses, so the requester can still press it)."""

    channel: str
    thread_ts: str
    thread_id: str
    request_id: str
    clicker: str
    clicked_in: str  # the channel the button was pressed in (the run's, or a copy's)
    claim: str


@dataclass(frozen=True)
class RecoverRuns:
    """Finish (``resume``) or report as interrupted the runs a dead process left executing."""

    resume: bool = True


RunJob = AnswerRequest | AnswerPrivately | ApplyDecision | TakeOffer | RequestAgain | RecoverRuns
Job = IntakeJob | RunJob


class Intake(Protocol):
    """Where listeners hand their jobs (``dispatch.Dispatcher``)."""

    def take_in(self, job: IntakeJob) -> None: ...

    def count_received(self) -> None: ...


def hand_on(intake: Intake, make_job: Callable[[], IntakeJob], ack: Callable[[], Any]) -> None:
    """What every listener does with what Slack sent: the job is queued before the ack (so "acked" implies
    "queued"), and the ack goes out whatever happens, also when building the job fails."""
    try:
        intake.take_in(make_job())
    finally:
        ack()
        intake.count_received()
