"""One ``publish:`` URL: its thread, its queue of access units, its state (§10 of
docs/interface.md).

The camera's thread (or its encoder's) hands each unit to :meth:`Target.offer`, which only
appends to this target's queue and never waits. The target's own thread connects, takes units
from the queue, muxes and sends them. A slow or dead server fills only its own queue: past
:data:`MAX_QUEUE_SECONDS` of video (or :data:`MAX_QUEUE_BYTES`) the queue is emptied and the
target resumes at the next key frame, so its readers see a jump, never a broken picture, and
nobody else sees anything at all.

On failure it retries with a capped, jittered backoff (targets that failed together do not come
back in lock step). Its log says a failure once as a WARNING and a recovery as an INFO; a target
that keeps failing says so again at most every :data:`REMIND_EVERY` seconds.
"""

from __future__ import annotations

import collections
import enum
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from .. import references
from ..config.target import PublishTarget
from ..fanout.units import AccessUnit
from ..redact import MIN_MASKED_LENGTH, mask_literals, redact_source, remember_secrets, source_secrets
from .link import Link, PublishError, Stopped, describe
from .rtmp import RtmpSession
from .rtsp import RtspSession

log = logging.getLogger("edge.publish")

BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
STEADY = 10.0  # publishing this long means the next failure starts the backoff over
REMIND_EVERY = 60.0
MAX_QUEUE_SECONDS = 2.0
MAX_QUEUE_BYTES = 8 * 1024 * 1024
WAIT_TICK = 0.25


class TargetState(enum.StrEnum):
    CONNECTING = "connecting"
    PUBLISHING = "publishing"
    RETRYING = "retrying"


class Session(Protocol):
    def open(self, first: AccessUnit) -> None: ...
    def send(self, unit: AccessUnit) -> None: ...
    def poll(self) -> None: ...
    def close(self, abort: bool) -> None: ...


class Restart(Exception):
    """The stream's parameters changed: a new connection announces the new ones."""


class Target:
    def __init__(self, camera: str, url: str, fps: float, on_change: Callable[[], None] = lambda: None) -> None:
        self.camera = camera
        self.configured = url  # as written: may hold ${...} references, read at each connect
        self.shown = redact_source(url)
        self.fps = fps
        self._on_change = on_change
        self._lock = threading.Condition()
        self._queue: collections.deque[AccessUnit] = collections.deque()
        self._queued_bytes = 0
        self._max_units = max(15, round(fps * MAX_QUEUE_SECONDS))
        self._accepting = False
        self._need_key = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"publish-{camera}", daemon=True)
        self._secrets: set[str] = source_secrets(url)
        self.state = TargetState.CONNECTING
        self.error: str | None = None
        self.since = time.time()
        self.bytes_sent = 0
        self.units_sent = 0
        self.units_dropped = 0
        self.failures = 0
        self._failing_since: float | None = None
        self._warned_at = 0.0
        self._warned_error: str | None = None

    # -- from the camera ------------------------------------------------------------------

    @property
    def wants_units(self) -> bool:
        """Connecting or publishing (not waiting to retry): a JPEG camera encodes while one does."""
        return self._accepting

    def offer(self, unit: AccessUnit) -> None:
        """A unit for this target (camera or encoder thread): appended, never waited for."""
        with self._lock:
            if not self._accepting:
                return
            if self._need_key and not unit.key:
                self.units_dropped += 1
                return
            if len(self._queue) >= self._max_units or self._queued_bytes + len(unit.data) > MAX_QUEUE_BYTES:
                # The server is not keeping up: what is queued is too old to send; start again at
                # a key frame (this one, or the next).
                self.units_dropped += len(self._queue)
                self._queue.clear()
                self._queued_bytes = 0
                if not unit.key:
                    self._need_key = True
                    self.units_dropped += 1
                    return
            self._need_key = False
            self._queue.append(unit)
            self._queued_bytes += len(unit.data)
            self._lock.notify()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        return {
            "url": self.shown,
            "state": self.state.value,
            "error": self.error,
            "since": round(self.since, 3),
            "bytes_sent": self.bytes_sent,
            "units_sent": self.units_sent,
            "units_dropped": self.units_dropped,
            "failures": self.failures,
        }

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = BACKOFF_START
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self._publish()
                except Stopped:
                    return
                except Restart:
                    log.info("%s: the stream's parameters changed; reconnecting to %s", self.camera, self.shown)
                    continue
                except Exception as exc:  # every failure is a retry; what it was goes to status and the log
                    if self._stop.is_set():
                        return
                    if time.monotonic() - started > STEADY and self.state is TargetState.PUBLISHING:
                        backoff = BACKOFF_START
                    if not isinstance(exc, PublishError | OSError):
                        log.debug("%s: publishing to %s failed unexpectedly", self.camera, self.shown, exc_info=True)
                    delay = backoff * random.uniform(0.5, 1.0)
                    self._failed(describe(exc), delay)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    if self._stop.wait(delay):
                        return
        finally:
            self._set_accepting(False)

    def _publish(self) -> None:
        expanded = references.expand(self.configured)
        if expanded.secrets:
            remember_secrets(expanded.secrets)
            self._secrets.update(s for s in expanded.secrets if s)
        try:
            target = PublishTarget.parse(expanded.text)
        except ValueError as exc:
            raise PublishError(f"the URL {exc}") from None
        if target.password:
            self._secrets.add(target.password)
        self._set_state(TargetState.CONNECTING)
        self._set_accepting(True)
        first = self._first()
        link = Link(target.host, target.port, target.tls, self._stop)
        session: Session = (RtmpSession if target.protocol == "rtmp" else RtspSession)(target, link, self.fps)
        abort = True
        try:
            session.open(first)
            self._send(session, link, first)
            while True:
                unit = self._take()
                session.poll()
                if unit is None:
                    continue
                if unit.key and unit.params != first.params:
                    with self._lock:  # the new parameters' key frame starts the next connection
                        self._queue.appendleft(unit)
                        self._queued_bytes += len(unit.data)
                    abort = False
                    raise Restart
                self._send(session, link, unit)
        except Stopped:
            abort = False
            raise
        finally:
            session.close(abort)
            if abort:
                self._set_accepting(False)

    def _send(self, session: Session, link: Link, unit: AccessUnit) -> None:
        before = link.sent
        session.send(unit)
        self.bytes_sent += link.sent - before
        self.units_sent += 1
        if self.state is not TargetState.PUBLISHING:
            self._published()

    def _first(self) -> AccessUnit:
        """The key frame a connection starts with (the camera may be down: waits for it)."""
        while True:
            unit = self._take()
            if unit is not None:
                return unit

    def _take(self) -> AccessUnit | None:
        """The next queued unit, or None after a tick without one (so that the session reads
        what the server sent)."""
        with self._lock:
            if not self._queue:
                if self._stop.is_set():
                    raise Stopped
                self._lock.wait(WAIT_TICK)
                if self._stop.is_set():
                    raise Stopped
                if not self._queue:
                    return None
            unit = self._queue.popleft()
            self._queued_bytes -= len(unit.data)
            return unit

    def _set_accepting(self, accepting: bool) -> None:
        with self._lock:
            if accepting == self._accepting:
                return
            self._accepting = accepting
            if not accepting:
                self._queue.clear()
                self._queued_bytes = 0
            self._need_key = True
        self._on_change()

    # -- state, status and the log --------------------------------------------------------------

    def _set_state(self, state: TargetState) -> None:
        if state is not self.state:
            self.state = state
            self.since = time.time()

    def _published(self) -> None:
        self._set_state(TargetState.PUBLISHING)
        self.error = None
        if self._failing_since is not None:
            down = time.monotonic() - self._failing_since
            log.info("%s: publishing to %s again (it failed for %.0f s)", self.camera, self.shown, down)
        else:
            log.info("%s: publishing to %s", self.camera, self.shown)
        self._failing_since = None
        self._warned_error = None

    def _failed(self, error: str, delay: float) -> None:
        error = self._scrub(error)
        was_publishing = self.state is TargetState.PUBLISHING
        self.failures += 1
        self.error = error
        self._set_state(TargetState.RETRYING)
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if was_publishing:
            message = "%s: publishing to %s stopped: %s; retrying in %.0f s"
        elif self._warned_error is None:
            message = "%s: cannot publish to %s: %s; retrying in %.0f s"
        elif now - self._warned_at >= REMIND_EVERY:
            message = "%s: still cannot publish to %s: %s; retrying in %.0f s"
        else:
            log.debug("%s: publishing to %s failed again: %s", self.camera, self.shown, error)
            return
        log.warning(message, self.camera, self.shown, error, delay)
        self._warned_at, self._warned_error = now, error

    def _scrub(self, text: str) -> str:
        return mask_literals(text, (s for s in self._secrets if len(s) >= MIN_MASKED_LENGTH))
