"""The runs of ``benchmarks/sources.py``: which source, size and viewers each one has, the targets
of issue 8, the MJPEG test file (made with FFmpeg) and the config each run's server gets."""

from __future__ import annotations

import fnmatch
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.config import write_config

BENCH_DIR = Path(__file__).resolve().parents[1]
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
