"""A configuration problem as one line: the file, the key path (``cameras[0].fps``), what is
wrong and how to fix it. No traceback: operators read that line in a service log and must be
able to fix the file from it alone (§1 of docs/interface.md: exit status 2)."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any

import annotated_types
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from .models import Config, Problem, kind_of, unknown_key

_UNKNOWN_KEY = ("extra_forbidden", "unexpected_keyword_argument")


class ConfigError(Exception):
    """A configuration problem, rendered as one line: ``file: key.path: what is wrong``."""

    def __init__(self, path: str | os.PathLike[str], key: str, message: str) -> None:
        self.path = str(path)
        self.key = key
        self.message = message
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        super().__init__(where + message)


def config_error(exc: ValidationError, path: str, root: type = Config, prefix: str = "") -> ConfigError:
    """The first of pydantic's errors, in edge's words."""
    # A misspelt key explains the "missing" error of the key it was meant to be: it goes first.
    errors = sorted(exc.errors(), key=lambda e: e["type"] not in _UNKNOWN_KEY)
    error = errors[0]
    loc = tuple(error["loc"])
    key = _key(loc, prefix)
    ctx = error.get("ctx") or {}
    problem = ctx.get("error")
    if isinstance(problem, Problem):
        return ConfigError(path, _join(key, problem.key), problem.message)
    return ConfigError(path, key, _message(error, _field(root, loc)))


def _key(loc: tuple[int | str, ...], prefix: str = "") -> str:
    key = prefix
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _join(key: str, sub: str) -> str:
    if not sub:
        return key
    if not key or sub.startswith("["):
        return key + sub
    return f"{key}.{sub}"


def _message(error: ErrorDetails, field: tuple[type | None, Any]) -> str:
    kind = error["type"]
    value = error["input"]
    owner, info = field
    if kind in _UNKNOWN_KEY:
        allowed = [f.name for f in dataclasses.fields(owner) if not _internal(f)] if owner else []
        return unknown_key(error["loc"][-1], allowed)
    if kind == "missing":
        return "missing" + ("; every camera needs a name" if error["loc"][-1] == "name" else "")
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        low, high = _bounds(info)
        return f"must be between {low:g} and {high:g}, got {value}"
    if kind == "string_pattern_mismatch":
        return f"must match {error['ctx']['pattern'].strip('^$')}, got {value!r}"
    if kind == "literal_error":
        choices = ", ".join(str(c) for c in typing.get_args(_annotation(info)))
        return f"must be one of {choices}, got {value!r}"
    expected = {
        "int_type": "an integer",
        "int_from_float": "an integer",
        "float_type": "a number",
        "bool_type": "true or false",
        "string_type": "a string",
        "list_type": "a list",
        "tuple_type": "a list",
        "dict_type": "a mapping",
        "dataclass_type": "a mapping",
        "model_type": "a mapping",
    }.get(kind)
    if expected is not None:
        return f"must be {expected}, got {kind_of(value)}"
    return error["msg"]


def _internal(field: dataclasses.Field[Any]) -> bool:
    """Fields edge fills in itself, not keys of the file."""
    return field.name in ("password", "password_from", "tokens", "size_given", "path")


def _field(root: type, loc: tuple[int | str, ...]) -> tuple[type | None, Any]:
    """(the dataclass that owns the last key of ``loc``, that key's field info, if it is one)."""
    owner: type | None = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue  # an item of a list: the list's element type
        info = _fields(owner).get(part)
        owner = _dataclass_in(info.annotation) if info is not None else None
    last = loc[-1] if loc else None
    return owner, _fields(owner).get(last) if isinstance(last, str) else None


def _fields(owner: type | None) -> dict[str, Any]:
    return dict(getattr(owner, "__pydantic_fields__", {}))


def _dataclass_in(annotation: Any) -> type | None:
    """The dataclass inside ``X``, ``X | None`` or ``tuple[X, ...]``."""
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return annotation
    if typing.get_origin(annotation) in (types.UnionType, typing.Union, tuple):
        for arg in typing.get_args(annotation):
            found = _dataclass_in(arg)
            if found is not None:
                return found
    return None


def _annotation(info: Any) -> Any:
    return getattr(info, "annotation", None)


def _bounds(info: Any) -> tuple[float, float]:
    low, high = float("-inf"), float("inf")
    for item in getattr(info, "metadata", ()):
        if isinstance(item, annotated_types.Ge | annotated_types.Gt):
            low = float(getattr(item, "ge", getattr(item, "gt", low)))
        if isinstance(item, annotated_types.Le | annotated_types.Lt):
            high = float(getattr(item, "le", getattr(item, "lt", high)))
    return low, high
