"""Section 2: edge's CPU per viewer at N viewers, H.264 (``/stream.h264``) against MJPEG passthrough
(``/stream``), on the same 640x480@30 scene from a ``pipe:`` producer.

Each (kind, N) is a fresh edge with that one camera (``idle_after: 0``). In it, first the camera
with no viewer for one window (what the camera itself costs), then N viewers from a worker process
(``viewers.ViewerPool``); once every one has body bytes and after a warm-up, a second window.
Per viewer = (cores with N - cores with 0) / N. The two kinds run back to back for each N, so their
ratio survives the noise of a shared machine. Each viewer's received bytes/s (the worker's count)
and frames/s (edge's ``frames_sent`` over the window) show whether any starved.
"""

from __future__ import annotations

import time
from typing import Any

from h264bench import encode
from h264bench.edgeproc import HOST, CpuWindow, Edge
from h264bench.options import Options
from h264bench.stats import per_viewer, rates, summarize
from h264bench.viewers import ViewerPool

SIZE = "640x480"
PATHS = {"mjpeg": "/cameras/cam0/stream", "h264": "/cameras/cam0/stream.h264"}
KINDS = ("mjpeg", "h264")


def camera(kind: str, crf: int) -> dict[str, Any]:
    source = encode.mjpeg_producer(SIZE) if kind == "mjpeg" else encode.h264_producer(SIZE, crf=crf)
    return {"name": "cam0", "source": source, "idle_after": 0}


def _clients(cam: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in cam.get("clients", [])}


def client_fps(before: dict[str, Any], after: dict[str, Any], wall: float) -> tuple[list[float], int]:
    """Frames/s each client was sent between two status snapshots, and the frames dropped for them."""
    first, last = _clients(before), _clients(after)
    fps, dropped = [], 0
    for cid, end in last.items():
        start = first.get(cid)
        if start is None:
            continue
        fps.append((int(end.get("frames_sent", 0)) - int(start.get("frames_sent", 0))) / wall)
        dropped += int(end.get("frames_dropped", 0)) - int(start.get("frames_dropped", 0))
    return fps, dropped


def one(opts: Options, kind: str, viewers: int, crf: int) -> dict[str, Any]:
    cam_config = camera(kind, crf)
    with Edge([cam_config], opts.workdir, f"cpu-{kind}-{viewers}") as edge:
        edge.wait_streaming("cam0", kind)
        time.sleep(opts.warmup)
        with CpuWindow(edge) as zero:
            time.sleep(opts.cpu_window)
        idle_status = edge.camera("cam0")
        with ViewerPool(HOST, edge.port, PATHS[kind], viewers) as pool:
            time.sleep(opts.warmup)
            status0, s0 = edge.camera("cam0"), time.monotonic()
            t0, counts0, lost0 = pool.mark()
            with CpuWindow(edge, {"viewer_worker": pool.pid}) as loaded:
                time.sleep(opts.cpu_window)
            t1, counts1, lost1 = pool.mark()
            status1, s1 = edge.camera("cam0"), time.monotonic()
            ready = pool.ready
        log_tail = edge.log_tail()
    received = rates(counts0, counts1, t1 - t0)
    fps, dropped = client_fps(status0, status1, s1 - s0)
    return {
        "kind": kind,
        "viewers": viewers,
        "path": PATHS[kind],
        "camera": cam_config,
        "ready": ready,
        "zero": zero.as_json(),
        "loaded": loaded.as_json(),
        "edge_cores_0": zero.edge_cores,
        "edge_cores_n": loaded.edge_cores,
        "per_viewer_cores": per_viewer(loaded.edge_cores, zero.edge_cores, viewers),
        "viewer_worker_cores": loaded.other_cores["viewer_worker"],
        "received_bytes_per_s": summarize(received),
        "sent_fps": summarize(fps),
        "frames_dropped": dropped,
        "lost_in_window": lost1 - lost0,
        "lost_total": lost1,
        "camera_fps": status1.get("fps"),
        "camera_fps_idle": idle_status.get("fps"),
        "h264_status": status1.get("h264"),
        "edge_log_tail": log_tail[-10:],
    }


def run(opts: Options, crf: int, log: Any) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for viewers in opts.viewer_counts:
        for kind in KINDS:
            log(f"{kind} x {viewers} viewers (fresh edge: 0-viewer window, then {viewers}) ...")
            result = one(opts, kind, viewers, crf)
            runs.append(result)
            rate = result["received_bytes_per_s"]
            log(
                f"  edge {result['edge_cores_0']:.3f} -> {result['edge_cores_n']:.3f} cores, "
                f"{result['per_viewer_cores'] * 1000:.3f} mcores/viewer; received min/median "
                f"{rate['min'] / 1000:.1f}/{rate['p50'] / 1000:.1f} KB/s; sent fps min {result['sent_fps']['min']:.1f}"
            )
    ratios = {}
    for viewers in opts.viewer_counts:
        by_kind = {r["kind"]: r for r in runs if r["viewers"] == viewers}
        mj, h = by_kind["mjpeg"]["per_viewer_cores"], by_kind["h264"]["per_viewer_cores"]
        ratios[str(viewers)] = h / mj if mj else float("nan")
    return {"size": SIZE, "crf": crf, "runs": runs, "h264_over_mjpeg_per_viewer": ratios}
