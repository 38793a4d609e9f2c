"""The soak's client kinds, as asyncio coroutines on raw sockets (run by `worker.py`).

- fast MJPEG / WebSocket readers: `asyncio.BufferedProtocol`s sharing one receive buffer (the
  event loop reads straight into it, no per-read allocation); they stay connected for the whole
  run and are what the frame-rate assertion is about;
- slow readers: a 4 KiB kernel receive buffer and one 4 KiB read every 0.5 s (8 KB/s);
- vanishers: connect, read 0-2 whole frames and part of the next, then close (FIN) or reset (RST);
- garbage: random bytes, a 200 KB header line, 500 headers, and, on the WebSocket, invalid JSON,
  an unknown message type, a binary message and a text message that is not UTF-8;
- idle: connect and send nothing (one in four sends half a request head), and wait for the
  server to close the connection (`request_timeout`);
- attackers (issue 13, in a worker process of their own so that their loops cannot slow the
  well-behaved clients' own reading): WebSocket floods (empty fragments, pings, text messages;
  closed with 1008 and dropped within 1 s of the close), guessers (wrong tokens as fast as the
  answers come: 11 are checked, the rest get 429), and stallers holding 40 half-sent upgrade
  requests each (the server keeps 32 per address, refuses the rest with 503, and closes the 32
  at `request_timeout`).

Every well-behaved client connects from 127.0.0.1; every abusive one (garbage, idle, the
attackers) from a loopback address of its own, as the scanner or the attacker on the LAN would,
so that the server's per-address limits meet them as they would in the field.

Every await is bounded (a per-operation timeout and the run's deadline), so a server that stops
answering makes the soak fail, not hang.  All frames any client completes go through the same
checks (see `proto.py`), and one frame per client every `SAMPLE_PERIOD` s is decoded with OpenCV.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import socket
import struct
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import cv2
import numpy as np

from tests.soak.proto import HEAD_END, MjpegReader, WsReader, mjpeg_request, ws_handshake
from tests.support.attacks import ServerFrames, masked_frame
from tests.support.http import status_code
from tests.support.sockets import abort_socket
from tests.support.websocket import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, client_frame

# Timeouts: generous against a loaded 2-core machine, short against a real hang.
CONNECT_TIMEOUT = 5.0
STALL_LIMIT = 10.0  # a fast client without a byte for this long is stalled (placeholders come every ~1 s)
RECONNECT_PAUSE = 0.5
# Slow reader: 4 KiB every 0.5 s = 8 KB/s, a bad mobile link; the kernel buffer is kept small so the
# server, not the kernel, has to deal with the backlog.
SLOW_READ = 4096
SLOW_INTERVAL = 0.5
SLOW_RCVBUF = 4096
# Vanishers read in 4 KiB steps so they usually stop inside a JPEG, then pause before the next try.
VANISH_READ = 4096
VANISH_PAUSE = (0.2, 1.0)
VANISH_TIMEOUT = 10.0
VANISH_VARIANTS = ("ws", "ws", "ws", "mjpeg/1.1", "mjpeg/1.0", "mjpeg+pipelined")  # half WebSocket
GARBAGE_PAUSE = (0.3, 1.0)
GARBAGE_TIMEOUT = 15.0
IDLE_PAUSE = 0.2
SAMPLE_PERIOD = 5.0  # seconds between decoded frames, per client (decoding costs ~0.3 ms)
LAG_BINS_MS = 5000  # frame-age histogram: 1 ms bins up to 5 s
MAX_SAMPLES = 10  # problems / disconnect reasons kept per client for the report

# Attackers. A flood is one burst of frames per connection (a 64 KB send is what one read of the
# server takes in), then a pause: enough to stall the server before issue 13, cheap for this loop.
FLOOD_BURST = 64 * 1024
FLOOD_PAUSE = (0.3, 0.8)
FLOOD_KINDS = ("fragments", "pings", "texts")
GUESS_PAUSE = 0.05
STALL_SOCKETS = 40  # per staller: more than the server's 32 pending connections per address

GARBAGE_KINDS = (
    "random_bytes",
    "huge_header_line",
    "many_headers",
    "ws_bad_json",
    "ws_unknown_type",
    "ws_binary",
    "ws_bad_utf8",
)


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
        note(f"connect failed: {_exc_name(exc)}")
        await pause(ctx, RECONNECT_PAUSE)
        return None


def new_reader(ctx: Ctx, stats: ClientStats, ws: bool, http10: bool = False) -> tuple[bytes, MjpegReader | WsReader]:
    """The request to send and the parser for its answer."""
    if ws:
        request, accept = ws_handshake(ctx.host, ctx.port, ctx.path("/ws"))
        return request, WsReader(stats, accept)
    return mjpeg_request(ctx.host, ctx.port, ctx.path("/stream"), http10), MjpegReader(stats)


def _exc_name(exc: BaseException) -> str:
    return type(exc).__name__


# --------------------------------------------------------------------------------------------
# fast readers
# --------------------------------------------------------------------------------------------


class _FastProtocol(asyncio.BufferedProtocol):
    """Reads everything as it comes, into the worker's shared buffer (the loop calls
    ``get_buffer`` and ``buffer_updated`` back to back, and the parsers keep no reference)."""

    def __init__(self, request: bytes, reader: MjpegReader | WsReader, buf: bytearray) -> None:
        self._request = request
        self.reader = reader
        self._buf = buf
        self.transport: asyncio.Transport | None = None
        self.last_rx = time.monotonic()
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._request)

    def get_buffer(self, sizehint: int) -> bytearray:
        return self._buf

    def buffer_updated(self, nbytes: int) -> None:
        self.last_rx = time.monotonic()
        self.reader.feed(self._buf, 0, nbytes, time.time())
        if (self.reader.failed or self.reader.ended) and self.transport is not None:
            self.transport.close()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            reason = self.reader.failed or (
                f"connection lost: {_exc_name(exc)}" if exc else "server closed the connection"
            )
            if isinstance(self.reader, WsReader) and self.reader.close_code is not None:
                reason = f"server sent close {self.reader.close_code}"
            self.lost.set_result(reason)


async def run_fast(ctx: Ctx, stats: ClientStats, ws: bool, http10: bool = False) -> None:
    """Stay connected and read everything until the deadline; reconnect (and count it) if dropped."""
    loop = asyncio.get_running_loop()
    while ctx.remaining() > 1.0:
        request, reader = new_reader(ctx, stats, ws, http10)
        proto = _FastProtocol(request, reader, ctx.shared_buf)
        try:
            await asyncio.wait_for(loop.create_connection(lambda p=proto: p, ctx.host, ctx.port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            stats.ended_early(f"connect failed: {_exc_name(exc)}")
            await pause(ctx, RECONNECT_PAUSE)
            continue
        stats.connects += 1
        reason = await _watch(ctx, proto)
        if reason is None:
            return
        stats.ended_early(reason)
        await pause(ctx, RECONNECT_PAUSE)


async def _watch(ctx: Ctx, proto: _FastProtocol) -> str | None:
    """Wait for the connection to end (its reason), a stall (abort), or the deadline (None)."""
    while True:
        remaining = ctx.remaining()
        if remaining <= 0:
            if proto.transport is not None:
                proto.transport.close()
            return None
        done, _ = await asyncio.wait([proto.lost], timeout=min(1.0, remaining))
        if done:
            return proto.lost.result()
        silent = time.monotonic() - proto.last_rx
        if silent > STALL_LIMIT and proto.transport is not None:
            proto.transport.abort()
            return f"no data for {silent:.0f} s"


# --------------------------------------------------------------------------------------------
# slow readers
# --------------------------------------------------------------------------------------------


async def run_slow(ctx: Ctx, stats: ClientStats, ws: bool) -> None:
    """8 KB/s through a 4 KiB receive buffer, on a fixed schedule, for the whole run."""
    loop = asyncio.get_running_loop()
    buf = bytearray(SLOW_READ)
    while ctx.remaining() > 1.0:
        request, reader = new_reader(ctx, stats, ws)
        reason: str | None = None
        sock = await connect_or_pause(ctx, stats.ended_early, SLOW_RCVBUF)
        if sock is None:
            continue
        try:
            await asyncio.wait_for(loop.sock_sendall(sock, request), CONNECT_TIMEOUT)
            stats.connects += 1
            next_tick = loop.time()
            while True:
                remaining = ctx.remaining()
                if remaining <= 0:
                    return
                try:
                    n = await asyncio.wait_for(loop.sock_recv_into(sock, buf), min(STALL_LIMIT, remaining))
                except TimeoutError:
                    if ctx.remaining() <= 0:
                        return
                    reason = f"no data for {STALL_LIMIT:.0f} s"
                    break
                if n == 0:
                    reason = reader.failed or "server closed the connection"
                    break
                reader.feed(buf, 0, n, time.time())
                if reader.failed or reader.ended:
                    reason = reader.failed or "stream ended"
                    break
                next_tick += SLOW_INTERVAL
                await asyncio.sleep(max(0.0, min(next_tick - loop.time(), ctx.remaining())))
        except (OSError, TimeoutError) as exc:
            reason = f"{_exc_name(exc)}"
        finally:
            close_socket(sock)
        stats.ended_early(reason or "ended")
        await pause(ctx, RECONNECT_PAUSE)


# --------------------------------------------------------------------------------------------
# vanishers
# --------------------------------------------------------------------------------------------


async def run_vanisher(ctx: Ctx, stats: ClientStats) -> None:
    """Connect, read 0-2 frames and part of the next, vanish (FIN or RST), pause, repeat.

    Variants, drawn at random each time: WebSocket, MJPEG over HTTP/1.1 or HTTP/1.0, and MJPEG
    with a second request pipelined behind the stream (a client that vanishes with a request
    still queued on the connection).
    """
    loop = asyncio.get_running_loop()
    buf = bytearray(VANISH_READ)
    while ctx.remaining() > 1.0:
        variant = ctx.rng.choice(VANISH_VARIANTS)
        rst = ctx.rng.random() < 0.5
        label = f"{variant} {'RST' if rst else 'FIN'}"
        target = ctx.rng.randrange(3)
        request, reader = new_reader(ctx, stats, variant == "ws", http10=variant == "mjpeg/1.0")
        if variant == "mjpeg+pipelined":
            request += f"GET {ctx.path('/snapshot')} HTTP/1.1\r\nHost: {ctx.host}:{ctx.port}\r\n\r\n".encode()
        sock = await connect_or_pause(ctx, stats.outcome)
        if sock is None:
            continue
        try:
            async with asyncio.timeout(min(VANISH_TIMEOUT, max(0.01, ctx.remaining()))):
                await loop.sock_sendall(sock, request)
                stats.connects += 1
                while not (reader.frames >= target and reader.mid_jpeg):
                    n = await loop.sock_recv_into(sock, buf)
                    if n == 0 or reader.failed:
                        break
                    reader.feed(buf, 0, n, time.time())
                    if reader.failed or reader.ended:
                        break
            if reader.frames >= target and reader.mid_jpeg:
                stats.outcome(f"mid-frame ({label})")
            else:
                stats.outcome(f"server ended first: {reader.failed or 'closed'} ({label})")
        except TimeoutError:
            if ctx.remaining() > 0:
                stats.outcome(f"timeout before mid-frame ({label})")
        except OSError as exc:
            stats.outcome(f"{_exc_name(exc)} ({label})")
        finally:
            close_socket(sock, rst)
        await pause(ctx, ctx.rng.uniform(*VANISH_PAUSE))


# --------------------------------------------------------------------------------------------
# garbage
# --------------------------------------------------------------------------------------------


def _garbage_http(ctx: Ctx, kind: str) -> bytes:
    host = f"{ctx.host}:{ctx.port}"
    if kind == "random_bytes":
        return b"\x00" + os.urandom(ctx.rng.randint(64, 4096))
    if kind == "huge_header_line":  # one 200 KB header line (contract §7: over 64 KiB -> 431/400)
        return f"GET /stream HTTP/1.1\r\nHost: {host}\r\nX-Big: ".encode() + b"a" * 200_000 + b"\r\n\r\n"
    if kind == "many_headers":  # 500 header fields (contract §7: over 100 -> 431/400)
        fields = "".join(f"X-Filler-{i}: {i}\r\n" for i in range(500))
        return f"GET /stream HTTP/1.1\r\nHost: {host}\r\n{fields}\r\n".encode()
    raise ValueError(kind)


async def _http_garbage(ctx: Ctx, stats: ClientStats, kind: str) -> str:
    """Send a bad request head; what did the server do about it?"""
    loop = asyncio.get_running_loop()
    sock = await connect(ctx, source=stats.address)
    try:
        sent_all = True
        try:
            await asyncio.wait_for(loop.sock_sendall(sock, _garbage_http(ctx, kind)), CONNECT_TIMEOUT)
        except (BrokenPipeError, ConnectionResetError):
            sent_all = False  # the server may have answered and closed before reading it all
        except TimeoutError:
            return "send blocked (not read, not closed)"
        head = bytearray()
        buf = bytearray(65536)
        try:
            async with asyncio.timeout(ctx.request_timeout + ctx.idle_grace):
                while HEAD_END not in head and len(head) < 65536:
                    n = await loop.sock_recv_into(sock, buf)
                    if n == 0:
                        break
                    head += buf[:n]
        except TimeoutError:
            return "no answer"
        except ConnectionResetError:
            if not head:
                return "reset" + ("" if sent_all else " while sending")
        status = status_code(head)
        if not head:
            return "closed, no answer"
        if not status:
            return "non-HTTP answer"
        if status == 200:
            return "200 (accepted!)"
        # The contract wants the connection closed after refusing a head.
        try:
            async with asyncio.timeout(3.0):
                while await loop.sock_recv_into(sock, buf):
                    pass
            return f"{status}+close"
        except TimeoutError:
            return f"{status}, left open"
        except ConnectionResetError:
            return f"{status}+reset"
    finally:
        close_socket(sock)


class _TextSink:
    """Wraps a client's stats to also hand text messages / close codes to the garbage logic."""

    def __init__(self, stats: ClientStats) -> None:
        self.stats = stats
        self.texts: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.closed = False

    def want_jpeg(self) -> bool:
        return self.stats.want_jpeg()

    def on_frame(self, now: float, ts: float, seq: int, size: int, problem: str | None, jpeg: bytes | None) -> None:
        self.stats.on_frame(now, ts, seq, size, problem, jpeg)

    def on_text(self, now: float, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            msg = {"type": "?", "raw": payload[:80].decode("latin-1")}
        self.texts.append(msg if isinstance(msg, dict) else {"type": "?"})

    def on_close(self, code: int | None) -> None:
        self.close_code = code
        self.closed = True


async def _read_ws_until(
    sock: socket.socket, reader: WsReader, buf: bytearray, done: Callable[[], bool], timeout: float
) -> str | None:
    """Feed ``reader`` until ``done()``; None on success, else why it stopped."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            while not done():
                n = await loop.sock_recv_into(sock, buf)
                if n == 0:
                    return "closed without a close frame"
                reader.feed(buf, 0, n, time.time())
                if reader.failed:
                    return reader.failed
    except TimeoutError:
        return "no answer"
    except ConnectionResetError:
        return "reset"
    return None


async def _ws_garbage(ctx: Ctx, stats: ClientStats, kind: str) -> str:
    """Open the frame channel, send one bad message, and record how the server answered."""
    loop = asyncio.get_running_loop()
    sink = _TextSink(stats)
    request, accept = ws_handshake(ctx.host, ctx.port, ctx.path("/ws"))
    reader = WsReader(sink, accept)
    buf = bytearray(65536)
    sock = await connect(ctx, source=stats.address)
    try:
        await asyncio.wait_for(loop.sock_sendall(sock, request), CONNECT_TIMEOUT)
        why = await _read_ws_until(sock, reader, buf, lambda: bool(sink.texts) or sink.closed, 10.0)
        if why or not sink.texts or sink.texts[0].get("type") != "hello":
            return f"no hello ({why or sink.close_code})"
        message = {
            "ws_bad_json": client_frame(OP_TEXT, b"{not json"),
            "ws_unknown_type": client_frame(OP_TEXT, b'{"type": "nope"}'),
            "ws_binary": client_frame(OP_BINARY, os.urandom(32)),
            "ws_bad_utf8": client_frame(OP_TEXT, b"\xff\xfe\xfd not utf-8"),
        }[kind]
        await asyncio.wait_for(loop.sock_sendall(sock, message), CONNECT_TIMEOUT)
        why = await _read_ws_until(sock, reader, buf, lambda: len(sink.texts) > 1 or sink.closed, 10.0)
        if why:
            return why
        if sink.closed:
            await _answer_close(sock, sink.close_code)
            return f"close {sink.close_code}"
        answer = sink.texts[1].get("type")
        # The connection must still work: say goodbye properly and expect the close echo.
        await asyncio.wait_for(loop.sock_sendall(sock, client_frame(OP_CLOSE, struct.pack(">H", 1000))), 5.0)
        why = await _read_ws_until(sock, reader, buf, lambda: sink.closed, 5.0)
        return f"{answer} msg+{'close ' + str(sink.close_code) if not why else why}"
    finally:
        close_socket(sock)


async def _answer_close(sock: socket.socket, code: int | None) -> None:
    loop = asyncio.get_running_loop()
    payload = struct.pack(">H", code) if code else b""
    try:
        await asyncio.wait_for(loop.sock_sendall(sock, client_frame(OP_CLOSE, payload)), 2.0)
    except (OSError, TimeoutError):
        pass


async def run_garbage(ctx: Ctx, stats: ClientStats) -> None:
    """Cycle through the garbage kinds (each client starts at a different one)."""
    n = stats.idx
    while ctx.remaining() > 1.0:
        kind = GARBAGE_KINDS[n % len(GARBAGE_KINDS)]
        n += 1
        job: Awaitable[str] = (
            _ws_garbage(ctx, stats, kind) if kind.startswith("ws_") else _http_garbage(ctx, stats, kind)
        )
        try:
            async with asyncio.timeout(min(GARBAGE_TIMEOUT, max(0.01, ctx.remaining()))):
                stats.connects += 1
                result = await job
            stats.outcome(f"{kind}: {result}")
        except TimeoutError:
            if ctx.remaining() > 0:
                stats.outcome(f"{kind}: timeout")
        except OSError as exc:
            stats.outcome(f"{kind}: {_exc_name(exc)}")
        await pause(ctx, ctx.rng.uniform(*GARBAGE_PAUSE))


# --------------------------------------------------------------------------------------------
# idle
# --------------------------------------------------------------------------------------------


async def run_idle(ctx: Ctx, stats: ClientStats) -> None:
    """Connect and send nothing (or half a request head); wait for the server to close it."""
    loop = asyncio.get_running_loop()
    partial = stats.idx % 4 == 3
    label = "half a head" if partial else "nothing"
    buf = bytearray(4096)
    limit = ctx.request_timeout + ctx.idle_grace
    while ctx.remaining() > limit:  # only waits that can run to completion are recorded
        sock = await connect_or_pause(ctx, stats.outcome, source=stats.address)
        if sock is None:
            continue
        stats.connects += 1
        started = loop.time()
        try:
            if partial:
                await asyncio.wait_for(
                    loop.sock_sendall(sock, f"GET /stream HTTP/1.1\r\nHost: {ctx.host}:{ctx.port}\r\n".encode()),
                    CONNECT_TIMEOUT,
                )
            try:
                n = await asyncio.wait_for(loop.sock_recv_into(sock, buf), limit)
            except TimeoutError:
                stats.outcome(f"sent {label}: still open after {limit:.0f} s")
                continue
            stats.idle_latencies.append(loop.time() - started)
            if n == 0:
                stats.outcome(f"sent {label}: closed by server")
            else:
                status = status_code(buf[:n])
                stats.outcome(f"sent {label}: answered HTTP {status}" if status else f"sent {label}: got bytes")
        except ConnectionResetError:
            stats.idle_latencies.append(loop.time() - started)
            stats.outcome(f"sent {label}: reset by server")
        except OSError as exc:
            stats.outcome(f"sent {label}: {_exc_name(exc)}")
        finally:
            close_socket(sock)
        await pause(ctx, IDLE_PAUSE)


# --------------------------------------------------------------------------------------------
# attackers
# --------------------------------------------------------------------------------------------

_FLOOD_FRAMES = {
    "fragments": masked_frame(OP_TEXT, fin=False) + masked_frame(OP_CONT, fin=False) * (FLOOD_BURST // 6),
    "pings": masked_frame(OP_PING, b"p") * (FLOOD_BURST // 7),
    "texts": b"".join(masked_frame(OP_TEXT, b'{"type":"x%d"}' % i) for i in range(FLOOD_BURST // 19)),
}


async def _ws_open(ctx: Ctx, stats: ClientStats) -> tuple[socket.socket, bytes]:
    """A raw WebSocket from the client's address, after its 101; the bytes read past the head."""
    loop = asyncio.get_running_loop()
    sock = await connect(ctx, source=stats.address)
    try:
        request, _ = ws_handshake(ctx.host, ctx.port, ctx.path("/ws"))
        await asyncio.wait_for(loop.sock_sendall(sock, request), CONNECT_TIMEOUT)
        head = bytearray()
        async with asyncio.timeout(CONNECT_TIMEOUT):
            while HEAD_END not in head:
                data = await loop.sock_recv(sock, 65536)
                if not data:
                    raise ConnectionResetError("closed during the handshake")
                head += data
        if status_code(head) != 101:
            raise ConnectionRefusedError(f"upgrade answered {status_code(head)}")
        return sock, bytes(head[head.index(HEAD_END) + 4 :])
    except BaseException:
        sock.close()
        raise


async def run_flooder(ctx: Ctx, stats: ClientStats) -> None:
    """One burst of flood frames per connection, then read until the server has dropped it;
    records the close code and the delay from the close frame to the drop (§7: within 1 s)."""
    loop = asyncio.get_running_loop()
    n = stats.idx
    while ctx.remaining() > 3.0:
        kind = FLOOD_KINDS[n % len(FLOOD_KINDS)]
        n += 1
        try:
            sock, rest = await _ws_open(ctx, stats)
        except (OSError, TimeoutError) as exc:
            stats.outcome(f"{kind}: no connection ({_exc_name(exc)})")
            await pause(ctx, 1.0)
            continue
        stats.connects += 1
        frames = ServerFrames()
        frames.feed(rest)
        try:
            try:
                await asyncio.wait_for(loop.sock_sendall(sock, _FLOOD_FRAMES[kind]), 5.0)
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed while the burst was still going out
            ending = "no end"
            async with asyncio.timeout(5.0):
                while True:
                    try:
                        data = await loop.sock_recv(sock, 65536)
                    except ConnectionResetError:
                        ending = "reset"
                        break
                    if not data:
                        ending = "eof"
                        break
                    frames.feed(data)
            dropped = time.monotonic()
            if frames.closed_at is not None:
                stats.latencies.append(dropped - frames.closed_at)
            stats.outcome(f"{kind}: close {frames.close_code}, then {ending}")
        except TimeoutError:
            stats.outcome(f"{kind}: close {frames.close_code}, still open 5 s later")
        finally:
            close_socket(sock, rst=True)
        await pause(ctx, ctx.rng.uniform(*FLOOD_PAUSE))


async def run_guesser(ctx: Ctx, stats: ClientStats) -> None:
    """Wrong tokens on kept-alive connections, one request after another; counts the answers
    per minute of the run (``401`` is a checked guess: at most 11 a minute may be)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    buf = bytearray(65536)
    guess = 0
    while ctx.remaining() > 1.0:
        try:
            sock = await connect(ctx, source=stats.address)
        except (OSError, TimeoutError) as exc:
            stats.outcome(f"connect failed: {_exc_name(exc)}")
            await pause(ctx, 1.0)
            continue
        stats.connects += 1
        pending = b""
        try:
            while ctx.remaining() > 1.0:
                guess += 1
                request = f"GET /snapshot?token=wrong-guess-{guess:08d} HTTP/1.1\r\nHost: {ctx.host}:{ctx.port}\r\n\r\n"
                await asyncio.wait_for(loop.sock_sendall(sock, request.encode()), CONNECT_TIMEOUT)
                head = pending
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    while HEAD_END not in head:
                        n = await loop.sock_recv_into(sock, buf)
                        if n == 0:
                            raise ConnectionResetError("closed")
                        head += bytes(buf[:n])
                raw, _, body = head.partition(HEAD_END)
                fields = dict(line.split(": ", 1) for line in raw.decode("latin-1").split("\r\n")[1:] if ": " in line)
                fields = {k.lower(): v for k, v in fields.items()}
                length = int(fields.get("content-length", "0"))
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    while len(body) < length:
                        n = await loop.sock_recv_into(sock, buf)
                        if n == 0:
                            raise ConnectionResetError("closed")
                        body += bytes(buf[:n])
                pending = body[length:]
                minute = int((loop.time() - start) // 60)
                stats.outcome(f"minute {minute}: {status_code(raw)}")
                if fields.get("connection", "").lower() == "close":
                    break
                await asyncio.sleep(GUESS_PAUSE)
        except (OSError, TimeoutError) as exc:
            stats.error(_exc_name(exc))
        finally:
            close_socket(sock)


async def _stall_one(ctx: Ctx, stats: ClientStats) -> None:
    """Send half an upgrade request and wait: refused at once (503), or closed at the timeout."""
    loop = asyncio.get_running_loop()
    buf = bytearray(4096)
    limit = ctx.request_timeout + ctx.idle_grace
    try:
        sock = await connect(ctx, source=stats.address)
    except (OSError, TimeoutError) as exc:
        stats.outcome(f"connect failed: {_exc_name(exc)}")
        await pause(ctx, 1.0)
        return
    started = loop.time()
    stats.connects += 1
    try:
        half = f"GET {ctx.path('/ws')} HTTP/1.1\r\nHost: {ctx.host}:{ctx.port}\r\nUpgrade: websocket\r\n"
        await asyncio.wait_for(loop.sock_sendall(sock, half.encode()), CONNECT_TIMEOUT)
        try:
            n = await asyncio.wait_for(loop.sock_recv_into(sock, buf), limit)
        except TimeoutError:
            stats.outcome(f"still open after {limit:.0f} s")
            return
        waited = loop.time() - started
        status = status_code(buf[:n]) if n else 0
        if status == 503:
            stats.outcome("refused (503)")
        else:
            stats.latencies.append(waited)
            stats.outcome(f"closed by the server ({status or 'no answer'})")
    except (OSError, TimeoutError) as exc:
        stats.outcome(f"{_exc_name(exc)}")
    finally:
        close_socket(sock)


async def run_staller(ctx: Ctx, stats: ClientStats) -> None:
    """Keep STALL_SOCKETS half-sent upgrade requests open from one address for the whole run."""
    limit = ctx.request_timeout + ctx.idle_grace

    async def keep_one(delay: float) -> None:
        await pause(ctx, delay)
        while ctx.remaining() > limit:
            await _stall_one(ctx, stats)
            await pause(ctx, 0.1)

    await asyncio.gather(*(keep_one(i * 0.01) for i in range(STALL_SOCKETS)))
