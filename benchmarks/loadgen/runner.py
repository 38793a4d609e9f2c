"""Runs one benchmark scenario: fresh server, worker processes, measurement window, figures."""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from loadgen import procstat, report
from loadgen.server import ServerProcess
from loadgen.servers import ServerSpec, passthrough_problem, virtual_server
from loadgen.worker import WorkerSpec, worker_main

HOST = "127.0.0.1"


@dataclass(frozen=True)
class RunSpec:
    """One scenario. ``duration``/``bucket_s`` of None take the command-line defaults."""

    name: str
    fast: int
    ws: int = 0
    throttled: int = 0
    duration: float | None = None
    long: bool = False
    http_version: str | None = None
    description: str = ""


@dataclass(frozen=True)
class Options:
    """Settings shared by every run of one invocation."""

    server_cmd: list[str]
    repo: Path
    duration: float
    long_duration: float
    warmup: float
    bucket_s: float
    http_version: str
    workers: int  # 0 = automatic
    ws_compression: str | None
    width: int = 640
    height: int = 480
    fps: float = 30.0
    quality: int = 80
    rcvbuf: int = 4096
    read_size: int = 8192
    read_interval: float = 0.5
    ready_timeout: float = 30.0


def worker_count(spec: RunSpec, opts: Options) -> int:
    """Automatic split: one worker unless a single event loop would be near a full core.

    Measured on the 2-core box: one uvloop worker needs about 0.3 cores for 500 clients at
    30 fps (~380 MB/s), and a second worker gave no better latency while competing with the
    server for the same two cores. So a second worker is used only beyond 1000 clients.
    """
    if opts.workers:
        return opts.workers
    return 2 if spec.fast + spec.ws > 1000 else 1


def split(total: int, parts: int, index: int) -> int:
    """Share ``index`` of ``total`` clients over ``parts`` workers (differs by at most one)."""
    return total // parts + (1 if index < total % parts else 0)


def _worker_specs(spec: RunSpec, opts: Options, port: int, count: int, life: float) -> list[WorkerSpec]:
    return [
        WorkerSpec(
            index=i,
            host=HOST,
            port=port,
            path="/stream",
            ws_path="/ws",
            http_version=spec.http_version or opts.http_version,
            fast=split(spec.fast, count, i),
            throttled=split(spec.throttled, count, i),
            ws=split(spec.ws, count, i),
            ws_compression=opts.ws_compression,
            rcvbuf=opts.rcvbuf,
            read_size=opts.read_size,
            read_interval=opts.read_interval,
            ready_timeout=opts.ready_timeout,
            max_life_s=life,
        )
        for i in range(count)
    ]


class Workers:
    """The worker processes of one run and their pipes."""

    def __init__(self, specs: list[WorkerSpec]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs: list[BaseProcess] = []
        for ws in specs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child, ws), daemon=True)
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        """Process ids, for CPU accounting."""
        return [p.pid for p in self.procs if p.pid is not None]

    def receive(self, kind: str, timeout: float) -> list[Any]:
        """One message of ``kind`` from every worker, waiting at most ``timeout`` in total."""
        deadline = time.monotonic() + timeout
        out = []
        for pipe in self.pipes:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"a load worker sent no {kind!r} within {timeout} s")
            message = pipe.recv()
            if message[0] != kind:
                raise RuntimeError(f"load worker sent {message[0]!r}, expected {kind!r}")
            out.append(message[1])
        return out

    def send(self, message: tuple[Any, ...]) -> None:
        """Broadcast a control message."""
        for pipe in self.pipes:
            pipe.send(message)

    def join(self) -> None:
        """Wait for exit; terminate (by pid, ours) any that hangs."""
        for proc in self.procs:
            proc.join(timeout=10.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5.0)


def _sleep_until(wall: float) -> None:
    time.sleep(max(0.0, wall - time.time()))


@dataclass
class Sample:
    """CPU counters at one instant."""

    at: float
    server: float
    clients: list[float]
    machine: procstat.MachineCpu

    @classmethod
    def take(cls, server_pid: int, client_pids: list[int]) -> Sample:
        """Read all counters as close together as possible."""
        return cls(
            at=time.time(),
            server=procstat.tree_cpu_seconds(server_pid),
            clients=[procstat.cpu_seconds(p) for p in client_pids],
            machine=procstat.MachineCpu.read(),
        )


def edge_virtual(opts: Options) -> ServerSpec:
    """The benchmark's original server: edge (``opts.server_cmd``) with the virtual camera."""
    return virtual_server(opts.server_cmd, opts.width, opts.height, opts.fps, opts.quality)


def execute(spec: RunSpec, opts: Options, target: ServerSpec | None = None) -> dict[str, Any]:
    """Run one scenario end to end against ``target`` (default: edge's virtual camera)."""
    target = target or edge_virtual(opts)
    duration = spec.duration or (opts.long_duration if spec.long else opts.duration)
    machine = procstat.machine_info(opts.repo)
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        config = Path(tmp) / "edge.yaml"
        target.write_config(config)
        server = ServerProcess(target.command, config)
        with server:
            if not server.wait_for_frames():
                raise RuntimeError("server never served a /snapshot\n" + "\n".join(server.tail))
            status = server.status()
            problem = passthrough_problem(target, status)
            if problem:
                raise RuntimeError(problem)
            measured = _measure(spec, opts, server, duration)
    measured["server"].update(
        {
            "kind": target.name,
            "label": target.label,
            "status_checked": target.expect_passthrough is not None and bool(status),
            "status_at_start": report.status_digest(status),
            "port_source": server.port_source,
            "exit_code": server.exit_code,
            "shutdown_s": None if server.shutdown_s is None else round(server.shutdown_s, 2),
            "stderr_tail": list(server.tail)[-15:],
        }
    )
    return {
        "run": spec.name,
        "server_kind": target.name,
        "description": spec.description,
        "clients": {"mjpeg": spec.fast, "ws": spec.ws, "throttled": spec.throttled},
        "params": {
            "duration_s": duration,
            "warmup_s": opts.warmup,
            "http_version": spec.http_version or opts.http_version,
            "workers": worker_count(spec, opts),
            "ws_compression": opts.ws_compression,
            "camera": target.camera,
            "throttle": {"so_rcvbuf": opts.rcvbuf, "read_bytes": opts.read_size, "every_s": opts.read_interval},
            "server_cmd": target.command,
        },
        "machine": machine,
        **measured,
    }


def _measure(spec: RunSpec, opts: Options, server: ServerProcess, duration: float) -> dict[str, Any]:
    """Start the clients, wait for first frames and warm-up, sample the window, collect."""
    count = worker_count(spec, opts)
    life = opts.ready_timeout + opts.warmup + duration + 60.0
    workers = Workers(_worker_specs(spec, opts, server.port, count, life))
    try:
        ready = workers.receive("ready", opts.ready_timeout + 30.0)
        t0 = time.time() + opts.warmup
        t1 = t0 + duration
        workers.send(("window", t0, t1))
        client_pids = [*workers.pids, os.getpid()]
        _sleep_until(t0)
        first = Sample.take(server.pid, client_pids)
        _sleep_until(t1)
        last = Sample.take(server.pid, client_pids)
        rss_kib = sum(procstat.status_kib(p, "VmRSS") for p in procstat.descendants(server.pid))
        peak_kib = procstat.status_kib(server.pid, "VmHWM")
        threads = procstat.thread_count(server.pid)
        status = server.status()
        workers.send(("stop",))
        results = workers.receive("result", 60.0)
    finally:
        workers.join()
    wall = last.at - first.at
    # Worker processes first, then this (mostly sleeping) parent process.
    client_cpu = [(b - a) / wall for a, b in zip(first.clients, last.clients, strict=True)]
    clients = [c for r in results for c in r["clients"]]
    return {
        "ready": ready,
        "window": {"t0": t0, "t1": t1, "sampled_s": round(wall, 3)},
        "server": {
            "pid": server.pid,
            "cpu_cores": round((last.server - first.server) / wall, 4),
            "rss_mb": round(rss_kib / 1024, 1),
            "rss_peak_mb": round(peak_kib / 1024, 1),
            "threads": threads,
            "status": report.status_digest(status),
        },
        "client": {
            "cpu_cores": round(sum(client_cpu), 3),
            "workers": [
                {"cpu_cores": round(cpu, 3), "loop": r["loop"], "loop_lag_ms": r["loop_lag_ms"]}
                for cpu, r in zip(client_cpu[: len(results)], results, strict=True)
            ],
        },
        "machine_busy_cores": round(last.machine.busy_cores_since(first.machine, wall), 3),
        **_figures(clients, t0, duration, opts.bucket_s),
    }


def _figures(clients: list[dict[str, Any]], t0: float, duration: float, bucket_s: float) -> dict[str, Any]:
    fast = [c for c in clients if c["kind"] in report.FAST_KINDS]
    slow = [c for c in clients if c["kind"] == "throttled"]
    by_kind = {
        k: report.summarize_group([c for c in fast if c["kind"] == k], duration)
        for k in report.FAST_KINDS
        if any(c["kind"] == k for c in fast)
    }
    return {
        "fast": report.summarize_group(fast, duration),
        "by_kind": by_kind if len(by_kind) > 1 else {},
        "throttled": report.summarize_throttled(slow, t0, duration, bucket_s) if slow else None,
        "problems": report.problems(clients),
        "per_client": report.per_client_rows(clients, duration),
    }


def default_server_cmd() -> list[str]:
    """The server under test, run by the same interpreter (the project's venv)."""
    return [sys.executable, "-m", "edge"]
