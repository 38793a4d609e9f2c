"""The capture pipeline (edge/capture/), in process: no server, no device.

`Capture` is driven with a scripted fake `Source` (given as its `source_factory`) and a real
`FrameSlot` subclass that records every publication, so a test
can say exactly which source frames were published, in which order, and which were not. Source
frames are made with cv2.imencode and broken by hand (segments parsed by tests/support/jpeg.py,
not by edge.formats.jpeg).

Every wait has a deadline; each test runs well under 2 s.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
import pytest

from edge.capture import Capture, State
from edge.config import CameraConfig, SourceKind
from edge.fanout.slot import Frame, FrameSlot
from edge.sources import Captured, Source
from tests.support.jpeg import segments, strip_dht

# ---------------------------------------------------------------------------------------------
# Frames


def picture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """An asymmetric picture (ramps plus a block in one corner): a rotation or flip of it is far
    from the original, which a symmetric pattern would not show."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = (xx * 255 // max(width - 1, 1)).astype(np.uint8)
    image[..., 1] = (yy * 255 // max(height - 1, 1)).astype(np.uint8)
    image[..., 2] = (seed * 37) % 256
    image[: height // 3, : width // 4] = (255, 255, 255)
    return image


@functools.cache
def jpeg_of(width: int = 160, height: int = 120, seed: int = 0) -> bytes:
    ok, buf = cv2.imencode(".jpg", picture(width, height, seed), [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return buf.tobytes()


def has_dht(data: bytes) -> bool:
    return any(marker == 0xC4 for marker, _, _ in segments(data))


def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "cv2 cannot decode the frame"
    return image


def mad(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, f"{a.shape} != {b.shape}"
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


def sos_offset(data: bytes) -> int:
    return next(start for marker, start, _ in segments(data) if marker == 0xDA)


GOOD = jpeg_of()

# ---------------------------------------------------------------------------------------------
# A scripted source and a recording slot

Step = tuple[float, Captured]  # (delay before the frame, the frame)


def jpegs(*frames: bytes, delay: float = 0.0) -> list[Step]:
    return [(delay, Captured(jpeg=f)) for f in frames]


class FakeSource(Source):
    """Hands out a scripted sequence of frames, then blocks until the capture stops."""

    kind = SourceKind.FILE  # a source that is no camera and no virtual one

    def __init__(self, script: Iterable[Step], *, gives_jpeg: bool = True, stall_timeout: float | None = None):
        unused = CameraConfig(name="unused")
        super().__init__(unused, threading.Event(), unused.spec)
        self.gives_jpeg = gives_jpeg
        self._script: Iterator[Step] = iter(script)
        self._stall = stall_timeout
        self.reads = 0
        self.opens = 0
        # Set when the capture asks for a frame after the last one: every scripted frame has
        # then been fully handled (checked, published or dropped).
        self.exhausted = threading.Event()

    @property
    def description(self) -> str:
        return "fake"

    def bind(self, cam: CameraConfig, stop: threading.Event) -> FakeSource:
        """The capture's source factory: this source, with the capture's camera and stop event."""
        Source.__init__(self, cam, stop, cam.spec)
        if self._stall is not None:
            self.stall_timeout = self._stall
        return self

    def open(self) -> None:
        self.opens += 1

    def read(self) -> Captured | None:
        step = next(self._script, None)
        if step is None:  # script over: wait to be stopped, like a quiet camera
            self.exhausted.set()
            self.stop.wait()
            return None
        delay, captured = step
        if delay > 0 and self.stop.wait(delay):
            return None
        self.reads += 1
        return captured


class RecordingSlot(FrameSlot):
    """A real FrameSlot that also remembers every frame published, with how many frames the
    source had handed out at that moment (publishing happens right after the read, in the
    capture thread, so that number identifies the source frame)."""

    def __init__(self, source: FakeSource) -> None:
        super().__init__()
        self.source = source
        self.published: list[tuple[Frame, int]] = []
        self._cond = threading.Condition()

    def publish(self, frame: Frame) -> None:
        with self._cond:
            self.published.append((frame, self.source.reads))
            self._cond.notify_all()
        super().publish(frame)

    def frames(self) -> list[Frame]:
        with self._cond:
            return [f for f, _ in self.published]

    def wait(self, predicate: Callable[[list[Frame]], bool], timeout: float, what: str) -> list[Frame]:
        with self._cond:
            ok = self._cond.wait_for(lambda: predicate([f for f, _ in self.published]), timeout)
            frames = [f for f, _ in self.published]
        assert ok, f"timed out after {timeout} s waiting for {what}; published {len(frames)} frame(s)"
        return frames


def cam_config(**kw: Any) -> CameraConfig:
    base = CameraConfig(name="t", source="fake", width=160, height=120, fps=30.0, quality=80, idle_after=0)
    return replace(base, **kw)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.005)


Runner = Callable[..., tuple[Capture, RecordingSlot, FakeSource]]


@pytest.fixture
def run() -> Iterator[Runner]:
    """start(cam, script, **source options) -> (capture, slot, source), the thread running."""
    started: list[Capture] = []

    def start(cam: CameraConfig, script: Iterable[Step], **source_kw: Any) -> tuple[Capture, RecordingSlot, FakeSource]:
        source = FakeSource(script, **source_kw)
        slot = RecordingSlot(source)
        capture = Capture(cam, slot, source_factory=source.bind)
        capture.start()
        started.append(capture)
        return capture, slot, source

    yield start
    for capture in started:
        capture.request_stop()
    for capture in started:
        capture.join(2.0)
        assert not capture.alive, "capture thread did not stop within 2 s"
        assert capture.state is State.STOPPED


# ---------------------------------------------------------------------------------------------
# Passthrough and Huffman tables


def test_camera_jpeg_is_published_byte_for_byte(run: Runner) -> None:
    capture, slot, _ = run(cam_config(), jpegs(GOOD, jpeg_of(seed=1)))
    frames = slot.wait(lambda fs: len(fs) == 2, 2, "two frames")
    assert [f.jpeg for f in frames] == [GOOD, jpeg_of(seed=1)]
    assert [f.seq for f in frames] == [1, 2]
    assert not any(f.placeholder for f in frames)
    assert capture.passthrough and capture.state is State.STREAMING
    assert capture.frames_captured == 2


def test_frame_without_huffman_tables_gets_the_standard_ones(run: Runner) -> None:
    # UVC cameras send frames without DHT; browsers reject them: the standard tables go in.
    bare = strip_dht(GOOD)
    assert not has_dht(bare)
    capture, slot, _ = run(cam_config(), jpegs(bare))
    (frame,) = slot.wait(lambda fs: len(fs) == 1, 2, "one frame")
    assert frame.jpeg != bare and has_dht(frame.jpeg)
    # Only the tables were added, just before the scan; the camera's bytes are otherwise untouched.
    sos = sos_offset(bare)
    assert frame.jpeg[:sos] == bare[:sos]
    assert frame.jpeg.endswith(bare[sos:])
    # cv2 encodes with the standard tables, so the repaired frame decodes to the same pixels.
    assert np.array_equal(decode(frame.jpeg), decode(GOOD))
    assert capture.passthrough
    assert sum(capture.frames_invalid.values()) == 0


def _glued(a: bytes, b: bytes) -> bytes:
    return a[: len(a) // 2] + b  # a frame cut in its scan with the next one glued on


BROKEN = {
    "no_eoi": GOOD[:-300],  # cut in the scan data
    "truncated": GOOD[: sos_offset(GOOD) - 20],  # cut inside the header
    "no_soi": GOOD[2:],
    "corrupt": _glued(GOOD, jpeg_of(seed=2)),
    "too_small": GOOD[:2] + bytes(40) + GOOD[-2:],
    "size_mismatch": jpeg_of(320, 240),  # the size changed mid-stream
}


@pytest.mark.parametrize(("reason", "bad"), BROKEN.items(), ids=BROKEN.keys())
def test_broken_frame_is_never_published_and_counted_by_reason(run: Runner, reason: str, bad: bytes) -> None:
    after = jpeg_of(seed=3)
    capture, slot, source = run(cam_config(), jpegs(GOOD, bad, after))
    assert source.exhausted.wait(2), "the capture did not read the whole script"
    frames = slot.frames()
    assert [f.jpeg for f in frames] == [GOOD, after], "a broken frame was published"
    assert [n for _, n in slot.published] == [1, 3]
    assert source.reads == 3
    assert capture.frames_invalid[reason] == 1, capture.frames_invalid
    assert sum(capture.frames_invalid.values()) == 1, capture.frames_invalid
    assert capture.frames_captured == 2
    assert capture.state is State.STREAMING


def test_no_valid_frame_for_stall_timeout_means_reconnecting_with_placeholder(run: Runner) -> None:
    def garbage() -> Iterator[Step]:
        yield 0.0, Captured(jpeg=GOOD)
        while True:
            yield 0.02, Captured(jpeg=BROKEN["no_eoi"])

    capture, slot, _ = run(cam_config(), garbage(), stall_timeout=0.3)
    frames = slot.wait(lambda fs: any(f.placeholder for f in fs), 1.5, "a placeholder frame")
    first_placeholder = next(i for i, f in enumerate(frames) if f.placeholder)
    assert first_placeholder >= 1 and frames[0].jpeg == GOOD
    assert capture.state is State.RECONNECTING
    assert capture.problem and "no valid frame" in capture.problem, capture.problem
    placeholder = frames[first_placeholder]
    assert placeholder.jpeg[:2] == b"\xff\xd8" and placeholder.jpeg[-2:] == b"\xff\xd9"
    assert decode(placeholder.jpeg).shape[:2] == (120, 160)
    assert capture.frames_invalid["no_eoi"] >= 10  # 0.3 s of broken frames every 20 ms


# ---------------------------------------------------------------------------------------------
# drop_same_frames

A, B = jpeg_of(seed=4), jpeg_of(seed=5)
SAME_CASES = [
    # (drop_same_frames, the source's frames, 1-based indexes of those published)
    (3, [A] * 12, [1, 5, 9]),  # uStreamer's rule: up to N skipped in a row, then one is sent
    (1, [A, A, A, B, B], [1, 3, 4]),
    (2, [A, A, B, A, A, A, A], [1, 3, 4, 7]),
    (0, [A] * 4, [1, 2, 3, 4]),  # off
]


@pytest.mark.parametrize(("limit", "script", "expected"), SAME_CASES, ids=["3x12", "1-AAABB", "2-AABAAAA", "off"])
def test_drop_same_frames(run: Runner, limit: int, script: list[bytes], expected: list[int]) -> None:
    capture, slot, source = run(cam_config(drop_same_frames=limit), jpegs(*script))
    assert source.exhausted.wait(2), "the capture did not read the whole script"
    frames = slot.frames()
    assert [n for _, n in slot.published] == expected
    assert [f.seq for f in frames] == list(range(1, len(expected) + 1))
    assert capture.frames_same_dropped == len(script) - len(expected)
    assert source.reads == len(script)


# ---------------------------------------------------------------------------------------------
# Passthrough or encode: the decision and what it produces


def test_passthrough_always_without_jpeg_source_is_a_clear_problem(run: Runner) -> None:
    image = picture(160, 120)
    script = [(0.02, Captured(image=image))] * 200
    capture, _, _ = run(cam_config(passthrough="always"), script, gives_jpeg=False)
    wait_until(lambda: capture.state is State.RECONNECTING, 1.5, "state reconnecting")
    assert capture.problem and "passthrough: always" in capture.problem, capture.problem
    assert capture.frames_captured == 0


def _rotated(code: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda img: cv2.rotate(img, code)


def _flipped(code: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda img: cv2.flip(img, code)


def _resized(w: int, h: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda img: cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def _same(img: np.ndarray) -> np.ndarray:
    return img


PT = "passthrough (the camera's own JPEG)"
DECISIONS = {
    # id: (camera settings, source gives JPEG, processing, published (w, h), expected picture)
    "auto": ({}, True, PT, (160, 120), _same),
    "size-given-equal": ({"size_given": True}, True, PT, (160, 120), _same),
    "never": ({"passthrough": "never"}, True, "encoding (passthrough: never)", (160, 120), _same),
    "rotate90": ({"rotate": 90}, True, "encoding (rotate: 90)", (120, 160), _rotated(cv2.ROTATE_90_CLOCKWISE)),
    "rotate180": ({"rotate": 180}, True, "encoding (rotate: 180)", (160, 120), _rotated(cv2.ROTATE_180)),
    "rotate270": (
        {"rotate": 270},
        True,
        "encoding (rotate: 270)",
        (120, 160),
        _rotated(cv2.ROTATE_90_COUNTERCLOCKWISE),
    ),
    "flip-h": ({"flip": "horizontal"}, True, "encoding (flip: horizontal)", (160, 120), _flipped(1)),
    "flip-v": ({"flip": "vertical"}, True, "encoding (flip: vertical)", (160, 120), _flipped(0)),
    "resize": (
        {"size_given": True, "width": 80, "height": 60},
        True,
        "encoding (resizing 160x120 to 80x60)",
        (80, 60),
        _resized(80, 60),
    ),
    "no-jpeg": ({}, False, "encoding (the source gives no JPEG)", (160, 120), _same),
}


@pytest.mark.parametrize(
    ("settings", "gives_jpeg", "processing", "size", "expected"), DECISIONS.values(), ids=DECISIONS.keys()
)
def test_processing_decision(
    run: Runner,
    caplog: pytest.LogCaptureFixture,
    settings: dict[str, Any],
    gives_jpeg: bool,
    processing: str,
    size: tuple[int, int],
    expected: Callable[[np.ndarray], np.ndarray],
) -> None:
    caplog.set_level(logging.INFO, logger="edge.capture")
    source_picture = decode(GOOD)
    step = Captured(jpeg=GOOD) if gives_jpeg else Captured(image=source_picture)
    capture, slot, _ = run(cam_config(**settings), [(0.0, step)], gives_jpeg=gives_jpeg)
    (frame,) = slot.wait(lambda fs: len(fs) == 1, 2, "one frame")
    assert capture.processing == processing
    assert capture.passthrough is (processing == PT)
    assert (capture.width, capture.height) == size  # what viewers receive
    if capture.passthrough:
        assert frame.jpeg == GOOD
    out = decode(frame.jpeg)
    assert (out.shape[1], out.shape[0]) == size
    want = expected(source_picture)
    assert mad(out, want) < 4, "the published picture is not the transformed source picture"
    if expected is not _same and want.shape == source_picture.shape:
        assert mad(out, source_picture) > 20, "the transform was not applied"
    line = f"t: streaming from fake ({size[0]}x{size[1]}): {processing}"
    assert line in caplog.text, caplog.text


# ---------------------------------------------------------------------------------------------
# Measured fps


def _sample_fps(capture: Capture, seconds: float) -> list[tuple[float, float]]:
    """(seconds since the first real frame, measured_fps) sampled every 5 ms for `seconds`."""
    wait_until(lambda: capture.frames_captured > 0, 2, "the first frame")
    t0 = time.monotonic()
    samples = []
    while (now := time.monotonic()) - t0 < seconds:
        samples.append((now - t0, capture.measured_fps()))
        time.sleep(0.005)
    return samples


def test_measured_fps_from_the_first_frame_of_a_steady_source(run: Runner) -> None:
    # The old rate ((n-1) / (last - first)) read 36-48 on a 30 fps camera in its first second.
    capture, _, _ = run(cam_config(), jpegs(*[GOOD] * 60, delay=1 / 30))
    samples = _sample_fps(capture, 1.15)
    worst = max(samples, key=lambda s: s[1])
    assert worst[1] <= 31.0, f"fps {worst[1]:.1f} at {worst[0]:.2f} s after the first frame"
    assert samples[-1][1] >= 25, f"fps {samples[-1][1]:.1f} after 1.3 s of a 30 fps source"


def test_measured_fps_bounds_a_burst_by_a_one_second_span(run: Runner) -> None:
    # 20 frames at once (a device flushing its queue) then 30 fps. The rate is never averaged
    # over less than a second, so a burst adds at most its own size (the old formula divided by
    # the burst's near-zero duration and read hundreds).
    capture, _, _ = run(cam_config(), jpegs(*[GOOD] * 20) + jpegs(*[GOOD] * 45, delay=1 / 30))
    samples = _sample_fps(capture, 1.15)
    worst = max(samples, key=lambda s: s[1])
    assert worst[1] <= 30 + 20 + 1.5, f"fps {worst[1]:.1f} at {worst[0]:.2f} s after the burst"
