"""A loopback Slack Web API (stdlib ThreadingHTTPServer) that records calls and answers like Slack.

Point ``WebClient(base_url=fake.api_url)`` at it. It implements what cachebot uses: ``auth.test``,
``chat.postMessage`` (to a user id: their DM, ``D…``), ``chat.update``, ``chat.postEphemeral``,
``chat.getPermalink``, ``conversations.replies`` (the bot's messages in a thread, with their ``metadata`` when
``include_all_metadata`` is set, cursor-paginated), ``assistant.threads.setStatus`` / ``setSuggestedPrompts``,
``files.getUploadURLExternal`` + the upload URL + ``files.completeUploadExternal``,
``usergroups.users.list``, ``views.open``, ``views.publish``, and slash commands' ``response_url``
(``response_url()``; answers recorded as ``response_url`` calls). ``rate_limit_once(method)`` makes the next call to
``method`` answer ``429 ratelimited`` with ``Retry-After`` (as Slack does), once; ``fail_next(method, status, times)``
makes the next ``times`` calls answer that HTTP status (a 500, 502, 503 from Slack's edge) without doing anything.
Also: helpers to sign and send Slack requests (events, block_actions) to an app under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from agent.service.recovery import RESTARTED
from slack_app import blocks as kit
from slack_app.blocks import REPORT_BLOCK_ID

BOT_USER_ID = "UCACHEBOT"
BOT_ID = "BCACHEBOT"
TEAM_ID = "T0CACHE"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.uploads: dict[str, bytes] = {}
        self.user_groups: dict[str, list[str]] = {}
        self.messages: dict[str, dict[str, Any]] = {}  # ts -> the message as it stands now
        self.views: dict[str, dict[str, Any]] = {}  # view id -> the modal or Home tab as it stands now
        self.closed_channels: set[str] = set()  # chat.postMessage answers not_in_channel there
        self.socket_url: str | None = None  # what apps.connections.open hands out (tests/fakes/socket_mode.py)
        self._rate_limits: dict[str, int] = {}
        self._failures: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        handler = type("FakeSlackHandler", (_Handler,), {"fake": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler, bind_and_activate=False)
        self.httpd.request_queue_size = 128
        self.httpd.server_bind()
        self.httpd.server_activate()
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- test controls and queries -----------------------------------------------------------------------

    def response_url(self, name: str = "1") -> str:
        """A slash command's ``response_url`` on this fake (what the app posts there is recorded)."""
        return f"http://127.0.0.1:{self.port}/commands/{TEAM_ID}/{name}"

    def responses(self) -> list[dict[str, Any]]:
        """What the app posted to response URLs, oldest first."""
        return [c.args for c in self.calls_to("response_url")]

    def rate_limit_once(self, method: str, retry_after: int = 1) -> None:
        self._rate_limits[method] = retry_after

    def fail_next(self, method: str, status: int = 500, times: int = 1) -> None:
        """The next ``times`` calls to ``method`` answer ``status`` (nothing is posted or changed)."""
        with self._lock:
            self._failures.setdefault(method, []).extend([status] * times)

    def failed(self, method: str) -> list[Call]:
        """Calls to ``method`` answered with a 5xx."""
        with self._lock:
            return [c for c in self.calls if c.method == method and c.status >= 500]

    def calls_to(self, method: str, **match: Any) -> list[Call]:
        with self._lock:
            calls = list(self.calls)
        return [c for c in calls if c.method == method and c.status == 200
                and all(c.args.get(k) == v for k, v in match.items())]

    def rate_limited(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and c.status == 429]

    def in_thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Messages posted in a thread (current version after updates), oldest first."""
        with self._lock:
            return [m for m in self.messages.values() if m["channel"] == channel and m.get("thread_ts") == thread_ts]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; calls: "
                             f"{[(c.method, c.status) for c in self.calls]}")

    # --- the API -----------------------------------------------------------------------------------------

    def handle(self, method: str, args: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        retry_after = self._rate_limits.pop(method, None)
        if retry_after is not None:
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}
        with self._lock:
            failures = self._failures.get(method)
            status = failures.pop(0) if failures else None
        if status is not None:
            return status, {"ok": False, "error": "internal_error"}, {}
        answer = getattr(self, "api_" + method.replace(".", "_"), None)
        if answer is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        return 200, answer(args), {}

    def next_ts(self) -> str:
        return f"{1700000000 + next(self._ts)}.000100"

    def api_auth_test(self, args: dict) -> dict:
        return {"ok": True, "url": "https://cachebot-test.slack.com/", "team": "Test", "user": "cachebot",
                "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False}

    def api_chat_postMessage(self, args: dict) -> dict:
        if not args.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if args["channel"] in self.closed_channels:
            return {"ok": False, "error": "not_in_channel"}
        ts = self.next_ts()
        channel = dm_channel(args["channel"])  # a user id: the app's DM with that user, as Slack does
        message = {"ts": ts, "channel": channel, "thread_ts": args.get("thread_ts"), "text": args.get("text"),
                   "blocks": args.get("blocks"), "metadata": args.get("metadata"), "updates": 0}
        with self._lock:
            self.messages[ts] = message
        return {"ok": True, "channel": channel, "ts": ts,
                "message": {"text": args.get("text"), "ts": ts, "bot_id": BOT_ID, "user": BOT_USER_ID}}

    def api_chat_getPermalink(self, args: dict) -> dict:
        channel, ts = args.get("channel"), args.get("message_ts")
        if not channel or not ts:
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True, "channel": channel,
                "permalink": f"https://cachebot-test.slack.com/archives/{channel}/p{ts.replace('.', '')}"}

    def api_chat_update(self, args: dict) -> dict:
        with self._lock:
            message = self.messages.get(args.get("ts"))
            if message is None or message["channel"] != args.get("channel"):
                return {"ok": False, "error": "message_not_found"}
            message.update(text=args.get("text"), blocks=args.get("blocks"), updates=message["updates"] + 1)
            if "metadata" in args:  # Slack keeps a message's metadata unless the update sends new metadata
                message["metadata"] = args.get("metadata")
        return {"ok": True, "channel": args["channel"], "ts": args["ts"], "text": args.get("text")}

    def api_conversations_replies(self, args: dict) -> dict:
        """A thread's messages, oldest first, as Slack gives them: ``limit`` per page (default 1000), then
        ``has_more`` and ``response_metadata.next_cursor``; ``metadata`` only with ``include_all_metadata``. (The
        people's messages are not stored here: a thread is its bot messages, plus its parent when that is one.)"""
        channel, ts = args.get("channel"), args.get("ts")
        if not channel or not ts:
            return {"ok": False, "error": "invalid_arguments"}
        with self._lock:
            thread = sorted((dict(m) for m in self.messages.values() if m["channel"] == channel
                             and (m.get("thread_ts") == ts or m["ts"] == ts)), key=lambda m: float(m["ts"]))
        if not thread:
            return {"ok": False, "error": "thread_not_found"}
        try:
            start = int(base64.urlsafe_b64decode(args["cursor"]).decode().removeprefix("offset:")) \
                if args.get("cursor") else 0
            limit = max(1, min(int(args.get("limit") or 1000), 1000))
        except (ValueError, UnicodeDecodeError):
            return {"ok": False, "error": "invalid_cursor"}
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        page = [_as_listed(m, with_metadata) for m in thread[start:start + limit]]
        more = start + limit < len(thread)
        cursor = base64.urlsafe_b64encode(f"offset:{start + limit}".encode()).decode() if more else ""
        return {"ok": True, "messages": page, "has_more": more, "response_metadata": {"next_cursor": cursor}}

    def api_chat_postEphemeral(self, args: dict) -> dict:
        if not args.get("user"):
            return {"ok": False, "error": "user_not_in_channel"}
        return {"ok": True, "message_ts": self.next_ts()}

    def api_views_open(self, args: dict) -> dict:
        view = args.get("view")
        if not args.get("trigger_id"):
            return {"ok": False, "error": "invalid_arguments"}
        if not isinstance(view, dict) or view.get("type") != "modal" or not view.get("title"):
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True, "view": self._stored_view(view, None)}

    def api_views_publish(self, args: dict) -> dict:
        view = args.get("view")
        if not args.get("user_id"):
            return {"ok": False, "error": "invalid_arguments"}
        if not isinstance(view, dict) or view.get("type") != "home":
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True, "view": self._stored_view(view, args["user_id"])}

    def _stored_view(self, view: dict, user: str | None) -> dict:
        """The view as Slack returns it: ours plus ids, team, state and hash."""
        view_id = "V" + uuid.uuid4().hex[:10].upper()
        stored = {**view, "id": view_id, "team_id": TEAM_ID, "app_id": "A0CACHEBOT", "bot_id": BOT_ID,
                  "state": {"values": {}}, "hash": uuid.uuid4().hex[:16], "private_metadata":
                  view.get("private_metadata", ""), "callback_id": view.get("callback_id", ""), "user": user}
        with self._lock:
            self.views[view_id] = stored
        return stored

    def api_apps_connections_open(self, args: dict) -> dict:
        if args.get("_token_type") != "app":
            return {"ok": False, "error": "not_allowed_token_type"}  # Slack's answer to a bot token here
        if self.socket_url is None:
            return {"ok": False, "error": "socket_mode_not_enabled"}
        return {"ok": True, "url": f"{self.socket_url}?ticket={uuid.uuid4()}&app_id=A0CACHEBOT"}

    def api_assistant_threads_setStatus(self, args: dict) -> dict:
        if not args.get("channel_id") or not args.get("thread_ts") or "status" not in args:
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True}

    def api_assistant_threads_setSuggestedPrompts(self, args: dict) -> dict:
        prompts = args.get("prompts")
        if not args.get("channel_id") or not isinstance(prompts, list) or not 1 <= len(prompts) <= 4:
            return {"ok": False, "error": "invalid_arguments"}
        if not all(isinstance(p, dict) and p.get("title") and p.get("message") for p in prompts):
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True}

    def api_usergroups_users_list(self, args: dict) -> dict:
        group = args.get("usergroup")
        if group not in self.user_groups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": self.user_groups[group]}

    def api_files_getUploadURLExternal(self, args: dict) -> dict:
        file_id = "F" + uuid.uuid4().hex[:10].upper()
        return {"ok": True, "file_id": file_id, "upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}"}

    def api_files_completeUploadExternal(self, args: dict) -> dict:
        files = args.get("files") or []
        missing = [f["id"] for f in files if f["id"] not in self.uploads]
        if missing:
            return {"ok": False, "error": "file_not_found"}
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title"), "name": f.get("title")} for f in files]}


def _as_listed(message: dict[str, Any], with_metadata: bool) -> dict[str, Any]:
    """A stored bot message as conversations.replies lists it."""
    listed = {"type": "message", "ts": message["ts"], "text": message.get("text") or "",
              "bot_id": BOT_ID, "user": BOT_USER_ID, "app_id": "A0CACHEBOT"}
    if message.get("thread_ts"):
        listed["thread_ts"] = message["thread_ts"]
    if message.get("blocks"):
        listed["blocks"] = message["blocks"]
    if with_metadata and message.get("metadata"):
        listed["metadata"] = message["metadata"]
    return listed


def dm_channel(channel: str) -> str:
    """Where a message posted to ``channel`` lands: a user id (U…/W…) means the app's DM with them (D…)."""
    return "D" + channel[1:] if channel[:1] in ("U", "W") else channel


class FakeSlackProcess:
    """A ``FakeSlack`` in its own process, as the real Slack is never in the app's process: its HTTP threads
    do not take the GIL from the app being measured (benchmarks). ``calls(method)`` fetches the call log
    (as ``(args, status)`` pairs) over a pipe."""

    def __init__(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve_fake_slack, args=(child,), daemon=True)
        self._process.start()
        self.api_url: str = self._conn.recv()

    def calls(self, method: str) -> list[dict[str, Any]]:
        """The arguments of every successful call to ``method``, in order."""
        self._conn.send(("calls", method))
        return self._conn.recv()

    def calls_at(self, method: str) -> list[tuple[dict[str, Any], float]]:
        """``calls`` with the time (``time.time()``) each call arrived (benchmarks: event to first message)."""
        self._conn.send(("calls_at", method))
        return self._conn.recv()

    def close(self) -> None:
        try:
            self._conn.send(("close", None))
            self._conn.recv()
        except (EOFError, OSError):
            pass
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()


def _serve_fake_slack(conn) -> None:
    fake = FakeSlack()
    conn.send(fake.api_url)
    while True:
        command, arg = conn.recv()
        if command == "calls":
            conn.send([c.args for c in fake.calls_to(arg)])
        elif command == "calls_at":
            conn.send([(c.args, c.at) for c in fake.calls_to(arg)])
        elif command == "close":
            fake.close()
            conn.send(True)
            return


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSlack
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if parts.path.startswith("/upload/"):
            file_id = parts.path.rsplit("/", 1)[1]
            self.fake.uploads[file_id] = raw
            with self.fake._lock:
                self.fake.calls.append(Call("upload", {"file_id": file_id, "bytes": len(raw)}, time.time()))
            self._reply(200, f"OK - {len(raw)}".encode(), "text/plain", {})
            return
        if parts.path.startswith("/commands/"):  # a slash command's response_url: JSON in, "ok" out
            args = json.loads(raw or b"{}")
            with self.fake._lock:
                self.fake.calls.append(Call("response_url", {**args, "path": parts.path}, time.time()))
            self._reply(200, b"ok", "text/plain", {})
            return
        if not parts.path.startswith("/api/"):
            self._reply(404, b"not found", "text/plain", {})
            return
        method = parts.path[len("/api/"):]
        args = _parse_args(raw, self.headers.get("Content-Type") or "", parts.query)
        if method == "apps.connections.open":  # the one method that wants the app-level token (xapp-)
            app_token = (self.headers.get("Authorization") or "").startswith("Bearer xapp-")
            args["_token_type"] = "app" if app_token else "other"
        if not (self.headers.get("Authorization") or "").startswith("Bearer ") and "token" not in args:
            status, body, headers = 200, {"ok": False, "error": "not_authed"}, {}
        else:
            status, body, headers = self.fake.handle(method, args)
        with self.fake._lock:
            self.fake.calls.append(Call(method, args, time.time(), status, body))
        self._reply(status, json.dumps(body).encode(), "application/json", headers)

    do_GET = do_POST

    def _reply(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def _parse_args(raw: bytes, content_type: str, query: str) -> dict[str, Any]:
    args: dict[str, Any] = {k: v[0] for k, v in parse_qs(query).items()}
    if "json" in content_type:
        args.update(json.loads(raw or b"{}"))
    elif raw:
        args.update({k: v[0] for k, v in parse_qs(raw.decode()).items()})
    for key in ("blocks", "files", "attachments", "view", "prompts", "metadata"):  # form-encoded JSON arguments
        if isinstance(args.get(key), str):
            try:
                args[key] = json.loads(args[key])
            except ValueError:
                pass
    return args


# --- sending signed Slack requests to an app ------------------------------------------------------------

def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 request signature: HMAC-SHA256 of ``v0:{timestamp}:{body}`` with the signing secret."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    base = f"v0:{timestamp}:{body}".encode()
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


def post(url: str, body: str, headers: dict[str, str], content_type: str) -> tuple[int, str, float]:
    """POST and return (status, body, seconds)."""
    request = urllib.request.Request(url, data=body.encode(), method="POST",
                                     headers={**headers, "Content-Type": content_type})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(), time.perf_counter() - started
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), time.perf_counter() - started


def event_payload(event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """An Events API ``event_callback`` envelope as Slack sends it."""
    return {
        "token": "legacy-verification-token", "team_id": TEAM_ID, "api_app_id": "A0CACHEBOT",
        "event": event, "type": "event_callback", "event_id": event_id or "Ev" + uuid.uuid4().hex[:10].upper(),
        "event_time": int(time.time()),
        "authorizations": [{"enterprise_id": None, "team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True,
                            "is_enterprise_install": False}],
        "is_ext_shared_channel": False, "event_context": "4-" + uuid.uuid4().hex,
    }


def mention(text: str, *, user: str, channel: str, ts: str, thread_ts: str | None = None) -> dict[str, Any]:
    event = {"type": "app_mention", "user": user, "text": f"<@{BOT_USER_ID}> {text}", "ts": ts, "channel": channel,
             "event_ts": ts, "team": TEAM_ID,
             "blocks": [{"type": "rich_text", "block_id": "b1", "elements": []}]}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def message(text: str, *, user: str | None, channel: str, ts: str, channel_type: str = "im",
            thread_ts: str | None = None, **extra: Any) -> dict[str, Any]:
    event = {"type": "message", "channel": channel, "text": text, "ts": ts, "event_ts": ts,
             "channel_type": channel_type, "team": TEAM_ID, **extra}
    if user:
        event["user"] = user
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def block_actions(*, user: str, channel: str, message_ts: str, thread_ts: str, action_id: str, value: str) -> dict:
    """An interactivity ``block_actions`` payload for a button click in a message in a thread."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM_ID},
        "api_app_id": "A0CACHEBOT", "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False,
                      "thread_ts": thread_ts},
        "trigger_id": "1.2.3", "team": {"id": TEAM_ID, "domain": "test"},
        "enterprise": None, "is_enterprise_install": False,
        "channel": {"id": channel, "name": "web-team"},
        "message": {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "ts": message_ts,
                    "thread_ts": thread_ts, "text": "approval"},
        "state": {"values": {}},
        "response_url": "https://hooks.slack.invalid/actions/T0/1/x",
        "actions": [{"action_id": action_id, "block_id": "cachebot_approval", "text": {"type": "plain_text",
                     "text": "Approve"}, "value": value, "type": "button", "action_ts": str(time.time())}],
    }


def slash_command(text: str, *, user: str, channel: str, response_url: str, command: str = "/cachebot",
                  trigger_id: str | None = None) -> dict[str, str]:
    """The form fields Slack posts for a slash command."""
    return {
        "token": "legacy-verification-token", "team_id": TEAM_ID, "team_domain": "test", "channel_id": channel,
        "channel_name": "web-team", "user_id": user, "user_name": user.lower(), "command": command, "text": text,
        "api_app_id": "A0CACHEBOT", "is_enterprise_install": "false", "response_url": response_url,
        "trigger_id": trigger_id or f"{int(time.time())}.{uuid.uuid4().int % 10**9}.{uuid.uuid4().hex[:32]}",
    }


def message_action(*, user: str, channel: str, message_ts: str, text: str, callback_id: str,
                   thread_ts: str | None = None, author: str = "UMARKETING") -> dict[str, Any]:
    """The interactivity payload of a message shortcut (``message_action``) on someone's message."""
    message = {"type": "message", "user": author, "ts": message_ts, "text": text, "team": TEAM_ID}
    if thread_ts:
        message["thread_ts"] = thread_ts
    return {
        "type": "message_action", "token": "legacy-verification-token", "action_ts": str(time.time()),
        "team": {"id": TEAM_ID, "domain": "test"}, "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID,
                                                             "name": user.lower()},
        "channel": {"id": channel, "name": "web-team"}, "is_enterprise_install": False, "enterprise": None,
        "callback_id": callback_id, "trigger_id": f"{int(time.time())}.{uuid.uuid4().hex[:24]}",
        "response_url": "https://hooks.slack.invalid/app/T0/1/x", "message_ts": message_ts, "message": message,
    }


def view_submission(view: dict[str, Any], *, user: str, selected: dict[str, dict[str, list[str]]]) -> dict:
    """A ``view_submission`` for a modal Slack stored (``FakeSlack.views``): ``selected`` is
    block_id -> action_id -> the values of the ticked checkbox options."""
    values: dict[str, dict[str, Any]] = {}
    options = {(b.get("block_id"), b["element"]["action_id"]): b["element"].get("options") or []
               for b in view.get("blocks") or [] if b.get("type") == "input"}
    for block_id, actions in selected.items():
        for action_id, chosen in actions.items():
            known = options.get((block_id, action_id), [])
            picked = [o for o in known if o["value"] in chosen] or [
                {"text": {"type": "plain_text", "text": v}, "value": v} for v in chosen]
            values.setdefault(block_id, {})[action_id] = {"type": "checkboxes", "selected_options": picked}
    return {
        "type": "view_submission", "team": {"id": TEAM_ID, "domain": "test"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM_ID},
        "api_app_id": "A0CACHEBOT", "token": "legacy-verification-token", "trigger_id": "4.5.6",
        "view": {**view, "state": {"values": values}}, "response_urls": [], "is_enterprise_install": False,
        "enterprise": None,
    }


def assistant_thread_started(*, user: str, channel: str, thread_ts: str, context_channel: str = "") -> dict:
    """The ``assistant_thread_started`` event: someone opened an assistant thread (in their DM with the app)."""
    return {"type": "assistant_thread_started", "event_ts": f"{time.time():.6f}",
            "assistant_thread": {"user_id": user, "channel_id": channel, "thread_ts": thread_ts,
                                 "context": {"channel_id": context_channel or None, "team_id": TEAM_ID,
                                             "enterprise_id": None}}}


def home_opened(user: str, *, tab: str = "home") -> dict[str, Any]:
    """The ``app_home_opened`` event (inside an ``event_callback``)."""
    return {"type": "app_home_opened", "user": user, "channel": "D" + user[1:], "tab": tab,
            "event_ts": f"{time.time():.6f}"}


def home_block_actions(view: dict[str, Any], *, user: str, action_id: str, value: str) -> dict[str, Any]:
    """A button click on a Home tab (a published view): no channel, no message; the view comes with it."""
    return {
        "type": "block_actions", "api_app_id": "A0CACHEBOT", "token": "legacy-verification-token",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM_ID},
        "container": {"type": "view", "view_id": view["id"]}, "trigger_id": "7.8.9",
        "team": {"id": TEAM_ID, "domain": "test"}, "enterprise": None, "is_enterprise_install": False,
        "view": view,
        "actions": [{"action_id": action_id, "block_id": "cachebot_approval_0", "value": value, "type": "button",
                     "text": {"type": "plain_text", "text": "Approve"}, "action_ts": str(time.time())}],
    }


class SlackSender:
    """Signs and posts Slack requests to an app's ``/slack/events``."""

    def __init__(self, url: str, signing_secret: str):
        self.url = url
        self.secret = signing_secret

    def event(self, event: dict, *, event_id: str | None = None, retry_num: int | None = None,
              secret: str | None = None, timestamp: int | None = None, payload: dict | None = None):
        body = json.dumps(payload or event_payload(event, event_id=event_id))
        headers = sign(secret or self.secret, body, timestamp)
        if retry_num is not None:
            headers |= {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        return post(self.url, body, headers, "application/json")

    def command(self, fields: dict[str, str], *, secret: str | None = None, timestamp: int | None = None):
        """A slash command: form-encoded fields, signed."""
        body = urlencode(fields)
        return post(self.url, body, sign(secret or self.secret, body, timestamp), "application/x-www-form-urlencoded")

    def interaction(self, payload: dict, *, secret: str | None = None, timestamp: int | None = None):
        body = "payload=" + quote(json.dumps(payload))
        return post(self.url, body, sign(secret or self.secret, body, timestamp), "application/x-www-form-urlencoded")


def is_report(message: dict) -> bool:
    """A run's report: its summary block carries the report's block id (its words vary with the outcome)."""
    return any(b.get("block_id") == REPORT_BLOCK_ID for b in message.get("blocks") or [])


# --- what a request's thread says: the one definition of a final message --------------------------------------

RESTART_NOTICE_ENDINGS = ("The report follows.", "The answer follows.", "is waiting for approval.")
FINAL_EVENT_TYPE = kit.FINISHED_EVENT  # the app marks the message that ends a request (slack_app/blocks.py)


def message_role(message: dict) -> str:
    """What one bot message in a request's thread is, as it stands now: ``final`` (it ends the request: a report,
    an answer, a refusal, denied, expired, stopped) or an intermediate role: ``status`` ("Looking at…"), ``plan``,
    ``progress``, ``card`` (an approval request, open or decided), ``notice`` (said on the way, e.g. "picked up
    again after a restart; the report follows").

    Message ``metadata`` decides when the app sends it (``event_type`` ``cachebot_request_finished`` is final,
    any other cachebot event type is not). Without metadata the shape decides: the report's block id, the
    approval buttons, and the fixed texts the app puts on its intermediate messages (``slack_app/blocks.py``,
    ``agent/service/recovery.py``). Anything else is taken as final, so a stray extra message counts against
    the app (a duplicate), never for it."""
    event_type = (message.get("metadata") or {}).get("event_type")
    if event_type:
        return "final" if event_type == FINAL_EVENT_TYPE else "intermediate"
    if is_report(message):
        return "final"
    blocks = message.get("blocks") or []
    actions = {e.get("action_id") for b in blocks if b.get("type") == "actions" for e in b.get("elements") or []}
    text = message.get("text") or ""
    if actions - set(kit.OFFER_ACTION_IDS) or text.startswith("Request "):
        return "card"  # an approval card: open (Approve / Deny), expired (Request again), decided ("Request approved")
    if text.startswith("Looking ") and text.endswith("…"):  # blocks.looking_at
        return "status"
    if text == "The plan":
        return "plan"
    if text.startswith(("⏳", "✓ Finished")):
        return "progress"
    if text.startswith(RESTARTED) and (text.endswith(RESTART_NOTICE_ENDINGS) or "did not land" in text):
        return "notice"  # picked up again: the answer follows, or the request still waits for a decision
    return "final"


def final_messages(messages: list[dict]) -> list[dict]:
    """The messages among ``messages`` (one thread's, as ``FakeSlack.in_thread`` gives them) that end a request."""
    return [m for m in messages if message_role(m) == "final"]
