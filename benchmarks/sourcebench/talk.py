"""What ``benchmarks/sources.py`` asks a running server: its camera's status (waited on until it
streams or idles), and one timed ``GET /snapshot`` for the wake-up latency."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadgen.proto import HEADER_END, JPEG_EOI, JPEG_SOI, parse_head
from loadgen.server import ServerProcess

from sourcebench.runs import HOST

STATUS_KEYS = (
    "source_kind",
    "state",
    "problem",
    "passthrough",
    "processing",
    "idle",
    "width",
    "height",
    "fps",
    "frames_captured",
    "frames_invalid",
)


def camera_status(server: ServerProcess) -> dict[str, Any] | None:
    """The first camera's entry of ``/api/status``, reduced to what the benchmark looks at."""
    status = server.status()
    cameras = status.get("cameras") if isinstance(status, dict) else None
    if not isinstance(cameras, list) or not cameras:
        return None
    return {k: cameras[0].get(k) for k in STATUS_KEYS}


def wait_camera(
    server: ServerProcess, ok: Callable[[dict[str, Any]], bool], timeout: float, what: str
) -> dict[str, Any]:
    """Poll ``/api/status`` every 0.1 s until ``ok(camera)``; raise, saying what was seen, if not."""
    deadline = time.monotonic() + timeout
    cam: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        cam = camera_status(server)
        if cam is not None and ok(cam):
            return cam
        time.sleep(0.1)
    tail = "\n".join(list(server.tail)[-10:])
    raise RuntimeError(f"camera not {what} within {timeout:g} s; last status {cam}\nserver stderr:\n{tail}")


def is_streaming(cam: dict[str, Any]) -> bool:
    """A real frame has been captured since start (a placeholder does not count)."""
    return cam["state"] == "streaming" and (cam["frames_captured"] or 0) > 0


def is_idle(cam: dict[str, Any]) -> bool:
    """Idle on purpose, with the source fine."""
    return cam["state"] == "streaming" and cam["idle"] is True


@dataclass
class SnapshotResult:
    """One ``GET /snapshot`` as the wake-up measurement sees it (times are wall clock, s)."""

    sent: float
    done: float
    status: int
    capture: float | None
    placeholder: bool
    jpeg_bytes: int
    jpeg_ok: bool

    def as_json(self) -> dict[str, Any]:
        """Row for the result file: both latencies in ms, and whether the frame is fresh."""
        return {
            "status": self.status,
            "response_ms": round((self.done - self.sent) * 1000.0, 2),
            "capture_minus_sent_ms": None if self.capture is None else round((self.capture - self.sent) * 1000.0, 2),
            "fresh": self.capture is not None and self.capture > self.sent,
            "placeholder": self.placeholder,
            "jpeg_bytes": self.jpeg_bytes,
            "jpeg_ok": self.jpeg_ok,
        }


def parse_snapshot(raw: bytes) -> tuple[int, dict[str, str], bytes] | None:
    """(status, headers, body) from a complete response, or None while the head is incomplete."""
    end = raw.find(HEADER_END)
    if end < 0:
        return None
    head = parse_head(raw[:end])
    return head.status, head.headers, raw[end + len(HEADER_END) :]


def response_complete(raw: bytes) -> bool:
    """True once the head and ``Content-Length`` body bytes are in (no length: wait for close)."""
    parsed = parse_snapshot(raw)
    if parsed is None:
        return False
    length = parsed[1].get("content-length")
    return length is not None and len(parsed[2]) >= int(length)


def snapshot_once(port: int, path: str = "/snapshot", timeout: float = 10.0) -> SnapshotResult:
    """One snapshot on a connection opened beforehand, so TCP set-up is not in the timing."""
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: edge-bench/1\r\nConnection: close\r\n\r\n"
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw = bytearray()
        sent = time.time()
        sock.sendall(request.encode("ascii"))
        while not response_complete(raw):
            chunk = sock.recv(262144)
            if not chunk:
                break
            raw += chunk
        done = time.time()
    parsed = parse_snapshot(bytes(raw))
    if parsed is None:
        raise RuntimeError(f"no HTTP response to GET {path} ({len(raw)} bytes)")
    status, headers, body = parsed
    stamp = headers.get("x-timestamp")
    return SnapshotResult(
        sent=sent,
        done=done,
        status=status,
        capture=float(stamp) if stamp else None,
        placeholder=headers.get("x-placeholder") == "1",
        jpeg_bytes=len(body),
        jpeg_ok=body.startswith(JPEG_SOI) and body.endswith(JPEG_EOI),
    )
