"""A ``publish:`` URL, parsed once: where a camera's H.264 is pushed (§10 of docs/interface.md).

Parsed twice in a target's life: when the config loads (so a typo stops the start with a clear
line instead of retrying forever) and each time the target connects, after its ``${...}``
references are expanded (a rotated stream key is picked up at the next reconnect).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "rtmps": 443}
SCHEMES = tuple(PORTS)


@dataclass(frozen=True)
class PublishTarget:
    scheme: str  # rtsp, rtsps, rtmp or rtmps
    host: str
    port: int
    path: str  # with its query, as the server is to see it
    user: str | None
    password: str | None
    explicit_port: bool

    @property
    def protocol(self) -> str:
        return "rtmp" if self.scheme.startswith("rtmp") else "rtsp"

    @property
    def tls(self) -> bool:
        return self.scheme.endswith("s")

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.explicit_port else host

    @property
    def url(self) -> str:
        """The URL without its user info (what goes into RTSP requests and RTMP's tcUrl)."""
        return f"{self.scheme}://{self.netloc}{self.path}"

    @property
    def rtmp_app(self) -> str:
        """RTMP's application and stream name: everything up to the last ``/``, and after it (a
        query stays with the stream name, where nginx-rtmp and MediaMTX read it)."""
        path, _, query = self.path.partition("?")
        app, _, stream = path.lstrip("/").rpartition("/")
        return app

    @property
    def rtmp_stream(self) -> str:
        path, mark, query = self.path.partition("?")
        return path.rpartition("/")[2] + mark + query

    @classmethod
    def parse(cls, text: str) -> PublishTarget:
        """Raises ValueError with a message that says what to write instead."""
        scheme = text.partition("://")[0].lower() if "://" in text else ""
        if scheme == "srt":
            raise ValueError(
                "srt:// is not supported: the FFmpeg that PyAV brings has no SRT; publish rtsp:// to "
                "MediaMTX and let it serve SRT"
            )
        if scheme not in PORTS:
            raise ValueError(f"must be an rtsp://, rtsps://, rtmp:// or rtmps:// URL, got {text[:80]!r}")
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"is not a valid URL ({exc})") from None
        host = parts.hostname or ""
        if not host:
            raise ValueError(f"has no host: write {scheme}://HOST[:PORT]/PATH")
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if parts.fragment:
            raise ValueError("has a #fragment, which no server would see; remove it")
        user = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        target = cls(scheme, host, port or PORTS[scheme], path, user, password, port is not None)
        if target.protocol == "rtmp":
            if user is not None:
                raise ValueError(
                    "RTMP has no user:password in its URL; put credentials where the server reads them "
                    "(MediaMTX: ?user=U&pass=P after the stream name; nginx-rtmp: its on_publish query)"
                )
            if not target.rtmp_app or not target.rtmp_stream.partition("?")[0]:
                raise ValueError(f"needs an application and a stream name: {scheme}://HOST[:PORT]/APP/STREAM")
        elif parts.path in ("", "/"):
            raise ValueError(f"needs a path that names the stream: {scheme}://HOST[:PORT]/PATH")
        return target
