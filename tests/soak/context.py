"""What every soak client shares: where to connect and until when (`Ctx`), its record of every
frame and outcome (`ClientStats`, the readers' sink), and connecting, pausing and leaving.

Every well-behaved client connects from 127.0.0.1; every abusive one (garbage, idle, the
attackers) from a loopback address of its own, as the scanner or the attacker on the LAN would,
so that the server's per-address limits meet them as they would in the field.

Every await is bounded (a per-operation timeout and the run's deadline), so a server that stops
answering makes the soak fail, not hang.  All frames any client completes go through the same
checks (see `proto.py`), and one frame per client every `SAMPLE_PERIOD` s is decoded with OpenCV.
The client kinds: `readers.py` (fast and slow), `churn.py` (vanishers), `abuse.py` (garbage and
idle), `attackers.py` (floods, guessers, stallers).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import socket
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from tests.soak.proto import MjpegReader, WsReader, mjpeg_request, ws_handshake
from tests.support.sockets import abort_socket

# Timeouts: generous against a loaded 2-core machine, short against a real hang.
CONNECT_TIMEOUT = 5.0
STALL_LIMIT = 10.0  # a fast client without a byte for this long is stalled (placeholders come every ~1 s)
RECONNECT_PAUSE = 0.5
SAMPLE_PERIOD = 5.0  # seconds between decoded frames, per client (decoding costs ~0.3 ms)
LAG_BINS_MS = 5000  # frame-age histogram: 1 ms bins up to 5 s
MAX_SAMPLES = 10  # problems / disconnect reasons kept per client for the report


@dataclass
class Ctx:
    """What every client needs: where, until when, what a frame must look like."""

    host: str
    port: int
    deadline: float  # loop.time()
    width: int
    height: int
    real_min_bytes: int  # smaller frames are the NO SIGNAL placeholder
    request_timeout: float
    idle_grace: float
    rng: random.Random
    token: str = ""  # the server's stream token, on every well-behaved request
    shared_buf: bytearray = field(default_factory=lambda: bytearray(256 * 1024))

    def path(self, path: str) -> str:
        """``path`` with the token (``?token=`` or ``&token=``)."""
        if not self.token:
            return path
        return f"{path}{'&' if '?' in path else '?'}token={self.token}"

    def remaining(self) -> float:
        return self.deadline - asyncio.get_running_loop().time()


class ClientStats:
    """Per-client record and the parsers' sink: checks, classifies and counts every frame."""

    def __init__(self, kind: str, idx: int, ctx: Ctx, keep_arrivals: bool, address: str | None = None) -> None:
        self.kind = kind
        self.idx = idx
        self.ctx = ctx
        self.keep_arrivals = keep_arrivals
        self.address = address  # the loopback address it connects from (None: 127.0.0.1)
        self.connects = 0
        self.unexpected_ends = 0
        self.end_reasons: list[str] = []
        self.errors: dict[str, int] = {}
        self.outcomes: dict[str, int] = {}
        self.frames = 0
        self.frame_bytes = 0
        self.corrupt = 0
        self.problems: list[str] = []
        self.real = array("d")  # arrival times of real frames (wall clock)
        self.placeholders = array("d")  # arrival times of placeholder frames
        self.real_count = 0
        self.placeholder_count = 0
        self.min_real_size = 0
        self.max_placeholder_size = 0
        self.decoded = 0
        self.decode_bad = 0
        self.skipped = 0
        self.hello_ok = 0
        self.texts: list[bytes] = []  # text messages (garbage WS clients look at them)
        self.close_codes: list[int | None] = []
        self.idle_latencies: list[float] = []
        self.latencies: list[float] = []  # attackers: the delay asserted on (close to drop, refusal, ...)
        self.lag_hist = [0] * (LAG_BINS_MS + 1) if keep_arrivals else []
        self._last_seq = -1
        self._next_sample = time.monotonic() + ctx.rng.uniform(0.0, SAMPLE_PERIOD)

    # -- FrameSink ------------------------------------------------------------------------------

    def want_jpeg(self) -> bool:
        now = time.monotonic()
        if now < self._next_sample:
            return False
        self._next_sample = now + SAMPLE_PERIOD
        return True

    def on_frame(self, now: float, ts: float, seq: int, size: int, problem: str | None, jpeg: bytes | None) -> None:
        if problem is None and jpeg is not None:
            problem = self._decode_problem(jpeg)
        if problem is not None:
            self.corrupt += 1
            self._note(self.problems, f"{self.kind}#{self.idx}: {problem}")
            return
        self.frames += 1
        self.frame_bytes += size
        if seq >= 0:
            if self._last_seq >= 0:
                self.skipped += max(0, seq - self._last_seq - 1)
            self._last_seq = seq
        if size < self.ctx.real_min_bytes:
            self.placeholder_count += 1
            self.max_placeholder_size = max(self.max_placeholder_size, size)
            if self.keep_arrivals:
                self.placeholders.append(now)
            return
        self.real_count += 1
        self.min_real_size = size if not self.min_real_size else min(self.min_real_size, size)
        if self.keep_arrivals:
            self.real.append(now)
        if self.lag_hist and not math.isnan(ts):
            self.lag_hist[min(LAG_BINS_MS, max(0, int((now - ts) * 1000.0)))] += 1

    def on_text(self, now: float, payload: bytes) -> None:
        if len(self.texts) < 4:
            self.texts.append(payload)
        try:
            msg = json.loads(payload)
        except ValueError:
            self.error("text message is not JSON")
            return
        if isinstance(msg, dict) and msg.get("type") == "hello":
            self.hello_ok += 1

    def on_close(self, code: int | None) -> None:
        self.close_codes.append(code)

    # -- bookkeeping ------------------------------------------------------------------------------

    def _decode_problem(self, jpeg: bytes) -> str | None:
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            self.decode_bad += 1
            return f"{len(jpeg)}-byte JPEG does not decode"
        height, width = image.shape[:2]
        if (width, height) != (self.ctx.width, self.ctx.height):
            self.decode_bad += 1
            return f"decoded to {width}x{height}, expected {self.ctx.width}x{self.ctx.height}"
        self.decoded += 1
        return None

    @staticmethod
    def _note(store: list[str], text: str) -> None:
        if len(store) < MAX_SAMPLES:
            store.append(text)

    def error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1

    def outcome(self, what: str) -> None:
        self.outcomes[what] = self.outcomes.get(what, 0) + 1

    def ended_early(self, reason: str) -> None:
        """A client that should have stayed connected lost its stream before the deadline."""
        self.unexpected_ends += 1
        self._note(self.end_reasons, f"{time.strftime('%H:%M:%S')} {reason}")

    def summary(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "idx": self.idx,
            "connects": self.connects,
            "unexpected_ends": self.unexpected_ends,
            "end_reasons": self.end_reasons,
            "errors": self.errors,
            "outcomes": self.outcomes,
            "frames": self.frames,
            "frame_bytes": self.frame_bytes,
            "corrupt": self.corrupt,
            "problems": self.problems,
            "real_count": self.real_count,
            "placeholder_count": self.placeholder_count,
            "min_real_size": self.min_real_size,
            "max_placeholder_size": self.max_placeholder_size,
            "decoded": self.decoded,
            "decode_bad": self.decode_bad,
            "skipped": self.skipped,
            "hello_ok": self.hello_ok,
            "close_codes": self.close_codes[:MAX_SAMPLES],
            "idle_latencies": self.idle_latencies,
            "latencies": self.latencies,
            "address": self.address,
        }


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


async def pause(ctx: Ctx, seconds: float) -> None:
    """Sleep, but never past the deadline."""
    await asyncio.sleep(max(0.0, min(seconds, ctx.remaining())))


def close_socket(sock: socket.socket, rst: bool = False) -> None:
    """Close; with ``rst`` the kernel sends a reset instead of a FIN (SO_LINGER 0). No shutdown()
    first (unlike tests.support.sockets.close_socket): a vanishing client just closes."""
    if rst:
        abort_socket(sock)
    else:
        sock.close()


async def connect(ctx: Ctx, rcvbuf: int | None = None, source: str | None = None) -> socket.socket:
    """A connected non-blocking socket (``SO_RCVBUF`` set before connecting, so the window is
    small), from the loopback address ``source`` if given."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            sock.bind((source, 0))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, (ctx.host, ctx.port)), CONNECT_TIMEOUT)
    except BaseException:
        sock.close()
        raise
    return sock


async def connect_or_pause(
    ctx: Ctx, note: Callable[[str], None], rcvbuf: int | None = None, source: str | None = None
) -> socket.socket | None:
    """A connected socket, or None once `note` has been told why not and the reconnect pause is over."""
    try:
        return await connect(ctx, rcvbuf, source)
    except (OSError, TimeoutError) as exc:
        note(f"connect failed: {exc_name(exc)}")
        await pause(ctx, RECONNECT_PAUSE)
        return None


def new_reader(ctx: Ctx, stats: ClientStats, ws: bool, http10: bool = False) -> tuple[bytes, MjpegReader | WsReader]:
    """The request to send and the parser for its answer."""
    if ws:
        request, accept = ws_handshake(ctx.host, ctx.port, ctx.path("/ws"))
        return request, WsReader(stats, accept)
    return mjpeg_request(ctx.host, ctx.port, ctx.path("/stream"), http10), MjpegReader(stats)


def exc_name(exc: BaseException) -> str:
    return type(exc).__name__
