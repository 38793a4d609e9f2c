"""Why a V4L2 device does not open, in words a user can act on.

OpenCV only says "cannot open". On a Pi the reasons differ and each has its own fix: the camera
is not plugged in (or has another number), the process is not in the device's group (in a
container: ``group_add``), another program holds it, or the node is not a capture device at all
(UVC cameras also create a metadata node, usually the odd-numbered one).
"""

from __future__ import annotations

import errno
import fcntl
import grp
import os
import stat
import struct

# VIDIOC_QUERYCAP = _IOR('V', 0, struct v4l2_capability); the struct is 104 bytes:
# driver[16] card[32] bus_info[32] version capabilities device_caps reserved[3] (u32 each).
VIDIOC_QUERYCAP = 0x80685600
_CAPABILITY = struct.Struct("16s32s32sIII12x")
V4L2_CAP_VIDEO_CAPTURE = 0x00000001
V4L2_CAP_VIDEO_CAPTURE_MPLANE = 0x00001000
V4L2_CAP_DEVICE_CAPS = 0x80000000


def why_not_open(path: str) -> str:
    """The most likely reason ``path`` did not open as a camera, with what to do about it."""
    real = os.path.realpath(path)
    shown = path if real == path else f"{path} ({real})"
    try:
        info = os.stat(real)
    except FileNotFoundError:
        return f"{shown} does not exist: no camera is plugged in, or it has another name (ls /dev/video*)"
    except OSError as exc:
        return f"cannot look at {shown}: {exc.strerror}"
    if not stat.S_ISCHR(info.st_mode):
        return f"{shown} is not a device"
    if not os.access(real, os.R_OK | os.W_OK):
        return permission_problem(shown, info.st_gid)
    try:
        fd = os.open(real, os.O_RDWR | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            return permission_problem(shown, info.st_gid)
        if exc.errno == errno.EBUSY:
            return busy_problem(shown, real)
        return f"{shown} does not open: {exc.strerror}"
    try:
        caps = _query_capabilities(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTTY, errno.EINVAL):
            return f"{shown} is not a V4L2 video device"
        caps = None
    finally:
        os.close(fd)
    if caps is not None:
        card, capabilities = caps
        if not capabilities & (V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_VIDEO_CAPTURE_MPLANE):
            return (
                f"{shown} ({card}) is not a video capture device (cameras often add a metadata node "
                "next to the real one: try the even-numbered /dev/videoN, or a /dev/v4l/by-id/...-index0 name)"
            )
    return busy_problem(shown, real)


def permission_problem(shown: str, gid: int) -> str:
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    mine = ", ".join(_group_name(g) for g in sorted(set(os.getgroups()) | {os.getgid()}))
    return (
        f"permission denied on {shown}: it belongs to group {group} (gid {gid}) and this process "
        f"(uid {os.getuid()}) is in groups {mine}; add the user to that group "
        f"(sudo usermod -aG {group} USER), or in compose.yaml put {gid} under group_add"
    )


def busy_problem(shown: str, real: str) -> str:
    holders = holders_of(real)
    if holders:
        who = ", ".join(f"{name} (pid {pid})" for pid, name in holders[:3])
        return f"{shown} is busy: held by {who}; stop that program, or read the camera through edge only"
    return f"{shown} opens but does not stream: busy in another program, or no format OpenCV can read"


def holders_of(real: str) -> list[tuple[int, str]]:
    """Other processes with ``real`` open (those whose /proc entries this process may read)."""
    found: list[tuple[int, str]] = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fds = os.listdir(f"/proc/{entry.name}/fd")
            for fd in fds:
                if os.readlink(f"/proc/{entry.name}/fd/{fd}") == real:
                    with open(f"/proc/{entry.name}/comm", encoding="utf-8", errors="replace") as comm:
                        found.append((int(entry.name), comm.read().strip()))
                    break
        except OSError:
            continue
    return found


def _query_capabilities(fd: int) -> tuple[str, int] | None:
    """The node's card name and capabilities; raises OSError (ENOTTY: not V4L2)."""
    buf = bytearray(_CAPABILITY.size)
    fcntl.ioctl(fd, VIDIOC_QUERYCAP, buf)
    _, card, _, _, capabilities, device_caps = _CAPABILITY.unpack(bytes(buf))
    if capabilities & V4L2_CAP_DEVICE_CAPS:
        capabilities = device_caps  # what this node does, not the whole device
    return card.split(b"\0", 1)[0].decode(errors="replace"), capabilities


def _group_name(gid: int) -> str:
    try:
        return f"{grp.getgrgid(gid).gr_name} ({gid})"
    except KeyError:
        return str(gid)
