"""A load-client worker process: one event loop driving a share of the clients.

The parent starts one or more workers (each a separate process, so each gets its own core
when one is free) and steers them over a pipe:

    worker -> parent  ("ready", info)        every client has its first frame, or timed out
    parent -> worker  ("window", t0, t1)     wall-clock measurement window
    parent -> worker  ("stop",)              close everything and report
    worker -> parent  ("result", payload)    per-client figures inside the window
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from array import array
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from loadgen.clients import FrameStats, MjpegProtocol, open_fast, run_throttled, run_ws
from loadgen.proto import build_request

SHARED_BUFFER = 256 * 1024


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker runs; picklable so it can cross the process boundary."""

    index: int
    host: str
    port: int
    path: str
    ws_path: str
    http_version: str
    fast: int
    throttled: int
    ws: int
    ws_compression: str | None
    rcvbuf: int
    read_size: int
    read_interval: float
    ready_timeout: float
    max_life_s: float


def raise_nofile_limit() -> int:
    """Lift the soft open-files limit to the hard one so 500+ sockets fit; returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def worker_main(conn: Connection, spec: WorkerSpec) -> None:
    """Process entry point: set limits, pick the fastest available event loop, run."""
    raise_nofile_limit()
    loop_name = "asyncio"
    try:
        import uvloop

        uvloop.install()
        loop_name = "uvloop"
    except ImportError:
        pass
    asyncio.run(_run(conn, spec, loop_name))


class LagMonitor:
    """Measures how late a 50 ms timer fires: a busy (CPU-bound) client shows up as lag.

    Latency is measured in this process, so if the loop is late the latencies are inflated by
    the client, not the server; this figure lets a reader tell which.
    """

    PERIOD = 0.05

    def __init__(self) -> None:
        self.times = array("d")
        self.lags = array("d")

    async def run(self, deadline: float) -> None:
        """Tick until ``deadline`` (monotonic)."""
        while time.monotonic() < deadline:
            expected = time.monotonic() + self.PERIOD
            await asyncio.sleep(self.PERIOD)
            self.lags.append(max(0.0, time.monotonic() - expected))
            self.times.append(time.time())

    def summary(self, t0: float, t1: float) -> dict[str, float]:
        """p50/p99/max lag in ms inside the window."""
        times, lags = np.frombuffer(self.times), np.frombuffer(self.lags)
        inside = lags[(times >= t0) & (times < t1)] * 1000.0
        if not inside.size:
            return {}
        return {
            "p50": round(float(np.percentile(inside, 50)), 2),
            "p99": round(float(np.percentile(inside, 99)), 2),
            "max": round(float(inside.max()), 2),
        }


async def _recv(conn: Connection, timeout: float) -> tuple[Any, ...] | None:
    """Wait for a parent message without blocking the loop (poll in a thread, bounded)."""

    def poll() -> tuple[Any, ...] | None:
        return conn.recv() if conn.poll(timeout) else None

    return await asyncio.to_thread(poll)


async def _wait_first_frames(stats: list[FrameStats], timeout: float) -> None:
    """Until every client has a frame or has failed, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(s.frames or s.failure for s in stats):
            return
        await asyncio.sleep(0.05)


class _Clients:
    """The worker's clients, started together and closed together."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.stats: list[FrameStats] = []
        self.protocols: list[MjpegProtocol] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.bytes_at_t0: list[int] = []
        self.bytes_at_t1: list[int] = []

    async def start(self, deadline: float) -> None:
        """Open all clients at once, as a crowd of browsers would."""
        spec = self.spec
        request = build_request(spec.path, spec.host, spec.port, spec.http_version)
        for i in range(spec.throttled):
            self._start_throttled(request, spec.read_interval * i / spec.throttled, deadline)
        for _ in range(spec.ws):
            self._start_ws(deadline)
        buf = bytearray(SHARED_BUFFER)
        fast = [self._new("mjpeg") for _ in range(spec.fast)]
        opened = await asyncio.gather(*(open_fast(spec.host, spec.port, request, s, buf) for s in fast))
        self.protocols = [p for p in opened if p is not None]

    def _start_throttled(self, request: bytes, phase: float, deadline: float) -> None:
        spec = self.spec
        coro = run_throttled(
            spec.host,
            spec.port,
            request,
            self._new("throttled"),
            rcvbuf=spec.rcvbuf,
            read_size=spec.read_size,
            interval=spec.read_interval,
            phase=phase,
            deadline=deadline,
        )
        self.tasks.append(asyncio.create_task(coro))

    def _start_ws(self, deadline: float) -> None:
        spec = self.spec
        uri = f"ws://{spec.host}:{spec.port}{spec.ws_path}"
        coro = run_ws(uri, self._new("ws"), compression=spec.ws_compression, deadline=deadline)
        self.tasks.append(asyncio.create_task(coro))

    async def count_bytes(self, t0: float, t1: float) -> None:
        """Snapshot byte counters at the window edges, so throughput excludes the warm-up."""
        await asyncio.sleep(max(0.0, t0 - time.time()))
        self.bytes_at_t0 = [s.bytes for s in self.stats]
        await asyncio.sleep(max(0.0, t1 - time.time()))
        self.bytes_at_t1 = [s.bytes for s in self.stats]

    def _new(self, kind: str) -> FrameStats:
        stats = FrameStats(kind)
        self.stats.append(stats)
        return stats

    async def close(self) -> None:
        """Close sockets and cancel client tasks, waiting at most a few seconds."""
        for proto in self.protocols:
            proto.close()
        for task in self.tasks:
            task.cancel()
        pending = [p.closed for p in self.protocols] + self.tasks
        if pending:
            await asyncio.wait(pending, timeout=5.0)


def _client_payload(stats: FrameStats, t0: float, t1: float, window_bytes: int) -> dict[str, Any]:
    """One client's figures; arrays are cut to the window so the parent gets only what counts."""
    arrivals, lags = np.frombuffer(stats.arrivals), np.frombuffer(stats.lags)
    inside = (arrivals >= t0) & (arrivals < t1)
    return {
        "kind": stats.kind,
        "status": stats.status,
        "failure": stats.failure,
        "errors": stats.errors,
        "info": stats.info,
        "frames_window": int(inside.sum()),
        "frames_total": stats.frames,
        "bad_jpeg": stats.bad_jpeg,
        "repeats": stats.repeats,
        "skipped": stats.skipped,
        "bytes": window_bytes,
        "max_boundary_wait_s": stats.max_boundary_wait,
        "first_frame_s": stats.first_frame_at - stats.request_at,
        "ended_early": bool(stats.ended_at < t1),
        "arrivals": arrivals[inside].copy(),
        "lags": lags[inside].copy(),
    }


def _ready_info(stats: list[FrameStats]) -> dict[str, int]:
    return {
        "clients": len(stats),
        "with_frame": sum(1 for s in stats if s.frames),
        "failed": sum(1 for s in stats if s.failure),
    }


async def _run(conn: Connection, spec: WorkerSpec, loop_name: str) -> None:
    """The worker's whole life, bounded by ``spec.max_life_s``."""
    deadline = time.monotonic() + spec.max_life_s
    lag = LagMonitor()
    lag_task = asyncio.create_task(lag.run(deadline))
    clients = _Clients(spec)
    await clients.start(deadline)
    await _wait_first_frames(clients.stats, spec.ready_timeout)
    conn.send(("ready", _ready_info(clients.stats)))
    window = await _recv(conn, max(1.0, deadline - time.monotonic()))
    t0, t1 = (window[1], window[2]) if window and window[0] == "window" else (0.0, 0.0)
    counter = asyncio.create_task(clients.count_bytes(t0, t1))
    await _recv(conn, max(1.0, deadline - time.monotonic()))
    await clients.close()
    for task in (lag_task, counter):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for stats in clients.stats:
        if not stats.frames and stats.failure is None:
            stats.fail("no frame received")
    if len(clients.bytes_at_t1) != len(clients.stats):  # stopped before t1: count nothing
        clients.bytes_at_t0 = clients.bytes_at_t1 = [0] * len(clients.stats)
    payload = [
        _client_payload(s, t0, t1, b1 - b0)
        for s, b0, b1 in zip(clients.stats, clients.bytes_at_t0, clients.bytes_at_t1, strict=True)
    ]
    conn.send(("result", {"loop": loop_name, "loop_lag_ms": lag.summary(t0, t1), "clients": payload}))
