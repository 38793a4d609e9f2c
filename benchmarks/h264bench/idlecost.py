"""Section 4: what an H.264 camera costs edge with no viewer, beside what its producer costs.

A 1280x720@30 producer at ~4 Mbit/s (libx264 ``-b:v 4M -maxrate 4M -bufsize 1M``) on a ``pipe:``
camera. edge's own CPU (the python process, every thread, not its children) and the producer's
(the ffmpeg below it) are read in the same window:

- ``idle_after: 0``: never idle, so edge cuts and checks every unit and keeps the units since the
  last key frame for a viewer that may come;
- the default ``idle_after`` (10 s): measured once the status says ``idle`` (a pipe is still read
  while idle, §8);
- then, on that same edge, one JPEG viewer (``/stream`` on the H.264 camera): edge decodes the
  H.264 and encodes JPEG for it (§9), so this is the cost of that way out.
"""

from __future__ import annotations

import time
from typing import Any

from h264bench import encode
from h264bench.edgeproc import HOST, CpuWindow, Edge
from h264bench.options import Options
from h264bench.stats import rates
from h264bench.viewers import ViewerPool

SIZE = "1280x720"
BITRATE = "4M"
IDLE_WAIT = 40.0


def _camera(idle_after: int | None) -> dict[str, Any]:
    cam: dict[str, Any] = {"name": "cam0", "source": encode.h264_producer(SIZE, bitrate=BITRATE)}
    if idle_after is not None:
        cam["idle_after"] = idle_after
    return cam


def _window(edge: Edge, seconds: float, others: dict[str, int] | None = None) -> dict[str, Any]:
    before = edge.camera("cam0")
    with CpuWindow(edge, others) as cpu:
        time.sleep(seconds)
    after = edge.camera("cam0")
    return {
        **cpu.as_json(),
        "idle_before": before.get("idle"),
        "idle_after": after.get("idle"),
        "frames_captured_delta": int(after.get("frames_captured", 0)) - int(before.get("frames_captured", 0)),
        "h264": after.get("h264"),
        "clients": len(after.get("clients", [])),
        "status_after": {k: after.get(k) for k in ("state", "fps", "processing", "frames_invalid")},
    }


def run(opts: Options, log: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"size": SIZE, "bitrate": BITRATE}
    awake = _camera(0)
    log(f"0 viewers, idle_after: 0, {opts.idle_window:.0f} s ...")
    with Edge([awake], opts.workdir, "idle-never") as edge:
        edge.wait_streaming("cam0", "h264")
        time.sleep(opts.warmup)
        result["never_idle"] = {"camera": awake, **_window(edge, opts.idle_window)}
    default = _camera(None)
    log(f"0 viewers, default idle_after, once idle, {opts.idle_window:.0f} s; then one JPEG viewer ...")
    with Edge([default], opts.workdir, "idle-default") as edge:
        edge.wait_streaming("cam0", "h264")
        waited = time.monotonic()
        edge.wait_camera("cam0", lambda c: bool(c.get("idle")), IDLE_WAIT, "idle")
        time.sleep(1.0)
        result["idle"] = {"camera": default, "became_idle_after_s": time.monotonic() - waited}
        result["idle"].update(_window(edge, opts.idle_window))
        with ViewerPool(HOST, edge.port, "/cameras/cam0/stream", 1) as pool:
            time.sleep(opts.warmup)
            t0, counts0, _ = pool.mark()
            status0 = edge.camera("cam0")
            window = _window(edge, opts.idle_window, {"viewer_worker": pool.pid})
            status1 = edge.camera("cam0")
            t1, counts1, lost = pool.mark()
            ready = pool.ready
        jpeg_clients = [c for c in status1.get("clients", []) if c.get("kind") == "mjpeg"]
        sent0 = {c["id"]: c for c in status0.get("clients", [])}
        fps = [
            (int(c.get("frames_sent", 0)) - int(sent0[c["id"]].get("frames_sent", 0))) / window["wall_s"]
            for c in jpeg_clients
            if c["id"] in sent0
        ]
        result["one_jpeg_viewer"] = {
            **window,
            "ready": ready,
            "viewer_bytes_per_s": rates(counts0, counts1, t1 - t0)[0] if counts1 else None,
            "viewer_fps": fps[0] if fps else None,
            "viewer_lost": lost,
            "jpeg_decoding": (status1.get("h264") or {}).get("jpeg_decoding"),
        }
        result["edge_log_tail"] = edge.log_tail()[-10:]
    return result
