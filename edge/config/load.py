"""The YAML file to a :class:`~edge.config.models.Config`, and the command line's overrides."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from .errors import ConfigError, config_error
from .models import Config, ServerConfig

DEFAULT_CONFIG_PATH = "config/edge.yaml"
_CONFIG = TypeAdapter(Config)


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
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(path, "", f"YAML syntax error at {where}{problem}") from None
    return parse_config(data, path)


def parse_config(data: Any, path: str) -> Config:
    """Validate the YAML's data (a mapping with ``cameras`` and maybe ``server``)."""
    if data is None:
        raise ConfigError(path, "", "file is empty; it must at least list `cameras`")
    if not isinstance(data, dict):
        raise ConfigError(
            path, "(top level)", f"must be a mapping with `cameras` (and `server`), got a {type(data).__name__}"
        )
    try:
        config = _CONFIG.validate_python(data)
    except ValidationError as exc:
        raise config_error(exc, path) from None
    return dataclasses.replace(config, path=path)


def with_overrides(
    config: Config, host: str | None = None, port: int | None = None, log_level: str | None = None
) -> Config:
    """``config`` with the command line's (or the environment's) settings, validated like the file's."""
    server = config.server
    for flag, name, value in (
        ("--host", "host", host),
        ("--port", "port", port),
        ("--log-level", "log_level", log_level),
    ):
        if value is None:
            continue
        try:
            changes: dict[str, Any] = {name: value}
            server = dataclasses.replace(server, **changes)
        except ValidationError as exc:
            error = config_error(exc, config.path, ServerConfig)
            raise ConfigError(config.path, flag, error.message) from None
    return dataclasses.replace(config, server=server)
