"""One thread per camera: read, check or encode once, publish; idle without viewers; reconnect.

The thread is the only place that touches the source and the encoder, so viewers cost
the camera nothing: a hundred viewers and none cost the same capture work. What happens to a
frame between the source and the slot (passed through, or decoded, transformed and encoded)
is ``process.py``'s.

With nobody watching (no stream, no snapshot for ``idle_after`` seconds) the camera idles:
the virtual camera and files stop producing, devices, pipes and streams are still drained
(a device that is not read stalls, and its first frame after waking would be stale) but
their frames are not checked, encoded or published. A viewer or a snapshot wakes it.

When the source fails or stalls the thread keeps publishing a placeholder, so streams stay
open and viewers see "NO SIGNAL" instead of a frozen picture or a dropped connection.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import logging
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from ..config import CameraConfig, SourceKind
from ..fanout.slot import Frame, FrameSlot
from ..fanout.units import AccessUnit, UnitFeed
from ..formats.h264 import AccessUnitChecker, H264Error
from ..redact import redact_source
from ..sources import Captured, Source, SourceError, make_placeholder, make_source, resolve_auto
from .encoder import H264Encoder
from .process import FrameProcessor
from .to_h264 import JpegToH264
from .transcode import Transcoder

log = logging.getLogger("edge.capture")

BACKOFF_START = 1.0
BACKOFF_MAX = 10.0
PLACEHOLDER_PERIOD = 1.0
FPS_WINDOW = 2.0  # seconds of frames the measured rate is averaged over
IDLE_CHECK = 1.0  # an idle paused source looks at its stop/wake event at least this often
# An H.264 camera keeps decoding for JPEG this long after the last snapshot, so a client that
# polls snapshots does not pay for a decoder start (and a GOP decode) every time.
JPEG_LINGER = 10.0
SourceFactory = Callable[[CameraConfig, threading.Event], Source]


class State(enum.StrEnum):
    STARTING = "starting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"


class Capture:
    """Owns a camera's source and its capture thread; publishes into ``slot``."""

    def __init__(
        self,
        cam: CameraConfig,
        slot: FrameSlot | None = None,
        on_encode: Callable[[float], None] | None = None,
        source_factory: SourceFactory | None = None,
    ) -> None:
        self.cam = cam
        self.slot = slot or FrameSlot()
        self.state = State.STARTING
        self.frames_captured = 0
        self.frames_same_dropped = 0
        self.last_real_frame = 0.0  # time.monotonic() of the last real (not placeholder) frame
        self.frames_since_open = 0
        self.process = FrameProcessor(cam, on_encode)
        self.problem: str | None = None  # why the source is down, or why `auto` fell back
        self.idle = False
        self.viewers = 0  # open streams; changed on the event loop, read here
        self._last_demand = time.monotonic()
        self._make_source = source_factory
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by demand() and request_stop()
        self._source: Source | None = None
        self._last_jpeg = b""
        self._same_run = 0
        self._recent: collections.deque[float] = collections.deque(maxlen=256)
        self._streaming_since = 0.0
        # H.264 (§9 of docs/interface.md): every access unit goes to `units`; JPEG for an H.264
        # camera is made by the transcoder, only while a JPEG viewer or a snapshot wants it.
        self.units = UnitFeed(cam.fps)
        self.checker = AccessUnitChecker()
        self.encoder = H264Encoder(cam.fps) if cam.codec == "h264" and cam.spec.kind is SourceKind.VIRTUAL else None
        self.codec: str | None = "h264" if self.encoder is not None else None  # known once the source delivers
        self.transcoder = Transcoder(cam.name, self._publish_decoded)
        self.jpeg_viewers = 0
        self._jpeg_demand_at = -JPEG_LINGER  # nobody has asked for JPEG yet
        self._gop: list[AccessUnit] = []  # capture side: what the transcoder starts from
        # Publishing (§10): every unit also goes to each sink, from this thread (an H.264 camera)
        # or from the encoder's (a JPEG camera, encoded only while `h264_wanted`). Sinks only
        # queue; a publishing camera never idles.
        self.unit_sinks: list[Callable[[AccessUnit], None]] = []
        self.publishing = False
        self.h264_wanted = False
        self.h264_out = JpegToH264(cam.name, cam.fps, cam.h264_encoder, self._to_sinks)
        self._thread = threading.Thread(target=self._run, name=f"capture-{cam.name}", daemon=True)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.transcoder.stop()
        self.transcoder.join(timeout)
        self.h264_out.stop()
        self.h264_out.join(timeout)
        if self._thread.is_alive():
            # OpenCV reads cannot be interrupted; the thread is a daemon and ends with the process.
            log.warning("%s: capture thread still busy in its source after shutdown began", self.cam.name)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- demand: what keeps the camera awake ----------------------------------------------

    def demand(self, jpeg: bool = True) -> None:
        """Someone wants a frame (a snapshot, a new stream): stay awake, or wake up now. ``jpeg``:
        a JPEG frame (an H.264 camera then decodes for a while)."""
        now = time.monotonic()
        self._last_demand = now
        if jpeg:
            self._jpeg_demand_at = now
        self._wake.set()

    @contextlib.contextmanager
    def watching(self, jpeg: bool = True) -> Iterator[None]:
        """Keeps the camera awake while a stream is open (called on the event loop); ``jpeg``:
        the stream sends JPEG."""
        self.viewers += 1
        self.jpeg_viewers += jpeg
        self.demand(jpeg)
        try:
            yield
        finally:
            self.viewers -= 1
            self.jpeg_viewers -= jpeg
            now = time.monotonic()
            self._last_demand = now  # idle_after counts from the last viewer leaving
            if jpeg:
                self._jpeg_demand_at = now

    @property
    def jpeg_stale(self) -> bool:
        """The JPEG slot's frame predates the request: the camera idled, or it is an H.264 camera
        that was not decoding for JPEG viewers."""
        return self.idle or (self.codec == "h264" and not self.transcoder.running)

    def _jpeg_wanted(self) -> bool:
        return self.jpeg_viewers > 0 or time.monotonic() - self._jpeg_demand_at < JPEG_LINGER

    def want_h264(self, wanted: bool) -> None:
        """A publish target wants (or no longer wants) this camera's H.264: a JPEG camera encodes
        while one does (started with the next frame). Any thread."""
        self.h264_wanted = wanted
        if not wanted:
            self.h264_out.stop()

    def _to_sinks(self, unit: AccessUnit) -> None:
        for sink in self.unit_sinks:
            sink(unit)

    def _idle_now(self) -> bool:
        if self.publishing:
            return False
        after = self.cam.idle_after
        return after > 0 and self.viewers == 0 and time.monotonic() - self._last_demand > after

    # -- what status and readiness report --------------------------------------------

    @property
    def width(self) -> int:
        return self.process.width

    @property
    def height(self) -> int:
        return self.process.height

    @property
    def passthrough(self) -> bool:
        return self.process.passthrough

    @property
    def processing(self) -> str:
        return self.process.processing

    @property
    def frames_invalid(self) -> dict[str, int]:
        return self.process.frames_invalid

    @property
    def source_description(self) -> str:
        if self._source is not None:
            return self._source.description
        return redact_source(self.cam.spec.text)

    @property
    def source_kind(self) -> str:
        return str(self._source.kind) if self._source is not None else "unknown"

    def measured_fps(self) -> float:
        """Real frames per second over the last :data:`FPS_WINDOW` seconds (0 when none arrive).

        The intervals between those frames over the time they span, but never over less than
        a second (or the time since streaming started, if longer): frames that arrive in a
        burst (a source catching up at start-up, a device flushing its queue) must not read as
        a higher rate.
        """
        if self.idle and self.codec != "h264":  # an idle H.264 camera still takes every unit
            return 0.0
        now = time.monotonic()
        recent = [t for t in list(self._recent) if now - t <= FPS_WINDOW]
        if len(recent) < 2:
            return 0.0
        floor = min(FPS_WINDOW, max(now - self._streaming_since, 1.0))
        return (len(recent) - 1) / max(recent[-1] - recent[0], floor)

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        backoff = BACKOFF_START
        try:
            while not self._stop.is_set():
                try:
                    self._open_source()
                    self._stream()  # returns only when asked to stop
                    break
                except SourceError as exc:
                    if self.frames_since_open:  # it worked for a while: start the backoff over
                        backoff = BACKOFF_START
                    # Said before closing: stopping a producer that ignores SIGTERM takes a second.
                    self._enter_reconnecting(str(exc), backoff)
                    self._close_source()
                    self._wait_with_placeholder(backoff, str(exc))
                    backoff = min(backoff * 2, BACKOFF_MAX)
                except Exception:  # a bug or an OpenCV surprise must not kill the camera for good
                    log.exception("%s: capture failed unexpectedly; retrying", self.cam.name)
                    self._close_source()
                    self.state = State.RECONNECTING
                    self.problem = "internal error (see the log)"
                    self._wait_with_placeholder(backoff, "internal error")
                    backoff = min(backoff * 2, BACKOFF_MAX)
        finally:
            self._close_source()
            self.state = State.STOPPED
            log.info("%s: capture stopped", self.cam.name)

    def _open_source(self) -> None:
        self.frames_since_open = 0
        self.process.reset()
        self.checker.reset()
        self.units.restart()
        self._gop = []
        if self._source is None:
            if self._make_source is not None:
                self._source = self._make_source(self.cam, self._stop)
            elif self.cam.spec.kind is SourceKind.AUTO:
                self._source, self.problem = resolve_auto(self.cam, self._stop)  # opens it
                return
            else:
                self._source = make_source(self.cam, self._stop)
        self._source.open()

    def _stream(self) -> None:
        """Read and publish until the source fails (raises) or stop is asked (returns)."""
        source = self._source
        assert source is not None
        last_good = time.monotonic()
        while True:
            captured: Captured | None = None
            still_idle = False
            if self._idle_now():
                if not self.idle:
                    log.info("%s: idle: no viewer for %g s; not processing frames", self.cam.name, self.cam.idle_after)
                    self.idle = True
                if source.pauses_when_idle:
                    if self._gop:  # what a viewer would start from is stale after the pause
                        self._gop = []
                        self.units.restart()
                    self._wake.wait(IDLE_CHECK)
                    self._wake.clear()
                    if self._stop.is_set():
                        return
                    continue
                captured = source.read()  # drained: a device that is not read stalls
                if captured is None or self._stop.is_set():
                    return
                last_good = time.monotonic()
                if self._idle_now():
                    if captured.h264 is None:
                        source.take_discarded()
                        continue
                    # An H.264 unit is checked and handed on even now: the next viewer starts
                    # from the GOP cache, which needs every unit since the last key frame.
                    still_idle = True
                # Otherwise a viewer arrived while this frame was on its way: it is the fresh one to use.
            if self.idle and not still_idle:
                self.idle = False
                log.info("%s: a viewer arrived; processing frames again", self.cam.name)
                source.resume()
                if self.encoder is not None:
                    self.encoder.request_key()  # its viewers start from a key frame
                # A paused source delivered nothing while idle: that was no stall. Without this,
                # the first broken frame after waking would restart the source.
                last_good = time.monotonic()
            if captured is None:
                captured = source.read()
                if captured is None or self._stop.is_set():
                    return
            discarded = source.take_discarded()
            if discarded:
                self.process.invalid("truncated", "cut short in the source's byte stream", discarded)
            if captured.h264 is not None or (self.encoder is not None and captured.image is not None):
                jpeg = None
                good = self._h264(captured, source)
            else:
                jpeg = self.process.frame(captured, source)
                good = jpeg is not None
                if good and self.codec != "mjpeg":
                    self.codec = "mjpeg"
            now = time.monotonic()
            if not good:
                if now - last_good > source.stall_timeout:
                    raise SourceError(f"no valid frame from {source.description} for {source.stall_timeout:g} s")
                continue
            last_good = now
            if self.state is not State.STREAMING:
                log.info(
                    "%s: streaming from %s (%dx%d): %s",
                    self.cam.name,
                    source.description,
                    self.width,
                    self.height,
                    self.processing,
                )
                self.state = State.STREAMING
                self._streaming_since = now
                if self.cam.spec.kind is not SourceKind.AUTO:
                    self.problem = None
            self._count_real(now)
            if jpeg is not None and not self._repeats(jpeg):
                self._publish(jpeg, placeholder=False)
                if self.h264_wanted:
                    self.h264_out.start()
                    self.h264_out.offer(jpeg, time.time())

    def _h264(self, captured: Captured, source: Source) -> bool:
        """Check an access unit (or encode a picture into one) and hand it on; False: dropped."""
        units: list[tuple[bytes, bool]] = []
        if captured.h264 is not None:
            units.append((captured.h264, False))
        else:
            assert self.encoder is not None and captured.image is not None
            image = captured.image
            if not self.process.decided:
                self.process.decide(source, (image.shape[1], image.shape[0]))
            units = self.encoder.encode(self.process.transform(image))
        good = False
        for data, _ in units:
            try:
                checked = self.checker.check(data)
            except H264Error as exc:
                self.process.invalid(exc.reason, str(exc))
                continue
            params = checked.params
            if self.codec != "h264" or checked.changed or not self.process.decided:
                self.codec = "h264"
                self.process.decide_h264(source, params.width, params.height, encoded=self.encoder is not None)
            unit = self.units.make(checked.data, checked.key, params)
            if unit.key:
                self._gop = [unit]
            elif self._gop and len(self._gop) < 4 * max(1, round(self.cam.fps)) * 10:
                self._gop.append(unit)
            else:
                self._gop = []
            self.units.publish(unit)
            self._to_sinks(unit)
            if self._jpeg_wanted():
                if not self.transcoder.running:
                    self.transcoder.start(self._gop)
                else:
                    self.transcoder.offer(unit)
            elif self.transcoder.running:
                self.transcoder.stop()
            good = True
        return good

    def _publish_decoded(self, image: np.ndarray) -> None:
        """A picture the transcoder decoded, as JPEG for the JPEG viewers (transcoder thread)."""
        if self.encoder is None:  # edge's own H.264 was made from transformed pictures already
            image = self.process.transform(image)
        jpeg = self.process.encode(image)
        if jpeg is not None:
            self._publish(jpeg, placeholder=False)

    def _repeats(self, jpeg: bytes) -> bool:
        """``drop_same_frames``: the frame equals the last one sent, and fewer than N were skipped."""
        limit = self.cam.drop_same_frames
        if not limit:
            return False
        if jpeg == self._last_jpeg and self._same_run < limit:
            self._same_run += 1
            self.frames_same_dropped += 1
            return True
        self._same_run = 0
        self._last_jpeg = jpeg
        return False

    def _count_real(self, now: float) -> None:
        self.frames_captured += 1
        self.frames_since_open += 1
        self.last_real_frame = now
        self._recent.append(now)

    def _publish(self, jpeg: bytes, placeholder: bool) -> None:
        self.slot.publish(Frame(self.slot.next_seq(), time.time(), jpeg, placeholder))

    def _enter_reconnecting(self, reason: str, backoff: float) -> None:
        self.problem = reason
        if self.state is not State.RECONNECTING:
            log.warning("%s: source down (%s); showing placeholder, retrying", self.cam.name, reason)
        else:
            log.info("%s: still down (%s); next try in %.0f s", self.cam.name, reason, backoff)
        self.state = State.RECONNECTING

    def _wait_with_placeholder(self, seconds: float, reason: str) -> None:
        """Publish the placeholder about once a second until the next attempt is due (not
        while idle: nobody would see it, and a viewer's arrival wakes this wait)."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            if not self._idle_now():
                image = make_placeholder(self.width, self.height, self.cam.name, reason)
                jpeg = self.process.encode(image)
                if jpeg is not None:
                    self._publish(jpeg, placeholder=True)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(min(PLACEHOLDER_PERIOD, remaining))
            self._wake.clear()

    def _close_source(self) -> None:
        if self._source is not None:
            try:
                self._source.close()
            except Exception:  # releasing a vanished device can fail; it is gone either way
                log.debug("%s: error while releasing the source", self.cam.name, exc_info=True)
