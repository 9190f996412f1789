"""Who may use each door of a running Dossier (the API, the chat, Gradio's own routes), and the guard in front of the chat.

The settings give three switches: an API token (`api_token`), a login for the chat (`auth`) and
`read_only`. The chat cannot ask a browser for a bearer token, so with a token and no login it would be
an open door past the token: then the chat answers questions but takes no uploads or removals, which go
through the token-protected API. `Access` decides this once; `ChatGuard` enforces it on the HTTP routes
that Gradio mounts itself (its upload route, cancel, reset, the queue), which the chat's own code never sees,
and `LoginThrottle` makes a client that keeps sending wrong passwords to the login route wait.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.routing import get_route_path
from starlette.types import Message, Receive, Scope, Send

from assistant.settings import Settings

# Gradio's routes that store files a caller sends. Any other multipart body sent to Gradio is treated as one too.
UPLOAD_PATHS = frozenset({"/gradio_api/upload", "/gradio_api/process_recording"})
# What a browser needs before anyone has logged in: the page (Gradio shows its login form there), the login and
# logout routes, and static files. Everything else Gradio serves needs its session cookie when a login is set.
PUBLIC_PATHS = frozenset({"/", "/login", "/logout", "/favicon.ico", "/robots.txt", "/manifest.json", "/theme.css"})
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon")
# Close code for a websocket refused before it is accepted ("policy violation").
WEBSOCKET_POLICY_VIOLATION = 1008
# The API routes anyone may call when the API has a token (load balancers check health without one).
OPEN_API_PATHS = frozenset({"/api/health"})
# Gradio's login route (gradio.routes.App: POST /login and /login/, on the app itself, not under /gradio_api).
LOGIN_PATH = "/login"
# Each further lockout of a client lasts this many times the one before, up to LOGIN_MAX_LOCKOUT_S.
LOGIN_LOCKOUT_GROWTH = 2.0
LOGIN_MAX_LOCKOUT_S = 3600.0
# Clients remembered at most (their failures and lockouts); past it, those idle longest are forgotten first.
LOGIN_MAX_CLIENTS = 10_000
# Status Gradio's login answers a correct password with (a wrong one gets 400).
LOGIN_SUCCESS = 200


@dataclass(frozen=True)
class TokenRefusal:
    """Why a request may not use the token-protected API: the message and the WWW-Authenticate header to send."""

    message: str
    challenge: str


def token_refusal(authorization: str, token: str) -> TokenRefusal | None:
    """Check an Authorization header against the API token (none set: everyone passes); None when it may pass.

    >>> token_refusal("Bearer s3cret", "s3cret") is None
    True
    >>> token_refusal("", "s3cret").message
    'this API needs a token: send Authorization: Bearer TOKEN'
    """
    if not token:
        return None
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return TokenRefusal("this API needs a token: send Authorization: Bearer TOKEN", "Bearer")
    if not secrets.compare_digest(given.strip().encode(), token.encode()):
        return TokenRefusal("the bearer token is not valid", 'Bearer error="invalid_token"')
    return None


@dataclass(frozen=True)
class Access:
    """What a server started with given settings lets whom do; decided once, at start.

    >>> Access.from_settings(Settings(api_token="t")).chat_writes
    False
    >>> Access.from_settings(Settings(api_token="t", auth="ann:pw")).chat_writes
    True
    """

    api_token: bool
    login: bool
    read_only: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        return cls(api_token=bool(settings.api_token), login=bool(settings.auth), read_only=settings.read_only)

    @property
    def chat_writes(self) -> bool:
        """Whether the chat takes uploads and removals: not read-only, and not when the API token is the only guard."""
        return not self.read_only and (self.login or not self.api_token)

    @property
    def chat_write_refusal(self) -> str:
        """Why the chat takes no uploads or removals (empty when it does), in words for its users and callers."""
        if self.read_only:
            return "this Dossier is read-only: uploads and removals are disabled (read_only)"
        if not self.chat_writes:
            return (
                "the chat takes no uploads or removals on this server: use the API with its token "
                "(POST /api/articles, DELETE /api/articles/ID), or set a login for the chat (DOSSIER_AUTH)"
            )
        return ""

    def summary(self) -> list[str]:
        """One line per door: who may use it. Printed when the server starts."""
        if self.api_token:
            api = "API /api/*: needs the bearer token (DOSSIER_API_TOKEN); /api/health is open"
        else:
            api = "API /api/*: open to anyone, uploads and removals included (set DOSSIER_API_TOKEN to close it)"
        chat = "chat /: needs a login (DOSSIER_AUTH)" if self.login else "chat /: open to anyone (no DOSSIER_AUTH)"
        if self.read_only:
            writes = "uploads and removals: disabled everywhere (DOSSIER_READ_ONLY)"
        elif self.chat_writes:
            writes = "uploads and removals: through the API and the chat" + (" after logging in" if self.login else "")
        else:
            writes = "uploads and removals: only through the API with the token; the chat answers questions only"
        return [api, chat, writes]


@dataclass
class _Attempts:
    """One client's failed logins still inside the window, how often it was locked out, and until when."""

    failures: list[float] = field(default_factory=list)
    lockouts: int = 0
    locked_until: float = 0.0
    last_seen: float = 0.0


class LoginThrottle:
    """Per-client limit on login attempts: `max_failures` within `window_s` seconds lock the client out.

    The first lockout lasts `lockout_s`; each next one `LOGIN_LOCKOUT_GROWTH` times longer, up to
    `LOGIN_MAX_LOCKOUT_S`. A success clears the client's record. Every attempt counts as a failure when
    it arrives and is cleared when it succeeds, so many attempts sent at once cannot all pass before the
    first answer comes back. `clock` is for tests (monotonic seconds).

    >>> throttle = LoginThrottle(max_failures=2, window_s=60, lockout_s=30, clock=lambda: 0.0)
    >>> throttle.attempt("10.0.0.1"), throttle.attempt("10.0.0.1"), throttle.attempt("10.0.0.1")
    (None, None, 30.0)
    >>> throttle.attempt("10.0.0.2") is None
    True
    """

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        lockout_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = LOGIN_MAX_CLIENTS,
    ) -> None:
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self.clock, self.max_clients = clock, max_clients
        self._clients: dict[str, _Attempts] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginThrottle:
        return cls(settings.login_max_failures, settings.login_window_s, settings.login_lockout_s)

    def attempt(self, client: str) -> float | None:
        """Record a login attempt by `client`; None when it may go on, else the seconds it must still wait."""
        now = self.clock()
        with self._lock:
            attempts = self._clients.get(client)
            if attempts is None:
                self._forget_idle()
                attempts = self._clients[client] = _Attempts()
            attempts.last_seen = now
            if now < attempts.locked_until:
                return attempts.locked_until - now
            attempts.failures = [at for at in attempts.failures if now - at < self.window_s]
            if len(attempts.failures) >= self.max_failures:
                growth = LOGIN_LOCKOUT_GROWTH**attempts.lockouts
                attempts.locked_until = now + min(self.lockout_s * growth, LOGIN_MAX_LOCKOUT_S)
                attempts.lockouts += 1
                attempts.failures = []
                return attempts.locked_until - now
            attempts.failures.append(now)
            return None

    def succeeded(self, client: str) -> None:
        """A correct password: the client starts afresh."""
        with self._lock:
            self._clients.pop(client, None)

    def _forget_idle(self) -> None:
        if len(self._clients) >= self.max_clients:
            idle = sorted(self._clients, key=lambda client: self._clients[client].last_seen)
            for client in idle[: len(idle) - self.max_clients + 1]:
                del self._clients[client]


class ChatGuard:
    """ASGI middleware in front of the mounted Gradio app, enforcing `Access` on the routes Gradio adds itself.

    - The login page, the login and logout routes and static files always pass.
    - When the chat takes no uploads, Gradio's upload routes (and any other multipart body) answer 403.
    - When a login is set, every other route answers 401 to a caller without a valid Gradio session
      cookie; Gradio itself leaves some open (cancel, reset, heartbeat).
    - With a `throttle`, a client address that has sent too many wrong passwords to the login route gets
      429 with a Retry-After header (seconds) instead, its body unread, until its lockout ends.

    `chat` is Gradio's mounted app (`gradio.routes.App`): its `cookie_id` names the session cookie and
    its `tokens` hold the sessions of logged-in users.
    """

    def __init__(self, chat: Any, access: Access, throttle: LoginThrottle | None = None) -> None:
        self.chat, self.access, self.throttle = chat, access, throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"}:
            await self.chat(scope, receive, send)
            return
        if self.throttle is not None and self.access.login and _is_login(scope):
            await self._login(scope, receive, send, self.throttle)
            return
        refusal = self._refusal(scope, HTTPConnection(scope))
        if refusal is None:
            await self.chat(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": WEBSOCKET_POLICY_VIOLATION, "reason": refusal[1]})
        else:
            await JSONResponse({"error": refusal[1]}, status_code=refusal[0])(scope, receive, send)

    async def _login(self, scope: Scope, receive: Receive, send: Send, throttle: LoginThrottle) -> None:
        """Pass a login attempt to Gradio unless its client is locked out; a successful one clears its count."""
        client = scope["client"][0] if scope.get("client") else ""
        wait = throttle.attempt(client)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            message = f"too many failed logins from this address: try again in {seconds} s"
            response = JSONResponse({"error": message}, status_code=429, headers={"Retry-After": str(seconds)})
            await response(scope, receive, send)
            return

        async def watching(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == LOGIN_SUCCESS:
                throttle.succeeded(client)
            await send(message)

        await self.chat(scope, receive, watching)

    def _refusal(self, scope: Scope, connection: HTTPConnection) -> tuple[int, str] | None:
        """The status and message to refuse the request with, or None to pass it to Gradio."""
        path = get_route_path(scope).rstrip("/") or "/"
        if _is_public(path):  # before the upload rule: the login page posts its form as multipart
            return None
        if not self.access.chat_writes and _is_upload(scope, path, connection):
            return 403, self.access.chat_write_refusal
        if self.access.login and not self._logged_in(connection):
            return 401, "log in to the chat first (its page shows the login form)"
        return None

    def _logged_in(self, connection: HTTPConnection) -> bool:
        """Whether the request carries a session cookie Gradio issued at login (checked the way Gradio does)."""
        cookie_id = self.chat.cookie_id
        token = connection.cookies.get(f"access-token-{cookie_id}") or connection.cookies.get(
            f"access-token-unsecure-{cookie_id}"
        )
        return token is not None and self.chat.tokens.get(token) is not None


def _is_upload(scope: Scope, path: str, connection: HTTPConnection) -> bool:
    content_type = connection.headers.get("content-type", "").lower()
    return scope.get("method") == "POST" and (path in UPLOAD_PATHS or content_type.startswith("multipart/form-data"))


def _is_login(scope: Scope) -> bool:
    return scope["type"] == "http" and scope.get("method") == "POST" and get_route_path(scope).rstrip("/") == LOGIN_PATH


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


__all__ = ["OPEN_API_PATHS", "Access", "ChatGuard", "LoginThrottle", "TokenRefusal", "token_refusal"]
