"""A WebSocket client's frames counted from their headers, before anything parses them (§5, §7
of ``docs/interface.md``).

The websockets library parses every frame it is fed and keeps every fragment of a message,
and uvicorn feeds it whatever arrived. A client that sends zero-length continuation frames or
pings as fast as its link allows therefore costs the server a core and unbounded memory, long
before a message reaches edge's handler. :class:`FrameGuard` sits in front of the parser
(``server.py`` feeds it each read): it reads only frame headers (2 to 14 bytes) and skips
payloads, so a frame costs it the same whatever it holds, and it stops the stream at the
first frame that breaks a rule:

* more than :data:`FLOOD_LIMIT` frames of any kind (data, continuation, ping, pong, close) in
  a second, not counting one ``ack`` per frame sent, which the handler credits back with
  :meth:`FrameGuard.refund` (an ack cannot be told from another text message by its header);
* a message larger than :data:`MAX_MESSAGE` bytes however it is fragmented, each fragment
  counting at least :data:`MIN_FRAGMENT_COST` bytes, so a message cannot be made of an endless
  number of empty fragments either.

Everything before that frame goes on to the parser; nothing after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

FLOOD_LIMIT = 100  # client frames per second (§5: messages; §7: frames of any kind)
MAX_MESSAGE = 64 * 1024  # bytes in one client message, all fragments together
MIN_FRAGMENT_COST = 64  # what an empty fragment costs toward MAX_MESSAGE
CLOSE_POLICY, CLOSE_TOO_BIG = 1008, 1009

_CONT, _TEXT, _BINARY, _CLOSE = 0x0, 0x1, 0x2, 0x8


class FrameGuard:
    """Counts a client's frames as its bytes arrive; see the module docstring for the rules.

    After :meth:`feed` returned less than it was given, :attr:`violation` holds the close code
    and reason, and every further call returns 0. :attr:`close_seen` turns true once a close
    frame's header has gone by (what a connection that is closing waits for).
    """

    __slots__ = (
        "limit",
        "max_message",
        "clock",
        "_head",
        "_skip",
        "_message",
        "_window_start",
        "_window_count",
        "violation",
        "close_seen",
        "frames",
    )

    def __init__(
        self,
        limit: int = FLOOD_LIMIT,
        max_message: int = MAX_MESSAGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.max_message = max_message
        self.clock = clock
        self._head = b""  # the start of a header cut off by the end of a read (< 14 bytes)
        self._skip = 0  # payload bytes of the current frame still to come
        self._message: int | None = None  # cost so far of a fragmented message, None outside one
        self._window_start = -1.0
        self._window_count = 0
        self.violation: tuple[int, str] | None = None
        self.close_seen = False
        self.frames = 0  # frames seen in all (for tests and the log)

    def refund(self) -> None:
        """The handler let a frame through for free (an ack of a frame sent): uncount it."""
        if self._window_count > 0:
            self._window_count -= 1

    def feed(self, data: bytes) -> int:
        """How many bytes of ``data`` may go on to the parser: all of them, or those before the
        first frame that broke a rule (then :attr:`violation` says which)."""
        if self.violation is not None:
            return 0
        size = len(data)
        pos = 0
        while pos < size:
            if self._skip:
                step = min(self._skip, size - pos)
                self._skip -= step
                pos += step
                continue
            start = pos - len(self._head)  # where this frame's header began (< 0: in an earlier read)
            head = self._head + data[pos : pos + 14 - len(self._head)]
            need = _header_length(head)
            if need is None or len(head) < need:
                self._head = head
                return size
            pos += need - len(self._head)
            self._head = b""
            violation = self._frame(head[0], _payload_length(head))
            if violation is not None:
                self.violation = violation
                return max(start, 0)
        return size

    def _frame(self, b0: int, length: int) -> tuple[int, str] | None:
        self.frames += 1
        now = self.clock()
        if now - self._window_start >= 1.0:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        if self._window_count > self.limit:
            return CLOSE_POLICY, f"more than {self.limit} frames per second"
        opcode, fin = b0 & 0x0F, bool(b0 & 0x80)
        if opcode == _CLOSE:
            self.close_seen = True
        elif opcode in (_TEXT, _BINARY, _CONT):
            # Out-of-order fragments are a protocol error: the parser answers those (1002).
            fragmented = not fin or opcode == _CONT
            cost = max(length, MIN_FRAGMENT_COST) if fragmented else length
            total = cost + ((self._message or 0) if opcode == _CONT else 0)
            if total > self.max_message:
                return CLOSE_TOO_BIG, f"message larger than {self.max_message} bytes"
            self._message = None if fin else total
        self._skip = length
        return None


def _header_length(head: bytes) -> int | None:
    """A frame header's length from its first two bytes (RFC 6455 §5.2), ``None`` before them."""
    if len(head) < 2:
        return None
    n = head[1] & 0x7F
    extra = 2 if n == 126 else 8 if n == 127 else 0
    return 2 + extra + (4 if head[1] & 0x80 else 0)


def _payload_length(head: bytes) -> int:
    n = head[1] & 0x7F
    if n == 126:
        return int.from_bytes(head[2:4], "big")
    if n == 127:
        return int.from_bytes(head[2:10], "big")
    return n
