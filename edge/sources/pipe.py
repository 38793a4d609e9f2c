"""``pipe:COMMAND``: a program's stdout as an MJPEG or H.264 (Annex-B) byte stream, passed through
without decoding. Which one is told by the first bytes (a JPEG's ``FF D8``, an H.264 start code)
unless the camera's ``codec`` says.

On a Raspberry Pi, decoding and re-encoding 720p at 30 fps costs most of a core for nothing, while
cutting the byte stream into frames (``edge/formats/jpeg_stream.py``) costs tens of microseconds a
frame; the capture thread still checks every frame (`check_frame`) before anyone sees it.
COMMAND is split like a shell would, but without a shell, and its ``${...}`` secret references
are filled in argument by argument. A Pi CSI camera is served as::

    pipe:rpicam-vid -t 0 --codec mjpeg --width 1280 --height 720 --framerate 30 -o -

or, in H.264 (a tenth of the bandwidth; ``--inline`` repeats SPS/PPS before every key frame)::

    pipe:rpicam-vid -t 0 --codec h264 --inline --width 1280 --height 720 --framerate 30 -o -

and anything FFmpeg reads can be re-served without re-encoding when it already is MJPEG or H.264::

    pipe:ffmpeg -hide_banner -loglevel error -i SOMETHING -c copy -f mjpeg -
    pipe:ffmpeg -hide_banner -loglevel error -i SOMETHING -c copy -f h264 -

H.264 is cut into access units by ``edge/formats/h264.py``. A producer writes one unit per write
(rpicam-vid, ffmpeg's ``-f h264``), so a read that returns less than it asked for ends a unit: it
is handed on at once instead of when the next unit starts, which would add a frame period.

The producer runs in a process group of its own, so stopping it stops whatever it started
(``sh -c 'a | b'``), and it is never left behind: a producer that stalls is killed and started
again by the capture thread's reconnect, and so is one that exits.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import shlex
import signal
import subprocess
import threading
import time
from typing import IO

from ..config import CameraConfig, SourceKind, SourceSpec
from ..formats.h264 import AccessUnitSplitter
from ..formats.jpeg_stream import JpegStreamSplitter
from ..redact import mask_literals, redact_source, source_secrets
from .base import READ_CHUNK, Captured, Source, SourceError, shorten
from .registry import register

pipe_log = logging.getLogger("edge.pipe")

# The capture thread's stop event is looked at at least this often while waiting for data, so
# shutdown (which waits 1.5 s for capture threads) is not held up by a quiet producer.
POLL_SLICE = 0.25
# A producer gets this long to exit after SIGTERM (ffmpeg and rpicam-vid need a few ms), then
# SIGKILL. Together with POLL_SLICE this stays within the shutdown's wait for capture threads.
TERM_GRACE = 1.0
STDERR_TAIL = 20  # lines of a producer's stderr kept to say why it died
STDERR_LINE_MAX = 1024  # a "line" without a newline (progress bars, binary junk) is cut here
_WRITE_BUFFER_UNIT = 4096
SNIFF_MAX = 64 * 1024  # bytes looked at to tell MJPEG from H.264 before giving up on the stream
_START_CODES = (b"\x00\x00\x00\x01", b"\x00\x00\x01")


def sniff(data: bytes) -> str | None:
    """Which codec ("mjpeg" or "h264") the first bytes of a producer's stream, None while it cannot tell."""
    head = data.lstrip(b"\x00")
    if data.startswith(b"\xff\xd8"):
        return "mjpeg"
    if len(data) > len(head) and head.startswith(b"\x01"):
        return "h264"  # zero bytes, then 01: an Annex-B start code
    jpeg, nal = data.find(b"\xff\xd8\xff"), data.find(b"\x00\x00\x01")
    if jpeg < 0 and nal < 0:
        return None
    if nal < 0 or 0 <= jpeg < nal:
        return "mjpeg"
    return "h264"


def _exited_without_reaping(pid: int, timeout: float) -> bool:
    """Waits up to ``timeout`` for the child ``pid`` to exit, leaving it a zombie.

    Not reaping it keeps its pid, which is also its process group's id, from being reused, so a
    later ``killpg`` cannot hit an unrelated group. True when it exited (or is already reaped).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _how_it_ended(pid: int) -> str:
    """How the child ``pid`` ended ("exited with status N", "was killed by SIGxxx"), without reaping it."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return "exited"
    if info is None:
        return "closed its output"
    if info.si_code == os.CLD_EXITED:
        return f"exited with status {info.si_status}"
    try:
        name = signal.Signals(info.si_status).name
    except ValueError:
        name = f"signal {info.si_status}"
    return f"was killed by {name}"


@register(SourceKind.PIPE)
class PipeSource(Source):
    """``pipe:COMMAND``: the command's stdout is a stream of concatenated JPEGs, or H.264 Annex-B."""

    gives_jpeg = True
    # A producer that is not read blocks on a full pipe and then hands out stale frames.
    pauses_when_idle = False

    def __init__(self, cam: CameraConfig, stop: threading.Event, spec: SourceSpec) -> None:
        super().__init__(cam, stop, spec)
        self.command = str(spec.target)
        command = self.command
        # Secrets on the command line (an RTSP password given to ffmpeg) may be quoted back in
        # the producer's messages, which end up in the status as well as in the log.
        self._secrets = source_secrets(command)
        self._program = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd = -1
        self._poller: select.poll | None = None
        self._splitter = JpegStreamSplitter()
        self._units = AccessUnitSplitter()
        self._codec: str | None = None  # what the producer writes, once told
        self._sniffed = b""
        self._discarded_told = 0
        self._pending: collections.deque[bytes] = collections.deque()
        self._last_frame = 0.0
        self._bytes_since_frame = 0
        self._stderr_thread: threading.Thread | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
        self._tail_lock = threading.Lock()  # the stderr reader appends while the capture thread reads

    @property
    def description(self) -> str:
        return shorten(redact_source("pipe:" + self.command))

    @property
    def pid(self) -> int | None:
        """The running producer's process id (for the log and tests)."""
        return self._proc.pid if self._proc is not None else None

    def _scrub(self, text: str) -> str:
        return mask_literals(redact_source(text), self._secrets | self.secrets)

    def take_discarded(self) -> int:
        """Frames the stream splitter threw away since the last call (cut short by the start of
        the next one, a broken header, too large): broken source frames that never reach the
        capture thread's frame check, so it can count them too."""
        discarded = self._splitter.discarded if self._codec != "h264" else self._units.discarded
        new, self._discarded_told = discarded - self._discarded_told, discarded
        return new

    def open(self) -> None:
        self.close()  # a reconnect always starts a new process
        try:
            # Split before the secrets go in, so a value with a space or a quote stays one argument.
            argv = [self.expand(arg) for arg in shlex.split(self.command)]
        except ValueError as exc:  # the config check splits it too; kept for direct use
            raise SourceError(f"pipe: cannot split the command: {exc}") from None
        if not argv:
            raise SourceError("pipe: needs a command, e.g. pipe:rpicam-vid -t 0 --codec mjpeg -o -")
        self._program = os.path.basename(argv[0])
        try:
            # No shell: the command line is split as given, so nothing in it is interpreted twice.
            # A session of its own makes the producer a process group leader: close() stops the
            # whole group, including anything the producer started itself.
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise SourceError(
                f"pipe: program {argv[0]!r} not found: install it, or give its full path after pipe:"
            ) from None
        except PermissionError as exc:
            raise SourceError(f"pipe: cannot run {argv[0]!r} ({exc.strerror}): is it an executable program?") from None
        except OSError as exc:
            raise SourceError(f"pipe: cannot run {argv[0]!r}: {exc.strerror or exc}") from None
        self._proc = proc
        try:
            assert proc.stdout is not None and proc.stderr is not None
            self._fd = proc.stdout.fileno()
            poller = select.poll()
            poller.register(self._fd, select.POLLIN | select.POLLHUP | select.POLLERR)
            self._poller = poller
            # A fresh splitter: the tail of the last process's stream is not the start of a frame.
            self._splitter = JpegStreamSplitter()
            self._units = AccessUnitSplitter()
            self._codec = self.cam.codec if self.cam.codec != "auto" else None
            self._set_codec(self._codec)
            self._sniffed = b""
            self._discarded_told = 0
            self._pending.clear()
            self._last_frame = time.monotonic()
            self._bytes_since_frame = 0
            # Each process gets its own tail, so a previous producer's late lines cannot get mixed in.
            self._stderr_tail = collections.deque(maxlen=STDERR_TAIL)
            thread = threading.Thread(
                target=self._drain_stderr,
                args=(proc.stderr, self._stderr_tail),
                name=f"pipe-stderr-{self.cam.name}",
                daemon=True,
            )
            thread.start()
            self._stderr_thread = thread
        except BaseException:
            self.close()  # never leave a process behind
            raise
        pipe_log.info("%s: started %s (pid %d)", self.cam.name, self.description, proc.pid)

    def _drain_stderr(self, stream: IO[bytes], tail: collections.deque[str]) -> None:
        """Reads the producer's stderr until it closes: each line at DEBUG, the last ones kept.

        Draining it matters as much as logging it: a producer whose stderr pipe fills up blocks.
        The thread owns the stream and closes it at EOF (closing it under a blocked reader from
        another thread is not safe).
        """
        try:
            while True:
                raw = stream.readline(STDERR_LINE_MAX)
                if not raw:
                    return
                line = self._scrub(raw.decode("utf-8", "replace").rstrip())
                if line.strip():
                    with self._tail_lock:
                        tail.append(line)
                    pipe_log.debug("%s: %s: %s", self.cam.name, self._program, line)
        except (OSError, ValueError):  # closed under us: nothing more to read
            return
        finally:
            with contextlib.suppress(OSError):
                stream.close()

    def read(self) -> Captured | None:
        poller = self._poller
        if self._proc is None or poller is None:
            raise SourceError("pipe: source is not open")
        while True:
            if self.stop.is_set():
                return None
            if self._pending:
                data = self._pending.popleft()
                return Captured(h264=data) if self._codec == "h264" else Captured(jpeg=data)
            waited = time.monotonic() - self._last_frame
            if waited >= self.stall_timeout:
                raise self._stalled()
            # Short slices: the stop event is checked between them.
            timeout = min(POLL_SLICE, self.stall_timeout - waited)
            if not poller.poll(max(int(timeout * 1000), 1)):
                continue
            try:
                data = os.read(self._fd, READ_CHUNK)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise SourceError(f"pipe: {self._program}: cannot read its output: {exc.strerror or exc}") from None
            if not data:
                raise self._ended()
            frames = self._split(data)
            if frames:
                self._last_frame = time.monotonic()
                self._bytes_since_frame = 0
                self._pending.extend(frames)
            else:
                self._bytes_since_frame += len(data)

    def _set_codec(self, codec: str | None) -> None:
        self._codec = codec
        self.gives_h264 = codec == "h264"
        self.gives_jpeg = codec != "h264"

    def _split(self, data: bytes) -> list[bytes]:
        """The frames (JPEGs or access units) ``data`` completed."""
        if self._codec is None:
            self._sniffed += data
            codec = sniff(self._sniffed)
            if codec is None and len(self._sniffed) < SNIFF_MAX:
                return []
            self._set_codec(codec or "mjpeg")  # the JPEG splitter counts what follows as junk
            pipe_log.info("%s: %s writes %s", self.cam.name, self._program, "H.264" if codec == "h264" else "MJPEG")
            data, self._sniffed = self._sniffed, b""
        if self._codec != "h264":
            return self._splitter.feed(data)
        units = self._units.feed(data)
        # A short read: the producer paused after writing a whole unit. Unless it is a whole
        # number of pages: that is a producer's output buffer filling up mid-unit (ffmpeg's is
        # 32 KiB, stdio's 4 KiB), and flushing there would hand on a picture cut short.
        if len(data) < READ_CHUNK and len(data) % _WRITE_BUFFER_UNIT:
            unit = self._units.flush()
            if unit is not None:
                units.append(unit)
        return units

    def _stalled(self) -> SourceError:
        what = (
            f"it wrote {self._bytes_since_frame} bytes without a complete frame"
            if self._bytes_since_frame
            else "it wrote nothing"
        )
        with self._tail_lock:
            tail = list(self._stderr_tail)
        last = f"; last message: {tail[-1]}" if tail else ""
        return SourceError(f"pipe: {self._program} stalled: no frame for {self.stall_timeout:g} s ({what}){last}")

    def _ended(self) -> SourceError:
        """EOF on stdout: the producer exited (or closed its output). Says how and why."""
        proc = self._proc
        assert proc is not None
        # Give it a moment to finish exiting and its last words to reach the stderr reader.
        _exited_without_reaping(proc.pid, TERM_GRACE)
        how = _how_it_ended(proc.pid)
        if self._stderr_thread is not None:
            self._stderr_thread.join(0.5)
        with self._tail_lock:
            lines = list(self._stderr_tail)
        if lines:
            pipe_log.warning(
                "%s: %s (pid %d) %s; its last output:\n%s",
                self.cam.name,
                self._program,
                proc.pid,
                how,
                "\n".join("    " + line for line in lines),
            )
        else:
            pipe_log.warning(
                "%s: %s (pid %d) %s; it wrote nothing on stderr", self.cam.name, self._program, proc.pid, how
            )
        why = f": {lines[-1]}" if lines else " (nothing on stderr)"
        return SourceError(f"pipe: {self._program} {how}{why}")

    def close(self) -> None:
        proc, self._proc = self._proc, None
        self._poller = None
        self._pending.clear()
        if proc is None:
            return
        # Our end of the pipe first: a producer blocked writing gets EPIPE and ends by itself.
        if proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()
        self._fd = -1
        _stop_process_group(proc)
        # The stderr reader ends at EOF, which comes once every process of the group is gone.
        if self._stderr_thread is not None:
            self._stderr_thread.join(0.5)
            self._stderr_thread = None


def _stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the producer's group, SIGKILL to what is left after :data:`TERM_GRACE`, reap."""
    pid = proc.pid
    if proc.returncode is None:  # not reaped: its pid is still its group's id
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        if not _exited_without_reaping(pid, TERM_GRACE):
            pipe_log.warning("pipe: pid %d did not exit %g s after SIGTERM; killing it", pid, TERM_GRACE)
        # Also when the leader exited: whatever it started may still be running in its group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    try:
        proc.wait(TERM_GRACE)
    except subprocess.TimeoutExpired:  # in uninterruptible sleep (a hung driver): nothing more to do
        pipe_log.warning("pipe: pid %d survives SIGKILL", pid)
