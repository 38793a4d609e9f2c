"""Sources that deliver an MJPEG byte stream: a command's stdout, an HTTP multipart stream.

Both hand the camera's own JPEG bytes to the capture thread without decoding them: on a
Raspberry Pi, decoding and re-encoding 720p at 30 fps costs most of a core for nothing, while
cutting the byte stream into frames (``edge/jpeg.py``) costs tens of microseconds a frame.
The capture thread still checks every frame (`check_frame`) before anyone sees it.

``pipe:COMMAND`` runs COMMAND (split like a shell would, but without a shell) and reads
concatenated JPEGs from its stdout. A Pi CSI camera is served as::

    pipe:rpicam-vid -t 0 --codec mjpeg --width 1280 --height 720 --framerate 30 -o -

and anything FFmpeg reads can be re-served without re-encoding when it already is MJPEG::

    pipe:ffmpeg -hide_banner -loglevel error -i SOMETHING -c copy -f mjpeg -

The producer runs in a process group of its own, so stopping it stops whatever it started
(``sh -c 'a | b'``), and it is never left behind: a producer that stalls is killed and started
again by the capture thread's reconnect, and so is one that exits.

``http://`` and ``https://`` URLs are read with the standard library's ``http.client``. A
``multipart/x-mixed-replace`` answer (another edge, mjpg-streamer, most IP cameras) is cut into
its parts and passed through; an ``image/jpeg`` answer (a snapshot URL) is fetched again at the
camera's configured rate; anything else (MP4, HLS, ...) is handed to OpenCV's FFmpeg reader, so
every URL FFmpeg can play still works. Credentials in the URL go into an ``Authorization:
Basic`` header and are shown nowhere (see ``edge/redact.py``).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import http.client
import logging
import os
import select
import shlex
import signal
import socket
import ssl
import subprocess
import threading
import time
from typing import IO
from urllib.parse import unquote, urlsplit

from . import __version__
from .config import CameraConfig
from .jpeg import MAX_FRAME_BYTES, JpegStreamSplitter, MultipartSplitter, boundary_from_content_type
from .redact import MASK, redact_source, source_secrets
from .sources import Captured, OpenCVSource, Source, SourceError

pipe_log = logging.getLogger("edge.pipe")
http_log = logging.getLogger("edge.http")

READ_CHUNK = 65536
# The capture thread's stop event is looked at at least this often while waiting for data, so
# shutdown (which waits 1.5 s for capture threads) is not held up by a quiet producer.
POLL_SLICE = 0.25
# A producer gets this long to exit after SIGTERM (ffmpeg and rpicam-vid need a few ms), then
# SIGKILL. Together with POLL_SLICE this stays within the shutdown's wait for capture threads.
TERM_GRACE = 1.0
STDERR_TAIL = 20  # lines of a producer's stderr kept to say why it died
STDERR_LINE_MAX = 1024  # a "line" without a newline (progress bars, binary junk) is cut here
DESCRIPTION_MAX = 120  # a long command line is shortened where it is shown (status, log, page)
CONNECT_TIMEOUT = 5.0


def _shorten(text: str, limit: int = DESCRIPTION_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _mask_literals(text: str, secrets: set[str]) -> str:
    # Longest first, so a secret that contains another one is masked whole.
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


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


class PipeSource(Source):
    """``pipe:COMMAND``: the command's stdout is a stream of concatenated JPEGs."""

    kind = "pipe"
    gives_jpeg = True
    # A producer that is not read blocks on a full pipe and then hands out stale frames.
    pauses_when_idle = False

    def __init__(self, cam: CameraConfig, stop: threading.Event, command: str) -> None:
        super().__init__(cam, stop)
        self.command = command
        # Secrets on the command line (an RTSP password given to ffmpeg) may be quoted back in
        # the producer's messages, which end up in the status as well as in the log.
        self._secrets = source_secrets(command)
        self._program = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd = -1
        self._poller: select.poll | None = None
        self._splitter = JpegStreamSplitter()
        self._discarded_told = 0
        self._pending: collections.deque[bytes] = collections.deque()
        self._last_frame = 0.0
        self._bytes_since_frame = 0
        self._stderr_thread: threading.Thread | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
        self._tail_lock = threading.Lock()  # the stderr reader appends while the capture thread reads

    @property
    def description(self) -> str:
        return _shorten(redact_source("pipe:" + self.command))

    @property
    def pid(self) -> int | None:
        """The running producer's process id (for the log and tests)."""
        return self._proc.pid if self._proc is not None else None

    def _scrub(self, text: str) -> str:
        return _mask_literals(redact_source(text), self._secrets | self.secrets)

    def take_discarded(self) -> int:
        """Frames the stream splitter threw away since the last call (cut short by the start of
        the next one, a broken header, too large): broken source frames that never reach the
        capture thread's frame check, so it can count them too."""
        discarded = self._splitter.discarded
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
                return Captured(jpeg=self._pending.popleft())
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
            frames = self._splitter.feed(data)
            if frames:
                self._last_frame = time.monotonic()
                self._bytes_since_frame = 0
                self._pending.extend(frames)
            else:
                self._bytes_since_frame += len(data)

    def _stalled(self) -> SourceError:
        what = (
            f"it wrote {self._bytes_since_frame} bytes without a complete JPEG"
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


class HttpSource(Source):
    """An ``http://`` or ``https://`` URL: MJPEG passed through, a snapshot URL polled, others via FFmpeg.

    ``mode`` after open(): ``multipart`` (an MJPEG stream, cut into its parts), ``snapshot`` (an
    ``image/jpeg`` URL, fetched again at the configured fps over a kept-alive connection) or
    ``ffmpeg`` (anything else: read through :class:`~edge.sources.OpenCVSource`).

    ``https://`` certificates are checked against the system's CAs (``ssl.create_default_context``);
    to trust a self-signed upstream, point ``SSL_CERT_FILE`` at its certificate (or a bundle).
    """

    kind = "http"
    gives_jpeg = True
    # A stream that is not read fills the socket buffers, and its first frames after waking
    # would be seconds old. (Snapshot polling has nothing to drain: it pauses, see open().)
    pauses_when_idle = False

    def __init__(self, cam: CameraConfig, stop: threading.Event, url: str) -> None:
        super().__init__(cam, stop)
        self.url = url  # as configured: what is shown (secret references unexpanded)
        self._url = url  # what is fetched: the references filled in at each open
        self.mode = ""
        self._lock = threading.Lock()  # guards _sock against the stop watcher
        self._conn: http.client.HTTPConnection | None = None
        # The connection's socket, kept here because http.client drops its own reference when a
        # response is close-delimited (the response then reads through a file made from it).
        self._sock: socket.socket | None = None
        self._resp: http.client.HTTPResponse | None = None
        self._splitter: MultipartSplitter | None = None
        self._discarded_told = 0
        self._pending: collections.deque[bytes] = collections.deque()
        self._last_frame = 0.0
        self._next_poll = 0.0
        self._delegate: OpenCVSource | None = None
        self._watcher: threading.Thread | None = None

    @property
    def description(self) -> str:
        return _shorten(redact_source(self.url))

    # -- opening -----------------------------------------------------------------------

    def _target(self) -> tuple[bool, str, int, str, dict[str, str]]:
        """(https, host, port, path and query, extra headers) from the URL."""
        try:
            parts = urlsplit(self._url)
            port = parts.port
        except ValueError as exc:
            raise SourceError(f"{self.description}: not a usable URL ({exc})") from None
        https = parts.scheme.lower() == "https"
        if not parts.hostname:
            raise SourceError(f"{self.description}: the URL has no host name")
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        headers = {
            "User-Agent": f"edge/{__version__}",
            "Accept": "multipart/x-mixed-replace, image/jpeg;q=0.9, */*;q=0.5",
        }
        if parts.username is not None or parts.password is not None:
            # In a header, not in the request line: the user info is never sent as part of the URL.
            user = unquote(parts.username or "")
            password = unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        return https, parts.hostname, port or (443 if https else 80), path, headers

    def _start_watcher(self) -> None:
        # http.client cannot wait in slices: a read that times out leaves the response unusable.
        # So reads block for up to stall_timeout, and this thread wakes them at shutdown by
        # shutting the socket down, which makes a blocked recv() return at once.
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch_stop, name=f"http-stop-{self.cam.name}", daemon=True)
            self._watcher.start()

    def _watch_stop(self) -> None:
        self.stop.wait()
        with self._lock:
            sock = self._sock
            if sock is not None:
                # socket.socket's own shutdown: SSLSocket.shutdown would also drop its SSL
                # object, under the feet of the thread reading through it.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _connect(self) -> http.client.HTTPConnection:
        https, host, port, _, _ = self._target()
        conn: http.client.HTTPConnection
        if https:
            conn = http.client.HTTPSConnection(
                host, port, timeout=CONNECT_TIMEOUT, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=CONNECT_TIMEOUT)
        self._conn = conn
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            raise SourceError(f"{self.description}: cannot connect: {_reason(exc)}") from None
        assert conn.sock is not None
        with self._lock:
            self._sock = conn.sock
        if self.stop.is_set():  # the watcher may have run before this connection existed
            raise SourceError(f"{self.description}: stopping")
        return conn

    def _get(self, reuse: bool) -> http.client.HTTPResponse:
        """GET the URL on the kept-alive connection (``reuse``) or a new one; returns a 200 response."""
        _, _, _, path, headers = self._target()
        conn = self._conn if reuse else None
        if conn is None or conn.sock is None:
            self._close_http()
            conn = self._connect()
        # A camera may take a moment to start a stream: the answer gets the connect timeout at least.
        head_timeout = max(CONNECT_TIMEOUT, self.stall_timeout)
        try:
            assert conn.sock is not None
            conn.sock.settimeout(head_timeout)
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            # From here on a read may wait as long as a stream may be quiet, and no longer.
            if self._sock is not None:
                self._sock.settimeout(self.stall_timeout)
        except http.client.InvalidURL:
            # Its message quotes the path, which may hold a token: say what, not where.
            raise SourceError(f"{self.description}: the path contains characters HTTP does not allow") from None
        except TimeoutError:
            raise SourceError(f"{self.description}: no answer for {head_timeout:g} s") from None
        except (OSError, http.client.HTTPException) as exc:
            if reuse and not self.stop.is_set():
                # The server closed the kept-alive connection between two polls: normal; once more.
                return self._get(reuse=False)
            raise SourceError(f"{self.description}: {_reason(exc)}") from None
        self._resp = resp
        if resp.status != 200:
            raise SourceError(self._status_problem(resp))
        return resp

    def _status_problem(self, resp: http.client.HTTPResponse) -> str:
        # The reason phrase is the server's text: kept short, as it ends up in the status and log.
        what = f"HTTP {resp.status} {_shorten(resp.reason or '', 60)}".rstrip() + f" from {self.description}"
        has_user = urlsplit(self._url).username is not None
        if resp.status == 401:
            if has_user:
                return f"{what}: check the user and password in the source URL"
            return f"{what}: it wants a user and password; put them in the URL (http://USER:PASSWORD@host/...)"
        if resp.status == 403:
            return f"{what}: access denied"
        if resp.status == 404:
            return f"{what}: check the path in the source URL"
        if 300 <= resp.status < 400:
            location = redact_source(resp.getheader("Location", "") or "")
            return f"{what}: redirects to {_shorten(location, 80)!r}; use that URL as the source"
        return what

    def open(self) -> None:
        self.close()
        self._url = self.expand(self.url)
        self._start_watcher()
        self.mode = ""
        self.pauses_when_idle = False
        self.gives_jpeg = True
        self.width, self.height, self.fps = self.cam.width, self.cam.height, self.cam.fps
        try:
            resp = self._get(reuse=False)
            ctype = (resp.getheader("Content-Type", "") or "").strip()
            media = ctype.split(";", 1)[0].strip().lower()
            if media.startswith("multipart/"):
                self._open_multipart(ctype)
            elif media in ("image/jpeg", "image/jpg", "image/pjpeg"):
                self._open_snapshot(resp)
            else:
                self._open_ffmpeg(media)
        except BaseException:
            self.close()
            raise

    def _open_multipart(self, ctype: str) -> None:
        self.mode = "multipart"
        # Without a boundary parameter the splitter learns it from the first "--token" line.
        boundary = boundary_from_content_type(ctype)
        try:
            self._splitter = MultipartSplitter(boundary)
        except ValueError:
            self._splitter = MultipartSplitter()
        self._discarded_told = 0
        self._last_frame = time.monotonic()
        http_log.info("%s: %s is an MJPEG stream: passing its frames through", self.cam.name, self.description)

    def _open_snapshot(self, resp: http.client.HTTPResponse) -> None:
        # A snapshot URL is polled rather than refused: many IP cameras offer nothing else, and
        # the cost is one request per frame on a kept-alive connection. Nothing needs draining
        # between polls, so an idle camera simply stops polling.
        self.mode = "snapshot"
        self.pauses_when_idle = True
        self._pending.append(self._body(resp))
        self._next_poll = time.monotonic() + 1.0 / self.fps
        http_log.info(
            "%s: %s is a single JPEG: fetching it %.3g times a second", self.cam.name, self.description, self.fps
        )

    def _open_ffmpeg(self, media: str) -> None:
        self._close_http()
        self.mode = "ffmpeg"
        what = f"Content-Type {media}" if media else "no Content-Type"
        http_log.info("%s: %s answers %s, not MJPEG: reading it through FFmpeg", self.cam.name, self.description, what)
        delegate = OpenCVSource(self.cam, self.stop, self.url, "url")
        try:
            delegate.open()
        except SourceError:
            raise SourceError(f"{self.description} answers {what}, not MJPEG, and FFmpeg cannot read it") from None
        self._delegate = delegate
        self.gives_jpeg = delegate.gives_jpeg
        self.width, self.height, self.fps = delegate.width, delegate.height, delegate.fps

    def _body(self, resp: http.client.HTTPResponse) -> bytes:
        """The whole body of a snapshot answer, at most :data:`MAX_FRAME_BYTES`."""
        if resp.length is not None and resp.length > MAX_FRAME_BYTES:
            raise SourceError(f"{self.description}: a {resp.length}-byte image is larger than any camera frame")
        body = bytearray()
        try:
            while chunk := resp.read1(READ_CHUNK):
                body += chunk
                if len(body) > MAX_FRAME_BYTES:
                    raise SourceError(f"{self.description}: the image is larger than {MAX_FRAME_BYTES} bytes")
        except TimeoutError:
            raise SourceError(f"{self.description}: no data for {self.stall_timeout:g} s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise SourceError(f"{self.description}: {_reason(exc)}") from None
        resp.close()  # the body is complete: the connection can carry the next request
        self._resp = None
        return bytes(body)

    # -- reading -----------------------------------------------------------------------

    def take_discarded(self) -> int:
        """Parts the multipart splitter threw away since the last call (too large, endless
        headers); see :meth:`PipeSource.take_discarded`."""
        if self._splitter is None:
            return 0
        discarded = self._splitter.discarded
        new, self._discarded_told = discarded - self._discarded_told, discarded
        return new

    def resume(self) -> None:
        self._next_poll = time.monotonic()
        if self._delegate is not None:
            self._delegate.resume()

    def read(self) -> Captured | None:
        if self._delegate is not None:
            return self._delegate.read()
        if self.mode == "snapshot":
            return self._read_snapshot()
        resp, splitter = self._resp, self._splitter
        if resp is None or splitter is None:
            raise SourceError(f"{self.description}: source is not open")
        while True:
            if self.stop.is_set():
                return None
            if self._pending:
                return Captured(jpeg=self._pending.popleft())
            if time.monotonic() - self._last_frame > self.stall_timeout:
                raise SourceError(f"{self.description} stalled: no frame for {self.stall_timeout:g} s")
            try:
                # read1: what has arrived, at most one recv(); de-chunks chunked transfer encoding.
                data = resp.read1(READ_CHUNK)
            except TimeoutError:
                raise SourceError(f"{self.description}: no data for {self.stall_timeout:g} s") from None
            except (OSError, ValueError, http.client.HTTPException) as exc:
                if self.stop.is_set():  # the watcher shut the socket down
                    return None
                raise SourceError(f"{self.description}: {_reason(exc)}") from None
            if not data:
                if self.stop.is_set():
                    return None
                raise SourceError(f"{self.description}: the server ended the stream")
            parts = splitter.feed(data)
            if parts:
                self._last_frame = time.monotonic()
                self._pending.extend(parts)

    def _read_snapshot(self) -> Captured | None:
        if self._pending:
            return Captured(jpeg=self._pending.popleft())
        # The configured rate, on a fixed grid; after a slow answer, the next request goes at once.
        delay = self._next_poll - time.monotonic()
        if delay > 0 and self.stop.wait(delay):
            return None
        if self.stop.is_set():
            return None
        self._next_poll = max(self._next_poll + 1.0 / self.fps, time.monotonic())
        resp = self._get(reuse=True)
        ctype = (resp.getheader("Content-Type", "") or "").split(";", 1)[0].strip().lower()
        if ctype not in ("image/jpeg", "image/jpg", "image/pjpeg"):
            raise SourceError(f"{self.description}: answered Content-Type {ctype or 'none'} instead of a JPEG")
        return Captured(jpeg=self._body(resp))

    # -- closing -----------------------------------------------------------------------

    def _close_http(self) -> None:
        resp, self._resp = self._resp, None
        conn, self._conn = self._conn, None
        with self._lock:
            self._sock = None
        if resp is not None:
            with contextlib.suppress(Exception):
                resp.close()
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        self._close_http()
        self._splitter = None
        self._pending.clear()
        delegate, self._delegate = self._delegate, None
        if delegate is not None:
            delegate.close()


def _reason(exc: BaseException) -> str:
    """A short, URL-free description of a connection error."""
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(exc, http.client.IncompleteRead):
        return "the server ended the stream in the middle of a chunk"
    if isinstance(exc, http.client.LineTooLong | http.client.BadStatusLine):
        return "the answer is not HTTP"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {exc.verify_message}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc) or type(exc).__name__
    return _shorten(redact_source(text), 100)
