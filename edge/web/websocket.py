"""The WebSocket frame channel (§5 of ``docs/interface.md``): binary frames, per-connection settings, acks.

Frames go out from the camera's broadcast as complete server-to-client binary messages whose
payload is made here once per frame for every WebSocket viewer (:func:`payload`: 8 bytes of
sequence number, 8 of capture time, the JPEG); the message header around it is written by the
server adapter (``server/wire.py``). The connection's task only reads: settings and acks, and
answers to malformed messages. Floods are closed below it, frame by frame, before any parsing
(``server/wsguard.py``); the task credits back one ack per frame sent (:class:`FrameCounter`).
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Mapping
from typing import Any, Protocol

import anyio
from starlette import status
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..fanout.broadcast import Broadcast, Subscriber, fps_cap_error
from ..fanout.connections import Connection, StreamKind, Totals
from ..fanout.keyframes import UnitSubscriber
from ..fanout.slot import Frame, Payload
from ..fanout.wire import Wire, wire_of
from ..logs import client_log
from . import h264
from .camera import Camera
from .state import EdgeState
from .stream import GONE, Ending, Stream

log = logging.getLogger("edge.websocket")

CLOSE_TIMEOUT = 2.0
_PREFIX = struct.Struct(">Qd")
# The scope extension under which the server adapter offers the connection's frame counter.
FRAMES_EXTENSION = "edge.ws_frames"


class FrameCounter(Protocol):
    """The adapter's count of the client's frames (``server/wsguard.py``)."""

    def refund(self) -> None:
        """Uncount one frame: an ack the handler let through for free."""


def payload(frame: Frame) -> bytes:
    """A frame's binary message body (§5): sequence number, capture time, JPEG."""
    return _PREFIX.pack(frame.seq, frame.timestamp) + frame.jpeg


class PolicyViolation(Exception):
    """The client broke the protocol badly enough to be disconnected (close 1008)."""


#: ``?codec=`` values (§9) and the stream kind each one is.
CODECS = {"h264": StreamKind.WS_H264, "mp4": StreamKind.WS_MP4}


async def serve_websocket(websocket: WebSocket, state: EdgeState, camera: Camera | None) -> None:
    if camera is None:
        # Refuse the upgrade with a real 404 (closing before accept would read as 403).
        name = websocket.path_params.get("cam", "")
        await websocket.send_denial_response(JSONResponse({"error": f"unknown camera {name!r}"}, status_code=404))
        return
    codec = websocket.query_params.get("codec")
    kind = StreamKind.WEBSOCKET
    if codec is not None:
        if codec not in CODECS:
            message = f"codec must be h264 or mp4 (or absent, for JPEG), got {codec[:40]!r}"
            await websocket.send_denial_response(JSONResponse({"error": message}, status_code=400))
            return
        refusal = await h264.h264_refusal(camera)
        if refusal is not None:
            status_code = 400 if camera.capture.codec == "mjpeg" else 503
            await websocket.send_denial_response(JSONResponse({"error": refusal}, status_code=status_code))
            return
        kind = CODECS[codec]
    await WebSocketStream(state, camera, websocket, kind).serve()


class WebSocketStream(Stream):
    """A WebSocket viewer: JPEG frames (``kind`` websocket), or an H.264 camera's access units in
    Annex-B (ws-h264) or as fMP4 fragments (ws-mp4)."""

    kind = StreamKind.WEBSOCKET

    def __init__(
        self, state: EdgeState, camera: Camera, websocket: WebSocket, kind: StreamKind = StreamKind.WEBSOCKET
    ) -> None:
        super().__init__(state, camera, websocket.scope, websocket.receive, websocket.send)
        self.kind = kind
        self.ws = websocket
        self.conn: Connection | None = None
        self.sub: Subscriber | None = None
        self.last_free_ack = 0  # seq of the last ack let through without counting
        self.frames: FrameCounter | None = websocket.scope.get("extensions", {}).get(FRAMES_EXTENSION)

    async def refuse(self, message: str) -> None:
        await self.ws.accept()
        if self.state.registry.stopping:
            await self.ws.close(status.WS_1001_GOING_AWAY, "server shutting down")
            return
        # A close reason must fit in a control frame (123 bytes).
        await self.ws.close(status.WS_1013_TRY_AGAIN_LATER, message.encode()[:123].decode(errors="ignore"))

    async def start(self, conn: Connection) -> bool:
        self.conn = conn
        await self.ws.accept()
        capture = self.camera.capture
        hello = {
            "type": "hello",
            "camera": self.camera.name,
            "width": capture.width,
            "height": capture.height,
            "fps": self.camera.config.fps,
            "id": conn.id,
        }
        params = capture.units.params
        if self.kind is not StreamKind.WEBSOCKET and params is not None:
            hello.update(width=params.width, height=params.height, codec=params.codec)
            if self.kind is StreamKind.WS_H264:
                hello["format"] = "annexb"
            else:
                hello["mime"] = h264.mime(params.codec)
        await self.ws.send_text(json.dumps(hello))
        return True

    def payload(self) -> Payload:
        if self.kind is StreamKind.WS_H264:
            return h264.ws_h264
        if self.kind is StreamKind.WS_MP4:
            return h264.ws_mp4
        return payload

    def broadcast(self) -> Broadcast:
        return self.camera.broadcast if self.kind is StreamKind.WEBSOCKET else self.camera.units

    def subscriber(self, conn: Connection, wire: Wire, totals: Totals) -> Subscriber:
        if self.kind is StreamKind.WEBSOCKET:
            return super().subscriber(conn, wire, totals)
        init = wire.frame(h264.ws_mp4_init) if self.kind is StreamKind.WS_MP4 else None
        return UnitSubscriber(conn, wire, wire.frame(self.payload()), totals, init)

    async def watch(self, sub: Subscriber) -> Ending:
        self.sub = sub
        try:
            while True:
                received = await self.ws.receive()
                if received["type"] == "websocket.disconnect":
                    return GONE
                await self._handle(received)
        except PolicyViolation as exc:
            client_log.info("closing with 1008: %s", exc)
            return Ending("refused", str(exc))
        except (WebSocketDisconnect, OSError):
            return GONE

    async def finish(self, ending: Ending) -> None:
        if ending.why == "shutdown":
            await self._close(status.WS_1001_GOING_AWAY, "server shutting down")
        elif ending.why == "refused":
            await self._close(status.WS_1008_POLICY_VIOLATION, ending.reason)

    async def _handle(self, received: Mapping[str, Any]) -> None:
        if received.get("bytes") is not None:
            raise PolicyViolation("binary messages are not accepted")
        msg, error = parse_message(received.get("text") or "")
        if msg is not None and error is None and msg["type"] == "ack":
            self._free_ack(msg["seq"])
        if error is None and msg is not None and self.kind is not StreamKind.WEBSOCKET:
            # Skipping or holding back a delta frame would break every frame up to the next key.
            if msg["type"] == "settings":
                error = "settings (fps, ack) apply to JPEG streams only; an H.264 stream sends every frame"
        elif error is None and msg is not None:
            error = self._apply_settings(msg) if msg["type"] == "settings" else self._apply_ack(msg)
        if error:
            client_log.info("client message rejected: %s", error)
            await self.ws.send_text(json.dumps({"type": "error", "message": error}))

    def _free_ack(self, seq: int) -> None:
        """An ack of a frame sent since the last free ack does not count toward the flood limit,
        so a client gets one free ack per frame sent, and never a stock of them to flood with."""
        assert self.conn is not None
        if self.last_free_ack < seq <= self.conn.last_seq:
            self.last_free_ack = seq
            if self.frames is not None:
                self.frames.refund()

    def _apply_ack(self, msg: dict[str, Any]) -> str | None:
        conn, sub = self.conn, self.sub
        assert conn is not None and sub is not None
        if conn.ack_mode and msg["seq"] >= conn.last_seq and sub.held:
            sub.held = False
            self.camera.broadcast.kick(sub)
        return None

    def _apply_settings(self, msg: dict[str, Any]) -> str | None:
        conn, sub = self.conn, self.sub
        assert conn is not None and sub is not None
        unknown = set(msg) - {"type", "fps", "ack"}
        if unknown:
            return f"unknown settings field(s): {', '.join(sorted(unknown))}"
        fps, ack = msg.get("fps", conn.fps_cap), msg.get("ack", conn.ack_mode)
        if fps is not None:
            if isinstance(fps, bool) or not isinstance(fps, (int, float)):
                return "settings.fps must be a number"
            error = fps_cap_error(fps, self.camera.config.fps)
            if error:
                return f"settings.fps {error}"
        if not isinstance(ack, bool):
            return "settings.ack must be true or false"
        cap = float(fps) if fps is not None else None
        if cap != conn.fps_cap:
            sub.due = 0.0  # a new cap keeps its own grid, from the next frame sent
        conn.fps_cap = cap
        if ack and not conn.ack_mode:
            # Entering ack mode: the next frame waits for an ack of the last one sent.
            sub.held = conn.frames_sent > 0
        conn.ack_mode = ack
        if not ack and sub.held:
            sub.held = False
            self.camera.broadcast.kick(sub)
        log.debug("settings: fps=%s ack=%s", conn.fps_cap, ack)
        return None

    async def _close(self, code: int, reason: str) -> None:
        # A client that stopped reading can't take even a close frame: drop it instead.
        with anyio.move_on_after(CLOSE_TIMEOUT) as scope:
            try:
                await self.ws.close(code, reason)
            except (WebSocketDisconnect, OSError, RuntimeError):
                return
        if scope.cancelled_caught:
            wire_of(self.scope).abort()


def parse_message(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """Parse and shape-check a client message: ``(message, None)`` or ``(None|message, error)``."""
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):
        return None, "message is not valid JSON"
    if not isinstance(msg, dict):
        return None, "message must be a JSON object"
    kind = msg.get("type")
    if kind == "ack":
        seq = msg.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int):
            return msg, "ack.seq must be an integer"
        return msg, None
    if kind == "settings":
        return msg, None
    return msg, f"unknown message type {kind!r}; expected 'settings' or 'ack'"
