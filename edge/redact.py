"""Keeping secrets out of what the server shows: sources, log lines, pictures.

A camera URL often carries its password (``rtsp://admin:pw@cam/``) or a token in its query
(``?token=...``, ``&pwd=...``), and the appliance shows its sources in many places: status,
metrics, logs, the viewer page, the "NO SIGNAL" placeholder picture. Every one of them goes
through :func:`redact_source`. Log lines get a second net, :class:`SecretMasker`, that masks
the literal secret values it was given wherever they turn up (an OpenCV or subprocess
message quoting a URL, a traceback).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "***"
# Query parameters (and name=value arguments) whose value is a secret: anything *named like*
# one of these (contract §7), so `api_key`, `access_token` and `X-Amz-Signature` count too.
SECRET_NAMES = ("password", "pass", "pwd", "token", "key", "secret", "auth", "signature")
_NAME = r"[A-Za-z0-9_.\-]*(?:" + "|".join(SECRET_NAMES) + r")[A-Za-z0-9_.\-]*"
_SECRET_PARAM = re.compile(rf"(?i)(?<![A-Za-z0-9_.\-])({_NAME})=([^&;#\s'\"]*)")
# scheme://userinfo@ : the user info is everything up to the last "@" before the path.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/?#\s'\"]*)@")
MIN_MASKED_LENGTH = 4  # shorter literal values would mask ordinary words in log lines
# Credentials in a logged request header (the WebSocket library logs the handshake at DEBUG):
# whatever the scheme, Basic's base64 is as good as the password itself.
_AUTH_HEADER = re.compile(
    r"""(?i)\b((?:proxy-)?authorization['"]?\s*[:,=]\s*[b]?['"]?(?:[A-Za-z0-9_-]+\s+)?)[^\s'"\\,)]+"""
)


def redact_source(source: str | int) -> str:
    """The source as it may be shown: URL user info and secret parameter values as ``***``."""
    text = str(source)
    text = _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m.group(1)}={MASK}" if m.group(2) else m.group(0), text)


def source_secrets(source: str | int) -> set[str]:
    """The literal secret values inside a source, for :class:`SecretMasker`."""
    text = str(source)
    found: set[str] = set()
    for match in _USERINFO.finditer(text):
        userinfo = match.group(2)
        found.add(userinfo)
        user, _, password = userinfo.partition(":")
        found.update((password, unquote(password), user) if password else (user,))
    for match in _SECRET_PARAM.finditer(text):
        found.update((match.group(2), unquote(match.group(2))))
    return {s for s in found if len(s) >= MIN_MASKED_LENGTH}


class SecretMasker(logging.Filter):
    """Masks known secret values in every record that passes the handler.

    The record is formatted here (``getMessage``) so that secrets in the arguments are caught
    as well; exceptions are formatted too, since a traceback can quote a URL.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._pattern: re.Pattern[str] | None = None
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        values = sorted({s for s in secrets if len(s) >= MIN_MASKED_LENGTH}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        return True

    def mask(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        if "uthorization" in text:
            text = _AUTH_HEADER.sub(lambda m: m.group(1) + MASK, text)
        return text
