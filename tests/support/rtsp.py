"""A real RTSP server on loopback, for the tests of RTSP cameras: `RtspServer` and `requires_rtsp`.

The server is GStreamer's (tests/support/rtsp_server.py), run as a child of the system python
because PyGObject and GStreamer's typelibs are Debian packages, not in the venv. Its mounts:

- ``/test``   live H.264, 640x480 at 30 fps, constrained baseline, a key frame every 30 frames,
              no B-frames, SPS/PPS in band with every key frame; one pipeline shared by every
              client, running from the first client on like a camera's encoder; each client's
              PLAY makes the encoder send a key frame (which the others see mid-GOP);
- ``/h265``   the same in H.265 (Main), when x265enc is installed (`requires_rtsp_h265`);
- ``/record`` RECORD mode: a client publishes H.264 into it (``ffmpeg ... -f rtsp URL``); with
              ``RtspServer(record_tcp_port=P)`` readers pull what was published from
              ``tcp://127.0.0.1:P`` (an H.264 byte stream, SPS/PPS before each key frame).

A client may reconnect at once after leaving (rtsp_server.py `keep_prepared`). Opening ``/test``
with PyAV takes about 1 s. When the server is killed, a PyAV reader on TCP gets the packets
already received and then the end of the stream, not an error.

Use it as a context manager, or through a fixture made from `rtsp_server_fixture`::

    @requires_rtsp
    def test_reads_a_camera() -> None:
        with RtspServer() as server:
            url = server.url("/test")        # rtsp://127.0.0.1:PORT/test
            ...
            server.kill()                    # the camera vanishes (SIGKILL)
            server.start(port=server.port)   # and comes back on the same port

    rtsp_server = pytest.fixture(rtsp_server_fixture, name="rtsp_server")   # in a module or conftest

`requires_rtsp` skips a test, naming the Debian packages to install, when the server cannot run
here; under ``CI=true`` a skip fails the run (tests/conftest.py), so CI must install them all
(`DEBIAN_PACKAGES`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from tests.support.process import LogBuffer

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
HOST = "127.0.0.1"
LISTEN_RE = re.compile(r"^listening rtsp://([^\s:/]+):(\d+)$", re.MULTILINE)
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0

#: What the server needs, and so what CI installs: PyGObject, the RTSP server's typelib (which
#: pulls in libgstrtspserver and the core typelibs), videotestsrc (base), the RTP payloaders and
#: depayloaders (good), h264parse and x265enc (bad), x264enc (ugly).
DEBIAN_PACKAGES = (
    "python3-gi",
    "gir1.2-gst-rtsp-server-1.0",
    "gstreamer1.0-plugins-base",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-bad",
    "gstreamer1.0-plugins-ugly",
)
#: The elements each mount uses; fakesink is in libgstreamer1.0-0, which everything depends on.
H264_ELEMENTS = ("videotestsrc", "x264enc", "rtph264pay", "rtph264depay", "h264parse", "fakesink", "tcpserversink")
H265_ELEMENTS = ("x265enc", "rtph265pay")

_PROBE = f"""
import json
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtsp, GstRtspServer
Gst.init(None)
names = {list(H264_ELEMENTS + H265_ELEMENTS)!r}
print(json.dumps({{name: Gst.ElementFactory.find(name) is not None for name in names}}))
"""


def child_env() -> dict[str, str]:
    """The environment for the system python: without the venv's, which would confuse it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@functools.cache
def _probe() -> dict[str, bool] | str:
    """Which GStreamer elements the system python finds, or why it cannot tell.

    Also the first `Gst.init` of the run, which builds GStreamer's registry cache on a fresh
    machine (about a second), so the servers started after it do not spend their start-up on it.
    """
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found"
    try:
        done = subprocess.run(
            [SYSTEM_PYTHON, "-c", _PROBE],
            env=child_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        return f"{SYSTEM_PYTHON} did not finish importing GStreamer within 60 s"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no error output"])[-1]
        return f"{SYSTEM_PYTHON} cannot import GStreamer's RTSP server ({last})"
    found: dict[str, bool] = json.loads(done.stdout)
    return found


def _missing(elements: tuple[str, ...]) -> str | None:
    found = _probe()
    if isinstance(found, str):
        problem = found
    else:
        missing = [name for name in elements if not found.get(name)]
        if not missing:
            return None
        problem = f"GStreamer elements {', '.join(missing)} missing"
    return f"RTSP test server cannot run: {problem} (Debian: apt-get install {' '.join(DEBIAN_PACKAGES)})"


def rtsp_missing_reason() -> str | None:
    """Why the RTSP server (with its H.264 mounts) cannot run here; None: it can."""
    return _missing(H264_ELEMENTS)


def h265_missing_reason() -> str | None:
    """Why the server cannot serve ``/h265`` here; None: it can."""
    return _missing(H264_ELEMENTS + H265_ELEMENTS)


#: Skips a test that needs `RtspServer`, naming the Debian packages to install.
requires_rtsp = pytest.mark.skipif(rtsp_missing_reason() is not None, reason=rtsp_missing_reason() or "")
#: Skips a test that needs the server's ``/h265`` mount.
requires_rtsp_h265 = pytest.mark.skipif(h265_missing_reason() is not None, reason=h265_missing_reason() or "")


class RtspServer:
    """tests/support/rtsp_server.py as a child process, on 127.0.0.1.

    `start` (or entering the context) waits for the server's ``listening`` line and sets `port`;
    `stop` ends it with SIGTERM (SIGKILL after 5 s), `kill` with SIGKILL at once, like a camera
    losing power. Either can be followed by ``start(port=server.port)``. `stderr_text` is what
    every run so far wrote to stderr (GStreamer's warnings and errors), and failures quote it.
    """

    def __init__(
        self, port: int = 0, *, address: str = HOST, start_timeout: float = START_TIMEOUT, record_tcp_port: int = 0
    ) -> None:
        self.address = address
        #: Where ``/record`` plays out what a client publishes, as an H.264 byte stream for any
        #: number of TCP readers (``tcp://127.0.0.1:PORT``, format ``h264``); 0: not played out.
        self.record_tcp_port = record_tcp_port
        self.port = port
        self.start_timeout = start_timeout
        #: Seconds the last `start` took, from spawning the process to its ``listening`` line.
        self.startup_seconds: float | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: LogBuffer | None = None
        self._stdout: LogBuffer | None = None
        self._past_stderr: list[str] = []

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def url(self, path: str = "/test") -> str:
        """``rtsp://127.0.0.1:PORT/path`` on the running server."""
        assert self.port, "RtspServer not started"
        return f"rtsp://{self.address}:{self.port}/{path.lstrip('/')}"

    def stderr_text(self) -> str:
        current = self._stderr.text() if self._stderr is not None else ""
        return "".join(self._past_stderr) + current

    def start(self, port: int | None = None) -> RtspServer:
        """Start the server (on `port`, or the one given at construction; 0 lets the system pick).

        A fixed port is retried until the deadline if the server cannot bind it yet.
        """
        assert not self.running, "RtspServer already running"
        reason = rtsp_missing_reason()
        assert reason is None, f"{reason}; the test needs @requires_rtsp"
        want = self.port if port is None else port
        began = time.monotonic()
        deadline = began + self.start_timeout
        while True:
            got = self._spawn(want, deadline)
            if got is not None:
                self.port = got
                self.startup_seconds = time.monotonic() - began
                return self
            rc = self.proc.poll() if self.proc is not None else None
            self._reap(signal.SIGKILL)
            if want == 0 or rc is None or time.monotonic() >= deadline:
                raise AssertionError(
                    f"RTSP server did not print 'listening rtsp://{self.address}:PORT' within "
                    f"{self.start_timeout:.0f} s (port {want}, exit status {rc})\nstderr:\n{self.stderr_text()[-6000:]}"
                )
            time.sleep(0.2)

    def _spawn(self, port: int, deadline: float) -> int | None:
        cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(port), "--address", self.address]
        if self.record_tcp_port:
            cmd += ["--record-tcp-port", str(self.record_tcp_port)]
        # Its stdin is a pipe only we hold: if this process dies without stopping it, the server
        # reads end of file and quits instead of keeping the port.
        cmd.append("--exit-on-stdin-eof")
        self.proc = subprocess.Popen(
            cmd,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._stdout = LogBuffer(self.proc.stdout)
        self._stderr = LogBuffer(self.proc.stderr)
        proc = self.proc
        m = self._stdout.wait_for_match(LISTEN_RE, max(0.0, deadline - time.monotonic()), lambda: proc.poll() is None)
        return int(m.group(2)) if m is not None else None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; the exit status (None if not started)."""
        return self._reap(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL at once: the camera vanishes, its connections closed by the kernel, no TEARDOWN."""
        return self._reap(signal.SIGKILL)

    def _reap(self, sig: int, timeout: float = STOP_TIMEOUT) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        for buf in (self._stdout, self._stderr):
            if buf is not None:
                buf.join(2)
        if self._stderr is not None:
            self._past_stderr.append(self._stderr.text())
        self._stdout = self._stderr = None
        self.proc = None
        return proc.returncode


def rtsp_server_fixture() -> Iterator[RtspServer]:
    """A running `RtspServer`, stopped afterwards; a fixture once wrapped:
    ``rtsp_server = pytest.fixture(rtsp_server_fixture, name="rtsp_server")``."""
    with RtspServer() as server:
        yield server
