"""Logging for an unattended device: one format, the stream's id on each line, no secrets,
and a bounded amount of text however hostile the clients.

A device logs to an SD card or a container log that nobody rotates by hand, so what clients
can make the server write is capped. A client's fault (a malformed request, an oversized head,
a failed login, a bad WebSocket message) is one INFO line on the ``edge.client`` logger, and a
stream's opening and closing one line each on ``edge.connections``; both pass one
:class:`ClientLogLimiter`, which lets through at most :data:`PER_CLIENT_BURST` lines per
client address and :data:`GLOBAL_BURST` lines in all per :data:`LOG_WINDOW` seconds, and says
on the next line it lets through how many it held back. One noisy client therefore neither
fills the card (about 150 bytes a second per client, and about 1 KB a second from all of them
together) nor hides another client's faults. (uvicorn's
own lines for the same faults are dropped by the server adapter's filter, ``server/logs.py``.)
"""

from __future__ import annotations

import collections
import contextvars
import logging
import sys
import time
from collections.abc import Callable, Iterable

from .redact import SecretMasker

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(conn)s] %(message)s"
LOG_WINDOW = 10.0
PER_CLIENT_BURST = 10  # lines per client address per window
GLOBAL_BURST = 60  # lines from all clients together per window (~1 KB/s)
MAX_HELD_CLIENTS = 256  # addresses whose held-back lines are counted one by one; the rest together

Filter = logging.Filter | Callable[[logging.LogRecord], bool]

client_log = logging.getLogger("edge.client")
stream_log = logging.getLogger("edge.connections")

# Set by the registry of open streams inside each stream's task (contextvars follow the task):
# the stream's id, stamped on every line logged while serving it, and its client address
# (``edge.fanout.connections.address_key``), which the client log limit counts the line against.
current_connection: contextvars.ContextVar[str] = contextvars.ContextVar("edge_connection", default="-")
current_client: contextvars.ContextVar[str] = contextvars.ContextVar("edge_client", default="-")


class ConnectionFilter(logging.Filter):
    """Stamps each log record with the id of the connection being served (``-`` if none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.conn = current_connection.get()
        return True


class ClientLogLimiter(logging.Filter):
    """Lets at most ``per_client`` records per client address and ``total`` records in all
    through per ``window`` seconds; counts the rest and reports the count on the next record
    it lets through.

    A record's client is its ``client`` attribute (``extra={"client": key}``), else the client
    of the stream being served (:data:`~edge.connections.current_client`).
    """

    def __init__(
        self,
        window: float = LOG_WINDOW,
        per_client: int = PER_CLIENT_BURST,
        total: int = GLOBAL_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.window = window
        self.per_client = per_client
        self.total = total
        self.clock = clock
        self._start = -window
        self._counts: collections.Counter[str] = collections.Counter()
        self._let_through = 0
        self._held: collections.Counter[str] = collections.Counter()
        self.suppressed = 0  # held back since the last report

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        if now - self._start >= self.window:
            self._start = now
            self._counts.clear()
            self._let_through = 0
        client = str(getattr(record, "client", None) or current_client.get())
        self._counts[client] += 1
        if self._counts[client] > self.per_client or self._let_through >= self.total:
            self.suppressed += 1
            if client in self._held or len(self._held) < MAX_HELD_CLIENTS:
                self._held[client] += 1
            else:
                self._held["others"] += 1
            return False
        self._let_through += 1
        if self.suppressed:
            ((top, n),) = self._held.most_common(1)
            where = f"{n} from {top}" if top != "others" else f"{n} from many addresses"
            record.msg = f"{record.getMessage()} ({self.suppressed} more client log lines not logged, {where})"
            record.args = None
            self.suppressed = 0
            self._held.clear()
        return True


def setup_logging(level: str, secrets: Iterable[str] = (), filters: Iterable[Filter] = ()) -> None:
    """Log to stderr at ``level``; ``secrets`` are masked wherever they would appear; ``filters``
    see every record first (the server adapter's, which knows uvicorn's records)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    # On the handler, not a logger, so every library's records pass them too.
    for extra in filters:
        handler.addFilter(extra)
    handler.addFilter(ConnectionFilter())
    handler.addFilter(SecretMasker(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if not any(isinstance(f, ClientLogLimiter) for f in client_log.filters):
        limiter = ClientLogLimiter()  # one budget per client for its faults and its streams
        client_log.addFilter(limiter)
        stream_log.addFilter(limiter)
