"""``http://`` and ``https://`` cameras: an MJPEG stream passed through, a snapshot URL polled.

URLs are read with the standard library's ``http.client``. A ``multipart/x-mixed-replace`` answer
(another edge, mjpg-streamer, most IP cameras) is cut into its parts (``edge/formats/multipart.py``)
and passed through; an ``image/jpeg`` answer (a snapshot URL) is fetched again at the camera's
configured rate; anything else (MP4, HLS, ...) is handed to the FFmpeg reader (``url.py``), so
every URL FFmpeg can play still works. Credentials in the URL go into an ``Authorization: Basic``
header and are shown nowhere (see ``edge/redact.py``).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import http.client
import logging
import socket
import ssl
import threading
import time
from urllib.parse import unquote, urlsplit

from .. import __version__
from ..config import CameraConfig, SourceKind, SourceSpec
from ..formats.jpeg import MAX_FRAME_BYTES
from ..formats.multipart import MultipartSplitter, boundary_from_content_type
from ..redact import redact_source
from .base import READ_CHUNK, Captured, Source, SourceError, shorten
from .registry import register
from .url import UrlSource

http_log = logging.getLogger("edge.http")
CONNECT_TIMEOUT = 5.0


@register(SourceKind.HTTP)
class HttpSource(Source):
    """An ``http://`` or ``https://`` URL: MJPEG passed through, a snapshot URL polled, others via FFmpeg.

    ``mode`` after open(): ``multipart`` (an MJPEG stream, cut into its parts), ``snapshot`` (an
    ``image/jpeg`` URL, fetched again at the configured fps over a kept-alive connection) or
    ``ffmpeg`` (anything else: read through :class:`~edge.sources.url.UrlSource`).

    ``https://`` certificates are checked against the system's CAs (``ssl.create_default_context``);
    to trust a self-signed upstream, point ``SSL_CERT_FILE`` at its certificate (or a bundle).
    """

    gives_jpeg = True
    # A stream that is not read fills the socket buffers, and its first frames after waking
    # would be seconds old. (Snapshot polling has nothing to drain: it pauses, see open().)
    pauses_when_idle = False

    def __init__(self, cam: CameraConfig, stop: threading.Event, spec: SourceSpec) -> None:
        super().__init__(cam, stop, spec)
        url = str(spec.target)
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
        self._delegate: UrlSource | None = None
        self._watcher: threading.Thread | None = None

    @property
    def description(self) -> str:
        return shorten(redact_source(self.url))

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
        what = f"HTTP {resp.status} {shorten(resp.reason or '', 60)}".rstrip() + f" from {self.description}"
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
            return f"{what}: redirects to {shorten(location, 80)!r}; use that URL as the source"
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
        delegate = UrlSource(self.cam, self.stop, SourceSpec(SourceKind.URL, self.url, self.spec.text))
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
    return shorten(redact_source(text), 100)
