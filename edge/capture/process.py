"""What the capture does with each frame a source hands over: pass the camera's own JPEG through
(checked, never decoded), or decode, transform and encode it, once per frame for every viewer.

The decision is made once per opening of the source, from the first frame (:meth:`decide`):
edge decodes and encodes only when the config asks for something the camera's JPEG is not
(another size, a rotation, a flip, ``passthrough: never``) or the source gives no JPEG at all.
``width``/``height`` in the config are the size asked of the camera, before rotation (§8 of
``docs/interface.md``): a
rotation of 90 or 270 degrees turns the served frame, so 640x480 becomes 480x640.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import cv2
import numpy as np

from ..config import CameraConfig, SourceKind
from ..formats.h264 import REASONS as H264_REASONS
from ..formats.jpeg import REASONS, InvalidFrame, check_frame, sof_dimensions
from ..sources import Captured, Source, SourceError

log = logging.getLogger("edge.capture")

INVALID_LOG_EVERY = 10.0  # seconds between log lines about dropped invalid frames
_ROTATIONS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
_FLIPS = {"horizontal": 1, "vertical": 0}


class FrameProcessor:
    """One camera's frame pipeline: check or decode, transform, encode; counts what it drops."""

    def __init__(self, cam: CameraConfig, on_encode: Callable[[float], None] | None = None) -> None:
        self.cam = cam
        # Until the first frame tells: the size asked of the camera, turned as it will be served.
        self.width, self.height = (cam.height, cam.width) if cam.rotate in (90, 270) else (cam.width, cam.height)
        self.passthrough = False
        self.processing = "not started"  # how frames are made, and why (status, log)
        # Every reason exists from the start: the metrics collector copies this dict from
        # another thread, and a dict must not grow while it is copied.
        self.frames_invalid: dict[str, int] = dict.fromkeys(sorted(REASONS | set(H264_REASONS)), 0)
        self._on_encode = on_encode
        self._expect: tuple[int, int] | None = None  # (width, height) every passed-through frame must have
        self._scaled: tuple[int, int] = (cam.width, cam.height)  # the picture's size before rotation
        self._decided = False
        self._last_invalid_log = 0.0

    @property
    def decided(self) -> bool:
        return self._decided

    def reset(self) -> None:
        """A new opening of the source: decide again from its first frame."""
        self._decided = False
        self._expect = None

    def frame(self, captured: Captured, source: Source) -> bytes | None:
        """The JPEG to publish for what the source handed over, or ``None`` to drop it."""
        if captured.jpeg is not None:
            try:
                jpeg = check_frame(captured.jpeg, self._expect)
            except InvalidFrame as exc:
                self.invalid(exc.reason, str(exc))
                return None
            if not self._decided:
                self.decide(source, sof_dimensions(jpeg))
            if self.passthrough:
                return jpeg
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                self.invalid("corrupt", "the decoder rejected it")
                return None
        else:
            image = captured.image
            assert image is not None
            if not self._decided:
                self.decide(source, (image.shape[1], image.shape[0]))
        return self.encode(self.transform(image))

    def decide(self, source: Source, size: tuple[int, int] | None) -> None:
        """Pass the camera's JPEG through, or decode and encode: once per opening of the source."""
        cam = self.cam
        width, height = size or (source.width, source.height)
        self._expect = (width, height)
        reasons: list[str] = []
        if cam.passthrough == "never":
            reasons.append("passthrough: never")
        elif not source.gives_jpeg:
            virtual = source.kind is SourceKind.VIRTUAL
            reasons.append("the virtual camera draws its frames" if virtual else "the source gives no JPEG")
            if cam.passthrough == "always":
                raise SourceError(f"passthrough: always, but {source.description} gives no JPEG; use passthrough: auto")
        if cam.size_given and (width, height) != (cam.width, cam.height):
            reasons.append(f"resizing {width}x{height} to {cam.width}x{cam.height}")
            if cam.passthrough == "always":
                raise SourceError(
                    f"passthrough: always, but the source gives {width}x{height}, not the configured "
                    f"{cam.width}x{cam.height}; change width/height or use passthrough: auto"
                )
        if cam.rotate:
            reasons.append(f"rotate: {cam.rotate}")
        if cam.flip != "none":
            reasons.append(f"flip: {cam.flip}")
        self.passthrough = not reasons
        self._scaled = (cam.width, cam.height) if cam.size_given else (width, height)
        w, h = self._scaled
        self.width, self.height = (h, w) if cam.rotate in (90, 270) else (w, h)
        self.processing = (
            "passthrough (the camera's own JPEG)" if self.passthrough else f"encoding ({'; '.join(reasons)})"
        )
        self._decided = True

    def decide_h264(self, source: Source, width: int, height: int, encoded: bool) -> None:
        """An H.264 camera (its stream's size from the SPS): its units go out as they are; JPEG is
        decoded and encoded only for JPEG viewers, with the configured size, rotation and flip.
        ``encoded``: the H.264 is edge's own (the virtual camera), made after those transforms."""
        cam = self.cam
        if encoded:
            # The pictures were transformed before encoding: the stream's size is the served one.
            self.width, self.height = width, height
            self.processing = "encoding to H.264 (the virtual camera draws its frames)"
        else:
            self._scaled = (cam.width, cam.height) if cam.size_given else (width, height)
            w, h = self._scaled
            self.width, self.height = (h, w) if cam.rotate in (90, 270) else (w, h)
            self.processing = (
                "H.264 passthrough (the camera's own H.264); JPEG decoded and encoded for JPEG viewers only"
            )
        self.passthrough = False
        self._expect = None
        self._decided = True

    def transform(self, image: np.ndarray) -> np.ndarray:
        """Scale to the configured size first (it is the camera's size, before rotation), then
        rotate and flip."""
        cam = self.cam
        if (image.shape[1], image.shape[0]) != self._scaled:
            image = cv2.resize(image, self._scaled, interpolation=cv2.INTER_AREA)
        if cam.rotate:
            image = cv2.rotate(image, _ROTATIONS[cam.rotate])
        if cam.flip != "none":
            image = cv2.flip(image, _FLIPS[cam.flip])
        return image

    def encode(self, image: np.ndarray) -> bytes | None:
        started = time.perf_counter()
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.cam.quality])
        elapsed = time.perf_counter() - started
        jpeg = buf.tobytes() if ok else b""
        # Never hand viewers a broken frame: every frame sent is a complete JPEG (§4).
        if not jpeg.startswith(b"\xff\xd8") or not jpeg.endswith(b"\xff\xd9"):
            log.warning("%s: dropped a frame the encoder could not turn into a JPEG", self.cam.name)
            return None
        if self._on_encode is not None:
            self._on_encode(elapsed)
        return jpeg

    def invalid(self, reason: str, detail: str, count: int = 1) -> None:
        self.frames_invalid[reason] = self.frames_invalid.get(reason, 0) + count
        now = time.monotonic()
        if now - self._last_invalid_log >= INVALID_LOG_EVERY:
            self._last_invalid_log = now
            total = sum(self.frames_invalid.values())
            log.warning("%s: dropped a broken frame (%s: %s); %d so far", self.cam.name, reason, detail, total)
