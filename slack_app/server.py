"""Running the Slack front end: HTTP mode (events + interactivity at ``/slack/events``, ``/healthz``) or Socket Mode.

Environment: ``SLACK_BOT_TOKEN``, ``SLACK_SIGNING_SECRET`` (HTTP mode), ``SLACK_APP_TOKEN`` (Socket Mode),
``SLACK_API_URL`` (Web API base URL, default https://slack.com/api/). Tokens are read here and handed to the
clients; they are never logged.

The HTTP server is the standard library's ``ThreadingHTTPServer``: one thread per request, each handed to
``App.dispatch``, which verifies the signature and timestamp (401 otherwise) and returns once the listener
has acked.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from slack_bolt import App, BoltRequest
from slack_sdk import WebClient

from agent.config import AppConfig
from agent.service.agent import Agent
from slack_app.app import SlackFrontEnd
from slack_app.digest import DigestScheduler
from slack_app.dispatch import DEFAULT_NICE, WorkerSpec
from slack_app.slack_api import make_client, slack_context

log = logging.getLogger("cachebot.slack")

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
MAX_BODY = 1 << 20  # Slack payloads are small; refuse anything absurd before reading it


class SetupError(Exception):
    """Something the operator has to fix (a missing environment variable); the message says what."""


@dataclass
class SlackSettings:
    bot_token: str = field(repr=False)  # secrets never in logs or reprs
    signing_secret: str = field(repr=False)
    app_token: str | None = field(repr=False)
    api_url: str = WebClient.BASE_URL

    @classmethod
    def from_env(cls, *, socket_mode: bool) -> SlackSettings:
        env = os.environ
        missing = [name for name in ("SLACK_BOT_TOKEN",) if not env.get(name)]
        missing += [] if socket_mode or env.get("SLACK_SIGNING_SECRET") else ["SLACK_SIGNING_SECRET"]
        missing += ["SLACK_APP_TOKEN"] if socket_mode and not env.get("SLACK_APP_TOKEN") else []
        if missing:
            raise SetupError(f"set {', '.join(missing)} in the environment")
        return cls(bot_token=env["SLACK_BOT_TOKEN"], signing_secret=env.get("SLACK_SIGNING_SECRET", ""),
                   app_token=env.get("SLACK_APP_TOKEN"), api_url=env.get("SLACK_API_URL") or WebClient.BASE_URL)


def build_front_end(config: AppConfig, settings: SlackSettings, *, workers: int = 0, intake_processes: int = 1,
                    worker_nice: int | None = None, **options) -> SlackFrontEnd:
    """``workers``: intake and agent runs in worker processes (``slack_app/dispatch.py``); 0: threads here."""
    client = make_client(settings.bot_token, settings.api_url)
    agent = Agent(config, context=slack_context(config, client))
    spec = None
    if workers:
        spec = WorkerSpec(config=config, bot_token=settings.bot_token, api_url=settings.api_url,
                          progress_interval=options.get("progress_interval", 1.0),
                          nice=DEFAULT_NICE if worker_nice is None else worker_nice,
                          log_level=logging.getLogger().getEffectiveLevel())
    front = SlackFrontEnd(agent, client, signing_secret=settings.signing_secret, workers=workers,
                          intake_processes=intake_processes, worker_spec=spec, **options)
    if front.dispatch.processes is not None:
        front.dispatch.processes.warm_up()
    return front


class SlackHTTPServer:
    """Bolt over the standard library's threading HTTP server. ``port=0`` picks a free port (see ``.port``)."""

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 3000):
        handler = type("SlackHandler", (_Handler,), {"bolt": app})
        self.httpd = _Server((host, port), handler)
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SlackHTTPServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="slack-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)


class _Server(ThreadingHTTPServer):
    # the default listen backlog (5) drops SYNs under a burst of concurrent deliveries; the client then
    # retransmits after 1 s, 3 s… which is an ack Slack considers late
    request_queue_size = 128
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    bolt: App
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        if urlsplit(self.path).path == HEALTH_PATH:
            self._send(200, json.dumps({"ok": True}).encode(), {"Content-Type": "application/json"})
        else:
            self._send(404, b"not found", {"Content-Type": "text/plain"})

    def do_POST(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        if parts.path != EVENTS_PATH:
            self._send(404, b"not found", {"Content-Type": "text/plain"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(413, b"too large", {"Content-Type": "text/plain"})
            return
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        headers: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        response = self.bolt.dispatch(BoltRequest(body=body, query=parts.query, headers=headers))
        self._send(response.status, (response.body or "").encode(), response.first_headers_without_set_cookie())

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # request lines only at debug; never headers or bodies
        log.debug("%s " + format, self.address_string(), *args)


def start_digest(front: SlackFrontEnd):
    """The weekly digest (config ``digest``), posted by whichever replica claims the week first."""
    if front.agent.config.digest is None:
        return None
    return DigestScheduler(front.agent.audit, front.client, front.agent.config.digest, front.claims).start()


def run_http(config: AppConfig, host: str, port: int, *, workers: int = 0, intake_processes: int = 1,
             worker_nice: int | None = None) -> None:
    settings = SlackSettings.from_env(socket_mode=False)
    front = build_front_end(config, settings, workers=workers, intake_processes=intake_processes,
                            worker_nice=worker_nice)
    server = SlackHTTPServer(front.app, host=host, port=port)
    front.start_recovery()  # runs a dead process left half-done: finish them, or tell their threads
    sweeper = front.sweeper().start()  # and every recovery.sweep_seconds, those of a peer that stopped
    digest = start_digest(front)
    log.info("cachebot Slack app listening on %s (events at %s, health at %s)", server.url, EVENTS_PATH, HEALTH_PATH)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sweeper.stop()
        if digest is not None:
            digest.stop()
        server.httpd.server_close()
        front.close()
        front.agent.close()


def socket_mode_handler(app: App, settings: SlackSettings):
    """Bolt's Socket Mode handler (slack_sdk's built-in websocket client): ``apps.connections.open`` with the app
    token for a websocket URL, then every envelope is handed to ``app`` and acked by its ``envelope_id`` once the
    listener acked. ``.start()`` blocks; ``.connect()`` / ``.close()`` (tests)."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    # the same Web API base URL (SLACK_API_URL) for apps.connections.open; the app token is passed per call
    return SocketModeHandler(app, app_token=settings.app_token,
                             web_client=make_client(settings.bot_token, settings.api_url))


def run_socket_mode(config: AppConfig, *, workers: int = 0, intake_processes: int = 1,
                    worker_nice: int | None = None) -> None:
    settings = SlackSettings.from_env(socket_mode=True)
    front = build_front_end(config, settings, workers=workers, intake_processes=intake_processes,
                            worker_nice=worker_nice)
    handler = socket_mode_handler(front.app, settings)
    front.start_recovery()
    sweeper = front.sweeper().start()
    digest = start_digest(front)
    try:
        handler.start()
    except KeyboardInterrupt:
        pass
    finally:
        sweeper.stop()
        if digest is not None:
            digest.stop()
        front.close()
        front.agent.close()
