"""Slack's Socket Mode end, on loopback: a websocket server speaking the real protocol.

``FakeSocketMode(fake_slack)`` makes ``apps.connections.open`` (on the ``FakeSlack``) hand out this server's
``ws://`` URL. A client that connects gets ``hello``; ``send(type, payload)`` pushes an envelope
(``{"envelope_id", "type": "events_api" | "interactive" | "slash_commands", "payload", "accepts_response_payload",
"retry_attempt", "retry_reason"}``) to every connected client, and ``ack(envelope_id)`` waits for the client's
``{"envelope_id": …}`` answer. ``disconnect()`` asks clients to reconnect, as Slack does every few hours.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from websockets.sync.server import ServerConnection, serve

from tests.fakes.slack import FakeSlack


class FakeSocketMode:
    def __init__(self, fake: FakeSlack):
        self.fake = fake
        self.connections: list[ServerConnection] = []
        self.hellos = 0
        self.acks: dict[str, tuple[float, dict[str, Any]]] = {}  # envelope id -> (when, the ack as sent)
        self.sent: dict[str, float] = {}  # envelope id -> when it was sent
        self._lock = threading.Lock()
        self._server = serve(self._serve, "127.0.0.1", 0)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-socket-mode", daemon=True)
        self._thread.start()
        fake.socket_url = f"ws://127.0.0.1:{self.port}/link/"

    def _serve(self, connection: ServerConnection) -> None:
        with self._lock:
            self.connections.append(connection)
            self.hellos += 1
        connection.send(json.dumps({"type": "hello", "num_connections": len(self.connections),
                                    "debug_info": {"host": "applink-test", "approximate_connection_time": 18060},
                                    "connection_info": {"app_id": "A0CACHEBOT"}}))
        try:
            for message in connection:
                data = json.loads(message)
                if "envelope_id" in data:
                    with self._lock:
                        self.acks[data["envelope_id"]] = (time.monotonic(), data)
        except Exception:  # the client went away
            pass
        finally:
            with self._lock:
                if connection in self.connections:
                    self.connections.remove(connection)

    def wait_connected(self, count: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.connections) >= count:
                    return
            time.sleep(0.02)
        raise AssertionError(f"no Socket Mode client connected within {timeout}s")

    def send(self, kind: str, payload: dict[str, Any], *, retry_attempt: int = 0, retry_reason: str = "",
             envelope_id: str | None = None) -> str:
        """Push one envelope to the connected client; its envelope id."""
        envelope_id = envelope_id or str(uuid.uuid4())
        envelope = {"envelope_id": envelope_id, "type": kind, "payload": payload,
                    "accepts_response_payload": kind != "events_api", "retry_attempt": retry_attempt,
                    "retry_reason": retry_reason}
        with self._lock:
            connection = self.connections[-1]
            self.sent[envelope_id] = time.monotonic()
        connection.send(json.dumps(envelope))
        return envelope_id

    def ack(self, envelope_id: str, timeout: float = 10.0) -> tuple[float, dict[str, Any]]:
        """Wait for the client's ack of an envelope: (seconds from sending to the ack, the ack as sent)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if envelope_id in self.acks:
                    at, data = self.acks[envelope_id]
                    return at - self.sent[envelope_id], data
            time.sleep(0.01)
        raise AssertionError(f"envelope {envelope_id} was not acked within {timeout}s")

    def disconnect(self) -> None:
        """Ask the clients to reconnect (``{"type": "disconnect", "reason": "refresh_requested"}``)."""
        with self._lock:
            connections = list(self.connections)
        for connection in connections:
            connection.send(json.dumps({"type": "disconnect", "reason": "refresh_requested",
                                        "debug_info": {"host": "applink-test"}}))

    def close(self) -> None:
        self._server.shutdown()
        with self._lock:
            connections = list(self.connections)
        for connection in connections:
            connection.close()
