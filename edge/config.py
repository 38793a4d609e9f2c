"""YAML configuration -> typed, validated settings.

Every error names the file and the key path (``cameras[0].fps``) so that a typo in a
config on a headless device is found from one line of log, not a traceback.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import shlex
import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from . import references

DEFAULT_CONFIG_PATH = "config/edge.yaml"
CAMERA_NAME_RE = re.compile(r"^[a-z0-9_-]+$")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


class ConfigError(Exception):
    """A configuration problem, rendered as one line: ``file: key.path: what is wrong``."""

    def __init__(self, path: str | os.PathLike[str], key: str, message: str) -> None:
        self.path = str(path)
        self.key = key
        self.message = message
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        super().__init__(where + message)


@dataclass(frozen=True)
class AuthConfig:
    """HTTP Basic credentials. The password is read from a file or the environment at load
    time (never written in the YAML) and kept out of ``repr`` so it cannot reach a log line."""

    username: str
    password: str = field(repr=False)
    source: str = ""  # where the password came from ("file /run/secrets/x", "env EDGE_PASSWORD")


@dataclass(frozen=True)
class TLSConfig:
    certfile: str
    keyfile: str


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_clients: int = 64
    log_level: str = "info"
    auth: AuthConfig | None = None
    tokens: tuple[str, ...] = field(default=(), repr=False)
    tokens_file: str | None = None
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    tls: TLSConfig | None = None
    trusted_proxies: tuple[str, ...] = ()
    request_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    stall_timeout: float = 60.0
    max_streams_per_address: int = 0
    # Connections one address may hold without a request under way (just accepted, in their TLS
    # handshake, or kept alive between requests); a browser holds a few, a thousand is an attack.
    max_pending_per_address: int = 32
    max_request_head: int = 64 * 1024
    max_headers: int = 100

    @property
    def access_controlled(self) -> bool:
        """Whether anything stands between a client and the cameras."""
        return self.auth is not None or self.tokens_file is not None


PASSTHROUGH_MODES = ("auto", "always", "never")
ROTATIONS = (0, 90, 180, 270)
FLIPS = ("none", "horizontal", "vertical")
PIPE_PREFIX = "pipe:"


@dataclass(frozen=True)
class CameraConfig:
    name: str
    source: str | int = "auto"
    width: int = 640
    height: int = 480
    fps: float = 30.0
    quality: int = 80
    passthrough: str = "auto"
    idle_after: float = 10.0
    drop_same_frames: int = 0
    rotate: int = 0
    flip: str = "none"
    # Whether width/height were written in the file. A source with a size of its own (a file, a
    # pipe, a stream) is passed through at that size unless the user asked for another one.
    size_given: bool = False

    @property
    def transforms(self) -> bool:
        return self.rotate != 0 or self.flip != "none"


@dataclass(frozen=True)
class Config:
    cameras: tuple[CameraConfig, ...]
    server: ServerConfig = field(default_factory=ServerConfig)
    path: str = ""

    def with_overrides(self, host: str | None = None, port: int | None = None, log_level: str | None = None) -> Config:
        """Apply CLI overrides, validated like the file's own values."""
        server = self.server
        if host is not None:
            server = replace(server, host=_host(host, "--host", self.path))
        if port is not None:
            server = replace(server, port=_int_in(port, "--port", self.path, 0, 65535))
        if log_level is not None:
            server = replace(server, log_level=_log_level(log_level, "--log-level", self.path))
        return replace(self, server=server)


def default_config_path() -> str:
    return os.environ.get("EDGE_CONFIG") or DEFAULT_CONFIG_PATH


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate ``path``; raise :class:`ConfigError` on any problem."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"cannot read file: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(path, "", f"YAML syntax error{where}: {problem}") from None
    return parse_config(data, path)


def parse_config(data: Any, path: str) -> Config:
    if data is None:
        raise ConfigError(path, "", "file is empty; it must at least list `cameras`")
    table = _mapping(data, "", path)
    _no_unknown(table, {"server", "cameras"}, "", path)
    server = _server(table.get("server", {}), path)
    if "cameras" not in table:
        raise ConfigError(path, "cameras", "missing; list at least one camera with a `name`")
    cameras = _cameras(table["cameras"], path)
    return Config(cameras=cameras, server=server, path=path)


_SERVER_KEYS = {
    "host",
    "port",
    "max_clients",
    "log_level",
    "auth",
    "tokens_file",
    "allowed_origins",
    "allowed_hosts",
    "tls",
    "trusted_proxies",
    "request_timeout",
    "keepalive_timeout",
    "stall_timeout",
    "max_streams_per_address",
    "max_pending_per_address",
    "max_request_head",
    "max_headers",
}


def _server(data: Any, path: str) -> ServerConfig:
    table = _mapping(data if data is not None else {}, "server", path)
    _no_unknown(table, _SERVER_KEYS, "server", path)
    d = ServerConfig()
    tokens_file = table.get("tokens_file")
    if tokens_file is not None:
        tokens_file = _existing_file(tokens_file, "server.tokens_file", path)
    return ServerConfig(
        host=_host(table.get("host", d.host), "server.host", path),
        port=_int_in(table.get("port", d.port), "server.port", path, 0, 65535),
        max_clients=_int_in(table.get("max_clients", d.max_clients), "server.max_clients", path, 1, 100_000),
        log_level=_log_level(table.get("log_level", d.log_level), "server.log_level", path),
        auth=_auth(table["auth"], path) if table.get("auth") is not None else None,
        tokens=_tokens(tokens_file, path) if tokens_file else (),
        tokens_file=tokens_file,
        allowed_origins=_origins(table.get("allowed_origins", []), "server.allowed_origins", path),
        allowed_hosts=_hosts(table.get("allowed_hosts", []), "server.allowed_hosts", path),
        tls=_tls(table["tls"], path) if table.get("tls") is not None else None,
        trusted_proxies=_proxies(table.get("trusted_proxies", []), "server.trusted_proxies", path),
        request_timeout=_seconds(table.get("request_timeout", d.request_timeout), "server.request_timeout", path),
        keepalive_timeout=_seconds(
            table.get("keepalive_timeout", d.keepalive_timeout), "server.keepalive_timeout", path
        ),
        stall_timeout=_seconds(table.get("stall_timeout", d.stall_timeout), "server.stall_timeout", path),
        max_streams_per_address=_int_in(
            table.get("max_streams_per_address", d.max_streams_per_address),
            "server.max_streams_per_address",
            path,
            0,
            100_000,
        ),
        max_pending_per_address=_int_in(
            table.get("max_pending_per_address", d.max_pending_per_address),
            "server.max_pending_per_address",
            path,
            0,
            100_000,
        ),
        max_request_head=_int_in(
            table.get("max_request_head", d.max_request_head), "server.max_request_head", path, 1024, 1024 * 1024
        ),
        max_headers=_int_in(table.get("max_headers", d.max_headers), "server.max_headers", path, 8, 1000),
    )


def _auth(data: Any, path: str) -> AuthConfig:
    key = "server.auth"
    table = _mapping(data, key, path)
    if "password" in table:
        raise ConfigError(
            path,
            f"{key}.password",
            "a password is never written in the config file; put it in a file (password_file) "
            "or an environment variable (password_env)",
        )
    _no_unknown(table, {"username", "password_file", "password_env"}, key, path)
    username = table.get("username")
    if not isinstance(username, str) or not username or ":" in username:
        raise ConfigError(path, f"{key}.username", f"must be a non-empty name without ':', got {_kind(username)}")
    has_file, has_env = table.get("password_file") is not None, table.get("password_env") is not None
    if has_file == has_env:
        raise ConfigError(path, key, "set exactly one of password_file or password_env")
    if has_file:
        file = _existing_file(table["password_file"], f"{key}.password_file", path)
        # A trailing newline is how editors and `echo` write the file; it is not part of the password.
        password = _read_secret(file, f"{key}.password_file", path).rstrip("\r\n")
        where = f"file {file}"
    else:
        name = table["password_env"]
        if not isinstance(name, str) or not name:
            raise ConfigError(path, f"{key}.password_env", f"must name an environment variable, got {_kind(name)}")
        password = os.environ.get(name, "")
        where = f"environment variable {name}"
        if not password:
            raise ConfigError(path, f"{key}.password_env", f"environment variable {name} is not set or empty")
    if not password:
        raise ConfigError(path, f"{key}.password_file", f"{where} holds an empty password")
    return AuthConfig(username=username, password=password, source=where)


def _tokens(file: str, path: str) -> tuple[str, ...]:
    key = "server.tokens_file"
    lines = _read_secret(file, key, path).splitlines()
    tokens = tuple(t for t in (line.strip() for line in lines) if t and not t.startswith("#"))
    if not tokens:
        raise ConfigError(path, key, f"{file} lists no token (one per line; # starts a comment)")
    for n, token in enumerate(tokens, 1):
        # A short token can be guessed by anyone on the LAN: it guards the same video as the password.
        if len(token) < 16 or not token.isprintable() or " " in token:
            raise ConfigError(path, key, f"token {n} in {file} must be at least 16 printable characters without spaces")
    return tokens


def _read_secret(file: str, key: str, path: str) -> str:
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise ConfigError(path, key, f"cannot read {file}: {reason}") from None


def _existing_file(value: Any, key: str, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, key, f"must be a file path, got {_kind(value)}")
    file = os.path.expanduser(value.strip())
    if not os.path.isfile(file):
        raise ConfigError(path, key, f"file {file} does not exist")
    return file


def _tls(data: Any, path: str) -> TLSConfig:
    table = _mapping(data, "server.tls", path)
    _no_unknown(table, {"certfile", "keyfile"}, "server.tls", path)
    for name in ("certfile", "keyfile"):
        if name not in table:
            raise ConfigError(path, f"server.tls.{name}", "missing; TLS needs both a certificate and its key")
    certfile = _existing_file(table["certfile"], "server.tls.certfile", path)
    keyfile = _existing_file(table["keyfile"], "server.tls.keyfile", path)
    try:  # fail at start-up with the reason, not at the first client's handshake
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise ConfigError(path, "server.tls", f"cannot load {certfile} with {keyfile}: {reason}") from None
    return TLSConfig(certfile, keyfile)


def _strings(value: Any, key: str, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(path, key, f"must be a list of strings, got {_kind(value)}")
    return [v.strip() for v in value]


def _origins(value: Any, key: str, path: str) -> tuple[str, ...]:
    origins = _strings(value, key, path)
    for i, origin in enumerate(origins):
        if origin != "*" and not re.match(r"^https?://[^/?#\s]+$", origin):
            raise ConfigError(path, f"{key}[{i}]", f"must be * or an origin like https://example.com, got {origin!r}")
    return tuple(o.lower().rstrip("/") for o in origins)


def _hosts(value: Any, key: str, path: str) -> tuple[str, ...]:
    hosts = _strings(value, key, path)
    for i, host in enumerate(hosts):
        if host != "*" and not re.match(r"^(\*\.)?[A-Za-z0-9.-]+$", host):
            raise ConfigError(path, f"{key}[{i}]", f"must be * or a host name like cam.example.com, got {host!r}")
    return tuple(h.lower() for h in hosts)


def _proxies(value: Any, key: str, path: str) -> tuple[str, ...]:
    proxies = _strings(value, key, path)
    for i, proxy in enumerate(proxies):
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                path, f"{key}[{i}]", f"must be an IP address or network like 127.0.0.1 or 10.0.0.0/8, got {proxy!r}"
            ) from None
    return tuple(proxies)


def _seconds(value: Any, key: str, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(path, key, f"must be a number of seconds, got {_kind(value)}")
    if not math.isfinite(value) or not 1 <= value <= 86_400:
        raise ConfigError(path, key, f"must be between 1 and 86400 seconds, got {value}")
    return float(value)


def _cameras(data: Any, path: str) -> tuple[CameraConfig, ...]:
    if not isinstance(data, list):
        raise ConfigError(path, "cameras", f"must be a list of cameras, got {_kind(data)}")
    if not data:
        raise ConfigError(path, "cameras", "must list at least one camera")
    cameras = tuple(_camera(item, f"cameras[{i}]", path) for i, item in enumerate(data))
    seen: set[str] = set()
    devices: dict[str, int] = {}
    for i, cam in enumerate(cameras):
        if cam.name in seen:
            raise ConfigError(path, f"cameras[{i}].name", f"duplicate camera name {cam.name!r}")
        seen.add(cam.name)
        device = device_key(cam.source)
        if device is not None and device in devices and cam.source != "auto":
            other = devices[device]
            raise ConfigError(
                path,
                f"cameras[{i}].source",
                f"{device} is already cameras[{other}]'s device; a device can be read by one camera only",
            )
        if device is not None and cam.source != "auto":
            devices[device] = i
    return cameras


_CAMERA_KEYS = {
    "name",
    "source",
    "width",
    "height",
    "fps",
    "quality",
    "passthrough",
    "idle_after",
    "drop_same_frames",
    "rotate",
    "flip",
}


def _camera(data: Any, key: str, path: str) -> CameraConfig:
    table = _mapping(data, key, path)
    _no_unknown(table, _CAMERA_KEYS, key, path)
    if "name" not in table:
        raise ConfigError(path, f"{key}.name", "missing; every camera needs a name")
    name = table["name"]
    if not isinstance(name, str) or not CAMERA_NAME_RE.match(name):
        raise ConfigError(path, f"{key}.name", f"must match [a-z0-9_-]+, got {name!r}")
    d = CameraConfig(name=name)
    cam = CameraConfig(
        name=name,
        source=_source(table.get("source", d.source), f"{key}.source", path),
        width=_int_in(table.get("width", d.width), f"{key}.width", path, 16, 7680),
        height=_int_in(table.get("height", d.height), f"{key}.height", path, 16, 4320),
        fps=_fps(table.get("fps", d.fps), f"{key}.fps", path),
        quality=_int_in(table.get("quality", d.quality), f"{key}.quality", path, 1, 100),
        passthrough=_choice(table.get("passthrough", d.passthrough), f"{key}.passthrough", path, PASSTHROUGH_MODES),
        idle_after=_idle_after(table.get("idle_after", d.idle_after), f"{key}.idle_after", path),
        drop_same_frames=_int_in(
            table.get("drop_same_frames", d.drop_same_frames), f"{key}.drop_same_frames", path, 0, 1_000_000
        ),
        rotate=_rotation(table.get("rotate", d.rotate), f"{key}.rotate", path),
        flip=_choice(table.get("flip", d.flip), f"{key}.flip", path, FLIPS),
        size_given="width" in table or "height" in table,
    )
    if cam.passthrough == "always" and cam.source == "virtual":
        raise ConfigError(
            path, f"{key}.passthrough", "always: the virtual camera has no JPEG of its own to pass through; use auto"
        )
    if cam.passthrough == "always" and cam.transforms:
        what = f"rotate: {cam.rotate}" if cam.rotate else f"flip: {cam.flip}"
        raise ConfigError(path, f"{key}.passthrough", f"always cannot be combined with {what} (that needs decoding)")
    return cam


def _choice(value: Any, key: str, path: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(path, key, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _rotation(value: Any, key: str, path: str) -> int:
    if isinstance(value, bool) or value not in ROTATIONS:
        raise ConfigError(path, key, f"must be one of 0, 90, 180, 270, got {value!r}")
    return int(value)


def _idle_after(value: Any, key: str, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(path, key, f"must be a number of seconds, got {_kind(value)}")
    if value != 0 and not (math.isfinite(value) and 1 <= value <= 86_400):
        raise ConfigError(path, key, f"must be 0 (never idle) or between 1 and 86400 seconds, got {value}")
    return float(value)


def _source(value: Any, key: str, path: str) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        expected = "auto, virtual, a device path, an index, a file, a URL or pipe:COMMAND"
        raise ConfigError(path, key, f"must be {expected}; got {_kind(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(path, key, f"device index must be >= 0, got {value}")
        return value
    text: str = value.strip()
    if not text:
        raise ConfigError(path, key, "must not be empty")
    if text.isdigit():
        return int(text)
    # Secret references are read again whenever the source opens; checked now so that a typo in
    # a variable name stops the start instead of looping through reconnects.
    problem = references.check(text)
    if problem is not None:
        raise ConfigError(path, key, problem)
    if text.startswith(PIPE_PREFIX):
        try:
            argv = shlex.split(text[len(PIPE_PREFIX) :])
        except ValueError as exc:
            raise ConfigError(path, key, f"cannot split the command: {exc}") from None
        if not argv:
            raise ConfigError(path, key, "pipe: needs a command, e.g. pipe:rpicam-vid -t 0 --codec mjpeg -o -")
        return text
    if text in ("auto", "virtual") or text.startswith("/dev/") or "://" in text:
        return text
    if not os.path.isfile(os.path.expanduser(references.expand(text).text)):
        # A missing file never appears by retrying; a typo must stop the start, not loop.
        raise ConfigError(path, key, f"video file {text!r} does not exist (or is not a file)")
    return text


def device_key(source: str | int) -> str | None:
    """What identifies a V4L2 device behind a source (``/dev/video0``, ``0`` and a by-id link to
    it are the same camera), or ``None`` for sources that are not devices."""
    if isinstance(source, int):
        return f"/dev/video{source}"
    if source == "auto":
        return "/dev/video0"
    if source.startswith("/dev/"):
        return os.path.realpath(source)
    return None


def _fps(value: Any, key: str, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(path, key, f"must be a number, got {_kind(value)}")
    if not math.isfinite(value) or not 0.1 <= value <= 120:
        raise ConfigError(path, key, f"must be between 0.1 and 120, got {value}")
    return float(value)


def _int_in(value: Any, key: str, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, key, f"must be an integer, got {_kind(value)}")
    if not low <= value <= high:
        raise ConfigError(path, key, f"must be between {low} and {high}, got {value}")
    return value


def _host(value: Any, key: str, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, key, f"must be a host name or address, got {_kind(value)}")
    return value.strip()


def _log_level(value: Any, key: str, path: str) -> str:
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        raise ConfigError(path, key, f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return value.lower()


def _mapping(value: Any, key: str, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(path, key or "(top level)", f"must be a mapping, got {_kind(value)}")
    return value


def _no_unknown(table: dict[str, Any], allowed: set[str], key: str, path: str) -> None:
    for name in table:
        if name not in allowed:
            where = f"{key}.{name}" if key else str(name)
            raise ConfigError(path, where, f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
