"""N HTTP viewers in a process of their own: raw asyncio sockets that send one ``GET`` (HTTP/1.1),
then read and discard, counting bytes.

The worker is started with ``spawn`` and steered over a pipe, so its CPU is its own (read from
/proc by the parent) and never edge's:

    worker -> parent  ("ready", info)             every viewer has body bytes, or the wait ran out
    parent -> worker  ("mark",)                   reply ("mark", monotonic time, bytes per viewer, lost)
    parent -> worker  ("stop",)                   close every socket; reply ("done", info)

Reads go into one shared 256 KiB buffer (``BufferedProtocol``): nothing is copied or parsed
beyond each response's status line, so 500 viewers cost the worker little.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import resource
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any, Self

from h264bench.stats import summarize

SHARED_BUFFER = 256 * 1024
CONNECT_BATCH = 50
MAX_HEAD = 65536


def raise_nofile_limit() -> int:
    """Lift the soft open-files limit to the hard one (500 sockets need more than 1024 with margin)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


class Viewer(asyncio.BufferedProtocol):
    """One viewer: its request on connect, then counts what arrives."""

    def __init__(self, buf: bytearray, request: bytes) -> None:
        self.buf = buf
        self.request = request
        self.received = 0
        self.head = bytearray()
        self.head_len = -1
        self.status = 0
        self.started = time.monotonic()
        self.first_body: float | None = None
        self.lost = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        transport.write(self.request)

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.received += nbytes
        if self.head_len >= 0:
            if self.first_body is None:
                self.first_body = time.monotonic()
            return
        self.head += self.buf[:nbytes]
        end = self.head.find(b"\r\n\r\n")
        if end >= 0:
            self.head_len = end + 4
            line = bytes(self.head[: self.head.find(b"\r\n")])
            parts = line.split(b" ")
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
            if len(self.head) > self.head_len:
                self.first_body = time.monotonic()
            self.head = bytearray()
        elif len(self.head) > MAX_HEAD and self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


def _factory(viewer: Viewer) -> Callable[[], Viewer]:
    return lambda: viewer


async def _open(host: str, port: int, path: str, count: int) -> tuple[list[Viewer], list[str]]:
    loop = asyncio.get_running_loop()
    buf = bytearray(SHARED_BUFFER)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: h264bench\r\n\r\n".encode()
    viewers: list[Viewer] = []
    failures: list[str] = []
    for start in range(0, count, CONNECT_BATCH):
        batch = min(CONNECT_BATCH, count - start)
        made = [Viewer(buf, request) for _ in range(batch)]
        results = await asyncio.gather(
            *(loop.create_connection(_factory(v), host, port) for v in made), return_exceptions=True
        )
        for viewer, result in zip(made, results, strict=True):
            if isinstance(result, BaseException):
                failures.append(repr(result))
            else:
                viewers.append(viewer)
    return viewers, failures


async def _serve(conn: Connection, host: str, port: int, path: str, count: int, ready_timeout: float) -> None:
    loop = asyncio.get_running_loop()
    limit = raise_nofile_limit()
    t0 = time.monotonic()
    viewers, failures = await _open(host, port, path, count)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline and any(v.first_body is None and not v.lost for v in viewers):
        await asyncio.sleep(0.05)
    waits = [(v.first_body - v.started) * 1000 for v in viewers if v.first_body is not None]
    statuses: dict[str, int] = {}
    for v in viewers:
        statuses[str(v.status)] = statuses.get(str(v.status), 0) + 1
    conn.send(
        (
            "ready",
            {
                "asked": count,
                "connected": len(viewers),
                "with_body": len(waits),
                "lost": sum(v.lost for v in viewers),
                "statuses": statuses,
                "connect_failures": failures[:5],
                "connect_failure_count": len(failures),
                "first_body_ms": summarize(waits),
                "open_all_s": time.monotonic() - t0,
                "nofile_limit": limit,
            },
        )
    )
    commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
    while True:
        command = await commands.get()
        if command[0] == "mark":
            conn.send(("mark", time.monotonic(), [v.received for v in viewers], sum(v.lost for v in viewers)))
        elif command[0] == "stop":
            break
    loop.remove_reader(conn.fileno())
    for v in viewers:
        if v.transport is not None:
            v.transport.abort()
    await asyncio.sleep(0.1)
    conn.send(("done", {"lost_before_stop": sum(v.lost for v in viewers)}))


def worker_main(conn: Connection, host: str, port: int, path: str, count: int, ready_timeout: float) -> None:
    """Entry point of the worker process."""
    try:
        import uvloop

        uvloop.run(_serve(conn, host, port, path, count, ready_timeout))
    except ImportError:
        asyncio.run(_serve(conn, host, port, path, count, ready_timeout))


class ViewerPool:
    """``count`` viewers of ``path`` in a worker process, for as long as the ``with`` block."""

    def __init__(self, host: str, port: int, path: str, count: int, ready_timeout: float = 40.0) -> None:
        self.args = (host, port, path, count, ready_timeout)
        self.ready_timeout = ready_timeout
        self.ready: dict[str, Any] = {}

    def __enter__(self) -> Self:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=worker_main, args=(child, *self.args), daemon=True)
        self._proc.start()
        child.close()
        reply = self._recv("ready", self.ready_timeout + 30.0)
        self.ready = reply[1]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self._conn.send(("stop",))
            self._recv("done", 15.0)
        self._proc.join(5.0)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5.0)

    @property
    def pid(self) -> int:
        assert self._proc.pid is not None
        return self._proc.pid

    def _recv(self, kind: str, timeout: float) -> tuple[Any, ...]:
        if not self._conn.poll(timeout):
            raise RuntimeError(f"the viewer worker sent no {kind!r} within {timeout:.0f} s")
        reply: tuple[Any, ...] = self._conn.recv()
        if reply[0] != kind:
            raise RuntimeError(f"the viewer worker sent {reply[0]!r}, expected {kind!r}")
        return reply

    def mark(self) -> tuple[float, list[int], int]:
        """(monotonic time, bytes received per viewer so far, viewers whose connection was lost)."""
        self._conn.send(("mark",))
        _, at, counts, lost = self._recv("mark", 15.0)
        return at, counts, lost
