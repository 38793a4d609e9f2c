"""Who may see the cameras (§7 of ``docs/interface.md``): Host check, HTTP Basic, stream tokens, WebSocket origin.

One ASGI middleware in front of every route, so no endpoint can forget a check. In order:

* **Host** (DNS rebinding): a page on ``evil.example`` whose name an attacker re-points at the
  device's address is same-origin with the device as far as the browser knows, and could read
  the status and the frames. Its requests carry ``Host: evil.example``, which no user types to
  reach a LAN camera: edge answers IP literals, ``localhost``, single-label and LAN names
  (``.local``, ``.lan``, ``.home.arpa``, ``.internal``), and the names in ``allowed_hosts``.
* **Credentials**: HTTP Basic or ``?token=`` (for ``<img>`` and WebSocket clients that cannot set
  a header), both compared in constant time. ``/healthz``, ``/readyz`` and ``/static/`` stay open:
  container health checks need the first two, and a page opened as ``/?token=T`` must be able to
  load its scripts; none of them holds camera data.
* **Origin** (cross-site WebSocket hijacking): browsers let any page open a WebSocket anywhere
  and send the site's cookies and Basic credentials with it; only the ``Origin`` header tells.
* **Guessing** (:class:`FailedLogins`): an address that presented wrong credentials more than
  :data:`GUESS_LIMIT` times in :data:`GUESS_WINDOW` seconds gets 429 for everything but the
  open paths until :data:`GUESS_WINDOW` seconds after its last failure, so a password is
  guessed at about ten tries a minute, not thousands a second. Only wrong credentials count,
  not missing ones: a browser's first request before its password prompt is no guess.
"""

from __future__ import annotations

import base64
import binascii
import collections
import enum
import hmac
import ipaddress
import math
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from ..config import ServerConfig
from ..fanout.connections import address_key
from ..logs import client_log

# Exact paths and one prefix that ends with a slash: "/healthzX" or "/staticfoo" are not open.
OPEN_PATHS = ("/healthz", "/readyz")
OPEN_PREFIXES = ("/static/",)
GUESS_LIMIT = 10  # failed credential checks per address ...
GUESS_WINDOW = 60.0  # ... within this many seconds; blocked until this long after the last one
MAX_TRACKED_ADDRESSES = 4096  # failure histories kept; the oldest go first
LAN_SUFFIXES = (".local", ".lan", ".home.arpa", ".internal", ".localhost")
REALM = 'Basic realm="edge"'
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}

# On every response, the page's and the API's alike. The viewer has no inline script or style,
# so the policy can forbid both; images come from the server itself and from decoded WebSocket
# frames (blob:), connections only go back to where the page came from ('self' covers ws/wss).
SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; "
        "script-src 'self'; "
        "style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'",
    ),
]


class Credentials(enum.Enum):
    VALID = "valid"
    MISSING = "missing"  # none presented: not a guess
    WRONG = "wrong"  # presented and wrong: a guess


class FailedLogins:
    """Per client address (its :func:`~edge.connections.address_key`): recent failed credential
    checks, and until when the address is blocked. Bounded: at most
    :data:`MAX_TRACKED_ADDRESSES` addresses are remembered, the least recently failed go first."""

    def __init__(
        self,
        limit: int = GUESS_LIMIT,
        window: float = GUESS_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._blocked: dict[str, float] = {}

    def blocked_for(self, key: str) -> float:
        """Seconds ``key`` stays blocked (0: it is not)."""
        until = self._blocked.get(key)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._blocked[key]
            return 0.0
        return left

    def failed(self, key: str) -> bool:
        """Record a failed check; ``True`` if it made the address blocked."""
        now = self.clock()
        times = self._failures.pop(key, None) or collections.deque(maxlen=self.limit + 1)
        times.append(now)
        self._failures[key] = times  # most recent last
        while len(self._failures) > MAX_TRACKED_ADDRESSES:
            oldest, _ = self._failures.popitem(last=False)
            self._blocked.pop(oldest, None)
        if len(times) > self.limit and now - times[0] <= self.window:
            self._blocked[key] = now + self.window
            return True
        return False


class AccessControl:
    def __init__(self, app: ASGIApp, config: ServerConfig) -> None:
        self.app = app
        self.auth = config.auth
        self.tokens = tuple(t.encode() for t in config.tokens)
        self.allowed_origins = {o if o == "*" else (_normal_origin(o) or o) for o in config.allowed_origins}
        self.allowed_hosts = config.allowed_hosts
        self.protected = config.access_controlled
        self.failed_logins = FailedLogins()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("?", 0)
        key = address_key(str(client[0]))
        denial = self._check(scope, Headers(scope=scope), key)
        if denial is None:
            await self.app(scope, receive, send)
            return
        status, message, extra = denial
        method = scope.get("method", "WS")
        client_log.info("%d for %s %s from %s: %s", status, method, path, client[0], message, extra={"client": key})
        response = JSONResponse({"error": message}, status_code=status, headers=extra)
        await deny(response, scope, receive, send)

    def _check(self, scope: Scope, headers: Headers, key: str) -> tuple[int, str, dict[str, str]] | None:
        if self.protected:
            blocked = self.failed_logins.blocked_for(key)
            if blocked:
                wait = math.ceil(blocked)
                message = f"too many failed logins from this address; try again in {wait} s"
                # Closing the connection makes every further guess pay for a new one.
                return 429, message, {"Retry-After": str(wait), "Connection": "close"}
        host = headers.get("host")
        if host is not None and not self.host_allowed(host):
            name = _host_name(host)
            return 400, f"this server does not answer to the host name {name!r}; add it to server.allowed_hosts", {}
        if self.protected:
            credentials = self.check_credentials(headers.get("authorization"), _token(scope))
            if credentials is not Credentials.VALID:
                if credentials is Credentials.WRONG and self.failed_logins.failed(key):
                    client_log.warning(
                        "%s: more than %d failed logins in %g s; refusing its requests for %g s",
                        key,
                        GUESS_LIMIT,
                        GUESS_WINDOW,
                        GUESS_WINDOW,
                        extra={"client": key},
                    )
                what = "a user name and password (HTTP Basic)" if self.auth else "a valid ?token="
                if self.auth and self.tokens:
                    what += " or a valid ?token="
                return 401, f"authentication required: send {what}", {"WWW-Authenticate": REALM}
        if scope["type"] == "websocket":
            origin = headers.get("origin")
            if origin is not None and not self.origin_allowed(origin, scope, host):
                return 403, f"WebSocket from origin {origin!r} refused; add it to server.allowed_origins", {}
        return None

    def check_credentials(self, authorization: str | None, token: str | None) -> Credentials:
        """Basic credentials or a token, each compared in constant time (no early exit on a
        wrong user name, and every token is compared)."""
        ok = False
        presented = False
        if self.auth is not None and authorization:
            scheme, _, param = authorization.partition(" ")
            if scheme.lower() == "basic":
                presented = True
                try:
                    decoded = base64.b64decode(param.strip(), validate=True)
                except (binascii.Error, ValueError):
                    decoded = b""
                user, sep, password = decoded.partition(b":")
                user_ok = hmac.compare_digest(user, self.auth.username.encode())
                password_ok = hmac.compare_digest(password, self.auth.password.encode())
                ok = bool(sep) and user_ok and password_ok
        if token is not None and self.tokens:
            presented = True
            given = token.encode("utf-8", "surrogateescape")
            matches = [hmac.compare_digest(given, t) for t in self.tokens]
            ok = ok or any(matches)
        if ok:
            return Credentials.VALID
        return Credentials.WRONG if presented else Credentials.MISSING

    def host_allowed(self, host: str) -> bool:
        name = _host_name(host)
        if "*" in self.allowed_hosts or name in self.allowed_hosts:
            return True
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            pass
        if name == "localhost" or "." not in name or name.endswith(LAN_SUFFIXES):
            return True
        return any(h.startswith("*.") and name.endswith(h[1:]) for h in self.allowed_hosts)

    def origin_allowed(self, origin: str, scope: Scope, host: str | None) -> bool:
        if "*" in self.allowed_origins:
            return True
        given = _normal_origin(origin)
        if given is None:
            return False
        if given in self.allowed_origins:
            return True
        scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "ws"), "http")
        return host is not None and given == _normal_origin(f"{scheme}://{host}")


async def deny(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        # Refuse the upgrade with a real HTTP answer (§7 of docs/interface.md); closing before accept
        # would read as a bare 403 with no reason. uvicorn adds its default headers to HTTP
        # responses only, so the security headers are added here.
        for name, value in SECURITY_HEADERS:
            response.headers.setdefault(name, value)
        await WebSocket(scope, receive, send).send_denial_response(response)
        return
    await response(scope, receive, send)


def _token(scope: Scope) -> str | None:
    query: str = scope.get("query_string", b"").decode("latin-1")
    if "token" not in query:
        return None
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "token":
            return value
    return None


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _normal_origin(origin: str) -> str | None:
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and str(port) != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"
