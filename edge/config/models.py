"""The configuration as typed, validated settings (§2, §7, §8 of ``docs/interface.md``).

Each key is written once, here: its type (``Literal`` choices, strict booleans and numbers:
``true`` is no number, ``"30"`` no integer), its range and its default. pydantic checks them
and rejects unknown keys; what no type can say (a file that must exist, a password read from
a file, a source whose secret references must resolve, two cameras on one device) is checked
by the validators below, which raise :class:`Problem`. ``errors.py`` turns every failure into
one line that names the key and says what to do.

The classes are (pydantic) dataclasses, frozen: the rest of edge reads them as plain values,
and ``dataclasses.replace`` validates what it changes.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import os
import re
import shlex
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, Strict, StringConstraints, field_validator, model_validator
from pydantic.dataclasses import dataclass

from .. import references
from ..redact import redact_source
from .source import PIPE_PREFIX, SourceKind, SourceSpec
from .target import PublishTarget

CAMERA_NAME_RE = re.compile(r"^[a-z0-9_-]+$")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
# Strict scalars (``true`` is no number, ``"30"`` no integer, an integer is a float); the
# dataclasses themselves are lax only so that mappings from the YAML become them.
_CONFIG = ConfigDict(extra="forbid")
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]
Seconds = Annotated[float, Strict(), Field(ge=1, le=86_400)]
Port = Annotated[int, Strict(), Field(ge=0, le=65_535)]


class Problem(ValueError):
    """What a validator found wrong, at ``key`` below the value it validated (``""``: there)."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.key = key


def kind_of(value: Any) -> str:
    """A value as an error message shows it."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def unknown_key(name: object, allowed: list[str]) -> str:
    """The message for a key that is not one: the nearest allowed one, and all of them."""
    guess = difflib.get_close_matches(str(name), allowed, n=1)
    hint = f"; did you mean `{guess[0]}`?" if guess else ""
    return f"unknown key{hint} (allowed: {', '.join(sorted(allowed))})"


def _from_yaml(data: Any, internal: tuple[str, ...]) -> dict[str, Any] | None:
    """``data`` if it is a mapping from the YAML (not a construction in Python), after refusing
    the keys edge fills in itself."""
    if not isinstance(data, dict):
        return None
    for name in internal:
        if name in data:
            raise Problem("unknown key", name)
    return data


def _existing_file(value: Any, key: str = "") -> str:
    if not isinstance(value, str) or not value.strip():
        raise Problem(f"must be a file path, got {kind_of(value)}", key)
    file = os.path.expanduser(value.strip())
    if not os.path.isfile(file):
        raise Problem(f"file {file} does not exist", key)
    return file


def _read_secret(file: str, key: str) -> str:
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise Problem(f"cannot read {file}: {reason}", key) from None


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v.strip() for v in value):
        raise Problem(f"must be a list of strings, got {kind_of(value)}")
    return tuple(v.strip() for v in value)


@dataclass(frozen=True, config=_CONFIG)
class AuthConfig:
    """HTTP Basic credentials. The password is read from a file or the environment at load
    time (never written in the YAML) and kept out of ``repr`` so it cannot reach a log line."""

    username: Str
    password_file: Str | None = None
    password_env: Str | None = None
    password: Str = dataclasses.field(default="", repr=False)
    password_from: Str = ""  # where the password came from ("file /run/secrets/x", "environment variable X")

    @model_validator(mode="before")
    @classmethod
    def _read_password(cls, data: Any) -> Any:
        table = _from_yaml(data, ("password_from",))
        if table is None:
            return data
        if "password" in table:
            raise Problem(
                "a password is never written in the config file; put it in a file (password_file) "
                "or an environment variable (password_env)",
                "password",
            )
        has_file, has_env = table.get("password_file") is not None, table.get("password_env") is not None
        if has_file == has_env:
            raise Problem("set exactly one of password_file or password_env")
        if has_file:
            file = _existing_file(table["password_file"], "password_file")
            # A trailing newline is how editors and `echo` write the file; it is not part of the password.
            password = _read_secret(file, "password_file").rstrip("\r\n")
            where, key = f"file {file}", "password_file"
        else:
            name = table["password_env"]
            if not isinstance(name, str) or not name:
                raise Problem(f"must name an environment variable, got {kind_of(name)}", "password_env")
            password = os.environ.get(name, "")
            where, key = f"environment variable {name}", "password_env"
            if not password:
                raise Problem(f"environment variable {name} is not set or empty", key)
        if not password:
            raise Problem(f"{where} holds an empty password", key)
        return {**table, "password": password, "password_from": where}

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not value or ":" in value:
            raise Problem(f"must be a non-empty name without ':', got {value!r}")
        return value


@dataclass(frozen=True, config=_CONFIG)
class TLSConfig:
    certfile: Str
    keyfile: Str

    @model_validator(mode="after")
    def _load(self) -> TLSConfig:
        certfile = _existing_file(self.certfile, "certfile")
        keyfile = _existing_file(self.keyfile, "keyfile")
        try:  # fail at start-up with the reason, not at the first client's handshake
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certfile, keyfile)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
            raise Problem(f"cannot load {certfile} with {keyfile}: {reason}") from None
        return self


@dataclass(frozen=True, config=_CONFIG)
class ServerConfig:
    host: Str = "127.0.0.1"
    port: Port = 8080
    max_clients: Annotated[int, Strict(), Field(ge=1, le=100_000)] = 64
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    auth: AuthConfig | None = None
    tokens_file: Str | None = None
    tokens: tuple[str, ...] = dataclasses.field(default=(), repr=False)  # read from tokens_file
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    tls: TLSConfig | None = None
    trusted_proxies: tuple[str, ...] = ()
    request_timeout: Seconds = 10.0
    keepalive_timeout: Seconds = 5.0
    stall_timeout: Seconds = 60.0
    max_streams_per_address: Annotated[int, Strict(), Field(ge=0, le=100_000)] = 0
    # Connections one address may hold without a request under way (just accepted, or kept alive
    # between requests); a browser holds a few, a thousand is an attack.
    max_pending_per_address: Annotated[int, Strict(), Field(ge=0, le=100_000)] = 32
    max_request_head: Annotated[int, Strict(), Field(ge=1024, le=1024 * 1024)] = 64 * 1024
    max_headers: Annotated[int, Strict(), Field(ge=8, le=1000)] = 100

    @property
    def access_controlled(self) -> bool:
        """Whether anything stands between a client and the cameras."""
        return self.auth is not None or self.tokens_file is not None

    @model_validator(mode="before")
    @classmethod
    def _read_tokens(cls, data: Any) -> Any:
        table = _from_yaml(data, ("tokens",))
        if table is None or table.get("tokens_file") is None:
            return data
        file = _existing_file(table["tokens_file"], "tokens_file")
        lines = _read_secret(file, "tokens_file").splitlines()
        tokens = tuple(t for t in (line.strip() for line in lines) if t and not t.startswith("#"))
        if not tokens:
            raise Problem(f"{file} lists no token (one per line; # starts a comment)", "tokens_file")
        for n, token in enumerate(tokens, 1):
            # A short token can be guessed by anyone on the LAN: it guards the same video as the password.
            if len(token) < 16 or not token.isprintable() or " " in token:
                raise Problem(
                    f"token {n} in {file} must be at least 16 printable characters without spaces", "tokens_file"
                )
        return {**table, "tokens_file": file, "tokens": tokens}

    @field_validator("host", mode="before")
    @classmethod
    def _host(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise Problem(f"must be a host name or address, got {kind_of(value)}")
        return value.strip()

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: Any) -> Any:
        if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
            raise Problem(f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
        return value.lower()

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> tuple[str, ...]:
        origins = _strings(value)
        for i, origin in enumerate(origins):
            if origin != "*" and not re.match(r"^https?://[^/?#\s]+$", origin):
                raise Problem(f"must be * or an origin like https://example.com, got {origin!r}", f"[{i}]")
        return tuple(o.lower().rstrip("/") for o in origins)

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> tuple[str, ...]:
        hosts = _strings(value)
        for i, host in enumerate(hosts):
            if host != "*" and not re.match(r"^(\*\.)?[A-Za-z0-9.-]+$", host):
                raise Problem(f"must be * or a host name like cam.example.com, got {host!r}", f"[{i}]")
        return tuple(h.lower() for h in hosts)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value: Any) -> tuple[str, ...]:
        proxies = _strings(value)
        for i, proxy in enumerate(proxies):
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise Problem(
                    f"must be an IP address or network like 127.0.0.1 or 10.0.0.0/8, got {proxy!r}", f"[{i}]"
                ) from None
        return proxies


@dataclass(frozen=True, config=_CONFIG)
class CameraConfig:
    name: Annotated[str, Strict(), StringConstraints(pattern=CAMERA_NAME_RE.pattern)]
    source: Str | Int = "auto"  # as written (stripped; digits as a device index): `spec` is what it means
    width: Annotated[int, Strict(), Field(ge=16, le=7680)] = 640
    height: Annotated[int, Strict(), Field(ge=16, le=4320)] = 480
    fps: Annotated[float, Strict(), Field(ge=0.1, le=120)] = 30.0
    quality: Annotated[int, Strict(), Field(ge=1, le=100)] = 80
    passthrough: Literal["auto", "always", "never"] = "auto"
    idle_after: Float = 10.0  # 0 (never idle) or 1..86400 s
    drop_same_frames: Annotated[int, Strict(), Field(ge=0, le=1_000_000)] = 0
    rotate: Literal[0, 90, 180, 270] = 0
    flip: Literal["none", "horizontal", "vertical"] = "none"
    # What the source delivers (§9 of docs/interface.md): auto detects it when the source opens.
    codec: Literal["auto", "mjpeg", "h264"] = "auto"
    # Where this camera's H.264 is pushed (§10), and what encodes it for a JPEG camera.
    publish: tuple[str, ...] = ()
    h264_encoder: Str = "auto"
    # Whether width/height were written in the file. A source with a size of its own (a file, a
    # pipe, a stream) is passed through at that size unless the user asked for another one.
    size_given: Bool = False

    @functools.cached_property
    def spec(self) -> SourceSpec:
        return SourceSpec.parse(self.source)

    @property
    def transforms(self) -> bool:
        return self.rotate != 0 or self.flip != "none"

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, data: Any) -> Any:
        table = _from_yaml(data, ("size_given",))
        if table is None:
            return data
        source = table.get("source")
        if isinstance(source, str) and source.strip() and "${" not in source:
            spec = SourceSpec.parse(source)
            if spec.kind is SourceKind.FILE and not os.path.isfile(os.path.expanduser(str(spec.target))):
                # A missing file never appears by retrying; a typo must stop the start, not loop.
                raise Problem(f"video file {source.strip()!r} does not exist (or is not a file)", "source")
        return {**table, "size_given": "width" in table or "height" in table}

    @field_validator("rotate", mode="before")
    @classmethod
    def _rotate(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):  # 90.0 and true are no rotation
            raise Problem(f"must be one of 0, 90, 180, 270, got {value!r}")
        return value

    @field_validator("idle_after", mode="before")
    @classmethod
    def _idle_after(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Problem(f"must be a number of seconds, got {kind_of(value)}")
        if value != 0 and not (1 <= value <= 86_400):  # NaN fails both
            raise Problem(f"must be 0 (never idle) or between 1 and 86400 seconds, got {value}")
        return float(value)

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int):
            expected = "auto, virtual, a device path, an index, a file, a URL or pipe:COMMAND"
            raise Problem(f"must be {expected}; got {kind_of(value)}")
        if isinstance(value, int):
            if value < 0:
                raise Problem(f"device index must be >= 0, got {value}")
            return value
        text = value.strip()
        if not text:
            raise Problem("must not be empty")
        if text.isdigit():
            return int(text)
        # Secret references are read again whenever the source opens; checked now so that a typo
        # in a variable name stops the start instead of looping through reconnects.
        problem = references.check(text)
        if problem is not None:
            raise Problem(problem)
        spec = SourceSpec.parse(text)
        if spec.kind is SourceKind.PIPE:
            try:
                argv = shlex.split(text[len(PIPE_PREFIX) :])
            except ValueError as exc:
                raise Problem(f"cannot split the command: {exc}") from None
            if not argv:
                raise Problem("pipe: needs a command, e.g. pipe:rpicam-vid -t 0 --codec mjpeg -o -")
        return text

    @field_validator("publish", mode="before")
    @classmethod
    def _publish(cls, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):  # one target written without the list
            value = [value]
        urls = tuple(u.strip() for u in _strings(value))
        for i, url in enumerate(urls):
            problem = references.check(url)
            if problem is not None:
                raise Problem(problem, f"[{i}]")
            if "${" in url.partition("://")[2].partition("/")[0].rpartition("@")[2]:
                raise Problem("a ${...} reference may stand for credentials or the path, not the host", f"[{i}]")
            try:
                # References stand for secrets (a password, a stream key): the URL's shape is
                # checked with a placeholder in their place.
                PublishTarget.parse(re.sub(r"\$\{[^}]*\}", "x", url))
            except ValueError as exc:
                raise Problem(str(exc), f"[{i}]") from None
            if url in urls[:i]:
                raise Problem(f"{redact_source(url)} is listed twice", f"[{i}]")
        return urls

    @field_validator("h264_encoder", mode="before")
    @classmethod
    def _h264_encoder(cls, value: Any) -> Any:
        if not isinstance(value, str) or value == "auto":
            return value
        import av  # only for a named encoder: the name is checked against the FFmpeg edge brings

        available = sorted(c for c in av.codecs_available if c.startswith(("h264", "libx264", "libopenh264")))
        encoders = [name for name in available if name != "h264" and _is_h264_encoder(av, name)]
        if value not in encoders:
            raise Problem(f"must be auto or an H.264 encoder FFmpeg has here ({', '.join(encoders)}), got {value!r}")
        return value

    @model_validator(mode="after")
    def _passthrough(self) -> CameraConfig:
        if self.passthrough == "always" and self.spec.kind is SourceKind.VIRTUAL:
            raise Problem("always: the virtual camera has no JPEG of its own to pass through; use auto", "passthrough")
        if self.passthrough == "always" and self.transforms:
            what = f"rotate: {self.rotate}" if self.rotate else f"flip: {self.flip}"
            raise Problem(f"always cannot be combined with {what} (that needs decoding)", "passthrough")
        return self


def _is_h264_encoder(av: Any, name: str) -> bool:
    try:
        codec = av.codec.Codec(name, "w")
    except Exception:  # not an encoder at all
        return False
    return bool(codec.type == "video" and codec.id == av.codec.Codec("h264", "r").id)


@dataclass(frozen=True, config=_CONFIG)
class Config:
    cameras: tuple[CameraConfig, ...]
    server: ServerConfig = dataclasses.field(default_factory=ServerConfig)
    path: Str = ""  # the file it came from

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        table = _from_yaml(data, ("path",))
        if table is None:
            return data
        for name in table:
            if name not in ("server", "cameras"):
                raise Problem(unknown_key(name, ["cameras", "server"]), str(name))
        if "cameras" not in table:
            raise Problem("missing; list at least one camera with a `name`", "cameras")
        cameras = table["cameras"]
        if not isinstance(cameras, list):
            raise Problem(f"must be a list of cameras, got {kind_of(cameras)}", "cameras")
        if not cameras:
            raise Problem("must list at least one camera", "cameras")
        server = table.get("server")
        return {**table, "cameras": tuple(cameras), "server": {} if server is None else server}

    @model_validator(mode="after")
    def _cameras(self) -> Config:
        seen: set[str] = set()
        devices: dict[str, int] = {}
        for i, cam in enumerate(self.cameras):
            if cam.name in seen:
                raise Problem(f"duplicate camera name {cam.name!r}", f"cameras[{i}].name")
            seen.add(cam.name)
            device = cam.spec.device
            if device is None or cam.spec.kind is SourceKind.AUTO:
                continue
            if device in devices:
                raise Problem(
                    f"{device} is already cameras[{devices[device]}]'s device; a device can be read by one camera only",
                    f"cameras[{i}].source",
                )
            devices[device] = i
        return self
