"""Logging for an unattended device: one format, the stream's id on each line, no secrets,
and a bounded amount of text however hostile the clients.

A device logs to an SD card or a container log that nobody rotates by hand, so what a client
can make the server write is capped: a client's fault (a malformed request, an oversized head,
a bad WebSocket message) is one INFO line on the ``edge.client`` logger, and that logger lets
through at most :data:`CLIENT_FAULT_BURST` lines per :data:`CLIENT_FAULT_WINDOW` seconds,
then says how many it held back. uvicorn's own lines for the same faults are dropped in favour
of ours (they are WARNINGs with a traceback-free but unbounded stream of text).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable

from .connections import ConnectionFilter
from .redact import SecretMasker

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(conn)s] %(message)s"
CLIENT_FAULT_WINDOW = 10.0
CLIENT_FAULT_BURST = 5

client_log = logging.getLogger("edge.client")

# uvicorn's and websockets' per-connection INFO lines: noise at 100 viewers, and they quote the
# query string; connections.py logs one open and one close line per stream instead.
_PER_CONNECTION = ('%s - "WebSocket %s"', "connection open", "connection closed", "connection rejected")
# uvicorn's lines for client faults that edge logs itself, rate-limited (server.py).
_CLIENT_FAULTS = ("Invalid HTTP request received.", "Unsupported upgrade request.")


class ClientFaultLimiter(logging.Filter):
    """Lets at most ``burst`` records through per ``window`` seconds; counts the rest and
    reports the count on the next record it lets through."""

    def __init__(self, window: float = CLIENT_FAULT_WINDOW, burst: int = CLIENT_FAULT_BURST) -> None:
        super().__init__()
        self.window = window
        self.burst = burst
        self._start = -window
        self._count = 0
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self._start >= self.window:
            self._start, self._count = now, 0
        self._count += 1
        if self._count > self.burst:
            self.suppressed += 1
            return False
        if self.suppressed:
            record.msg = f"{record.getMessage()} ({self.suppressed} more client errors not logged)"
            record.args = None
            self.suppressed = 0
        return True


def _drop_uvicorn_noise(record: logging.LogRecord) -> bool:
    if record.name not in ("uvicorn.error", "websockets.server") or not isinstance(record.msg, str):
        return True
    if record.levelno == logging.INFO and record.msg.startswith(_PER_CONNECTION):
        return False
    return record.msg not in _CLIENT_FAULTS


def setup_logging(level: str, secrets: Iterable[str] = ()) -> None:
    """Log to stderr at ``level``; ``secrets`` are masked wherever they would appear."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    # On the handler, not a logger, so uvicorn's and websockets' records pass them too.
    handler.addFilter(ConnectionFilter())
    handler.addFilter(_drop_uvicorn_noise)
    handler.addFilter(SecretMasker(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(level.upper())
    if not any(isinstance(f, ClientFaultLimiter) for f in client_log.filters):
        client_log.addFilter(ClientFaultLimiter())
