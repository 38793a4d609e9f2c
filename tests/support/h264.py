"""H.264 for the tests of `edge.formats.h264` and `edge.formats.fmp4`: real Annex-B streams, and
the decoder that says whether what edge made of them is right.

`x264` runs ffmpeg's libx264 on `testsrc` the way a camera pipe would (``-f h264 -``); `pyav_x264`
encodes through PyAV instead (preset "faster": High profile, B-frames, CABAC). Both are
cached per process (`functools.cache`): the tests ask for the same few streams many times.
`decode` feeds access units to FFmpeg's decoder through PyAV with ``err_detect=explode`` and its
log captured, so a unit that decodes only with errors fails the test instead of passing with a
concealed picture. The ``probe`` functions ask ffprobe, a reference that shares no code with edge:
what a stream is (profile, level, size), where FFmpeg's parser cuts it into access units, and
whether an MP4 file plays. Tests using `x264` or the ``probe`` functions are marked
``requires("ffmpeg")``.
"""

from __future__ import annotations

import functools
import json
import shlex
import subprocess
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import av.logging
import numpy as np

from edge.formats.h264 import AccessUnitSplitter
from tests.support.programs import program

FRAMES = 90  # three key-frame intervals of 30
RATE = 30

#: ffprobe's profile names, as the profile_idc of the SPS (ITU-T H.264 Annex A).
PROFILE_IDC = {
    "Baseline": 66,
    "Constrained Baseline": 66,
    "Main": 77,
    "Extended": 88,
    "High": 100,
    "High 10": 110,
    "High 4:2:2": 122,
    "High 4:4:4 Predictive": 244,
}


def ffmpeg_h264(size: str = "320x240", rate: int = 30, extra: str = "") -> str:
    """A live H.264 producer's command line for ``pipe:`` (ffmpeg, libx264 at real time: a key
    frame every 30 frames, no B-frames, one unit per write)."""
    return (
        f"{shlex.quote(program('ffmpeg'))} -hide_banner -loglevel error -re "
        f"-f lavfi -i testsrc=size={size}:rate={rate} "
        "-c:v libx264 -preset ultrafast -tune zerolatency -pix_fmt yuv420p -g 30 -keyint_min 30 -sc_threshold 0 "
        f"-bf 0 -threads 1 {extra} -f h264 -"
    )


@functools.cache
def x264(
    size: tuple[int, int] = (640, 480),
    *,
    frames: int = FRAMES,
    aud: bool = True,
    slices: int = 1,
    profile: str | None = None,
    pix_fmt: str = "yuv420p",
    params: str = "",
) -> bytes:
    """`frames` of testsrc at `size`, 30 fps, as libx264 writes them to a pipe: a key frame every 30
    frames, no B-frames, an AUD before each unit (`aud`), `slices` slices per picture (threaded
    as ``sliced-threads``), and `params` added to ``-x264-params``. One thread unless `slices`
    asks for more, so the slice count does not depend on the machine's cores."""
    x264_params = [f"aud={int(aud)}"]
    if slices > 1:
        x264_params += ["sliced-threads=1", f"slices={slices}"]
    if params:
        x264_params.append(params)
    cmd = [program("ffmpeg"), "-v", "error", "-f", "lavfi", "-i", f"testsrc=size={size[0]}x{size[1]}:rate={RATE}"]
    cmd += ["-frames:v", str(frames), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency"]
    cmd += ["-threads", str(max(1, slices)), "-pix_fmt", pix_fmt, "-g", "30", "-keyint_min", "30"]
    cmd += ["-sc_threshold", "0", "-bf", "0", "-x264-params", ":".join(x264_params)]
    cmd += ["-profile:v", profile] if profile else []
    return subprocess.run([*cmd, "-f", "h264", "-"], check=True, capture_output=True, timeout=120).stdout


@functools.cache
def pyav_x264(size: tuple[int, int] = (320, 240), frames: int = FRAMES) -> bytes:
    """`frames` of a moving gradient encoded by libx264 through PyAV (preset "faster": High profile,
    B-frames, CABAC), a key frame every 30, one slice a picture: the Annex-B packets it returns."""
    width, height = size
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, RATE)
    ctx.framerate = Fraction(RATE)
    ctx.gop_size = 30
    ctx.thread_count = 1  # as many slices as threads otherwise: the machine's cores
    ctx.options = {"preset": "faster", "x264-params": "keyint=30:min-keyint=30:scenecut=0"}
    out = bytearray()
    y, x = np.mgrid[0:height, 0:width]
    for n in range(frames):
        image = np.stack([(x + 4 * n) % 256, (y + 2 * n) % 256, (x + y + n) % 256], axis=-1).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = n
        for packet in ctx.encode(frame):
            out += bytes(packet)
    for packet in ctx.encode(None):
        out += bytes(packet)
    return bytes(out)


def split(data: bytes, read: int | None = None) -> list[bytes]:
    """`data` cut by a fresh `AccessUnitSplitter` fed `read` bytes at a time (None: at once), the
    unit held back at the end included."""
    splitter = AccessUnitSplitter()
    units: list[bytes] = []
    step = read or max(1, len(data))
    for at in range(0, len(data), step):
        units += splitter.feed(data[at : at + step])
    last = splitter.end()
    return units + ([last] if last is not None else [])


def decode(units: Iterable[bytes]) -> list[tuple[int, int]]:
    """The (width, height) of every picture FFmpeg's H.264 decoder makes of `units`, fed one
    packet each. Fails on any decoding error, even one the decoder would conceal."""
    ctx = av.CodecContext.create("h264", "r")
    ctx.options = {"err_detect": "explode"}
    sizes: list[tuple[int, int]] = []
    done = 0
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as logs:
            for unit in units:
                sizes += [(frame.width, frame.height) for frame in ctx.decode(av.Packet(unit))]
                done += 1
            sizes += [(frame.width, frame.height) for frame in ctx.decode(None)]
    except av.error.FFmpegError as exc:
        raise AssertionError(f"the decoder refused unit {done}: {exc}") from exc
    finally:
        av.logging.set_level(level)
    errors = [message for lvl, _, message in logs if lvl <= av.logging.ERROR]
    assert not errors, f"the decoder reported {errors[:3]}"
    return sizes


def _ffprobe(args: list[str], data: bytes | None = None) -> tuple[dict[str, Any], str]:
    ffprobe = str(Path(program("ffmpeg")).with_name("ffprobe"))  # part of the ffmpeg package, beside it
    result = subprocess.run(
        [ffprobe, "-v", "error", *args, "-of", "json"] + (["-f", "h264", "pipe:0"] if data is not None else []),
        input=data,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout), result.stderr.decode(errors="replace")


def probe(path: Path) -> tuple[dict[str, Any], str]:
    """ffprobe's first video stream of `path`, its frames counted by decoding them, and what
    ffprobe wrote on stderr with ``-v error`` (nothing, for a file without errors)."""
    found, errors = _ffprobe(["-count_frames", "-select_streams", "v:0", "-show_streams", str(path)])
    return found["streams"][0], errors


def probe_stream(data: bytes) -> dict[str, Any]:
    """ffprobe's view of a raw H.264 stream: profile (by name), level, width, height."""
    stream: dict[str, Any] = _ffprobe(["-show_streams"], data)[0]["streams"][0]
    return stream


def probe_units(data: bytes) -> list[tuple[int, int]]:
    """Where FFmpeg's own H.264 parser cuts a raw stream into packets: (offset, size) of each."""
    packets = _ffprobe(["-show_packets", "-show_entries", "packet=pos,size"], data)[0]["packets"]
    return [(int(p["pos"]), int(p["size"])) for p in packets]
