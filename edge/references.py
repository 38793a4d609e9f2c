"""``${NAME}`` and ``${file:PATH}`` in a camera's source: its secrets kept out of the config
(§7 of ``docs/interface.md``).

A camera's password has to reach ffmpeg, curl or the RTSP URL somehow; written into
``edge.yaml`` it sits in every backup and every paste of the config. A reference instead
names an environment variable (``${CAM_PASSWORD}``) or a file (``${file:/run/secrets/cam}``,
where Docker and systemd put their secrets). The config keeps the reference, which is what
status, the page and the log show; the value is read each time the source opens (a rotated
secret is picked up at the next reconnect), used, and handed to the log's masker.

``$${`` is a literal ``${``. Everything else of the source is left as it is: ``$HOME`` or
``$(...)`` mean nothing here, since no shell ever sees a source.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FILE_PREFIX = "file:"
MAX_SECRET_FILE = 64 * 1024  # a secret file is a password or a token, not a picture


class SecretReferenceError(ValueError):
    """A reference that is malformed, names an unset variable or an unreadable file."""


@dataclass(frozen=True)
class Expanded:
    text: str
    secrets: tuple[str, ...]  # the values that were put in (for the log's masker)


def has_references(text: str) -> bool:
    return "${" in text


def expand(text: str) -> Expanded:
    """``text`` with every reference replaced by its value; raises :class:`SecretReferenceError`."""
    if "${" not in text:
        return Expanded(text, ())
    secrets: list[str] = []

    def value(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        inner = match.group(1)
        if inner is None:
            raise SecretReferenceError("a ${ without its closing }; write $${ for a literal ${")
        found = _resolve(inner)
        secrets.append(found)
        return found

    return Expanded(_REFERENCE.sub(value, text), tuple(secrets))


def check(text: str) -> str | None:
    """What is wrong with the references in ``text`` (a message saying what to do), or ``None``."""
    try:
        expand(text)
    except SecretReferenceError as exc:
        return str(exc)
    return None


def _resolve(inner: str) -> str:
    if inner.startswith(FILE_PREFIX):
        path = inner[len(FILE_PREFIX) :].strip()
        if not path:
            raise SecretReferenceError("${file:} needs a path, e.g. ${file:/run/secrets/camera_password}")
        return _read(os.path.expanduser(path))
    if not _NAME.match(inner):
        raise SecretReferenceError(
            f"${{{inner}}} is neither an environment variable name nor file:PATH; "
            "write ${NAME} or ${file:/path/to/secret} (or $${ for a literal ${)"
        )
    found = os.environ.get(inner)
    if found is None:
        raise SecretReferenceError(f"environment variable {inner} is not set (the source refers to ${{{inner}}})")
    return found


def _read(path: str) -> str:
    try:
        with Path(path).open("rb") as file:
            data = file.read(MAX_SECRET_FILE + 1)
    except OSError as exc:
        raise SecretReferenceError(f"cannot read the secret file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_SECRET_FILE:
        raise SecretReferenceError(f"the secret file {path} is larger than {MAX_SECRET_FILE} bytes")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretReferenceError(f"the secret file {path} is not UTF-8 text") from None
