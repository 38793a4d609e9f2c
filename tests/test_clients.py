"""Third-party clients read the stream: ffmpeg (NVRs, recorders) and OpenCV (scripts)."""

from __future__ import annotations

import subprocess

import cv2
import pytest

from tests.support.config import virtual_cam
from tests.support.process import EdgeServer, StartServer
from tests.support.programs import program, requires

SIZE = (320, 240)


@pytest.fixture(scope="module")
def srv(start_module_server: StartServer) -> EdgeServer:
    return start_module_server(cameras=[virtual_cam("cam0", *SIZE, fps=30)])


@requires("ffmpeg")
@pytest.mark.parametrize("path", ["/stream.mjpg", "/?action=stream"])
def test_ffmpeg_reads_stream(srv: EdgeServer, path: str) -> None:
    cmd = [
        program("ffmpeg"),
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        srv.url + path,
        "-frames:v",
        "10",
        "-f",
        "null",
        "-",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, f"ffmpeg exit {res.returncode}: {res.stderr}"


def test_opencv_reads_stream(srv: EdgeServer) -> None:
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 10000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 10000]
    cap = cv2.VideoCapture(srv.url + "/stream.mjpg", cv2.CAP_FFMPEG, params)
    try:
        assert cap.isOpened(), "cv2.VideoCapture could not open the stream"
        for i in range(5):
            ok, img = cap.read()
            assert ok and img is not None, f"read {i} failed"
            assert (img.shape[1], img.shape[0]) == SIZE
    finally:
        cap.release()
