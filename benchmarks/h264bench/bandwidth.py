"""Section 1: bytes per second a viewer receives for one scene as MJPEG and as H.264 of equal quality.

The quality is measured offline (``encode.Quality``): MJPEG ``-q:v 5``'s SSIM against the source,
then the highest libx264 CRF whose SSIM is at least that. Both producers then run live, ``-re``, as
the two ``pipe:`` cameras of one edge, and one viewer of each (``/cameras/mjpeg/stream`` and
``/cameras/h264/stream.h264``, in parallel, on one asyncio loop) is read for the window. Each
viewer's rate is the HTTP body (de-chunked: multipart headers included for MJPEG); edge's
``bytes_sent`` (the frames' payloads) is beside it. The first 30 frames each viewer received are
decoded with PyAV: edge passed them through, so they must be the producer's, whole.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import av

from h264bench import encode
from h264bench.edgeproc import HOST, CpuWindow, Edge
from h264bench.options import Options
from h264bench.stats import Dechunker, multipart_jpegs, nal_types, split_head

SIZE = "1280x720"
KEEP = 8 << 20  # body bytes kept per viewer for the decode check
DECODE_FRAMES = 30
PATHS = {"mjpeg": "/cameras/mjpeg/stream", "h264": "/cameras/h264/stream.h264"}


class BodyReader:
    """One HTTP/1.1 viewer on asyncio streams: counts the body, keeps its first ``KEEP`` bytes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.wire = 0
        self.body = 0
        self.first_body: float | None = None
        self.sample = bytearray()
        self.error: str | None = None

    async def run(self, port: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(f"GET {self.path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: h264bench\r\n\r\n".encode())
            head = b""
            dechunk: Dechunker | None = None
            while True:
                data = await reader.read(256 * 1024)
                if not data:
                    self.error = self.error or "connection closed by edge"
                    return
                self.wire += len(data)
                if self.status is None:
                    head += data
                    parsed = split_head(head)
                    if parsed is None:
                        continue
                    self.status, self.headers, data = parsed
                    if self.status != 200:
                        self.error = f"HTTP {self.status}"
                        return
                    if "chunked" in self.headers.get("transfer-encoding", ""):
                        dechunk = Dechunker()
                payload = dechunk.feed(data) if dechunk is not None else data
                if payload and self.first_body is None:
                    self.first_body = time.monotonic()
                self.body += len(payload)
                if len(self.sample) < KEEP:
                    self.sample += payload[: KEEP - len(self.sample)]
        except (OSError, ValueError) as exc:
            self.error = repr(exc)
        finally:
            writer.close()


def _client_bytes(status: dict[str, Any], camera: str) -> int:
    """Sum of ``bytes_sent`` over the camera's clients (the one reader here)."""
    for cam in status["cameras"]:
        if cam["name"] == camera:
            return sum(int(c.get("bytes_sent", 0)) for c in cam.get("clients", []))
    return 0


async def _read_both(edge: Edge, opts: Options) -> dict[str, Any]:
    readers = {name: BodyReader(path) for name, path in PATHS.items()}
    tasks = [asyncio.create_task(r.run(edge.port)) for r in readers.values()]
    try:
        deadline = time.monotonic() + 20.0
        while any(r.first_body is None and r.error is None for r in readers.values()):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "a viewer got no body within 20 s: " + repr({k: r.error for k, r in readers.items()})
                )
            await asyncio.sleep(0.05)
        await asyncio.sleep(opts.warmup)
        status0 = await asyncio.to_thread(edge.status)
        t0 = time.monotonic()
        before = {name: r.body for name, r in readers.items()}
        with CpuWindow(edge) as cpu:
            await asyncio.sleep(opts.bandwidth_window)
        t1 = time.monotonic()
        after = {name: r.body for name, r in readers.items()}
        status1 = await asyncio.to_thread(edge.status)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    wall = t1 - t0
    live: dict[str, Any] = {"window_s": wall, "cpu": cpu.as_json()}
    for name, r in readers.items():
        sent = _client_bytes(status1, name) - _client_bytes(status0, name)
        live[name] = {
            "path": r.path,
            "status": r.status,
            "content_type": r.headers.get("content-type"),
            "error": r.error,
            "body_bytes_per_s": (after[name] - before[name]) / wall,
            "edge_bytes_sent_per_s": sent / wall,
            "sample": bytes(r.sample),
        }
    live["h264_status"] = edge.camera("h264", status1).get("h264")
    return live


def decode_h264(data: bytes, want: int = DECODE_FRAMES) -> dict[str, Any]:
    """Decode the first ``want`` pictures of an Annex-B stream; decoding errors are raised, not hidden."""
    ctx = av.CodecContext.create("h264", "r")
    ctx.options = {"err_detect": "explode"}
    frames, size, error = 0, None, None
    try:
        for packet in ctx.parse(data):
            for frame in ctx.decode(packet):
                frames += 1
                size = (frame.width, frame.height)
            if frames >= want:
                break
    except av.FFmpegError as exc:
        error = repr(exc)
    return {"decoded": frames, "size": size, "error": error, "first_nal_types": nal_types(data, 5)}


def decode_mjpeg(body: bytes, want: int = DECODE_FRAMES) -> dict[str, Any]:
    """Decode the first ``want`` JPEGs of a multipart body."""
    jpegs = multipart_jpegs(body, want)
    ctx = av.CodecContext.create("mjpeg", "r")
    ctx.options = {"err_detect": "explode"}
    frames, size, error = 0, None, None
    try:
        for jpeg in jpegs:
            for frame in ctx.decode(av.Packet(jpeg)):
                frames += 1
                size = (frame.width, frame.height)
    except av.FFmpegError as exc:
        error = repr(exc)
    mean = sum(map(len, jpegs)) / len(jpegs) if jpegs else 0
    return {"decoded": frames, "size": size, "error": error, "jpegs": len(jpegs), "mean_jpeg_bytes": mean}


def run(opts: Options, log: Any) -> dict[str, Any]:
    quality = encode.Quality(opts.cache, SIZE)
    log("offline: MJPEG -q:v 5 and its SSIM ...")
    mjpeg = quality.mjpeg()
    target = float(mjpeg.ssim["All"])
    log(f"offline: MJPEG SSIM {target:.4f}; bisecting libx264 CRF {encode.CRF_RANGE} for SSIM >= it ...")
    crf = quality.matching_crf(target)
    h264 = quality.h264(crf)
    log(f"offline: CRF {crf}, SSIM {h264.ssim['All']:.4f}; live run on one edge ...")
    cameras = [
        {"name": "mjpeg", "source": encode.mjpeg_producer(SIZE), "idle_after": 0},
        {"name": "h264", "source": encode.h264_producer(SIZE, crf=crf), "idle_after": 0},
    ]
    with Edge(cameras, opts.workdir, "bandwidth") as edge:
        edge.wait_streaming("mjpeg", "mjpeg")
        edge.wait_streaming("h264", "h264")
        live = asyncio.run(_read_both(edge, opts))
        log_tail = edge.log_tail()
    checks = {
        "mjpeg": decode_mjpeg(live["mjpeg"].pop("sample")),
        "h264": decode_h264(live["h264"].pop("sample")),
    }
    mj_rate, h_rate = live["mjpeg"]["body_bytes_per_s"], live["h264"]["body_bytes_per_s"]
    return {
        "size": SIZE,
        "cameras": cameras,
        "crf": crf,
        "crf_search": {name: enc.ssim["All"] for name, enc in quality.done.items()},
        "offline_cached": quality.cached,
        "offline": {
            name: enc.as_json() for name, enc in quality.done.items() if name in ("mjpeg-q5", f"h264-crf{crf}")
        },
        "ssim_mjpeg": target,
        "ssim_h264": float(h264.ssim["All"]),
        "live": live,
        "decode_check": checks,
        "mjpeg_bytes_per_s": mj_rate,
        "h264_bytes_per_s": h_rate,
        "ratio": h_rate / mj_rate if mj_rate else float("nan"),
        "edge_log_tail": log_tail[-10:],
    }
