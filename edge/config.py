"""YAML configuration -> typed, validated settings.

Every error names the file and the key path (``cameras[0].fps``) so that a typo in a
config on a headless device is found from one line of log, not a traceback.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

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
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_clients: int = 64
    log_level: str = "info"


@dataclass(frozen=True)
class CameraConfig:
    name: str
    source: str | int = "auto"
    width: int = 640
    height: int = 480
    fps: float = 30.0
    quality: int = 80


@dataclass(frozen=True)
class Config:
    cameras: tuple[CameraConfig, ...]
    server: ServerConfig = field(default_factory=ServerConfig)
    path: str = ""

    def camera(self, name: str) -> CameraConfig | None:
        return next((c for c in self.cameras if c.name == name), None)

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


def _server(data: Any, path: str) -> ServerConfig:
    table = _mapping(data if data is not None else {}, "server", path)
    _no_unknown(table, {"host", "port", "max_clients", "log_level"}, "server", path)
    d = ServerConfig()
    return ServerConfig(
        host=_host(table.get("host", d.host), "server.host", path),
        port=_int_in(table.get("port", d.port), "server.port", path, 0, 65535),
        max_clients=_int_in(table.get("max_clients", d.max_clients), "server.max_clients", path, 1, 100_000),
        log_level=_log_level(table.get("log_level", d.log_level), "server.log_level", path),
    )


def _cameras(data: Any, path: str) -> tuple[CameraConfig, ...]:
    if not isinstance(data, list):
        raise ConfigError(path, "cameras", f"must be a list of cameras, got {_kind(data)}")
    if not data:
        raise ConfigError(path, "cameras", "must list at least one camera")
    cameras = tuple(_camera(item, f"cameras[{i}]", path) for i, item in enumerate(data))
    seen: set[str] = set()
    for i, cam in enumerate(cameras):
        if cam.name in seen:
            raise ConfigError(path, f"cameras[{i}].name", f"duplicate camera name {cam.name!r}")
        seen.add(cam.name)
    return cameras


def _camera(data: Any, key: str, path: str) -> CameraConfig:
    table = _mapping(data, key, path)
    _no_unknown(table, {"name", "source", "width", "height", "fps", "quality"}, key, path)
    if "name" not in table:
        raise ConfigError(path, f"{key}.name", "missing; every camera needs a name")
    name = table["name"]
    if not isinstance(name, str) or not CAMERA_NAME_RE.match(name):
        raise ConfigError(path, f"{key}.name", f"must match [a-z0-9_-]+, got {name!r}")
    d = CameraConfig(name=name)
    return CameraConfig(
        name=name,
        source=_source(table.get("source", d.source), f"{key}.source", path),
        width=_int_in(table.get("width", d.width), f"{key}.width", path, 16, 7680),
        height=_int_in(table.get("height", d.height), f"{key}.height", path, 16, 4320),
        fps=_fps(table.get("fps", d.fps), f"{key}.fps", path),
        quality=_int_in(table.get("quality", d.quality), f"{key}.quality", path, 1, 100),
    )


def _source(value: Any, key: str, path: str) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        expected = "auto, virtual, a device path, an index, a file or a URL"
        raise ConfigError(path, key, f"must be {expected}; got {_kind(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(path, key, f"device index must be >= 0, got {value}")
        return value
    value = value.strip()
    if not value:
        raise ConfigError(path, key, "must not be empty")
    return int(value) if value.isdigit() else value


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
