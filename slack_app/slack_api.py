"""The Slack Web API as cachebot uses it: a client that retries, and the few calls the handlers make.

``make_client`` waits out ``ratelimited`` (429 + Retry-After), retries Slack's server errors (500, 502, 503, 504)
with exponential backoff and jitter (or after their Retry-After) and retries dropped connections, so no caller
retries by hand and a final message is not lost to one bad answer. ``SlackApi`` posts, updates, answers
ephemerally and uploads; a failed call (after those retries) is logged and never breaks a run (the run's outcome is in the audit trail whatever Slack said). ``SlackUserGroups`` answers
"which approver groups is this user in" for the agent (``slack_context``); who may approve is still decided
in ``agent/``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.webhook import WebhookClient

from agent.config import AppConfig, ApprovalConfig
from agent.state import AgentContext
from slack_app import blocks as kit

log = logging.getLogger("cachebot.slack")


SERVER_ERRORS = (500, 502, 503, 504)
MAX_RETRY_AFTER = 60.0  # seconds: a server error asking for longer is waited out this long, at most


class ServerErrorRetryHandler(RetryHandler):
    """Retries an answer in ``SERVER_ERRORS``: after its ``Retry-After`` when it has one (capped), else with
    slack-sdk's exponential backoff and jitter (0.5 s, 1 s, 2 s … each randomised). slack-sdk's own
    ``ServerErrorRetryHandler`` knows only 500 and 503, and ignores Retry-After."""

    def _can_retry(self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
                   error: Exception | None = None) -> bool:
        return response is not None and response.status_code in SERVER_ERRORS

    def prepare_for_next_attempt(self, *, state: RetryState, request: HttpRequest,
                                 response: HttpResponse | None = None, error: Exception | None = None) -> None:
        wait = retry_after(response)
        if wait is None:
            super().prepare_for_next_attempt(state=state, request=request, response=response, error=error)
            return
        state.next_attempt_requested = True
        time.sleep(wait)
        state.increment_current_attempt()


def retry_after(response: HttpResponse | None) -> float | None:
    """The seconds a response's ``Retry-After`` asks for (capped at ``MAX_RETRY_AFTER``), or None."""
    for name, values in (response.headers if response is not None else {}).items():
        if name.lower() == "retry-after" and values:
            try:
                return min(max(float(values[0]), 0.0), MAX_RETRY_AFTER)
            except ValueError:
                return None
    return None


def make_client(token: str, api_url: str | None = None, *, rate_limit_retries: int = 3,
                server_error_retries: int = 3, backoff_factor: float = 0.5) -> WebClient:
    """A Web API client that waits out ``ratelimited`` (429 + Retry-After), retries server errors with backoff
    (``ServerErrorRetryHandler``) and retries dropped connections."""
    base_url = (api_url or WebClient.BASE_URL).rstrip("/") + "/"
    backoff = BackoffRetryIntervalCalculator(backoff_factor=backoff_factor)
    return WebClient(
        token=token, base_url=base_url, timeout=15,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
                        ServerErrorRetryHandler(max_retry_count=server_error_retries, interval_calculator=backoff),
                        ConnectionErrorRetryHandler(max_retry_count=2, interval_calculator=backoff)],
    )


class SlackUserGroups:
    """``AgentContext.user_groups`` for Slack: which configured approver groups a user is in (cached briefly)."""

    def __init__(self, client: WebClient, groups: list[str], ttl: float = 60.0):
        self.client = client
        self.groups = list(groups)
        self.ttl = ttl
        self._cache: dict[str, tuple[float, set[str]]] = {}
        self._lock = threading.Lock()

    def __call__(self, user: str) -> set[str]:
        return {group for group in self.groups if user in self._members(group)}

    def _members(self, group: str) -> set[str]:
        with self._lock:
            cached = self._cache.get(group)
            if cached and time.monotonic() - cached[0] < self.ttl:
                return cached[1]
        try:
            users = set(self.client.usergroups_users_list(usergroup=group).get("users") or [])
        except SlackApiError as exc:
            log.warning("usergroups.users.list %s failed: %s", group, exc.response.get("error"))
            return set()
        with self._lock:
            self._cache[group] = (time.monotonic(), users)
        return users


def slack_context(config: AppConfig, client: WebClient, **overrides: Any) -> AgentContext:
    """The agent's run-time context with Slack user groups as approver groups."""
    return AgentContext(config=config, user_groups=SlackUserGroups(client, config.approval.approver_groups),
                        **overrides)


def approver_mentions(rules: ApprovalConfig) -> tuple[str, ...]:
    """Our own mentions of approvers and approver groups: they stay live when a reply is escaped."""
    return tuple(f"<@{u}>" for u in rules.approvers) + tuple(f"<!subteam^{g}>" for g in rules.approver_groups)


class SlackApi:
    """The Web API calls of the handlers. Text is plain-text safe and clipped; ``keep`` lists the mentions of
    ours that stay live in an escaped reply (``approver_mentions``)."""

    def __init__(self, client: WebClient, keep: tuple[str, ...] = ()):
        self.client = client
        self.keep = keep

    def post(self, channel: str, thread_ts: str | None, text: str, blocks: list[dict] | None = None,
             metadata: dict[str, Any] | None = None) -> str | None:
        """A new message in the thread (``thread_ts`` None: in the channel); its ``ts``, or None when Slack
        refused it. ``metadata``: Slack message metadata (``kit.finished_metadata`` marks a request's final
        message)."""
        try:
            response = self.client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                                    text=kit.clip(kit.plain(text), kit.MAX_TEXT_CHARS),
                                                    blocks=blocks or kit.text_blocks(text, self.keep),
                                                    metadata=metadata)
            return response.get("ts")
        except SlackApiError as exc:
            log.warning("chat.postMessage failed: %s", exc.response.get("error"))
            return None

    def post_at(self, channel: str, text: str, blocks: list[dict]) -> tuple[str, str] | None:
        """A new message in a channel, or in a DM when ``channel`` is a user id; (the channel it landed in, its
        ``ts``) so it can be updated later, or None when Slack refused it."""
        try:
            response = self.client.chat_postMessage(
                channel=channel, text=kit.clip(kit.plain(text), kit.MAX_TEXT_CHARS), blocks=blocks)
            return str(response.get("channel") or channel), str(response.get("ts"))
        except SlackApiError as exc:
            log.warning("chat.postMessage to %s failed: %s", channel, exc.response.get("error"))
            return None

    def permalink(self, channel: str, ts: str | None) -> str | None:
        """A link to a message (``chat.getPermalink``), or None."""
        if not ts:
            return None
        try:
            return self.client.chat_getPermalink(channel=channel, message_ts=ts).get("permalink")
        except SlackApiError as exc:
            log.warning("chat.getPermalink failed: %s", exc.response.get("error"))
            return None

    def update(self, channel: str, ts: str | None, text: str, blocks: list[dict],
               metadata: dict[str, Any] | None = None) -> None:
        """Edit a message in place; ``metadata`` replaces its metadata (without it, Slack keeps what it had)."""
        if not ts:
            return
        try:
            self.client.chat_update(channel=channel, ts=ts, text=kit.clip(kit.plain(text), kit.MAX_TEXT_CHARS),
                                    blocks=blocks, metadata=metadata)
        except SlackApiError as exc:
            log.warning("chat.update failed: %s", exc.response.get("error"))

    def reply_in_place(self, channel: str, thread_ts: str, status_ts: str | None, text: str,
                       metadata: dict[str, Any] | None = None) -> None:
        """The text in place of the status message ("Looking at…"), or as a new message when there is none."""
        if status_ts:
            self.update(channel, status_ts, text, kit.text_blocks(text, self.keep), metadata)
        else:
            self.post(channel, thread_ts, text, metadata=metadata)

    def show(self, channel: str, thread_ts: str, status_ts: str | None, text: str, blocks: list[dict],
             metadata: dict[str, Any] | None = None) -> None:
        """Blocks in place of the status message (which showed the plan), or as a new message."""
        if status_ts:
            self.update(channel, status_ts, text, blocks, metadata)
        else:
            self.post(channel, thread_ts, text, blocks, metadata)

    def finished_in_thread(self, channel: str, thread_ts: str, request: str) -> bool:
        """Whether the thread already shows ``request``'s final message: one of our messages carries
        ``kit.finished_metadata`` naming it (``conversations.replies`` with ``include_all_metadata``, every page).
        A process killed after posting it, before its lease said so, leaves exactly that; whoever takes the run
        over then must not post it again. When Slack will not say (an error after the client's retries), False:
        answering twice is better than never."""
        cursor = None
        try:
            while True:
                page = self.client.conversations_replies(channel=channel, ts=thread_ts, include_all_metadata=True,
                                                         limit=200, cursor=cursor)
                if any(kit.finishes(m.get("metadata"), request) for m in page.get("messages") or []):
                    return True
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not page.get("has_more") or not cursor:
                    return False
        except SlackApiError as exc:
            log.warning("conversations.replies failed: %s; the answer is posted without looking",
                        exc.response.get("error"))
            return False

    def ephemeral(self, channel: str, user: str, thread_ts: str | None, text: str) -> None:
        if not channel or not user:
            return
        try:
            # composed here from our own words and stored state (ids, reasons), so sent as markup
            self.client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts,
                                           blocks=[kit.section(text)])
        except SlackApiError as exc:
            log.warning("chat.postEphemeral failed: %s", exc.response.get("error"))

    def upload_csv(self, channel: str, thread_ts: str, content: str, *, filename: str, title: str,
                   comment: str) -> str | None:
        """Attach a CSV file to the thread; None when it worked, else Slack's error code."""
        try:
            self.client.files_upload_v2(channel=channel, thread_ts=thread_ts, content=content, filename=filename,
                                        title=title, initial_comment=comment)
            return None
        except SlackApiError as exc:
            log.warning("CSV upload failed: %s", exc.response.get("error"))
            return str(exc.response.get("error"))

    def respond(self, response_url: str, text: str, blocks: list[dict] | None = None) -> None:
        """An answer only the person who ran a slash command sees, through the command's ``response_url`` (it
        works in channels the bot is not in, where ``chat.postEphemeral`` cannot). ``blocks`` None: ``text``
        shown as written (neutralised)."""
        if not response_url:
            return
        try:
            response = WebhookClient(response_url, timeout=15).send(
                text=kit.clip(kit.plain(text), kit.MAX_TEXT_CHARS), blocks=blocks or kit.text_blocks(text, self.keep),
                response_type="ephemeral", replace_original=False)
            if response.status_code != 200:
                log.warning("response_url answered %s", response.status_code)
        except Exception as exc:  # the asker sees nothing; the run itself is recorded in the audit
            log.warning("response_url failed: %s", type(exc).__name__)

    def thread_status(self, channel: str, thread_ts: str, status: str) -> None:
        """The status line under an assistant thread ("Purging 84 pages…"; "" clears it). Cosmetic: failures are
        logged only."""
        try:
            self.client.assistant_threads_setStatus(channel_id=channel, thread_ts=thread_ts, status=status)
        except SlackApiError as exc:
            log.info("assistant.threads.setStatus failed: %s", exc.response.get("error"))

    def suggest_prompts(self, channel: str, thread_ts: str, title: str, prompts: list[dict[str, str]]) -> None:
        try:
            self.client.assistant_threads_setSuggestedPrompts(channel_id=channel, thread_ts=thread_ts, title=title,
                                                              prompts=prompts)
        except SlackApiError as exc:
            log.warning("assistant.threads.setSuggestedPrompts failed: %s", exc.response.get("error"))

    def publish_home(self, user: str, view: dict) -> None:
        """Show ``view`` as ``user``'s Home tab (``views.publish``)."""
        try:
            self.client.views_publish(user_id=user, view=view)
        except SlackApiError as exc:
            log.warning("views.publish failed: %s", exc.response.get("error"))

    def open_view(self, trigger_id: str, view: dict) -> bool:
        """Open a modal for the person whose click gave ``trigger_id`` (valid for 3 s)."""
        try:
            self.client.views_open(trigger_id=trigger_id, view=view)
            return True
        except SlackApiError as exc:
            log.warning("views.open failed: %s", exc.response.get("error"))
            return False
