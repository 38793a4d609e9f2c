"""The producers (FFmpeg's ``testsrc2`` as MJPEG or H.264 on a pipe), the same encodes made offline
to a file, their SSIM against the source, and the search for the CRF that matches MJPEG's SSIM.

edge passes both codecs through byte for byte (§8, §9), so the quality a viewer gets is the
producer's: it is measured offline, on the first 300 frames of the same scene encoded with the same
arguments (``testsrc2`` is deterministic), with FFmpeg's ``ssim`` filter against the source. The
comparison runs in each encode's own pixel format (both are 4:2:0: ``yuvj420p`` for MJPEG,
``yuv420p`` for libx264).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from h264bench.stats import parse_ssim

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
RATE = 30
OFFLINE_FRAMES = 300
MJPEG_ARGS = ["-c:v", "mjpeg", "-q:v", "5"]
CRF_RANGE = (15, 40)
SSIM_METHOD = "setpts-by-frame-number"  # part of the cache key: a new method measures again
_FRAMES_RE = re.compile(r"frame=\s*(\d+)")


def x264_args(*, crf: int | None = None, bitrate: str | None = None, gop: int = 30) -> list[str]:
    """libx264 as a camera would run it: no B-frames, a key frame every ``gop`` frames with SPS/PPS
    and an access-unit delimiter before each; constant quality (``crf``) or ~``bitrate``."""
    args = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency"]
    args += ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", "0"]
    args += ["-x264-params", "repeat-headers=1:aud=1"]
    if crf is not None:
        args += ["-crf", str(crf)]
    if bitrate is not None:
        args += ["-b:v", bitrate, "-maxrate", bitrate, "-bufsize", "1M"]
    return args


def scene(size: str, frames: int | None = None) -> str:
    """The lavfi source; with ``frames`` it ends after that many."""
    spec = f"testsrc2=size={size}:rate={RATE}"
    return spec + (f":duration={frames / RATE:g}" if frames else "")


def producer(size: str, codec_args: list[str], fmt: str) -> str:
    """A camera ``source``: ``pipe:ffmpeg -re ... -f FMT -`` (in real time, for ever)."""
    command = [FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", scene(size)]
    return "pipe:" + shlex.join([*command, *codec_args, "-f", fmt, "-"])


def mjpeg_producer(size: str) -> str:
    return producer(size, MJPEG_ARGS, "mjpeg")


def h264_producer(size: str, **x264: Any) -> str:
    return producer(size, x264_args(**x264), "h264")


def _run(args: list[str], what: str, timeout: float = 300.0) -> str:
    done = subprocess.run([FFMPEG, "-hide_banner", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({what}): {done.stderr.strip()[-600:]}")
    return done.stderr


@dataclass(frozen=True)
class Encoded:
    """One offline encode of the scene and its quality."""

    codec_args: list[str]
    fmt: str
    path: str
    frames: int
    bytes: int
    ssim: dict[str, Any]  # Y, U, V, All (floats) and the pix_fmt compared in

    @property
    def bytes_per_s(self) -> float:
        return self.bytes / (self.frames / RATE) if self.frames else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "codec_args": self.codec_args,
            "format": self.fmt,
            "file": self.path,
            "frames": self.frames,
            "bytes": self.bytes,
            "bytes_per_s": self.bytes_per_s,
            "ssim": self.ssim,
        }


def encode_and_measure(size: str, codec_args: list[str], fmt: str, out: Path) -> Encoded:
    """Encode the first frames of the scene to ``out`` as the producer would, then its SSIM."""
    source = ["-f", "lavfi", "-i", scene(size)]
    _run(
        ["-loglevel", "error", "-y", *source, "-frames:v", str(OFFLINE_FRAMES), *codec_args, "-f", fmt, str(out)],
        str(out),
    )
    pix_fmt = probe_pix_fmt(out)
    # A raw stream has no timestamps (FFmpeg's h264 demuxer leaves them unset, and ssim's frame sync
    # then pairs the wrong frames): both sides are restamped by frame number so frame n meets frame
    # n; the source is drawn in the encode's own pixel format, so only the encoding is measured.
    stamp = f"format={pix_fmt},setpts=N/{RATE}/TB"
    graph = f"[0:v]{stamp}[enc];[1:v]{stamp}[src];[enc][src]ssim=shortest=1"
    stderr = _run(
        ["-f", fmt, "-framerate", str(RATE), "-i", str(out), "-f", "lavfi", "-i", scene(size, OFFLINE_FRAMES)]
        + ["-lavfi", graph, "-f", "null", "-"],
        f"ssim of {out}",
    )
    counts = _FRAMES_RE.findall(stderr)
    frames = int(counts[-1]) if counts else 0
    if frames != OFFLINE_FRAMES:
        raise RuntimeError(f"ssim compared {frames} frames of {out}, expected {OFFLINE_FRAMES}")
    return Encoded(codec_args, fmt, str(out), frames, out.stat().st_size, {**parse_ssim(stderr), "pix_fmt": pix_fmt})


def probe_pix_fmt(path: Path) -> str:
    """The pixel format of the first video stream (ffprobe)."""
    done = subprocess.run(
        [shutil.which("ffprobe") or "ffprobe", "-v", "error", "-select_streams", "v:0"]
        + ["-show_entries", "stream=pix_fmt", "-of", "default=nw=1:nk=1", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    pix_fmt = done.stdout.strip()
    if done.returncode != 0 or not pix_fmt:
        raise RuntimeError(f"ffprobe cannot read {path}: {done.stderr.strip()}")
    return pix_fmt


def choose_crf(ssim_of: Callable[[int], float], target: float, lo: int = CRF_RANGE[0], hi: int = CRF_RANGE[1]) -> int:
    """The highest CRF (the fewest bytes) whose SSIM is at least ``target``, by bisection (SSIM
    falls as CRF rises); ``lo`` if even that one misses, ``hi`` if even that one makes it."""
    if ssim_of(hi) >= target:
        return hi
    if ssim_of(lo) < target:
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ssim_of(mid) >= target:
            lo = mid
        else:
            hi = mid
    return lo


class Quality:
    """Offline encodes in ``cache`` (reused across invocations: same arguments, same bytes)."""

    def __init__(self, cache: Path, size: str) -> None:
        self.cache = cache
        self.size = size
        cache.mkdir(parents=True, exist_ok=True)
        self.index_path = cache / "encodes.json"
        try:
            self.index: dict[str, Any] = json.loads(self.index_path.read_text())
        except (OSError, ValueError):
            self.index = {}
        self.done: dict[str, Encoded] = {}
        self.cached: list[str] = []

    def measure(self, name: str, codec_args: list[str], fmt: str) -> Encoded:
        key = json.dumps([SSIM_METHOD, self.size, OFFLINE_FRAMES, codec_args, fmt])
        out = self.cache / f"{name}-{self.size}.{fmt}"
        hit = self.index.get(key)
        if hit and Path(hit["file"]).exists() and Path(hit["file"]).stat().st_size == hit["bytes"]:
            encoded = Encoded(codec_args, fmt, hit["file"], hit["frames"], hit["bytes"], hit["ssim"])
            self.cached.append(name)
        else:
            encoded = encode_and_measure(self.size, codec_args, fmt, out)
            self.index[key] = encoded.as_json()
            self.index_path.write_text(json.dumps(self.index, indent=1))
        self.done[name] = encoded
        return encoded

    def mjpeg(self) -> Encoded:
        return self.measure("mjpeg-q5", MJPEG_ARGS, "mjpeg")

    def h264(self, crf: int) -> Encoded:
        return self.measure(f"h264-crf{crf}", x264_args(crf=crf), "h264")

    def matching_crf(self, target: float) -> int:
        """The CRF whose encode has SSIM (All) >= ``target`` with the fewest bytes."""
        return choose_crf(lambda crf: self.h264(crf).ssim["All"], target)
