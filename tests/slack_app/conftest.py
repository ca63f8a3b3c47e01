"""The Slack app end to end: Bolt in HTTP mode on a loopback port, a loopback Slack Web API, the real cache stack.

``slack`` builds a ``Harness``: config from ``fresh_stack.config_dict()`` with Slack user ids as approvers and
its own SQLite files in ``tmp_path``; ``restart()`` replaces the app (new Agent, new Bolt app, new port) on the
same files, as a redeploy would.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any

import pytest

from agent.config import AppConfig, parse_config
from agent.service.agent import Agent
from slack_app.app import SlackFrontEnd
from slack_app.blocks import APPROVE_ACTION, DENY_ACTION
from slack_app.server import SlackHTTPServer
from slack_app.slack_api import make_client, slack_context
from tests.agent.conftest import Clock
from tests.fakes.slack import FakeSlack, SlackSender, block_actions, is_report, mention, message, slash_command

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "CWEBTEAM"
APPROVERS = ["UALICE", "UCAROL"]
BIG = "purge " + " ".join(f"<https://shop.example/products/{c}/{p}>" for c, p in
                          [("shoes", "runner"), ("shoes", "hiker"), ("shoes", "loafer"), ("hats", "beanie")])
SMALL = "these still show the old price: <https://shop.example/pricing>"

_ts = itertools.count(1)


def new_ts() -> str:
    return f"1800000{next(_ts):03d}.000200"


class Harness:
    def __init__(self, config: AppConfig, fake: FakeSlack, clock: Clock, **front_options: Any):
        self.config = config
        self.fake = fake
        self.clock = clock
        self.front_options = front_options
        self.instances: list[tuple[SlackHTTPServer, SlackFrontEnd]] = []
        self.start()

    def start(self) -> None:
        self.server, self.front, self.sender = self.new_instance()

    def new_instance(self) -> tuple[SlackHTTPServer, SlackFrontEnd, SlackSender]:
        """Another app on the same files (a restart, or a second replica)."""
        client = make_client("xoxb-test-token", self.fake.api_url)
        agent = Agent(self.config, context=slack_context(self.config, client, now=self.clock))
        front = SlackFrontEnd(agent, client, signing_secret=SECRET, **self.front_options)
        server = SlackHTTPServer(front.app, port=0).start()
        self.instances.append((server, front))
        return server, front, SlackSender(server.url + "/slack/events", SECRET)

    def restart(self) -> None:
        self._stop(self.server, self.front)
        self.start()

    def stop_all(self) -> None:
        for server, front in self.instances:
            self._stop(server, front)

    @staticmethod
    def _stop(server: SlackHTTPServer, front: SlackFrontEnd) -> None:
        if getattr(front, "_stopped", False):
            return
        front._stopped = True
        server.stop()
        front.wait_idle(120)
        front.close()
        front.agent.close()

    def wait_received(self, count: int, front=None) -> None:
        """Wait until ``count`` requests reached the app's listeners (Bolt may answer before the listener ran)."""
        front = front or self.front
        self.fake.wait_for(lambda: front.received >= count, timeout=10, what=f"{count} requests at the listeners")

    def send_event(self, event: dict, **kwargs: Any) -> int:
        before = self.front.received
        status, body, _ = self.sender.event(event, **kwargs)
        if status == 200:
            self.wait_received(before + 1)
        return status

    def idle(self) -> None:
        for _, front in self.instances:
            if not getattr(front, "_stopped", False):
                assert front.wait_idle(120), "runs did not finish"

    # --- a conversation -------------------------------------------------------------------------------

    def mention(self, text: str, user: str = "UBOB", **kwargs: Any) -> str:
        """Mention the bot in the channel (a new thread); wait for the run; return the thread ts."""
        ts = new_ts()
        assert self.send_event(mention(text, user=user, channel=CHANNEL, ts=ts), **kwargs) == 200
        self.idle()
        return ts

    def dm(self, text: str, user: str = "UBOB", channel: str = "DBOB") -> str:
        ts = new_ts()
        assert self.send_event(message(text, user=user, channel=channel, ts=ts)) == 200
        self.idle()
        return ts

    def thread(self, thread_ts: str, channel: str = CHANNEL) -> list[dict]:
        return self.fake.in_thread(channel, thread_ts)

    def approval_message(self, thread_ts: str) -> dict:
        found = [m for m in self.thread(thread_ts) if buttons(m)]
        assert len(found) == 1, f"expected one message with buttons, got {self.thread(thread_ts)}"
        return copy.deepcopy(found[0])  # as the clicker's Slack client saw it, even after later updates

    def click(self, thread_ts: str, user: str, action: str = "approve", *, message: dict | None = None,
              sender: SlackSender | None = None, wait: bool = True) -> tuple[int, str]:
        message = message or self.approval_message(thread_ts)
        element = next(e for e in buttons(message)
                       if e["action_id"] == (APPROVE_ACTION if action == "approve" else DENY_ACTION))
        payload = block_actions(user=user, channel=CHANNEL, message_ts=message["ts"], thread_ts=thread_ts,
                                action_id=element["action_id"], value=element["value"])
        front = self.front if sender in (None, self.sender) else next(
            f for srv, f in self.instances if sender.url.startswith(srv.url))
        before = front.received
        status, body, _ = (sender or self.sender).interaction(payload)
        if wait and status == 200:
            self.wait_received(before + 1, front)
            self.idle()
        return status, body

    def command(self, text: str, user: str = "UBOB", channel: str = CHANNEL, *, trigger_id: str | None = None,
                wait: bool = True) -> tuple[int, float]:
        """``/cachebot <text>`` as Slack posts it (signed form fields); wait for the run; (status, seconds to ack)."""
        fields = slash_command(text, user=user, channel=channel, response_url=self.fake.response_url(),
                               trigger_id=trigger_id)
        before = self.front.received
        status, _, seconds = self.sender.command(fields)
        if wait and status == 200:
            self.wait_received(before + 1)
            self.idle()
        return status, seconds

    def channel_messages(self, channel: str = CHANNEL) -> list[dict]:
        """Messages posted in the channel itself (not in a thread), oldest first."""
        return [m for m in self.fake.messages.values() if m["channel"] == channel and not m.get("thread_ts")]

    def ephemerals(self, user: str) -> list[str]:
        return [c.args["text"] for c in self.fake.calls_to("chat.postEphemeral", user=user)]

    def reports(self, thread_ts: str) -> list[dict]:
        return [m for m in self.thread(thread_ts) if is_report(m)]


def buttons(message: dict) -> list[dict]:
    return [e for b in (message.get("blocks") or []) if b.get("type") == "actions" for e in b["elements"]]


def all_text(message: dict) -> str:
    parts = [message.get("text") or ""]
    for block in message.get("blocks") or []:
        parts.append(json.dumps(block, ensure_ascii=False))
    return "\n".join(parts)


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    yield fake
    fake.close()


@pytest.fixture
def slack(fresh_stack, fake_slack, tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """Start the Slack app on the real stack; keyword arguments override config sections (merged)."""
    harnesses: list[Harness] = []

    def start(*, front_options: dict | None = None, **sections: Any) -> Harness:
        data = fresh_stack.config_dict()
        data["approval"] = {**data["approval"], "threshold": 2, "approvers": APPROVERS, "expiry_minutes": 30}
        data["storage"] = {"sqlite_path": str(tmp_path / "state" / "state.sqlite")}
        for key, value in sections.items():
            data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
        harness = Harness(parse_config(data), fake_slack, Clock(), **(front_options or {}))
        harnesses.append(harness)
        return harness

    yield start
    for harness in harnesses:
        harness.stop_all()


# --- what Slack would render: links and formatting in mrkdwn (issue 9, item 9) --------------------------------

_MARKUP_LINK = re.compile(r"<((?:https?|ftp|mailto):[^>|]*)(?:\|[^>]*)?>", re.IGNORECASE)
_BARE_URL = re.compile(r"(?:https?|ftp)://[^\s<>`]+", re.IGNORECASE)
OUR_TOKENS = re.compile(r"<@[UW][A-Z0-9]+>|<!subteam\^[A-Z0-9]+>")


def mrkdwn_objects(message_or_blocks) -> list[dict]:
    """Every mrkdwn text object in a message's blocks (section text and fields, context elements, confirms)."""
    blocks = message_or_blocks.get("blocks") if isinstance(message_or_blocks, dict) else message_or_blocks
    found: list[dict] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn" and "text" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks or [])
    return found


def outside_code(text: str) -> str:
    """The parts of a mrkdwn text that are not inside an inline code span (what Slack formats and links)."""
    return "\n".join(part for index, part in enumerate(text.split("`")) if index % 2 == 0)


def live_links(obj: dict, *, assume_autolink: bool = False) -> list[str]:
    """The URLs Slack would make clickable in one mrkdwn object: ``<url|label>`` markup anywhere, and bare URLs
    outside code spans unless the object is ``verbatim``. ``assume_autolink``: as if ``verbatim`` did nothing, to
    check that the escaping alone keeps a link dead."""
    text = obj["text"]
    links = [m.group(1) for m in _MARKUP_LINK.finditer(text)]
    if assume_autolink or not obj.get("verbatim"):
        links += _BARE_URL.findall(outside_code(text))
    return links


def link_hosts(obj: dict, *, assume_autolink: bool = False) -> set[str]:
    return {urlsplit(link).hostname or "" for link in live_links(obj, assume_autolink=assume_autolink)}


def assert_inert(obj: dict) -> None:
    """No markup of a user's in this mrkdwn object: ``<``/``>`` only in our own mention tokens, every ``&`` an
    entity, backticks balanced (every code span closed)."""
    text = OUR_TOKENS.sub("", obj["text"])
    assert "<" not in text and ">" not in text, obj["text"]
    assert not re.search(r"&(?!amp;|lt;|gt;)", text), obj["text"]
    assert text.count("`") % 2 == 0, obj["text"]
