"""Shared helpers for the integration tests.

Everything here talks to a real `edge` server process over 127.0.0.1 only.  The MJPEG and
WebSocket parsers are deliberately low-level (raw sockets, manual de-chunking, manual WebSocket
framing) because the tests must check the wire format byte for byte and must be able to stop
reading a socket to exercise the server's slow-reader handling, which high-level clients hide.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import cv2
import httpx
import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
LISTEN_RE = re.compile(r"listening on https?://(\[[^\]]+\]|[^\s:/]+):(\d+)")
TIMESTAMP_RE = re.compile(r"\d+\.\d{6}")
KIB = 1024

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Generic waiting
# --------------------------------------------------------------------------------------------


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 0.05,
    message: str = "condition",
) -> T:
    """Poll `predicate` until it returns a truthy value, or fail after `timeout` seconds.

    Used instead of fixed sleeps so tests are as fast as the server allows and still bounded.
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


# --------------------------------------------------------------------------------------------
# Server process management
# --------------------------------------------------------------------------------------------


class LogBuffer:
    """Drains a pipe in a background thread so the child never blocks on a full pipe."""

    def __init__(self, stream: Any) -> None:
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: Any) -> None:
        try:
            for raw in iter(stream.readline, b""):
                with self._cond:
                    self._lines.append(raw.decode("utf-8", "replace"))
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def text(self) -> str:
        with self._cond:
            return "".join(self._lines)

    def wait_for_match(
        self, pattern: re.Pattern[str], timeout: float, alive: Callable[[], bool]
    ) -> re.Match[str] | None:
        """Return the first match of `pattern`, or None on timeout / end of stream."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = pattern.search("".join(self._lines))
                if m:
                    return m
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed or not alive():
                    return None
                self._cond.wait(min(remaining, 0.1))

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


@dataclass
class EdgeServer:
    """A running `python -m edge` process and what the tests need to talk to it."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    config_path: Path | None
    stderr_buf: LogBuffer
    stdout_buf: LogBuffer
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def log_text(self) -> str:
        """Everything the server wrote to stderr so far (its log)."""
        return self.stderr_buf.text()

    def stdout_text(self) -> str:
        return self.stdout_buf.text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the server, wait (kill after `timeout`), and return its exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.stderr_buf.join(2)
        self.stdout_buf.join(2)
        return self.proc.returncode

    def rss_kib(self) -> int:
        """Resident set size of the server process, from /proc (Linux)."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        m = re.search(r"^VmRSS:\s+(\d+)\s+kB", status, re.MULTILINE)
        assert m, "VmRSS not found in /proc/PID/status"
        return int(m.group(1))

    def assert_clean_log(self, allow_error_lines: bool = True) -> None:
        """No Python traceback (and optionally no ERROR line) in the server log."""
        log = self.log_text()
        assert "Traceback" not in log, f"server log contains a traceback:\n{log[-6000:]}"
        if not allow_error_lines:
            bad = [ln for ln in log.splitlines() if " ERROR " in ln]
            assert not bad, "server log contains ERROR lines:\n" + "\n".join(bad[:20])


def edge_command(
    config: Path | None,
    *,
    host: str | None = HOST,
    port: int | None = 0,
    log_level: str | None = "info",
    extra_args: Iterable[str] = (),
) -> list[str]:
    """Command line for serving, as documented in CONTRACT §1."""
    cmd = [sys.executable, "-m", "edge"]
    if config is not None:
        cmd += ["--config", str(config)]
    if port is not None:
        cmd += ["--port", str(port)]
    if host is not None:
        cmd += ["--host", host]
    if log_level is not None:
        cmd += ["--log-level", log_level]
    cmd += list(extra_args)
    return cmd


def child_env(extra: dict[str, str] | None = None, keep_edge_config: bool = False) -> dict[str, str]:
    """Environment for server children: unbuffered output, no inherited EDGE_CONFIG."""
    env = dict(os.environ)
    if not keep_edge_config:
        env.pop("EDGE_CONFIG", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def launch_server(
    config: Path | None,
    *,
    host: str | None = HOST,
    port: int | None = 0,
    log_level: str | None = "info",
    env_extra: dict[str, str] | None = None,
    extra_args: Iterable[str] = (),
    wait_listening: bool = True,
    timeout: float = 20.0,
) -> EdgeServer:
    """Start `python -m edge` from the repo root; by default wait for its 'listening on' line.

    With `wait_listening=False` the process is returned immediately (for tests expecting it to
    exit, or for a pre-chosen port); `port` must then be the real port.
    """
    cmd = edge_command(config, host=host, port=port, log_level=log_level, extra_args=extra_args)
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=child_env(env_extra),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    server = EdgeServer(
        proc=proc,
        host=host or HOST,
        port=port or 0,
        config_path=config,
        stderr_buf=LogBuffer(proc.stderr),
        stdout_buf=LogBuffer(proc.stdout),
        args=cmd,
    )
    if not wait_listening:
        return server
    m = server.stderr_buf.wait_for_match(LISTEN_RE, timeout, alive=lambda: proc.poll() is None)
    if m is None:
        rc = proc.poll()
        server.stop(signal.SIGKILL, timeout=5)
        raise AssertionError(
            f"server did not print 'listening on http://HOST:PORT' within {timeout}s "
            f"(exit status {rc}); command {cmd}\nstderr:\n{server.log_text()[-6000:]}"
        )
    server.host = m.group(1).strip("[]")
    server.port = int(m.group(2))
    return server


def virtual_cam(
    name: str = "cam0",
    width: int = 320,
    height: int = 240,
    fps: float = 30,
    quality: int = 80,
    source: str | int = "virtual",
) -> dict[str, Any]:
    """A camera config entry (CONTRACT §2); small by default to keep the suite cheap."""
    return {
        "name": name,
        "source": source,
        "width": width,
        "height": height,
        "fps": fps,
        "quality": quality,
    }


def write_config(
    path: Path,
    cameras: list[dict[str, Any]],
    server: dict[str, Any] | None = None,
) -> Path:
    """Write a YAML config file; `server` keys are merged over host/port defaults."""
    doc: dict[str, Any] = {}
    if server:
        doc["server"] = dict(server)
    doc["cameras"] = cameras
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (for tests that must know the port up front)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------------
# Plain HTTP
# --------------------------------------------------------------------------------------------


def http_client(timeout: float = 10.0) -> httpx.Client:
    """httpx client that never uses a proxy (all traffic stays on loopback)."""
    return httpx.Client(timeout=timeout, trust_env=False)


@dataclass
class FetchResult:
    status: int
    headers: httpx.Headers
    body: bytes | None  # None when the answer was an (endless) multipart stream

    def json(self) -> Any:
        assert self.body is not None
        return json.loads(self.body)


def fetch(url: str, timeout: float = 10.0, max_body: int = 8 * 1024 * 1024) -> FetchResult:
    """GET `url`; never hangs on an endless stream (stops after the head for multipart answers).

    Endpoints that should answer an error might wrongly answer a stream; reading that body
    would never end, so a multipart body is not read.
    """
    with http_client(timeout) as client, client.stream("GET", url) as r:
        ctype = r.headers.get("content-type", "")
        if ctype.startswith("multipart/"):
            return FetchResult(r.status_code, r.headers, None)
        body = bytearray()
        for chunk in r.iter_bytes():
            body += chunk
            if len(body) > max_body:
                raise AssertionError(f"{url}: body larger than {max_body} bytes")
        return FetchResult(r.status_code, r.headers, bytes(body))


def get_status(server: EdgeServer) -> dict[str, Any]:
    """GET /api/status as parsed JSON."""
    r = fetch(server.url + "/api/status")
    assert r.status == 200, f"/api/status answered {r.status}"
    return r.json()


def camera_status(status: dict[str, Any], name: str) -> dict[str, Any]:
    for cam in status["cameras"]:
        if cam["name"] == name:
            return cam
    raise KeyError(f"camera {name!r} not in status: {[c['name'] for c in status['cameras']]}")


def all_clients(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [cl for cam in status["cameras"] for cl in cam["clients"]]


def wait_status(
    server: EdgeServer,
    predicate: Callable[[dict[str, Any]], Any],
    timeout: float,
    message: str = "status condition",
) -> dict[str, Any]:
    """Poll /api/status every 50 ms until `predicate(status)` holds; return that status."""
    result: dict[str, Any] = {}

    def check() -> bool:
        st = get_status(server)
        result["last"] = st
        return bool(predicate(st))

    try:
        wait_for(check, timeout, 0.05, message)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast /api/status: {result.get('last')!r}") from None
    return result["last"]


def wait_no_clients(server: EdgeServer, timeout: float = 10.0) -> dict[str, Any]:
    return wait_status(server, lambda st: not all_clients(st), timeout, "no clients listed")


def decode_jpeg(jpeg: bytes) -> np.ndarray:
    """Check a complete JPEG (FFD8 ... FFD9) and decode it; returns the image."""
    assert jpeg[:2] == b"\xff\xd8", f"JPEG does not start with FFD8: {jpeg[:4].hex()}"
    assert jpeg[-2:] == b"\xff\xd9", f"JPEG does not end with FFD9: {jpeg[-4:].hex()}"
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "cv2.imdecode could not decode the JPEG"
    return img


def jpeg_size(jpeg: bytes) -> tuple[int, int]:
    """(width, height) of a JPEG after checking it decodes."""
    img = decode_jpeg(jpeg)
    return int(img.shape[1]), int(img.shape[0])


# --------------------------------------------------------------------------------------------
# Raw socket stream reading (HTTP head, de-chunking)
# --------------------------------------------------------------------------------------------


class StreamEnded(Exception):
    """The peer closed the connection (or reset it) before the expected bytes arrived."""


def open_socket(host: str, port: int, rcvbuf: int | None = None, timeout: float = 10.0) -> socket.socket:
    """TCP connection; SO_RCVBUF must be set before connect for it to bound the window."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect((host, port))
    return sock


def abort_socket(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 1,0), like a client that vanishes."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def close_socket(sock: socket.socket, rst: bool = False) -> None:
    """Close a client socket: RST if `rst`, else FIN.

    shutdown() first, because close() alone does not wake a thread blocked in recv().
    """
    if rst:
        abort_socket(sock)
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class BodyReader:
    """Buffered reader over a socket, transparently de-chunking `Transfer-Encoding: chunked`."""

    def __init__(self, sock: socket.socket, initial: bytes, chunked: bool) -> None:
        self.sock = sock
        self.chunked = chunked
        self._raw = bytearray(initial)
        self._buf = bytearray()
        self._chunk_left = 0
        self._state = "size"  # size | data | crlf | done
        self.eof = False
        self.consumed = 0
        self._decode()

    def _decode(self) -> None:
        if not self.chunked:
            self._buf += self._raw
            self._raw.clear()
            return
        while True:
            if self._state == "size":
                idx = self._raw.find(b"\r\n")
                if idx < 0:
                    assert len(self._raw) < 1024, "chunk size line too long"
                    return
                line = bytes(self._raw[:idx]).split(b";", 1)[0].strip()
                del self._raw[: idx + 2]
                assert re.fullmatch(rb"[0-9a-fA-F]+", line), f"bad chunk size line {line!r}"
                size = int(line, 16)
                if size == 0:
                    self._state = "done"
                    return
                self._chunk_left = size
                self._state = "data"
            elif self._state == "data":
                if not self._raw:
                    return
                take = min(len(self._raw), self._chunk_left)
                self._buf += self._raw[:take]
                del self._raw[:take]
                self._chunk_left -= take
                if self._chunk_left == 0:
                    self._state = "crlf"
            elif self._state == "crlf":
                if len(self._raw) < 2:
                    return
                assert self._raw[:2] == b"\r\n", f"chunk not followed by CRLF: {self._raw[:2]!r}"
                del self._raw[:2]
                self._state = "size"
            else:
                return

    def _pump(self) -> None:
        if self.eof or self._state == "done":
            raise StreamEnded("stream ended")
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as exc:
            self.eof = True
            raise StreamEnded(f"connection reset: {exc}") from exc
        if not data:
            self.eof = True
            raise StreamEnded("EOF")
        self._raw += data
        self._decode()

    def buffered(self) -> int:
        return len(self._buf)

    def read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._pump()
        out = bytes(self._buf[:n])
        del self._buf[:n]
        self.consumed += n
        return out

    def read_until(self, delim: bytes, limit: int = 65536) -> bytes:
        """Read up to and including `delim`; fail if it does not appear within `limit` bytes."""
        start = 0
        while True:
            idx = self._buf.find(delim, start)
            if idx >= 0:
                return self.read_exact(idx + len(delim))
            assert len(self._buf) <= limit, f"{delim!r} not found within {limit} bytes"
            start = max(0, len(self._buf) - len(delim) + 1)
            self._pump()

    def read_some(self, max_bytes: int = 65536) -> bytes:
        """At least one byte (blocking), at most `max_bytes`."""
        if not self._buf:
            self._pump()
        n = min(max_bytes, len(self._buf))
        return self.read_exact(n) if n else b""


@dataclass
class HttpHead:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    raw: bytes

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None


def read_http_head(sock: socket.socket, limit: int = 65536) -> tuple[HttpHead, bytes]:
    """Read a response head; returns it and any body bytes already received."""
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        assert len(buf) < limit, "response head too long"
        data = sock.recv(65536)
        if not data:
            raise StreamEnded(f"EOF before end of response head; got {bytes(buf)!r}")
        buf += data
    idx = buf.index(b"\r\n\r\n")
    raw = bytes(buf[:idx])
    rest = bytes(buf[idx + 4 :])
    lines = raw.decode("latin-1").split("\r\n")
    m = re.fullmatch(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?", lines[0])
    assert m, f"bad status line {lines[0]!r}"
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        assert ":" in line, f"bad header line {line!r}"
        k, v = line.split(":", 1)
        headers.append((k.strip(), v.strip()))
    return HttpHead(m.group(1), int(m.group(2)), m.group(3) or "", headers, raw), rest


# --------------------------------------------------------------------------------------------
# MJPEG
# --------------------------------------------------------------------------------------------

CONTENT_TYPE_RE = re.compile(r"multipart/x-mixed-replace; boundary=(?P<b>[^\s;\"]+)")


@dataclass
class MjpegPart:
    jpeg: bytes
    timestamp: float
    timestamp_text: str
    received_at: float  # time.time() when the part was fully read


class MjpegStream:
    """A raw-socket MJPEG client that checks CONTRACT §4 framing byte for byte as it reads."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str = "/stream",
        *,
        http10: bool = False,
        rcvbuf: int | None = None,
        timeout: float = 10.0,
        read_head: bool = True,
    ) -> None:
        self.path = path
        self.sock = open_socket(host, port, rcvbuf=rcvbuf, timeout=timeout)
        self.local_port = int(self.sock.getsockname()[1])  # kept: still needed after close()
        version = "HTTP/1.0" if http10 else "HTTP/1.1"
        request = f"GET {path} {version}\r\nHost: {host}:{port}\r\nUser-Agent: edge-tests\r\n"
        if not http10:
            request += "Connection: keep-alive\r\n"
        request += "Accept: */*\r\n\r\n"
        self.sock.sendall(request.encode())
        self.head: HttpHead | None = None
        self.body: BodyReader | None = None
        self.boundary = ""
        self._started = False
        if read_head:
            self.read_head()

    def read_head(self) -> HttpHead:
        head, rest = read_http_head(self.sock)
        self.head = head
        te = (head.get("Transfer-Encoding") or "").lower()
        self.body = BodyReader(self.sock, rest, chunked="chunked" in te)
        ctype = head.get("Content-Type") or ""
        m = CONTENT_TYPE_RE.fullmatch(ctype)
        if m:
            self.boundary = m.group("b")
        return head

    def start_body(self) -> None:
        """The body must begin with `--<token>\\r\\n` (boundary before the first frame)."""
        assert self.body is not None and self.boundary, "no multipart head"
        first = self.body.read_exact(len(self.boundary) + 4)
        assert first == b"--" + self.boundary.encode() + b"\r\n", f"body starts with {first!r}"
        self._started = True

    def read_part(self) -> MjpegPart:
        """Read one part and verify its exact layout (CONTRACT §4)."""
        assert self.body is not None
        if not self._started:
            self.start_body()
        hdr = self.body.read_until(b"\r\n\r\n", limit=4096)
        lines = hdr[:-4].split(b"\r\n")
        assert len(lines) == 3, f"part must have exactly 3 header lines, got {lines!r}"
        assert lines[0] == b"Content-Type: image/jpeg", f"first part header {lines[0]!r}"
        m_len = re.fullmatch(rb"Content-Length: (\d+)", lines[1])
        assert m_len, f"second part header {lines[1]!r}"
        m_ts = re.fullmatch(rb"X-Timestamp: (\d+\.\d{6})", lines[2])
        assert m_ts, f"third part header {lines[2]!r}"
        jpeg = self.body.read_exact(int(m_len.group(1)))
        tail = self.body.read_exact(len(self.boundary) + 6)
        expected = b"\r\n--" + self.boundary.encode() + b"\r\n"
        assert tail == expected, f"JPEG not followed by CRLF + boundary: {tail!r}"
        assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9", "part is not a complete JPEG"
        ts_text = m_ts.group(1).decode()
        return MjpegPart(jpeg, float(ts_text), ts_text, time.time())

    def read_parts(self, n: int) -> list[MjpegPart]:
        return [self.read_part() for _ in range(n)]

    def close(self, rst: bool = False) -> None:
        close_socket(self.sock, rst)

    def __enter__(self) -> MjpegStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Received:
    received_at: float
    timestamp: float
    size: int
    width: int = 0
    height: int = 0


class BackgroundReader:
    """Reads frames from a stream in a thread, recording arrival time, timestamp and size.

    Used where a client must keep reading while the test does something else (polls status,
    stalls another client, stops a server...).  `reader` returns one `Received` per call.
    """

    def __init__(self, reader: Callable[[], Received], name: str = "reader") -> None:
        self._reader = reader
        self.frames: list[Received] = []
        self.error: BaseException | None = None
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._reader()
                with self._lock:
                    self.frames.append(item)
        except BaseException as exc:
            if not self._stop.is_set():
                self.error = exc
        finally:
            self.ended.set()

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.frames)

    def count(self) -> int:
        with self._lock:
            return len(self.frames)

    def count_between(self, t0: float, t1: float) -> int:
        return sum(1 for f in self.snapshot() if t0 <= f.received_at < t1)

    def stop(self, closer: Callable[[], None] | None = None, timeout: float = 5.0) -> None:
        """Stop reading; `closer` (e.g. the stream's close) unblocks a pending read first."""
        self._stop.set()
        if closer is not None:
            closer()
        self._thread.join(timeout)

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"background reader failed: {self.error!r}") from self.error


def mjpeg_reader(stream: MjpegStream, decode: bool = False) -> Callable[[], Received]:
    def read() -> Received:
        part = stream.read_part()
        w = h = 0
        if decode:
            w, h = jpeg_size(part.jpeg)
        return Received(part.received_at, part.timestamp, len(part.jpeg), w, h)

    return read


# --------------------------------------------------------------------------------------------
# WebSocket
# --------------------------------------------------------------------------------------------

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass
class WsFrame:
    """A binary frame message of CONTRACT §5."""

    seq: int
    timestamp: float
    jpeg: bytes


def parse_ws_frame(payload: bytes) -> WsFrame:
    """Split a binary message into uint64 BE seq, float64 BE timestamp and the JPEG."""
    assert len(payload) > 16, f"binary message too short ({len(payload)} bytes)"
    seq, ts = struct.unpack(">Qd", payload[:16])
    jpeg = payload[16:]
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9", "payload is not a complete JPEG"
    return WsFrame(seq, ts, jpeg)


class RawWebSocket:
    """Minimal RFC 6455 client on a raw socket.

    Needed to control SO_RCVBUF and to stop reading at will (slow-reader tests), and to vanish
    mid-frame (churn tests); the `websockets` library buffers and answers pings on its own.
    """

    OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10

    def __init__(
        self,
        host: str,
        port: int,
        path: str = "/ws",
        *,
        rcvbuf: int | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.sock = open_socket(host, port, rcvbuf=rcvbuf, timeout=timeout)
        self.local_port = int(self.sock.getsockname()[1])  # kept: still needed after close()
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head, rest = read_http_head(self.sock)
        self.head = head
        if head.status != 101:
            raise AssertionError(f"WebSocket upgrade answered {head.status} {head.reason}")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        assert head.get("Sec-WebSocket-Accept") == accept, "bad Sec-WebSocket-Accept"
        self.reader = BodyReader(self.sock, rest, chunked=False)
        self.close_code: int | None = None

    def recv_frame(self) -> tuple[bool, int, bytes]:
        """One wire frame: (fin, opcode, payload). Server frames must be unmasked."""
        b0, b1 = self.reader.read_exact(2)
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack(">H", self.reader.read_exact(2))
        elif n == 127:
            (n,) = struct.unpack(">Q", self.reader.read_exact(8))
        return bool(b0 & 0x80), b0 & 0x0F, self.reader.read_exact(n)

    def recv_message(self) -> tuple[int, bytes]:
        """Next data message (text/binary) or close, reassembling fragments, skipping ping/pong."""
        opcode = -1
        parts: list[bytes] = []
        while True:
            fin, op, payload = self.recv_frame()
            if op in (self.OP_PING, self.OP_PONG):
                continue
            if op == self.OP_CLOSE:
                self.close_code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                return op, payload
            if op != self.OP_CONT:
                opcode = op
            parts.append(payload)
            if fin:
                return opcode, b"".join(parts)

    def recv_json(self) -> dict[str, Any]:
        op, payload = self.recv_message()
        assert op == self.OP_TEXT, f"expected a text message, got opcode {op}"
        return json.loads(payload)

    def recv_binary(self) -> WsFrame:
        """Next binary frame message, skipping text messages."""
        while True:
            op, payload = self.recv_message()
            if op == self.OP_CLOSE:
                raise StreamEnded(f"WebSocket closed with code {self.close_code}")
            if op == self.OP_BINARY:
                return parse_ws_frame(payload)

    def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack(">BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack(">BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack(">BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send_text(self, text: str) -> None:
        self.send(self.OP_TEXT, text.encode())

    def close(self, rst: bool = False) -> None:
        close_socket(self.sock, rst)


def ws_reader(ws: RawWebSocket, decode: bool = False) -> Callable[[], Received]:
    def read() -> Received:
        frame = ws.recv_binary()
        w = h = 0
        if decode:
            w, h = jpeg_size(frame.jpeg)
        return Received(time.time(), frame.timestamp, len(frame.jpeg), w, h)

    return read


# --------------------------------------------------------------------------------------------
# Slow-reader rule (CONTRACT §4)
# --------------------------------------------------------------------------------------------


def check_stale_after_resume(frames: list[Received], resume_at: float, min_fresh: int = 3) -> None:
    """Frames captured before the client resumed: at most 2 frames or 256 KiB; then only fresh.

    `frames` are those read after resuming, in order.
    """
    first_fresh = next((i for i, f in enumerate(frames) if f.timestamp >= resume_at), None)
    assert first_fresh is not None, f"no frame captured after resume among {len(frames)} frames read after resuming"
    stale = frames[:first_fresh]
    later_stale = [f for f in frames[first_fresh:] if f.timestamp < resume_at]
    assert not later_stale, f"{len(later_stale)} stale frame(s) arrived after a fresh one"
    stale_bytes = sum(f.size for f in stale)
    assert len(stale) <= 2 or stale_bytes <= 256 * KIB, (
        f"after resuming, got {len(stale)} stale frames totalling {stale_bytes} bytes "
        f"(oldest captured {resume_at - stale[0].timestamp:.2f}s before resume); "
        "allowed: at most 2 frames or 256 KiB"
    )
    fresh = frames[first_fresh:]
    assert len(fresh) >= min_fresh, f"only {len(fresh)} fresh frames after resume"
