"""Keeping secrets out of what the server shows: sources, log lines, pictures.

A camera URL often carries its password (``rtsp://admin:pw@cam/``) or a token in its query
(``?token=...``, ``&pwd=...``), a ``pipe:`` command its credentials (``curl -u admin:pw``), and
the appliance shows its sources in many places: status, metrics, logs, the viewer page, the
"NO SIGNAL" placeholder picture. Every one of them goes through :func:`redact_source`. Log
lines get a second net, :class:`SecretMasker`, that masks the literal secret values it was
given wherever they turn up (an OpenCV or subprocess message quoting a URL, a traceback),
and those a source read from a secret reference when it opened (:func:`remember_secrets`).
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "***"
# Query parameters (and name=value arguments) whose value is a secret: anything *named like*
# one of these (§7 of docs/interface.md), so `api_key`, `access_token` and `X-Amz-Signature` count too.
SECRET_NAMES = ("password", "pass", "pwd", "token", "key", "secret", "auth", "signature")
_NAME = r"[A-Za-z0-9_.\-]*(?:" + "|".join(SECRET_NAMES) + r")[A-Za-z0-9_.\-]*"
_SECRET_PARAM = re.compile(rf"(?i)(?<![A-Za-z0-9_.\-])({_NAME})=([^&;#\s'\"]*)")
# scheme://userinfo@ : the user info is everything up to the last "@" before the path.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/?#\s'\"]*)@")
MIN_MASKED_LENGTH = 4  # shorter literal values would mask ordinary words in log lines
# Credentials as command-line options (§7): curl's -u/--user USER:PASSWORD (the password part is
# secret), and --password, --pass, --oauth2-bearer VALUE (all of it). A value may be quoted as a
# shell would; -u may be glued to its value (curl's -uUSER:PASSWORD), but only with a colon, so
# ffmpeg's -user_agent stays what it is.
_OPTION = re.compile(
    r"""(?<!\S)(?:(?P<user>--user(?:=|\s+)|-u\s+|-u(?=[^\s'"]*:))|(?P<whole>(?:--password|--pass|--oauth2-bearer)(?:=|\s+)))"""
    r"""(?P<value>'[^']*'|"[^"]*"|[^\s'"]+)"""
)
_REFERENCE_ONLY = re.compile(r"^\$\{[^}]*\}$")
# Credentials in a logged request header (the WebSocket library logs the handshake at DEBUG):
# whatever the scheme, Basic's base64 is as good as the password itself.
_AUTH_HEADER = re.compile(
    r"""(?i)\b((?:proxy-)?authorization['"]?\s*[:,=]\s*[b]?['"]?(?:[A-Za-z0-9_-]+\s+)?)[^\s'"\\,)]+"""
)


def redact_source(source: str | int) -> str:
    """The source as it may be shown: URL user info, secret parameter values and credential
    options of a command as ``***`` (a ``${...}`` reference to a secret is shown as it is)."""
    text = str(source)
    text = _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
    text = _OPTION.sub(_mask_option, text)
    return _SECRET_PARAM.sub(lambda m: f"{m.group(1)}={MASK}" if m.group(2) else m.group(0), text)


def mask_literals(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` (known values, not patterns) as ``***``."""
    # Longest first, so a secret that contains another one is masked whole.
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _option_secret(match: re.Match[str]) -> tuple[str, str, str, str]:
    """(option, opening quote, value, closing quote) with ``value`` the secret part, or '' if none."""
    raw = match.group("value")
    quote = raw[0] if raw[0] in "'\"" else ""
    inner = raw[1:-1] if quote else raw
    option = match.group("user") or match.group("whole")
    if match.group("user"):
        user, colon, password = inner.partition(":")
        if not colon:
            return option, quote, "", quote  # a user name alone: nothing secret
        option, inner = option + quote + user + colon, password
        return option, "", inner, quote
    return option, quote, inner, quote


def _mask_option(match: re.Match[str]) -> str:
    option, opening, secret, closing = _option_secret(match)
    if not secret or _REFERENCE_ONLY.match(secret):
        return match.group(0)
    return f"{option}{opening}{MASK}{closing}"


def source_secrets(source: str | int) -> set[str]:
    """The literal secret values inside a source, for :class:`SecretMasker`."""
    text = str(source)
    found: set[str] = set()
    for match in _OPTION.finditer(text):
        secret = _option_secret(match)[2]
        if secret and not _REFERENCE_ONLY.match(secret):
            found.add(secret)
    for match in _USERINFO.finditer(text):
        userinfo = match.group(2)
        found.add(userinfo)
        user, _, password = userinfo.partition(":")
        found.update((password, unquote(password), user) if password else (user,))
    for match in _SECRET_PARAM.finditer(text):
        found.update((match.group(2), unquote(match.group(2))))
    return {s for s in found if len(s) >= MIN_MASKED_LENGTH}


_remembered: set[str] = set()
_maskers: weakref.WeakSet[SecretMasker] = weakref.WeakSet()
_lock = threading.Lock()


def remember_secrets(values: Iterable[str]) -> None:
    """Secrets learnt after start-up (a source read them from ``${...}`` references when it
    opened, in its capture thread): every :class:`SecretMasker` masks them from now on."""
    with _lock:
        new = {v for v in values if len(v) >= MIN_MASKED_LENGTH} - _remembered
        if not new:
            return
        _remembered.update(new)
        maskers = list(_maskers)
    for masker in maskers:
        masker.refresh()


class SecretMasker(logging.Filter):
    """Masks known secret values in every record that passes the handler.

    The record is formatted here (``getMessage``) so that secrets in the arguments are caught
    as well; exceptions are formatted too, since a traceback can quote a URL.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._pattern: re.Pattern[str] | None = None
        self._given: set[str] = set()
        with _lock:
            _maskers.add(self)
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        self._given = set(secrets)
        self.refresh()

    def refresh(self) -> None:
        with _lock:
            known = self._given | _remembered
        values = sorted({s for s in known if len(s) >= MIN_MASKED_LENGTH}, key=len, reverse=True)
        # One assignment: the loop thread may be using the old pattern meanwhile.
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
