"""One live progress message per run, edited in place and throttled to Slack's rate limits; and, in assistant
threads, the thread's status line ("Purging 84 pages…", "Verifying 12/36…"), throttled the same way.

The agent reports a ``Progress`` event (phase, done, total) for every batch; posting each one would be
a message per URL and would hit ``chat.update``'s limit (about one a second per message). The first event posts
the message; later ones update it at most once per ``interval`` seconds; ``finish()`` writes the final state,
waiting out the rest of the interval if it has to. No timer thread: a skipped update is carried by the next
event or by ``finish()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from agent.service.events import PlanReady, Progress, ProgressEvent
from slack_app.blocks import assistant_status, progress_text, section
from slack_app.slack_api import SlackApi

log = logging.getLogger("cachebot.slack")


class ProgressMessage:
    def __init__(self, client: WebClient, channel: str, thread_ts: str, *, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self.ts: str | None = None
        self.phases: dict[str, tuple[int, int]] = {}
        self._last_sent = float("-inf")
        self._dirty = False
        self._lock = threading.Lock()

    def event(self, event: ProgressEvent) -> None:
        if not isinstance(event, Progress):
            return
        with self._lock:
            self.phases[event.phase] = (event.done, event.total)
            self._dirty = True
            if self.ts is None or self.clock() - self._last_sent >= self.interval:
                self._send(finished=False)

    def finish(self) -> None:
        """Write the final numbers (only if a progress message was started)."""
        with self._lock:
            if self.ts is None:
                return
            wait = self.interval - (self.clock() - self._last_sent)
            if wait > 0:
                self.sleep(wait)
            self._send(finished=True)

    def _send(self, *, finished: bool) -> None:
        text = progress_text(self.phases, finished=finished)
        try:
            if self.ts is None:
                response = self.client.chat_postMessage(channel=self.channel, thread_ts=self.thread_ts, text=text,
                                                        blocks=[section(text)])
                self.ts = response["ts"]
            else:
                self.client.chat_update(channel=self.channel, ts=self.ts, text=text, blocks=[section(text)])
        except SlackApiError as exc:  # progress is cosmetic: never let it break the run
            log.warning("progress update failed: %s", exc.response.get("error"))
        self._last_sent = self.clock()
        self._dirty = False


class ThreadStatus:
    """An assistant thread's status line while a run works (``assistant.threads.setStatus``): set at the start,
    updated from the plan and each batch at most once per ``interval``, cleared at the end."""

    def __init__(self, slack: SlackApi, channel: str, thread_ts: str, *, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.slack = slack
        self.channel = channel
        self.thread_ts = thread_ts
        self.interval = interval
        self.clock = clock
        self.phases: dict[str, tuple[int, int]] = {}
        self.pages: int | None = None
        self._last_sent = float("-inf")
        self._lock = threading.Lock()

    def start(self) -> None:
        self._send(assistant_status({}, None))

    def event(self, event: ProgressEvent) -> None:
        with self._lock:
            if isinstance(event, PlanReady):
                if event.plan.needs_approval:
                    self._send("Asking for approval…")
                    return
                self.pages = len(event.plan.pages) or None
            elif isinstance(event, Progress):
                self.phases[event.phase] = (event.done, event.total)
            else:
                return
            if self.clock() - self._last_sent >= self.interval:
                self._send(assistant_status(self.phases, self.pages))

    def clear(self) -> None:
        self.slack.thread_status(self.channel, self.thread_ts, "")

    def _send(self, text: str) -> None:
        self.slack.thread_status(self.channel, self.thread_ts, text)
        self._last_sent = self.clock()
