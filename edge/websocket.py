"""The WebSocket frame channel (contract §5): binary frames, per-connection settings, flow control.

Two tasks serve a connection: the pump sends frames (newest only, after the transport
drained, and in ack mode only after the client acknowledged the previous one); the reader
applies settings and acks, answers malformed messages, and polices floods.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import anyio
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from .connections import Connection, address_of
from .logs import client_log
from .pump import FramePump, Stalled, flow_of, fps_cap_error
from .state import Camera, EdgeState

log = logging.getLogger("edge.websocket")

FLOOD_LIMIT = 100  # client messages per second, not counting one ack per frame sent
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
CLOSE_GOING_AWAY = 1001
CLOSE_TIMEOUT = 2.0


class PolicyViolation(Exception):
    """The client broke the protocol badly enough to be disconnected (close 1008)."""


async def serve_websocket(websocket: WebSocket, state: EdgeState, camera: Camera | None) -> None:
    if camera is None:
        # Refuse the upgrade with a real 404 (closing before accept would read as 403).
        name = websocket.path_params.get("cam", "")
        await websocket.send_denial_response(JSONResponse({"error": f"unknown camera {name!r}"}, status_code=404))
        return
    await websocket.accept()
    registry = state.registry
    if registry.stopping:
        await websocket.close(CLOSE_GOING_AWAY, "server shutting down")
        return
    refusal = registry.refusal(address_of(websocket.scope))
    if refusal is not None:
        # A close reason must fit in a control frame (123 bytes).
        await websocket.close(CLOSE_TRY_AGAIN, refusal.encode()[:123].decode(errors="ignore"))
        return
    with registry.open("websocket", camera.name, websocket.scope) as conn, camera.watch(conn):
        session = Session(websocket, state, camera, conn)
        try:
            await session.run()
        except (WebSocketDisconnect, OSError):
            pass  # the client left; the registry entry goes with this block


class Session:
    def __init__(self, websocket: WebSocket, state: EdgeState, camera: Camera, conn: Connection) -> None:
        self.ws = websocket
        self.camera = camera
        self.conn = conn
        self.flow = flow_of(websocket.scope)
        self.pump = FramePump(
            conn,
            camera.capture.slot,
            camera.config.fps,
            self.flow,
            state.registry.totals_for(camera.name, "websocket"),
            state.metrics.frame_age.labels(camera.name, "websocket"),
            state.config.server.stall_timeout,
        )
        self.acked = asyncio.Event()  # set when the client may get the next frame in ack mode
        self.acked.set()
        self.last_free_ack = 0  # seq of the last ack let through without counting
        self.window_start = 0.0
        self.window_count = 0
        self.close_with: tuple[int, str] | None = None  # the reader's verdict: (0, "") = client gone

    async def run(self) -> None:
        capture = self.camera.capture
        hello = {
            "type": "hello",
            "camera": self.camera.name,
            "width": capture.width,
            "height": capture.height,
            "fps": self.camera.config.fps,
            "id": self.conn.id,
        }
        await self.ws.send_text(json.dumps(hello))
        async with anyio.create_task_group() as tg:
            with self.conn.pumping:
                tg.start_soon(self._read_until_close)
                await self._pump()
            tg.cancel_scope.cancel()
        # The pump stopped: shutdown asked (no verdict yet), or the reader gave one.
        code, reason = self.close_with or (CLOSE_GOING_AWAY, "server shutting down")
        if code:
            await self._close(code, reason)

    async def _pump(self) -> None:
        try:
            while True:
                if self.conn.ack_mode:
                    await self.acked.wait()
                frame = await self.pump.next()
                payload = frame.ws_payload
                await self.ws.send({"type": "websocket.send", "bytes": payload})
                self.pump.sent(frame, len(payload))
                if self.conn.ack_mode:
                    self.acked.clear()
        except (WebSocketDisconnect, OSError):
            self.close_with = (0, "")  # gone: nothing to close
        except Stalled as exc:
            client_log.info("closing the stream: %s", exc)
            if self.flow is not None:
                self.flow.abort()  # it cannot take even a close frame
            self.close_with = (0, "")

    async def _read_until_close(self) -> None:
        try:
            while self.close_with is None:
                await self._read_one()
        except PolicyViolation as exc:
            client_log.info("closing with 1008: %s", exc)
            self.close_with = (CLOSE_POLICY, str(exc))
        except (WebSocketDisconnect, OSError):
            self.close_with = (0, "")
        self.conn.pumping.cancel()

    async def _read_one(self) -> None:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            self.close_with = (0, "")
            return
        if message.get("bytes") is not None:
            raise PolicyViolation("binary messages are not accepted")
        msg, error = parse_message(message.get("text") or "")
        is_ack = msg is not None and msg.get("type") == "ack" and error is None
        self._police_rate(ack_seq=msg["seq"] if is_ack and msg is not None else None)
        if error is None and msg is not None:
            error = self._apply_settings(msg) if msg["type"] == "settings" else self._apply_ack(msg)
        if error:
            client_log.info("client message rejected: %s", error)
            await self.ws.send_text(json.dumps({"type": "error", "message": error}))

    def _police_rate(self, ack_seq: int | None) -> None:
        """Close floods. An ack of a frame sent since the last free ack does not count, so a
        client gets one free ack per frame sent, and never a stock of them to flood with."""
        if ack_seq is not None and self.last_free_ack < ack_seq <= self.conn.last_seq:
            self.last_free_ack = ack_seq
            return
        now = asyncio.get_running_loop().time()
        if now - self.window_start >= 1.0:
            self.window_start, self.window_count = now, 0
        self.window_count += 1
        if self.window_count > FLOOD_LIMIT:
            raise PolicyViolation(f"more than {FLOOD_LIMIT} messages per second")

    def _apply_ack(self, msg: dict[str, Any]) -> str | None:
        if self.conn.ack_mode and msg["seq"] >= self.conn.last_seq:
            self.acked.set()
        return None

    def _apply_settings(self, msg: dict[str, Any]) -> str | None:
        unknown = set(msg) - {"type", "fps", "ack"}
        if unknown:
            return f"unknown settings field(s): {', '.join(sorted(unknown))}"
        fps, ack = msg.get("fps", self.conn.fps_cap), msg.get("ack", self.conn.ack_mode)
        if fps is not None:
            if isinstance(fps, bool) or not isinstance(fps, (int, float)):
                return "settings.fps must be a number"
            error = fps_cap_error(fps, self.camera.config.fps)
            if error:
                return f"settings.fps {error}"
        if not isinstance(ack, bool):
            return "settings.ack must be true or false"
        self.conn.fps_cap = float(fps) if fps is not None else None
        if ack and not self.conn.ack_mode:
            # Entering ack mode: the next frame waits for an ack of the last one sent.
            if self.conn.frames_sent:
                self.acked.clear()
        if not ack:
            self.acked.set()
        self.conn.ack_mode = ack
        log.debug("settings: fps=%s ack=%s", self.conn.fps_cap, ack)
        return None

    async def _close(self, code: int, reason: str) -> None:
        # A client that stopped reading can't take even a close frame: drop it instead.
        with anyio.move_on_after(CLOSE_TIMEOUT) as scope:
            try:
                await self.ws.close(code, reason)
            except (WebSocketDisconnect, OSError, RuntimeError):
                return
        if scope.cancelled_caught and self.flow is not None:
            self.flow.abort()


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
