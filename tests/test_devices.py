"""Why a camera device does not open (edge/sources/diagnose.py), and `source: auto` falling back.

In process where the machine allows (this machine has no /dev/video*: missing nodes, regular
files and /dev/null are real; permission and busy problems are simulated with monkeypatch),
then two real servers: `auto` falling back to the virtual camera with the reason in status, and
a missing device reconnecting with the reason in status.
"""

from __future__ import annotations

import errno
import grp
import os
import subprocess
import threading
from pathlib import Path

import pytest

from edge.config import CameraConfig
from edge.sources import AUTO_DEVICE, resolve_auto
from edge.sources import diagnose as devices
from edge.sources.diagnose import why_not_open
from edge.sources.virtual import VirtualSource
from tests.support.process import EdgeServer, StartServer
from tests.support.status import camera_status, wait_camera_state, wait_status

MISSING = "/dev/video7"


# Tests that rely on this machine having no camera (true of CI and the dev container).
no_camera = pytest.mark.skipif(
    os.path.exists(AUTO_DEVICE) or os.path.exists(MISSING),
    reason=f"this machine has {AUTO_DEVICE} or {MISSING}; the test needs them absent",
)


@no_camera
def test_missing_device() -> None:
    reason = why_not_open(MISSING)
    assert reason.startswith(f"{MISSING} does not exist"), reason
    assert "no camera is plugged in" in reason


@no_camera
def test_dangling_by_id_link_names_both_paths(tmp_path: Path) -> None:
    link = tmp_path / "usb-Cam-video-index0"
    link.symlink_to(MISSING)
    reason = why_not_open(str(link))
    assert f"{link} ({MISSING}) does not exist" in reason, reason


def test_regular_file_is_not_a_device(tmp_path: Path) -> None:
    file = tmp_path / "video0"
    file.write_bytes(b"not a camera")
    assert why_not_open(str(file)) == f"{file} is not a device"


def test_character_device_that_is_not_v4l2() -> None:
    # /dev/null opens read-write but answers VIDIOC_QUERYCAP with ENOTTY.
    assert why_not_open("/dev/null") == "/dev/null is not a V4L2 video device"


def test_permission_problem_names_group_gid_and_group_add(monkeypatch: pytest.MonkeyPatch) -> None:
    gid = os.stat("/dev/null").st_gid
    group = grp.getgrgid(gid).gr_name
    monkeypatch.setattr(devices.os, "access", lambda path, mode: False)  # we run as root here
    reason = why_not_open("/dev/null")
    assert reason.startswith("permission denied on /dev/null"), reason
    assert f"group {group} (gid {gid})" in reason
    assert f"uid {os.getuid()}" in reason
    assert "group_add" in reason and f"usermod -aG {group}" in reason


@pytest.mark.parametrize("err", [errno.EACCES, errno.EPERM])
def test_open_refused_is_a_permission_problem(monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    def refuse(*args: object, **kwargs: object) -> int:
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(devices.os, "open", refuse)
    reason = why_not_open("/dev/null")
    assert reason.startswith("permission denied on /dev/null") and "group_add" in reason, reason


def _ebusy(*args: object, **kwargs: object) -> int:
    raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))


def test_busy_device_names_its_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices.os, "open", _ebusy)
    monkeypatch.setattr(devices, "holders_of", lambda real: [(4242, "motion")])
    reason = why_not_open("/dev/null")
    assert reason.startswith("/dev/null is busy: held by motion (pid 4242)"), reason


def test_busy_device_without_a_visible_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices.os, "open", _ebusy)
    monkeypatch.setattr(devices, "holders_of", lambda real: [])
    assert "opens but does not stream" in why_not_open("/dev/null")


def test_holders_of_finds_another_process_through_proc(tmp_path: Path) -> None:
    node = tmp_path / "fake-video"
    node.write_bytes(b"")
    with node.open("rb") as held:
        proc = subprocess.Popen(["sleep", "30"], stdin=held)  # `sleep` holds the file as its stdin
    try:
        assert (proc.pid, "sleep") in devices.holders_of(str(node))
    finally:
        proc.kill()
        proc.wait(5)
    assert devices.holders_of(str(node)) == []  # our own descriptors are not "holders"


def test_metadata_node_is_not_a_capture_device(monkeypatch: pytest.MonkeyPatch) -> None:
    # A UVC camera's second node answers QUERYCAP with only V4L2_CAP_META_CAPTURE.
    monkeypatch.setattr(devices, "_query_capabilities", lambda fd: ("HD Webcam", 0x00800000))
    reason = why_not_open("/dev/null")
    assert reason.startswith("/dev/null (HD Webcam) is not a video capture device"), reason
    assert "even-numbered" in reason


@no_camera
def test_resolve_auto_without_a_camera_uses_the_virtual_one() -> None:
    stop = threading.Event()
    source, reason = resolve_auto(CameraConfig(name="cam0", width=160, height=120, fps=10), stop)
    try:
        assert isinstance(source, VirtualSource) and source.kind == "virtual"
        assert reason is not None
        assert reason.startswith(f"{AUTO_DEVICE} does not exist"), reason
        assert source.read() is not None  # opened and ready
    finally:
        stop.set()
        source.close()


# ---------------------------------------------------------------------------------------------
# Real servers


@pytest.fixture(scope="module")
def device_server(start_module_server: StartServer) -> EdgeServer:
    cams = [
        {"name": "auto", "source": "auto", "width": 160, "height": 120, "fps": 5},
        {"name": "gone", "source": MISSING, "width": 160, "height": 120, "fps": 5},
    ]
    return start_module_server(cameras=cams)


@no_camera
def test_auto_falls_back_to_virtual_and_says_why(device_server: EdgeServer) -> None:
    st = wait_camera_state(device_server, "auto", "streaming", 10)
    cam = camera_status(st, "auto")
    assert cam["source_kind"] == "virtual"
    problem = cam["problem"] or ""
    assert AUTO_DEVICE in problem and "does not exist" in problem, problem
    log = device_server.log_text()
    assert f"not using {AUTO_DEVICE}: {problem}; using the virtual camera" in log


@no_camera
def test_missing_device_reconnects_with_the_reason(device_server: EdgeServer) -> None:
    st = wait_status(
        device_server,
        lambda s: camera_status(s, "gone")["state"] == "reconnecting" and camera_status(s, "gone")["problem"],
        10,
        "camera gone reconnecting with a problem",
    )
    cam = camera_status(st, "gone")
    assert cam["problem"].startswith(f"{MISSING} does not exist"), cam["problem"]
    assert cam["frames_captured"] == 0
