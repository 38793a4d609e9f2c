"""uvicorn's and websockets' log records as edge wants them: the only place that knows them.

uvicorn logs everything, its lifecycle included, under the name ``uvicorn.error``, which reads
as a fault in every INFO line ("Started server process"); those lines are shown under
``edge.server``. Its per-connection lines (and websockets', which uvicorn routes to the same
logger) are noise at 100 viewers and quote the query string, a stream token included: edge logs
one line per stream open and close itself (``edge/fanout/connections.py``). Its lines for client
faults that edge answers and logs itself, rate-limited, are dropped.
"""

from __future__ import annotations

import logging

_UVICORN = ("uvicorn.error", "websockets.server")
_PER_CONNECTION = ('%s - "WebSocket %s"', "connection open", "connection closed", "connection rejected")
_CLIENT_FAULTS = ("Invalid HTTP request received.", "Unsupported upgrade request.")


def set_levels(level: str) -> None:
    """uvicorn's loggers at edge's level (they may have been given one of their own)."""
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(level.upper())


def uvicorn_records(record: logging.LogRecord) -> bool:
    """A log filter (on the handler, so every logger's records pass it)."""
    if record.name not in _UVICORN or not isinstance(record.msg, str):
        return True
    if record.levelno == logging.INFO and record.msg.startswith(_PER_CONNECTION):
        return False
    if record.msg in _CLIENT_FAULTS:
        return False
    if record.levelno <= logging.INFO and record.name == "uvicorn.error":
        record.name = "edge.server"
    return True
