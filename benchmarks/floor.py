"""The floor: the smallest server that does edge's streaming job on this machine.

Why: on a shared 2-core box a server's CPU moves by ±20 % from one run to the next, so an
absolute figure says little. Run under the same load, back to back with edge, this server turns
each of edge's figures into a ratio (edge ÷ floor) that survives the noise. It does only what any
server must do to deliver the same bytes, and nothing else:

- one uvloop event loop, one listening socket on 127.0.0.1 with edge's ``TCP_NOTSENT_LOWAT``
  (4 KiB) and, per transport, edge's zero write high-water mark (``edge/server/wire.py``);
- the JPEG frames read once at start (a directory of ``*.jpg``, or an MJPEG/AVI file split at the
  JPEG markers) and sent in a loop at ``--fps`` from one loop timer: each tick stamps the frame
  with ``time.time()`` (its "capture" time), frames it once per wire format (edge's exact HTTP/1.1
  chunk, the bare part for HTTP/1.0, edge's WebSocket message) and writes those bytes to every
  viewer that is not paused, one ``write`` each;
- a paused viewer is skipped and gets the newest frame from ``resume_writing``: the same
  bounded-backlog behaviour as ``edge/fanout/broadcast.py``;
- ``GET /stream`` with edge's response head, ``/ws`` with a bare RFC 6455 handshake (no
  extensions, as edge) and edge's hello; ``/snapshot`` and ``/api/status`` only as far as the
  load runner needs them (it waits for a snapshot, and reads the status at the end).

No ASGI, no per-client task, no per-client counters, no access control, no limits. The command
line takes ``--config``, ``--port`` and ``--log-level`` like ``python -m edge`` so that
``loadgen/server.py`` starts both the same way (the config is not read). Run::

    python benchmarks/floor.py FRAMES_DIR_OR_MJPEG_FILE [--fps 30] [--port 8080]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import email.utils
import hashlib
import json
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

import uvloop

NOTSENT_LOWAT = 4 * 1024  # edge/server/listen.py
MAX_HEAD = 64 * 1024
SECURITY = (  # edge/web/access.py SECURITY_HEADERS, as uvicorn writes them
    b"x-content-type-options: nosniff\r\nreferrer-policy: no-referrer\r\n"
    b"content-security-policy: default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    b"connect-src 'self'; "
    b"script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'\r\n"
)
STREAM_HEADERS = (  # edge/web/mjpeg.py STREAM_HEADERS
    b"content-type: multipart/x-mixed-replace; boundary=edgeframe\r\n"
    b"cache-control: no-store, no-cache, must-revalidate, max-age=0\r\npragma: no-cache\r\nx-accel-buffering: no\r\n"
)
PREAMBLE = b"--edgeframe\r\n"
TAIL = b"\r\n--edgeframe\r\n"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_PREFIX = struct.Struct(">Qd")


def load_frames(source: Path) -> list[bytes]:
    """Every JPEG of a directory (sorted by name), or of a file cut at its SOI/EOI markers."""
    if not source.exists():
        raise SystemExit(f"floor: {source} does not exist")
    if source.is_dir():
        frames = [p.read_bytes() for p in sorted(source.glob("*.jpg"))]
    else:
        data, frames, pos = source.read_bytes(), [], 0
        while (start := data.find(b"\xff\xd8\xff", pos)) >= 0 and (end := data.find(b"\xff\xd9", start)) >= 0:
            frames.append(data[start : end + 2])
            pos = end + 2
    if not frames:
        raise SystemExit(f"floor: no JPEG frames in {source}")
    return frames


def jpeg_size(jpeg: bytes) -> tuple[int, int]:
    """(width, height) from the first SOF marker; (0, 0) if there is none."""
    pos = 2
    while pos + 9 < len(jpeg) and jpeg[pos] == 0xFF:
        marker, length = jpeg[pos + 1], int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack_from(">HH", jpeg, pos + 5)
            return width, height
        pos += 2 + length
    return 0, 0


# The three wire formats, each built once per frame: (seq, capture time, JPEG) -> bytes.
def part(seq: int, ts: float, jpeg: bytes) -> bytes:
    """edge/web/mjpeg.py ``part`` in edge/server/wire.py's ``close_delimited``: a close-delimited
    (HTTP/1.0) body's bytes."""
    head = b"Content-Type: image/jpeg\r\nContent-Length: %d\r\nX-Timestamp: %.6f\r\n\r\n" % (len(jpeg), ts)
    return b"".join((head, jpeg, TAIL))


def chunk(seq: int, ts: float, jpeg: bytes) -> bytes:
    """edge/web/mjpeg.py ``part`` in edge/server/wire.py's ``chunked``: the part as one HTTP/1.1 chunk."""
    head = b"Content-Type: image/jpeg\r\nContent-Length: %d\r\nX-Timestamp: %.6f\r\n\r\n" % (len(jpeg), ts)
    return b"".join((b"%x\r\n" % (len(head) + len(jpeg) + len(TAIL)), head, jpeg, TAIL, b"\r\n"))


def message(seq: int, ts: float, jpeg: bytes) -> bytes:
    """edge/web/websocket.py ``payload`` in edge/server/wire.py's ``ws_binary``: one binary WebSocket
    frame, 16-byte seq/timestamp prefix + JPEG."""
    size = WS_PREFIX.size + len(jpeg)
    if size < 126:
        header = bytes((0x82, size))
    elif size < 1 << 16:
        header = struct.pack(">BBH", 0x82, 126, size)
    else:
        header = struct.pack(">BBQ", 0x82, 127, size)
    return b"".join((header, WS_PREFIX.pack(seq, ts), jpeg))


Framing = Callable[[int, float, bytes], bytes]


class Floor:
    """The frames, the viewers by wire format, and the timer that sends each frame to them."""

    def __init__(self, frames: list[bytes], fps: float) -> None:
        self.frames = frames
        self.period = 1.0 / fps
        self.fps = fps
        self.width, self.height = jpeg_size(frames[0])
        self.viewers: dict[Framing, set[Viewer]] = {chunk: set(), part: set(), message: set()}
        self.seq = 0
        self.ts = 0.0
        self.jpeg = b""
        self.wire: dict[Framing, bytes] = {}
        self.connections = 0
        self._next = 0.0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Capture the first frame now, then one every period on a fixed grid."""
        self._next = loop.time()
        self.tick()

    def tick(self) -> None:
        """A new frame: framed once per format in use, written to every viewer that can take it."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._next += self.period
        if self._next < now:  # more than a period late: skip, as a camera would
            self._next = now + self.period
        loop.call_at(self._next, self.tick)
        self.seq += 1
        self.ts = time.time()
        self.jpeg = self.frames[self.seq % len(self.frames)]
        self.wire = {}
        seq = self.seq
        for framing, viewers in self.viewers.items():
            if viewers:
                data = self.wire[framing] = framing(seq, self.ts, self.jpeg)
                for viewer in viewers:
                    if not viewer.paused:
                        try:
                            viewer.transport.write(data)
                        except (RuntimeError, OSError):  # closed under us: connection_lost follows
                            continue
                        viewer.seq = seq

    def kick(self, viewer: Viewer) -> None:
        """The newest frame for a viewer that just subscribed or resumed, unless it has it."""
        framing = viewer.framing
        if framing is None or viewer.paused or viewer.seq >= self.seq or not self.seq:
            return
        data = self.wire.get(framing)
        if data is None:
            data = self.wire[framing] = framing(self.seq, self.ts, self.jpeg)
        viewer.transport.write(data)
        viewer.seq = self.seq

    def status(self) -> bytes:
        """Just what the load runner reads from edge's /api/status."""
        doc = {
            "server": "floor",
            "clients_total": sum(len(v) for v in self.viewers.values()),
            "cameras": [
                {
                    "name": "cam0",
                    "state": "streaming",
                    "passthrough": True,
                    "width": self.width,
                    "height": self.height,
                    "fps": self.fps,
                    "frames_captured": self.seq,
                    "clients": [],
                }
            ],
        }
        return json.dumps(doc).encode()


def _date() -> bytes:
    return email.utils.formatdate(usegmt=True).encode()


class Viewer(asyncio.Protocol):
    """One connection: parses one request head, then is a viewer (or answers once and closes)."""

    def __init__(self, floor: Floor) -> None:
        self.floor = floor
        self.transport: asyncio.Transport
        self.framing: Framing | None = None
        self.paused = False
        self.seq = 0
        self._buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Zero high-water mark: any byte the kernel refuses pauses the viewer (as edge)."""
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=0)
        self.floor.connections += 1

    def pause_writing(self) -> None:
        """The kernel refused bytes: skip this viewer until it resumes."""
        self.paused = True

    def resume_writing(self) -> None:
        """Writable again: the newest frame, never the ones it missed."""
        self.paused = False
        self.floor.kick(self)

    def eof_received(self) -> bool:
        """The client is done: stop writing to it now, and let the transport close."""
        if self.framing is not None:
            self.floor.viewers[self.framing].discard(self)
            self.framing = None
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Unsubscribe."""
        self.floor.connections -= 1
        if self.framing is not None:
            self.floor.viewers[self.framing].discard(self)
            self.framing = None

    def data_received(self, data: bytes) -> None:
        """The request head; after it only a WebSocket close matters, and MJPEG input is ignored."""
        if self.framing is message:
            self._ws_input(data)
            return
        if self.framing is not None:
            return
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD:
                self.transport.close()
            return
        lines = self._buf[:end].split(b"\r\n")
        self._buf = b""
        method, target, version = (lines[0].split(b" ") + [b"", b""])[:3]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        path = target.split(b"?", 1)[0]
        if path == b"/stream":
            self._stream(version == b"HTTP/1.0")
        elif path == b"/ws" and headers.get(b"upgrade", b"").lower() == b"websocket":
            self._websocket(headers.get(b"sec-websocket-key", b""))
        elif path == b"/snapshot" and self.floor.seq:
            stamp = b"x-timestamp: %.6f\r\n" % self.floor.ts
            self._answer(b"200 OK", b"image/jpeg", self.floor.jpeg, stamp)
        elif path == b"/api/status":
            self._answer(b"200 OK", b"application/json", self.floor.status())
        else:
            self._answer(b"404 Not Found", b"application/json", b'{"error":"not found"}')

    def _answer(self, status: bytes, ctype: bytes, body: bytes, extra: bytes = b"") -> None:
        head = b"HTTP/1.1 %b\r\ndate: %b\r\n%b%bcontent-length: %d\r\ncontent-type: %b\r\nconnection: close\r\n\r\n"
        self.transport.write(head % (status, _date(), SECURITY, extra, len(body), ctype) + body)
        self.transport.close()

    def _stream(self, http10: bool) -> None:
        """edge's response head, then the opening boundary; then frames from the timer."""
        coding = b"connection: close\r\n" if http10 else b"transfer-encoding: chunked\r\n"
        body = PREAMBLE if http10 else b"%x\r\n%b\r\n" % (len(PREAMBLE), PREAMBLE)
        head = b"HTTP/1.1 200 OK\r\ndate: %b\r\n%b%b%b\r\n" % (_date(), SECURITY, STREAM_HEADERS, coding)
        self.transport.write(head + body)
        self._subscribe(part if http10 else chunk)

    def _websocket(self, key: bytes) -> None:
        """RFC 6455 handshake (no extensions, like edge), edge's hello, then frames from the timer."""
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        head += b"Sec-WebSocket-Accept: %b\r\ndate: %b\r\n%b\r\n" % (accept, _date(), SECURITY)
        floor = self.floor
        hello = {"type": "hello", "camera": "cam0", "width": floor.width, "height": floor.height}
        text = json.dumps({**hello, "fps": floor.fps, "id": f"c{floor.connections}"}).encode()
        size = bytes((0x81, len(text))) if len(text) < 126 else struct.pack(">BBH", 0x81, 126, len(text))
        self.transport.write(head + size + text)
        self._subscribe(message)

    def _subscribe(self, framing: Framing) -> None:
        self.framing = framing
        self.floor.viewers[framing].add(self)
        self.floor.kick(self)

    def _ws_input(self, data: bytes) -> None:
        """Client frames are skipped; a close frame is answered with a close and the connection ends."""
        buf = self._buf = self._buf + data
        while len(buf) >= 2:
            size, pos = buf[1] & 0x7F, 2
            if size >= 126:
                width = 2 if size == 126 else 8
                if len(buf) < pos + width:
                    break
                size, pos = int.from_bytes(buf[pos : pos + width], "big"), pos + width
            pos += 4 if buf[1] & 0x80 else 0
            if len(buf) < pos + size:
                break
            if buf[0] & 0x0F == 0x8:  # close
                self.floor.viewers[message].discard(self)
                self.framing = None
                self.transport.write(b"\x88\x02\x03\xe8")
                self.transport.close()
                return
            buf = buf[pos + size :]
        self._buf = buf


def listen_socket(host: str, port: int) -> socket.socket:
    """edge/server/listen.py ``listen_socket``: TCP_NOTSENT_LOWAT set on the listener is inherited."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_NOTSENT_LOWAT", 25), NOTSENT_LOWAT)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(floor: Floor, host: str, port: int) -> None:
    """Listen, say where (the line loadgen/server.py waits for), run until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Viewer(floor), sock=listen_socket(host, port))
    bound = server.sockets[0].getsockname()[1]
    print(f"floor listening on http://{host}:{bound}  frames: {len(floor.frames)}", file=sys.stderr, flush=True)
    floor.start(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    for viewers in floor.viewers.values():
        for viewer in list(viewers):
            viewer.transport.abort()


def main(argv: list[str]) -> int:
    """Command line, as ``python -m edge`` is called by the load runner plus the frames."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("frames", type=Path, help="directory of *.jpg, or an MJPEG/AVI file to split")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--config", help="accepted for the load runner; not read")
    parser.add_argument("--log-level", help="accepted for the load runner; not used")
    args = parser.parse_args(argv)
    floor = Floor(load_frames(args.frames), args.fps)
    uvloop.run(serve(floor, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
