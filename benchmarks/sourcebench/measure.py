"""One run of ``benchmarks/sources.py``: a fresh server, then the CPU window (with a viewer, after
idling, or never idle) or the wake-up samples, and the run's result document. CPU is
(utime + stime) from /proc over the window / wall time (1.0 = one core)."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen import procstat, report
from loadgen.runner import Workers
from loadgen.server import ServerProcess
from loadgen.worker import WorkerSpec

from sourcebench.runs import (
    FPS,
    HOST,
    MJPEG_QSCALE,
    QUALITY,
    REPO,
    SOURCE_LABELS,
    RunSpec,
    expected_processing,
    mjpeg_file,
    write_run_config,
)
from sourcebench.talk import camera_status, is_idle, is_streaming, snapshot_once, wait_camera

# -- CPU and memory --------------------------------------------------------------------------


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


@dataclass
class CpuSample:
    """CPU counters of the server, its child processes and the whole machine at one instant."""

    at: float
    server: float
    tree: float
    children: dict[int, str]
    machine: procstat.MachineCpu

    @classmethod
    def take(cls, pid: int) -> CpuSample:
        """Read everything back to back."""
        pids = procstat.descendants(pid)
        return cls(
            at=time.time(),
            server=procstat.cpu_seconds(pid),
            tree=sum(procstat.cpu_seconds(p) for p in pids),
            children={p: _comm(p) for p in pids if p != pid},
            machine=procstat.MachineCpu.read(),
        )


def cpu_figures(first: CpuSample, last: CpuSample) -> dict[str, Any]:
    """Cores over the window. A child that appeared or vanished makes the tree figure unreliable."""
    wall = last.at - first.at
    return {
        "sampled_s": round(wall, 3),
        "server_cores": round((last.server - first.server) / wall, 4),
        "tree_cores": round((last.tree - first.tree) / wall, 4),
        "children": [{"pid": p, "comm": c} for p, c in sorted(last.children.items())],
        "children_changed": set(first.children) != set(last.children),
        "machine_busy_cores": round(last.machine.busy_cores_since(first.machine, wall), 3),
    }


def memory_figures(pid: int) -> dict[str, float]:
    """RSS of the server, of the server with its children, and the server's peak, in MB."""
    tree = sum(procstat.status_kib(p, "VmRSS") for p in procstat.descendants(pid))
    return {
        "server_rss_mb": round(procstat.status_kib(pid, "VmRSS") / 1024, 1),
        "tree_rss_mb": round(tree / 1024, 1),
        "server_peak_mb": round(procstat.status_kib(pid, "VmHWM") / 1024, 1),
    }


# -- the runs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """Settings shared by every run of one invocation."""

    server_cmd: list[str]
    duration: float
    warmup: float
    samples: int
    cache: Path
    start_timeout: float = 20.0


def _sleep_until(wall: float) -> None:
    time.sleep(max(0.0, wall - time.time()))


def _viewer_spec(port: int, opts: Options) -> WorkerSpec:
    """One fast MJPEG client from the load benchmark: reads whatever arrives, counts frames."""
    ready_timeout = 15.0
    return WorkerSpec(
        index=0,
        host=HOST,
        port=port,
        path="/stream",
        ws_path="/ws",
        http_version="1.1",
        fast=1,
        throttled=0,
        ws=0,
        ws_compression=None,
        rcvbuf=4096,
        read_size=8192,
        read_interval=0.5,
        ready_timeout=ready_timeout,
        max_life_s=ready_timeout + opts.warmup + opts.duration + 60.0,
    )


def _check_processing(spec: RunSpec, cam: dict[str, Any], warnings: list[str]) -> None:
    passthrough, processing = expected_processing(spec)
    if cam["passthrough"] != passthrough or cam["processing"] != processing:
        warnings.append(f"status says passthrough={cam['passthrough']} processing={cam['processing']!r}")
    if (cam["width"], cam["height"]) != (spec.width, spec.height):
        warnings.append(f"status says {cam['width']}x{cam['height']}, expected {spec.width}x{spec.height}")


def measure_cpu(spec: RunSpec, opts: Options, server: ServerProcess) -> dict[str, Any]:
    """Warm-up, window, figures; with the viewer open, after idling, or never idle."""
    warnings: list[str] = []
    streaming = wait_camera(server, is_streaming, opts.start_timeout, "streaming")
    _check_processing(spec, streaming, warnings)
    workers: Workers | None = None
    ready: Any = None
    results: list[Any] = []
    try:
        if spec.viewers:
            workers = Workers([_viewer_spec(server.port, opts)])
            ready = workers.receive("ready", 45.0)
        elif spec.mode == "idle":
            wait_camera(server, is_idle, spec.idle_after + 15.0, "idle")
        t0 = time.time() + opts.warmup
        t1 = t0 + opts.duration
        if workers is not None:
            workers.send(("window", t0, t1))
        _sleep_until(t0)
        before = camera_status(server) or {}
        first = CpuSample.take(server.pid)
        viewer_first = procstat.cpu_seconds(workers.pids[0]) if workers else 0.0
        _sleep_until(t1)
        last = CpuSample.take(server.pid)
        viewer_last = procstat.cpu_seconds(workers.pids[0]) if workers else 0.0
        memory = memory_figures(server.pid)
        after = camera_status(server) or {}
        if workers is not None:
            workers.send(("stop",))
            results = workers.receive("result", 60.0)
    finally:
        if workers is not None:
            workers.join()
    cpu = cpu_figures(first, last)
    frames = (after.get("frames_captured") or 0) - (before.get("frames_captured") or 0)
    if spec.mode == "idle" and not (before.get("idle") and after.get("idle") and frames == 0):
        warnings.append(
            f"not idle for the whole window: idle {before.get('idle')} -> {after.get('idle')}, {frames} frames captured"
        )
    if spec.mode != "idle" and after.get("idle"):
        warnings.append("the camera was idle at the end of the window")
    if cpu["children_changed"]:
        warnings.append("child processes changed during the window: server+children figure unreliable")
    viewer = None
    if workers is not None:
        clients = [c for r in results for c in r["clients"]]
        group = report.summarize_group(clients, opts.duration)
        viewer = {
            "ready": ready,
            "fps": group["fps"]["median"],
            "latency_ms": group["latency_ms"],
            "first_frame_ms": group["first_frame_ms"],
            "mbytes_per_s": group["mbytes_per_s"],
            "bad": group["bad_jpeg"] + group["framing_errors"] + group["failed"],
            "repeated_frames": group["repeated_frames"],
            "cpu_cores": round((viewer_last - viewer_first) / cpu["sampled_s"], 4),
            "loop_lag_ms": results[0]["loop_lag_ms"] if results else None,
        }
        if group["failed"]:
            warnings.append(f"viewer failed: {report.problems(clients)['failures']}")
    return {
        "cpu": cpu,
        "memory": memory,
        "camera": {
            "at_start": streaming,
            "before_window": before,
            "after_window": after,
            "frames_in_window": frames,
            "capture_fps": round(frames / cpu["sampled_s"], 2),
        },
        "viewer": viewer,
        "warnings": warnings,
    }


def _stats_ms(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "max": None, "min": None}
    return {
        "median": round(statistics.median(values), 2),
        "max": round(max(values), 2),
        "min": round(min(values), 2),
    }


def measure_wake(spec: RunSpec, opts: Options, server: ServerProcess, settle: float = 0.5) -> dict[str, Any]:
    """``opts.samples`` snapshots, each of an idle camera (waited for, then ``settle`` s more)."""
    warnings: list[str] = []
    streaming = wait_camera(server, is_streaming, opts.start_timeout, "streaming")
    _check_processing(spec, streaming, warnings)
    rows = []
    for _ in range(opts.samples):
        waited = time.monotonic()
        wait_camera(server, is_idle, spec.idle_after + 15.0, "idle")
        waited = time.monotonic() - waited
        time.sleep(settle)
        row = snapshot_once(server.port).as_json()
        row["waited_for_idle_s"] = round(waited, 2)
        rows.append(row)
    stale = sum(1 for r in rows if not r["fresh"] or r["placeholder"] or r["status"] != 200 or not r["jpeg_ok"])
    if stale:
        warnings.append(f"{stale} of {len(rows)} snapshots were not a fresh, valid frame")
    return {
        "camera": {"at_start": streaming, "at_end": camera_status(server)},
        "wake": {
            "samples": rows,
            "count": len(rows),
            "not_fresh": stale,
            "response_ms": _stats_ms([r["response_ms"] for r in rows]),
            "capture_minus_sent_ms": _stats_ms(
                [r["capture_minus_sent_ms"] for r in rows if r["capture_minus_sent_ms"] is not None]
            ),
            "settle_s": settle,
        },
        "memory": memory_figures(server.pid),
        "warnings": warnings,
    }


def execute(spec: RunSpec, opts: Options) -> dict[str, Any]:
    """One run end to end: config, fresh server, measurement, the result document.

    A failure (the server refuses the config, a pipe that never streams) is returned as a document
    with ``error`` set, so the summary shows it and the other runs go on.
    """
    file = None if spec.source == "virtual" else mjpeg_file(opts.cache, spec.width, spec.height)
    doc: dict[str, Any] = {
        "run": spec.name,
        "source": spec.source,
        "source_label": SOURCE_LABELS[spec.source],
        "mode": spec.mode,
        "params": {
            "width": spec.width,
            "height": spec.height,
            "fps": FPS,
            "quality": QUALITY,
            "idle_after": spec.idle_after,
            "viewers": spec.viewers,
            "duration_s": opts.duration if spec.mode != "wake" else None,
            "warmup_s": opts.warmup if spec.mode != "wake" else None,
            "wake_samples": opts.samples if spec.mode == "wake" else None,
            "file": None if file is None else {"path": str(file), "bytes": file.stat().st_size, "qscale": MJPEG_QSCALE},
            "server_cmd": opts.server_cmd,
            "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        },
        "machine": procstat.machine_info(REPO),
        "error": None,
    }
    with tempfile.TemporaryDirectory(prefix="edge-bench-sources-") as tmp:
        config = Path(tmp) / "edge.yaml"
        write_run_config(config, spec, file)
        doc["config"] = config.read_text()
        server = ServerProcess(opts.server_cmd, config, start_timeout=opts.start_timeout)
        pid = None
        try:
            with server:
                pid = server.pid
                if not server.wait_for_frames(timeout=opts.start_timeout):
                    raise RuntimeError("/snapshot never answered 200")
                measure = measure_wake if spec.mode == "wake" else measure_cpu
                doc.update(measure(spec, opts, server))
        except (RuntimeError, OSError, ValueError) as exc:
            doc["error"] = f"{type(exc).__name__}: {exc}".strip()
        doc["server"] = {
            "pid": pid,
            "port_source": server.port_source,
            "exit_code": server.exit_code,
            "shutdown_s": None if server.shutdown_s is None else round(server.shutdown_s, 2),
            "stderr_tail": list(server.tail)[-20:],
        }
    return doc
