"""The weekly usage digest in Slack (config ``digest: {channel: C123, weekday: mon, hour: 9}``).

``post_digest`` posts ``agent.words.digest_text`` for the last ``digest.days`` days to ``digest.channel``
(``cachebot digest --post`` does it by hand). ``DigestScheduler`` runs in ``cachebot slack``: once a minute it
checks whether it is the configured weekday and hour (UTC); the replica that wins the claim
``digest:<ISO year>-W<week>`` posts, so N replicas post one digest a week.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

from slack_sdk import WebClient

from agent.config import WEEKDAYS, DigestConfig
from agent.storage.audit import AuditStore
from agent.words import digest_text
from slack_app.blocks import code, neutralise, section

log = logging.getLogger("cachebot.slack")


def digest_figures(audit: AuditStore, digest: DigestConfig, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(timezone.utc)
    return audit.stats(since=now - timedelta(days=digest.days))


# What people asked to purge (paths, sections, URLs) is shown as code: exact and inert.
AS_CODE = ("path", "section", "url")


def slack_safe(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures with every string that ends up in the digest's mrkdwn neutralised (``blocks.neutralise``)."""
    def shown(key: str, item: Any) -> Any:
        if not isinstance(item, str):
            return item
        return code(item) if key in AS_CODE else neutralise(item)

    def row(value: Any) -> Any:
        return {key: shown(key, item) for key, item in value.items()} if isinstance(value, dict) else value

    return {key: [row(item) for item in value] if isinstance(value, list) else value for key, value in figures.items()}


def post_digest(audit: AuditStore, client: WebClient, digest: DigestConfig, now: datetime | None = None) -> str:
    """Post the digest to its channel; returns the text posted."""
    text = digest_text(slack_safe(digest_figures(audit, digest, now)), days=digest.days)
    client.chat_postMessage(channel=digest.channel, text=text, blocks=[section(text)])
    return text


def due_key(digest: DigestConfig, now: datetime) -> str | None:
    """The claim key for this week's digest when ``now`` is its weekday and hour (UTC), else None."""
    now = now.astimezone(timezone.utc)
    if WEEKDAYS[now.weekday()] != digest.weekday or now.hour != digest.hour:
        return None
    year, week, _ = now.isocalendar()
    return f"digest:{digest.channel}:{year}-W{week:02d}"


class DigestScheduler:
    def __init__(self, audit: AuditStore, client: WebClient, digest: DigestConfig, claims, *,
                 interval: float = 60.0, clock=lambda: datetime.now(timezone.utc)):
        self.audit, self.client, self.digest, self.claims = audit, client, digest, claims
        self.interval, self.clock = interval, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cachebot-digest", daemon=True)

    def start(self) -> DigestScheduler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def tick(self) -> bool:
        """Post if due and no replica posted this week's yet. True when this call posted."""
        now = self.clock()
        key = due_key(self.digest, now)
        if key is None or not self.claims.claim(key):
            return False
        try:
            post_digest(self.audit, self.client, self.digest, now)
        except Exception:
            log.exception("the weekly digest could not be posted")
            self.claims.release(key)  # let a later tick (or another replica) try again
            return False
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:
                log.exception("digest check failed")
