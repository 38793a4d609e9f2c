"""Server CPU per camera source kind, with 0 and 1 viewer, and wake-up latency from idle.

Why: issue 8 makes edge pass a camera's own JPEG through (no decoding, no encoding) and stop
working when nobody watches. Both claims are about CPU on a Raspberry Pi-class box, so this
measures them against the alternative they replace:

- ``virtual``: the test pattern, drawn and encoded by edge (what a box without a camera does);
- ``file``: an MJPEG file (made here with FFmpeg's ``testsrc2``) passed through at its own size;
- ``never``: the same file with ``passthrough: never`` (decode + re-encode): the reference every
  passthrough figure is divided by;
- ``pipe``: ``pipe:ffmpeg -re -stream_loop -1 -i FILE -c copy -f mjpeg -``, the way a Pi CSI camera
  (``rpicam-vid``) is served. The producer is part of the cost on a Pi, so the server alone and the
  server plus its child processes are both reported.

Each source runs at 640x480 and 1280x720, 30 fps, each run a fresh server process, with

- 1 viewer: one always-reading MJPEG client (the load benchmark's own, in its own process);
- 0 viewers after the camera went idle (``idle_after: 2`` to keep runs short; ``/api/status`` must
  say ``idle`` before and after the window and ``frames_captured`` must not move);
- 0 viewers with ``idle_after: 0`` (never idle), for ``virtual`` and ``never``: what idling saves.

CPU is (utime + stime) from /proc over the window / wall time (1.0 = one core), default 30 s after
a 3 s warm-up. Wake-up runs idle the camera, send ``GET /snapshot`` and record (a) request sent ->
response complete and (b) the frame's capture time (``X-Timestamp``) - request sent, 10 times
(idle again before each). Results: ``results/sources/<run>.json`` and ``results/sources/summary.md``.

Run from the repository root: ``.venv/bin/python benchmarks/sources.py [--runs 'file-*'] [--quick]``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen import procstat, report
from loadgen.proto import HEADER_END, JPEG_EOI, JPEG_SOI, parse_head
from loadgen.runner import Workers, default_server_cmd
from loadgen.server import ServerProcess
from loadgen.worker import WorkerSpec

from tests.support.config import write_config

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
HOST = "127.0.0.1"
SIZES: tuple[tuple[int, int], ...] = ((640, 480), (1280, 720))
FPS = 30
QUALITY = 80
IDLE_AFTER = 2
MJPEG_QSCALE = 4  # ffmpeg -q:v of the test file (2 = best .. 31 = worst)
FILE_SECONDS = 10

# Targets set by issue 8 (reported beside the figures; nothing fails the run).
TARGET_PASSTHROUGH_720_1VIEWER = 0.03  # cores
TARGET_IDLE = 0.01  # cores
TARGET_WAKE_MS = 150.0

SOURCE_LABELS = {
    "virtual": "virtual (drawn + encoded)",
    "file": "MJPEG file, passthrough",
    "never": "MJPEG file, passthrough: never",
    "pipe": "pipe: ffmpeg -c copy",
}
MODE_LABELS = {
    "1viewer": "1",
    "idle": f"0 (idle, idle_after: {IDLE_AFTER})",
    "awake": "0 (idle_after: 0, never idle)",
}
PASSTHROUGH_SOURCES = ("file", "pipe")


@dataclass(frozen=True)
class RunSpec:
    """One run: a fresh server with one camera. ``mode`` is 1viewer | idle | awake | wake."""

    source: str
    width: int
    height: int
    mode: str

    @property
    def name(self) -> str:
        """File-name-safe identifier, e.g. ``file-1280x720-1viewer`` or ``wake-pipe-640x480``."""
        size = f"{self.width}x{self.height}"
        return f"wake-{self.source}-{size}" if self.mode == "wake" else f"{self.source}-{size}-{self.mode}"

    @property
    def idle_after(self) -> int:
        """Never idle for the ``awake`` reference; otherwise short, so runs stay short."""
        return 0 if self.mode == "awake" else IDLE_AFTER

    @property
    def viewers(self) -> int:
        """Streams open during the window."""
        return 1 if self.mode == "1viewer" else 0


def all_runs() -> list[RunSpec]:
    """Every run, in table order: by size, then source, then viewers."""
    runs = []
    for width, height in SIZES:
        for source in ("virtual", "file", "never", "pipe"):
            for mode in ("1viewer", "idle", "awake"):
                if mode == "awake" and source not in ("virtual", "never"):
                    continue
                runs.append(RunSpec(source, width, height, mode))
    for width, height in SIZES:
        for source in ("virtual", "file", "never", "pipe"):
            runs.append(RunSpec(source, width, height, "wake"))
    return runs


RUNS = {spec.name: spec for spec in all_runs()}


def select_runs(patterns: str) -> list[RunSpec]:
    """Runs whose names match any comma-separated name or shell pattern (``file-*``), in table order."""
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    unknown = [p for p in wanted if not any(fnmatch.fnmatchcase(name, p) for name in RUNS)]
    if unknown:
        raise ValueError(f"no run matches {unknown}; runs: {', '.join(RUNS)}")
    return [spec for name, spec in RUNS.items() if any(fnmatch.fnmatchcase(name, p) for p in wanted)]


# -- the test file and the config -------------------------------------------------------------


def mjpeg_file(cache: Path, width: int, height: int) -> Path:
    """The MJPEG test file of this size, made once with FFmpeg and kept in ``cache``."""
    path = cache / f"testsrc2-{width}x{height}-q{MJPEG_QSCALE}.avi"
    if path.exists() and path.stat().st_size > 0:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part.avi")
    command = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={FPS}",
        "-t", str(FILE_SECONDS), "-c:v", "mjpeg", "-q:v", str(MJPEG_QSCALE), str(partial),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg could not make {path}: {done.stderr.strip()}")
    partial.rename(path)
    return path


def pipe_command(file: Path) -> str:
    """The ``pipe:`` source: FFmpeg re-sends the file's JPEGs at their own rate, forever."""
    argv = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(file)]
    return "pipe:" + shlex.join([*argv, "-c", "copy", "-f", "mjpeg", "-"])


def camera_config(spec: RunSpec, file: Path | None) -> dict[str, Any]:
    """The camera table. File-based sources get no width/height, so the file's size is kept."""
    cam: dict[str, Any] = {"name": "cam0", "fps": FPS, "quality": QUALITY, "idle_after": spec.idle_after}
    if spec.source == "virtual":
        cam.update(source="virtual", width=spec.width, height=spec.height)
        return cam
    assert file is not None
    if spec.source == "pipe":
        cam["source"] = pipe_command(file)
    else:
        cam["source"] = str(file)
    if spec.source == "never":
        cam["passthrough"] = "never"
    return cam


def write_run_config(path: Path, spec: RunSpec, file: Path | None) -> Path:
    """The config file, written the way the test suite writes its servers' configs."""
    return write_config(path, [camera_config(spec, file)], {"host": HOST, "port": 0, "max_clients": 16})


def expected_processing(spec: RunSpec) -> tuple[bool, str]:
    """(passthrough, processing) that ``/api/status`` must report for this source."""
    if spec.source in PASSTHROUGH_SOURCES:
        return True, "passthrough (the camera's own JPEG)"
    if spec.source == "never":
        return False, "encoding (passthrough: never)"
    return False, "encoding (the virtual camera draws its frames)"


# -- talking to the server ---------------------------------------------------------------------

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


# -- the summary -------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def verdict(value: float | None, limit: float) -> str:
    """PASS/FAIL against an upper limit; no figure, no verdict."""
    if value is None:
        return "no figure"
    return "PASS" if value <= limit else "FAIL"


def _by_name(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["run"]: r for r in results if not r.get("error")}


def reference(r: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ``never`` run of the same size and viewers that a passthrough run is compared with."""
    if r["source"] not in PASSTHROUGH_SOURCES or r["mode"] == "wake":
        return None
    p = r["params"]
    name = RunSpec("never", p["width"], p["height"], r["mode"]).name
    return _by_name(results).get(name)


def ratio(value: float, ref: float) -> str:
    """``value / ref`` as ``0.12×``; a zero reference has no ratio."""
    return f"{value / ref:.2f}×" if ref > 0 else "–"


def ratio_cell(r: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """Server cores ÷ never's; for a pipe also (server + children) ÷ never's."""
    if r["source"] == "never":
        return "reference"
    ref = reference(r, results)
    if ref is None:
        return "–"
    base = ref["cpu"]["server_cores"]
    cell = ratio(r["cpu"]["server_cores"], base)
    if r["source"] == "pipe":
        cell += f" (+children {ratio(r['cpu']['tree_cores'], base)})"
    return cell


def cpu_target(r: dict[str, Any]) -> str:
    """The issue's target for this row, with PASS/FAIL, or – when none applies."""
    p, cpu = r["params"], r["cpu"]
    if r["mode"] == "idle":
        text = f"≤ {TARGET_IDLE}: {verdict(cpu['server_cores'], TARGET_IDLE)}"
        if r["source"] == "pipe":
            text += f"; +children {verdict(cpu['tree_cores'], TARGET_IDLE)}"
        return text
    if r["mode"] == "1viewer" and r["source"] in PASSTHROUGH_SOURCES and (p["width"], p["height"]) == (1280, 720):
        limit = TARGET_PASSTHROUGH_720_1VIEWER
        text = f"≤ {limit}: {verdict(cpu['server_cores'], limit)}"
        if r["source"] == "pipe":
            text += f"; +children {verdict(cpu['tree_cores'], limit)}"
        return text
    return "–"


CPU_HEADER = (
    "| source | size | viewers | server cores | server + children cores | ÷ never (server) | viewer fps "
    "| server RSS MB | camera fps in window | box busy cores | load1 | target |\n"
    "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|"
)


def cpu_row(r: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """One row of the CPU table (a failed run says why instead)."""
    p = r["params"]
    size = f"{p['width']}x{p['height']}"
    head = [SOURCE_LABELS[r["source"]], size, MODE_LABELS[r["mode"]]]
    if r.get("error"):
        reason = r["error"].splitlines()[0][:160].replace("|", "/")
        return "| " + " | ".join([*head, f"FAILED: {reason}", *["–"] * 8]) + " |"
    cpu, viewer = r["cpu"], r.get("viewer")
    cells = [
        *head,
        _fmt(cpu["server_cores"], 4),
        _fmt(cpu["tree_cores"], 4),
        ratio_cell(r, results),
        _fmt(viewer["fps"], 1) if viewer else "–",
        _fmt(r["memory"]["server_rss_mb"], 0),
        _fmt(r["camera"]["capture_fps"], 1),
        _fmt(cpu["machine_busy_cores"], 2),
        _fmt(r["machine"]["loadavg_start"][0], 2),
        cpu_target(r),
    ]
    return "| " + " | ".join(cells) + " |"


WAKE_HEADER = (
    "| source | size | samples | not fresh | (a) request → response ms, median / max "
    "| (b) capture − request ms, median / max | load1 | target (a) ≤ 150 ms |\n"
    "|---|---|--:|--:|--:|--:|--:|---|"
)


def wake_target(r: dict[str, Any]) -> str:
    """Target for virtual and files: judged on the median and on the worst sample."""
    if r["source"] == "pipe":
        return "– (no target for pipes)"
    a = r["wake"]["response_ms"]
    return f"median {verdict(a['median'], TARGET_WAKE_MS)}, max {verdict(a['max'], TARGET_WAKE_MS)}"


def wake_row(r: dict[str, Any]) -> str:
    """One row of the wake-up table."""
    p = r["params"]
    head = [SOURCE_LABELS[r["source"]], f"{p['width']}x{p['height']}"]
    if r.get("error"):
        reason = r["error"].splitlines()[0][:160].replace("|", "/")
        return "| " + " | ".join([*head, "–", "–", f"FAILED: {reason}", "–", "–", "–"]) + " |"
    w = r["wake"]
    a, b = w["response_ms"], w["capture_minus_sent_ms"]
    cells = [
        *head,
        str(w["count"]),
        str(w["not_fresh"]),
        f"{_fmt(a['median'], 1)} / {_fmt(a['max'], 1)}",
        f"{_fmt(b['median'], 1)} / {_fmt(b['max'], 1)}",
        _fmt(r["machine"]["loadavg_start"][0], 2),
        wake_target(r),
    ]
    return "| " + " | ".join(cells) + " |"


def target_lines(results: list[dict[str, Any]]) -> list[str]:
    """One line per figure that a target of the issue applies to, with PASS/FAIL."""
    lines = []
    for r in results:
        if r.get("error"):
            continue
        p = r["params"]
        where = f"{SOURCE_LABELS[r['source']]} {p['width']}x{p['height']}"
        if r["mode"] == "wake" and r["source"] != "pipe":
            a = r["wake"]["response_ms"]
            lines.append(
                f"wake-up ≤ {TARGET_WAKE_MS:g} ms, {where}: median {_fmt(a['median'], 1)} ms "
                f"{verdict(a['median'], TARGET_WAKE_MS)}, "
                f"max {_fmt(a['max'], 1)} ms {verdict(a['max'], TARGET_WAKE_MS)}"
            )
        elif r["mode"] != "wake" and cpu_target(r) != "–":
            limit = TARGET_IDLE if r["mode"] == "idle" else TARGET_PASSTHROUGH_720_1VIEWER
            what = "0 viewers after idle" if r["mode"] == "idle" else "passthrough 1280x720@30, 1 viewer"
            cpu = r["cpu"]
            line = f"{what} ≤ {limit} cores, {where}: server {cpu['server_cores']:.4f} "
            line += verdict(cpu["server_cores"], limit)
            if r["source"] == "pipe":
                line += f"; server + producer {cpu['tree_cores']:.4f} {verdict(cpu['tree_cores'], limit)}"
            lines.append(line)
    return lines


def markdown(results: list[dict[str, Any]]) -> str:
    """summary.md: machine line, CPU table, wake-up table, warnings and failures."""
    if not results:
        return "No results.\n"
    order = {name: i for i, name in enumerate(RUNS)}
    results = sorted(results, key=lambda r: order.get(r["run"], len(order)))
    m = results[0]["machine"]
    dates = sorted(r["machine"]["date"] for r in results)
    cpu_runs = [r for r in results if r["mode"] != "wake"]
    wake_runs = [r for r in results if r["mode"] == "wake"]
    params = next((r["params"] for r in cpu_runs if r["params"].get("duration_s")), {})
    command = results[-1]["params"].get("command") or ["sources.py"]
    lines = [
        "# edge: CPU per camera source, and wake-up from idle",
        "",
        (
            f"{dates[0]} – {dates[-1]} · {m['nproc']} CPUs ({m['cpu_model']}) · Python {m['python']} · "
            f"kernel {m['kernel']} · server commit {m.get('git_commit') or 'uncommitted'} (plus the working tree) · "
            f"command: `{shlex.join(['.venv/bin/python', 'benchmarks/sources.py', *command[1:]])}`"
        ),
        "",
        (
            f"30 fps; {params.get('duration_s', '?')} s window after {params.get('warmup_s', '?')} s warm-up per run; "
            f"a fresh server per run. The file is FFmpeg `testsrc2` as MJPEG (`-q:v {MJPEG_QSCALE}`), passed at its "
            f"own size; `never` decodes it and encodes at quality {QUALITY}, as does the virtual camera. Idle rows use "
            f"`idle_after: {IDLE_AFTER}` (the default is 10 s) and are measured once `/api/status` said `idle`. "
            "cores = (utime + stime) / wall; server + children adds the pipe's FFmpeg producer. "
            '"box busy cores" is the whole machine in the window (other work skews the figures). '
            "÷ never: server cores over those of `passthrough: never` at the same size and viewers; for idle "
            "rows both are near the noise floor (a few 10 ms clock ticks over the window)."
        ),
        "",
        CPU_HEADER,
        *(cpu_row(r, results) for r in cpu_runs),
        "",
        (
            f"Wake-up: the camera idle (`idle_after: {IDLE_AFTER}`, waited for in `/api/status`, then 0.5 s), "
            "`GET /snapshot` on an open connection; (a) request sent → response complete, (b) the frame's "
            '`X-Timestamp` − request sent. "not fresh": captured before the request, a placeholder, or not a JPEG.'
        ),
        "",
        WAKE_HEADER,
        *(wake_row(r) for r in wake_runs),
        "",
        "Against the targets of issue 8:",
        "",
        *(f"- {line}" for line in target_lines(results)),
        "",
    ]
    notes = [f"- {r['run']}: {w}" for r in results for w in r.get("warnings") or []]
    notes += [f"- {r['run']}: FAILED: {r['error']}" for r in results if r.get("error")]
    if notes:
        lines += ["Warnings and failures:", "", *notes, ""]
    return "\n".join(lines)


def load_results(out: Path) -> list[dict[str, Any]]:
    """Every run's JSON in ``out`` (so a partial re-run keeps the other rows)."""
    results = []
    for name in RUNS:
        path = out / f"{name}.json"
        if path.exists():
            try:
                results.append(json.loads(path.read_text()))
            except ValueError:
                continue
    return results


# -- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command line; ``--quick`` is a smoke test (5 s windows, 3 wake-up samples)."""
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--runs", default="*", help="comma-separated run names or patterns, e.g. 'file-*,wake-*'")
    parser.add_argument("--list", action="store_true", help="print the run names and exit")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per CPU run (30; quick 5)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before the window (3; quick 1)")
    parser.add_argument("--samples", type=int, default=None, help="wake-up samples per run (10; quick 3)")
    parser.add_argument("--quick", action="store_true", help="smoke test; results in results/sources/quick/")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "edge-bench-sources",
        help="where the MJPEG test files are made and kept",
    )
    parser.add_argument(
        "--server-cmd", default=None, help="command that starts the server (default: this python -m edge)"
    )
    return parser.parse_args(argv)


def make_options(args: argparse.Namespace) -> Options:
    """Resolve the defaults, which differ for ``--quick``."""
    quick = args.quick
    return Options(
        server_cmd=shlex.split(args.server_cmd) if args.server_cmd else default_server_cmd(),
        duration=args.duration or (5.0 if quick else 30.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 3.0),
        samples=args.samples or (3 if quick else 10),
        cache=args.cache,
    )


def main(argv: list[str]) -> int:
    """Run the chosen runs one after another, write a JSON each, then summary.md."""
    args = parse_args(argv)
    if args.list:
        print("\n".join(RUNS))
        return 0
    try:
        specs = select_runs(args.runs)
    except ValueError as exc:
        print(f"sources.py: {exc}", file=sys.stderr)
        return 2
    opts = make_options(args)
    out = args.out or (BENCH_DIR / "results" / "sources" / ("quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for i, spec in enumerate(specs, 1):
        started = time.monotonic()
        print(f"[sources] {i}/{len(specs)} {spec.name} ...", file=sys.stderr, flush=True)
        doc = execute(spec, opts)
        report.write_json(out / f"{spec.name}.json", doc)
        took = time.monotonic() - started
        if doc["error"]:
            failed.append(spec.name)
            print(f"[sources]   FAILED ({took:.0f} s): {doc['error']}", file=sys.stderr, flush=True)
        elif spec.mode == "wake":
            print(f"[sources]   {wake_row(doc)}  ({took:.0f} s)", file=sys.stderr, flush=True)
        else:
            print(f"[sources]   {cpu_row(doc, [doc])}  ({took:.0f} s)", file=sys.stderr, flush=True)
        for warning in doc.get("warnings") or []:
            print(f"[sources]   warning: {warning}", file=sys.stderr, flush=True)
    summary = markdown(load_results(out))
    (out / "summary.md").write_text(summary)
    print(summary)
    if failed:
        print(f"[sources] failed runs: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
