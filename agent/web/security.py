"""Who may read the console, and what a page may do in the browser.

- Read-only: GET and HEAD, nothing else (405).
- A token, when one is set (``cachebot web --token`` / ``CACHEBOT_WEB_TOKEN``; required off loopback): sent as
  ``Authorization: Bearer …``, or once as ``?token=…``, which sets an HttpOnly, SameSite=Strict cookie and
  redirects to the same page without it (so it does not stay in the address bar or the history).
- Every response says: only this site's own scripts, styles and images (no inline script, nothing from
  elsewhere), never in a frame, no sniffing, no referrer.
"""

from __future__ import annotations

import hmac
import ipaddress
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import MutableHeaders
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "cachebot_console"
HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: reachable from this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ReadOnlyGate:
    def __init__(self, app: ASGIApp, token: str | None = None):
        self.app = app
        self.token = token or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
            await send(message)

        if scope["method"] not in ("GET", "HEAD"):
            response = PlainTextResponse("The console is read-only.", status_code=405, headers={"Allow": "GET, HEAD"})
            await response(scope, receive, send_with_headers)
            return
        if self.token:
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            offered = dict(query).get("token")
            if offered is not None and self._matches(offered):
                rest = urlencode([(k, v) for k, v in query if k != "token"])
                response = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""), status_code=303)
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path="/")
                await response(scope, receive, send_with_headers)
                return
            if not self._allowed(scope):
                response = PlainTextResponse(
                    "This console needs its token: open it with ?token=… once, or send Authorization: Bearer ….",
                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)

    def _matches(self, offered: str) -> bool:
        return hmac.compare_digest(offered.encode(), self.token.encode())

    def _allowed(self, scope: Scope) -> bool:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer ") and self._matches(bearer[7:].strip()):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is no token
            return False
        return COOKIE in cookie and self._matches(cookie[COOKIE].value)
