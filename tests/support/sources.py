"""Video the test cameras read (edge/sources/ reads it): MJPEG clips made with ffmpeg.

ffmpeg's `testsrc` is asymmetric and carries a frame counter, so a rotated, flipped or frozen
picture is visible; `-c copy` extracts a clip's JPEGs exactly as they are stored, which is what a
camera that passes its source's JPEG through must serve byte for byte. A test that makes clips is
marked `requires("ffmpeg")`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.programs import program


def mjpeg_clip(
    out: Path, seconds: float = 2, size: tuple[int, int] = (320, 240), rate: float = 15, quality: int | None = None
) -> Path:
    """`seconds` of testsrc at `size` and `rate` as MJPEG in the container `out`'s suffix names
    (`quality`: ffmpeg's -q:v, 2 best .. 31 worst; None: ffmpeg's default bit rate)."""
    source = f"testsrc=size={size[0]}x{size[1]}:rate={rate}"
    codec = ["-c:v", "mjpeg"] + (["-q:v", str(quality)] if quality is not None else [])
    subprocess.run(
        [program("ffmpeg"), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source, "-t", str(seconds)]
        + [*codec, str(out)],
        check=True,
        timeout=60,
    )
    return out


def extract_jpegs(clip: Path, pattern: Path) -> None:
    """The clip's JPEG frames, unchanged, into files named by `pattern` (e.g. `dir/frame%03d.jpg`)."""
    subprocess.run(
        [program("ffmpeg"), "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip), "-c", "copy", "-f", "image2"]
        + [str(pattern)],
        check=True,
        timeout=60,
    )
