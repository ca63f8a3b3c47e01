"""A fake OpenAI-compatible server on loopback: ``POST /v1/chat/completions``.

stdlib only (``ThreadingHTTPServer`` in a thread, port 0). It records every request body and answers from a
scripted queue, falling back to ``default`` (simple keyword rules) when the queue is empty. A script item is:

* a dict: the structured answer; sent as ``choices[0].message.content`` (json_schema method) or, when the
  request offered tools, as a tool call to the first tool;
* ``Status(code)``: an error answer (401, 429, 500, …) with an OpenAI-style error body;
* ``Slow(seconds, then)``: wait, then answer ``then`` (to make the client time out);
* ``Malformed(text)``: ``text`` as the message content (not valid JSON / not the schema);
* a callable ``(request_body) -> item``.

Every answer carries a usage block; prompt tokens are counted roughly as characters / 4.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Status:
    code: int
    message: str = "scripted error"


@dataclass
class Slow:
    seconds: float
    then: Any = None


@dataclass
class Malformed:
    text: str = '{"intent": "purge", "scope": '


def count_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


def prompt_text(body: dict[str, Any]) -> str:
    parts = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        parts.append(content or "")
    return "\n".join(parts)


def answer_text(payload: dict[str, Any]) -> str:
    """What the model wrote: the message content, or the tool calls' arguments."""
    message = (payload.get("choices") or [{}])[0].get("message") or {}
    calls = message.get("tool_calls") or []
    return "".join(call["function"]["arguments"] for call in calls) or (message.get("content") or "")


def user_text(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    return users[-1].get("content", "") if users else ""


ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "last": -1}


def keyword_answer(body: dict[str, Any]) -> dict[str, Any]:
    """A tiny stand-in for a model: keywords on the masked message decide the answer."""
    text = user_text(body)
    message = text.split("<<<", 1)[-1].lower()
    placeholders = sorted(set(re.findall(r"\[url(\d+)\]", message)), key=int)
    answer = {"intent": "purge", "scope": "listed_urls", "selected": [], "reply": "On it."}
    if re.search(r"\b(help|what can you do)\b", message):
        answer.update(intent="help", reply="Here is what I can do.")
    elif re.search(r"\b(history|who purged)\b", message):
        answer.update(intent="history", reply="Let me look.")
    elif re.search(r"\b(everything|whole site|site-wide|all product pages)\b", message):
        scope = "prefix" if "product" in message else "site"
        answer.update(scope=scope, reply="That is a big one; it needs approval.")
    elif re.search(r"\b(is|are)\b.*\b(cached|stale)\b|\bcheck\b", message):
        answer.update(intent="check", reply="Let me look.")
    elif not placeholders and not re.search(r"\b(purge|clear|old)\b", message):
        answer.update(intent="other", reply="Hi! Paste the pages that show old content.")
    match = re.search(r"\bonly the (first|second|third|fourth|fifth|last)\b", message)
    if match and placeholders:
        number = ORDINALS[match.group(1)]
        answer["selected"] = [f"URL{placeholders[number - 1] if number > 0 else placeholders[-1]}"]
    return answer


@dataclass
class FakeOpenAI:
    default: Callable[[dict[str, Any]], Any] = keyword_answer
    script: deque = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    raw_requests: list[str] = field(default_factory=list)
    responses: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (status, body) per request
    model: str = "fake-model"

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                body = json.loads(raw)
                with fake._lock:
                    fake.raw_requests.append(raw)
                    fake.requests.append(body)
                    item = fake.script.popleft() if fake.script else fake.default
                status, payload = fake.answer(item, body)
                with fake._lock:
                    fake.responses.append((status, payload))
                self._send(status, payload)

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    if status == 429:
                        self.send_header("Retry-After", "0")
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- control -------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def push(self, *items: Any) -> None:
        self.script.extend(items)

    # --- answers -------------------------------------------------------------------------------------

    def answer(self, item: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        while callable(item):
            item = item(body)
        if isinstance(item, Slow):
            time.sleep(item.seconds)
            item = item.then if item.then is not None else self.default
            while callable(item):
                item = item(body)
        if isinstance(item, Status):
            kinds = {401: "invalid_request_error", 429: "rate_limit_exceeded", 500: "server_error"}
            return item.code, {"error": {"message": item.message, "type": kinds.get(item.code, "error"),
                                         "code": str(item.code)}}
        content = item.text if isinstance(item, Malformed) else json.dumps(item, ensure_ascii=False)
        return 200, self.completion(body, content, as_tool=bool(body.get("tools")) and not isinstance(item, Malformed))

    def completion(self, body: dict[str, Any], content: str, *, as_tool: bool) -> dict[str, Any]:
        prompt_tokens = count_tokens(prompt_text(body) + json.dumps(body.get("tools") or body.get("response_format") or ""))
        completion_tokens = count_tokens(content)
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        finish = "stop"
        if as_tool:
            name = body["tools"][0]["function"]["name"]
            message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": name, "arguments": content}}]}
            finish = "tool_calls"
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
