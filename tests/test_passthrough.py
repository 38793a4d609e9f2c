"""JPEG passthrough and the decode+encode paths, on a real server fed MJPEG files.

ffmpeg writes MJPEG files (AVI and Matroska) and extracts their exact JPEG frames (`-c copy`).
A camera that passes the file's JPEG through must serve those very bytes; one that has to
encode (passthrough: never, another size, rotate, flip) must serve other bytes that still show
the file's picture, transformed as configured. One server with one camera per case keeps the
module fast; the config checks of the new keys run in process (parse_config), plus one
`--check-config` run for the exit status.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.config import ConfigError, parse_config
from tests.support.config import virtual_cam
from tests.support.http import fetch
from tests.support.jpeg import decode_jpeg, sha
from tests.support.mjpeg import MjpegStream
from tests.support.process import EdgeServer, StartServer, run_edge
from tests.support.programs import requires
from tests.support.sources import extract_jpegs, mjpeg_clip
from tests.support.status import camera_status, get_status, wait_all_cameras

W, H, FPS = 320, 240, 15

pytestmark = requires("ffmpeg")


@dataclass
class Media:
    files: dict[str, Path]  # container ("avi", "mkv") -> MJPEG file
    hashes: set[str]  # sha256 of every JPEG frame in the files, as ffmpeg demuxes them
    pictures: list[np.ndarray]  # the decoded frames


def make_mjpeg_files(directory: Path) -> Media:
    """2 s of ffmpeg's testsrc (asymmetric, with a counter) as MJPEG in AVI and Matroska."""
    files: dict[str, Path] = {}
    frames: dict[str, bytes] = {}
    for ext in ("avi", "mkv"):
        out = mjpeg_clip(directory / f"testsrc.{ext}", 2, (W, H), FPS, quality=5)
        extract_jpegs(out, directory / f"{ext}-%03d.jpg")
        files[ext] = out
        extracted = sorted(directory.glob(f"{ext}-*.jpg"))
        assert len(extracted) == 2 * FPS, f"{len(extracted)} frames extracted from {out}"
        for path in extracted:
            data = path.read_bytes()
            frames[sha(data)] = data
    pictures = [decode_jpeg(data) for data in frames.values()]
    return Media(files, set(frames), pictures)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return make_mjpeg_files(tmp_path_factory.mktemp("mjpeg"))


def _same(img: np.ndarray) -> np.ndarray:
    return img


@dataclass
class Case:
    settings: dict[str, Any]  # the camera's config besides name (source "avi"/"mkv" = that file)
    passthrough: bool
    processing: str  # the status "processing" text
    size: tuple[int, int]  # what viewers receive
    expected: Callable[[np.ndarray], np.ndarray] | None  # the file picture transformed; None: not the file


PASS = "passthrough (the camera's own JPEG)"
CASES = {
    "avi": Case({"source": "avi"}, True, PASS, (W, H), _same),
    "mkv": Case({"source": "mkv"}, True, PASS, (W, H), _same),
    "never": Case({"source": "avi", "passthrough": "never"}, False, "encoding (passthrough: never)", (W, H), _same),
    "resize": Case(
        {"source": "avi", "width": 160, "height": 120},
        False,
        f"encoding (resizing {W}x{H} to 160x120)",
        (160, 120),
        lambda img: cv2.resize(img, (160, 120), interpolation=cv2.INTER_AREA),
    ),
    "rot90": Case(
        {"source": "mkv", "rotate": 90},
        False,
        "encoding (rotate: 90)",
        (H, W),
        lambda img: cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE),
    ),
    "fliph": Case(
        {"source": "avi", "flip": "horizontal"},
        False,
        "encoding (flip: horizontal)",
        (W, H),
        lambda img: cv2.flip(img, 1),
    ),
    "virt": Case(
        {k: v for k, v in virtual_cam("virt", W, H, FPS).items() if k != "name"},
        False,
        "encoding (the virtual camera draws its frames)",
        (W, H),
        None,
    ),
}


@pytest.fixture(scope="module")
def server(start_module_server: StartServer, media: Media) -> EdgeServer:
    cameras = []
    for name, case in CASES.items():
        cam = {"name": name, **case.settings, "fps": FPS, "idle_after": 0}
        if cam["source"] in media.files:
            cam["source"] = str(media.files[cam["source"]])
        cameras.append(cam)
    srv = start_module_server(cameras=cameras)
    wait_all_cameras(srv, "streaming", 15)
    return srv


def closest(picture: np.ndarray, candidates: list[np.ndarray]) -> float:
    """The smallest mean absolute difference between `picture` and any same-shaped candidate."""
    diffs = [
        float(np.mean(np.abs(picture.astype(np.int16) - c.astype(np.int16))))
        for c in candidates
        if c.shape == picture.shape
    ]
    return min(diffs) if diffs else float("inf")


def check_served(case: Case, jpeg: bytes, media: Media) -> None:
    picture = decode_jpeg(jpeg)
    assert (picture.shape[1], picture.shape[0]) == case.size
    if case.passthrough:
        assert sha(jpeg) in media.hashes, "a passthrough frame is not byte-identical to a frame of the file"
        return
    assert sha(jpeg) not in media.hashes, "an encoding camera served the file's own bytes"
    if case.expected is None:
        return
    want = [case.expected(p) for p in media.pictures]
    near = closest(picture, want)
    assert near < 6, f"served picture is not the file's picture as configured (mean abs diff {near:.1f})"
    if case.expected is not _same and want[0].shape == media.pictures[0].shape:
        # The transform must actually have been applied: the untransformed picture is far off.
        untransformed = closest(picture, media.pictures)
        assert untransformed > 4 * near and untransformed > 15, (
            f"mean abs diff {near:.1f} to the transformed file picture, {untransformed:.1f} to the untransformed"
        )


@pytest.mark.parametrize("name", CASES)
def test_status_and_log_say_how_frames_are_made(server: EdgeServer, name: str) -> None:
    case = CASES[name]
    cam = camera_status(get_status(server), name)
    assert cam["state"] == "streaming"
    assert cam["passthrough"] is case.passthrough
    assert cam["processing"] == case.processing
    assert (cam["width"], cam["height"]) == case.size
    assert cam["frames_invalid"] == 0
    assert re.search(
        rf"{name}: streaming from .* \({case.size[0]}x{case.size[1]}\): {re.escape(case.processing)}",
        server.log_text(),
    ), "no 'streaming from' log line with the size and the processing"


@pytest.mark.parametrize("name", CASES)
def test_snapshot_and_stream_frames(server: EdgeServer, media: Media, name: str) -> None:
    case = CASES[name]
    snap = fetch(f"{server.url}/cameras/{name}/snapshot")
    assert snap.status == 200 and snap.body is not None
    check_served(case, snap.body, media)
    with MjpegStream(server.host, server.port, f"/cameras/{name}/stream") as stream:
        parts = stream.read_parts(4)
    for part in parts:
        check_served(case, part.jpeg, media)
    assert len({sha(p.jpeg) for p in parts}) >= 3, "the stream repeats the same frame"


def test_metrics_report_passthrough(server: EdgeServer) -> None:
    text = fetch(server.url + "/metrics").body
    assert text is not None
    values = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^edge_camera_passthrough\{camera="([^"]+)"\} (\S+)$', text.decode(), re.M)
    }
    assert values == {name: float(case.passthrough) for name, case in CASES.items()}


# ---------------------------------------------------------------------------------------------
# Config checks of the new camera keys (in process)


def _doc(*cams: dict[str, Any]) -> dict[str, Any]:
    return {"cameras": [{"name": f"c{i}", **cam} for i, cam in enumerate(cams)]}


BAD_CONFIGS = {
    # id: (cameras, key named in the error, fragment of the message)
    "always+virtual": ([{"source": "virtual", "passthrough": "always"}], "cameras[0].passthrough", "virtual"),
    "always+rotate": ([{"source": "auto", "passthrough": "always", "rotate": 90}], "cameras[0].passthrough", "rotate"),
    "always+flip": (
        [{"source": "auto", "passthrough": "always", "flip": "vertical"}],
        "cameras[0].passthrough",
        "flip",
    ),
    "passthrough-word": ([{"passthrough": "sometimes"}], "cameras[0].passthrough", "auto, always, never"),
    "rotate-45": ([{"rotate": 45}], "cameras[0].rotate", "0, 90, 180, 270"),
    "rotate-bool": ([{"rotate": True}], "cameras[0].rotate", "0, 90, 180, 270"),
    "flip-diagonal": ([{"flip": "diagonal"}], "cameras[0].flip", "none, horizontal, vertical"),
    "idle-half": ([{"idle_after": 0.5}], "cameras[0].idle_after", "between 1 and 86400"),
    "idle-negative": ([{"idle_after": -1}], "cameras[0].idle_after", "between 1 and 86400"),
    "idle-too-long": ([{"idle_after": 86401}], "cameras[0].idle_after", "between 1 and 86400"),
    "idle-text": ([{"idle_after": "x"}], "cameras[0].idle_after", "number of seconds"),
    "drop-negative": ([{"drop_same_frames": -1}], "cameras[0].drop_same_frames", "between 0"),
    "drop-fraction": ([{"drop_same_frames": 1.5}], "cameras[0].drop_same_frames", "integer"),
    "missing-file": ([{"source": "/nonexistent/clip.avi"}], "cameras[0].source", "does not exist"),
    "missing-relative-file": ([{"source": "no-such-clip.mkv"}], "cameras[0].source", "does not exist"),
    "same-device": ([{"source": "/dev/video0"}, {"source": 0}], "cameras[1].source", "/dev/video0"),
    "same-device-text": ([{"source": 2}, {"source": "/dev/video2"}], "cameras[1].source", "/dev/video2"),
    "pipe-empty": ([{"source": "pipe:"}], "cameras[0].source", "needs a command"),
    "pipe-blank": ([{"source": "pipe:   "}], "cameras[0].source", "needs a command"),
    "pipe-quote": ([{"source": "pipe:cat 'x"}], "cameras[0].source", "cannot split"),
}


@pytest.mark.parametrize(("cams", "key", "fragment"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_camera_config(cams: list[dict[str, Any]], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_doc(*cams), "edge.yaml")
    assert info.value.key == key, str(info.value)
    assert fragment in info.value.message, str(info.value)
    assert str(info.value).startswith(f"edge.yaml: {key}: ")


def test_good_camera_config(media: Media) -> None:
    cfg = parse_config(
        _doc(
            {"source": "virtual"},
            {"source": "virtual", "idle_after": 0, "drop_same_frames": 5, "rotate": 270, "flip": "horizontal"},
            {"source": str(media.files["avi"]), "passthrough": "always", "idle_after": 86400},
            {"source": "pipe:cat /dev/zero", "width": 320, "passthrough": "never", "idle_after": 1},
        ),
        "edge.yaml",
    )
    default, virtual, file, pipe = cfg.cameras
    assert (default.passthrough, default.idle_after, default.drop_same_frames, default.rotate, default.flip) == (
        "auto",
        10,
        0,
        0,
        "none",
    )
    assert not default.size_given and pipe.size_given  # width/height written in the file or not
    assert (virtual.idle_after, virtual.drop_same_frames, virtual.rotate, virtual.flip) == (0, 5, 270, "horizontal")
    assert (file.passthrough, file.idle_after) == ("always", 86400)
    assert pipe.source == "pipe:cat /dev/zero" and pipe.passthrough == "never"


def test_missing_video_file_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text("cameras:\n  - name: cam0\n    source: /nonexistent/clip.avi\n")
    res = run_edge(["--check-config", str(config)])
    assert res.returncode == 2, f"exit {res.returncode}: {res.stderr}"
    assert "Traceback" not in res.stderr
    assert str(config) in res.stderr and "cameras[0].source" in res.stderr and "does not exist" in res.stderr
