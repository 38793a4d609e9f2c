"""Waiting with a deadline: the suite's one polling loop.

Tests wait for a server to reach a state (a camera reconnecting, a client gone, a log line
written) by polling instead of sleeping a guessed time: as fast as the server allows, and always
bounded, so a server that never gets there fails the test instead of hanging it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 0.05,
    message: str = "condition",
) -> T:
    """Poll `predicate` until it returns a truthy value, or fail after `timeout` seconds.

    Exceptions raised by the predicate are remembered and reported if the deadline passes,
    since a transient failure (e.g. a connection refused while the server restarts) is expected.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    last_exc: BaseException | None = None
    while True:
        try:
            last = predicate()
            last_exc = None
            if last:
                return last
        except (OSError, httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f"last value: {last!r}" if last_exc is None else f"last error: {last_exc!r}"
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {message}; {detail}")
        time.sleep(interval)
