"""One stream's life, MJPEG and WebSocket alike: admit, register, subscribe, watch, end.

The two kinds differ only in what they send for a frame and in what the client may say
(``mjpeg.py``, ``websocket.py``). Everything else is here, once: the capacity checks, the
registry entry and its log lines, keeping an idle camera awake, the camera's broadcast,
noticing that the peer left, and ending on shutdown or when the broadcast gives up on a
client that stopped reading.

The stream's task does no per-frame work: frames go out from the camera's broadcast
(``broadcast.py``); the task waits for the end.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import anyio
from starlette.types import Receive, Scope, Send

from ..fanout.broadcast import Broadcast, Subscriber
from ..fanout.connections import Connection, StreamKind, Totals, address_of
from ..fanout.slot import Payload
from ..fanout.wire import Wire, wire_of
from ..logs import client_log
from .camera import Camera
from .state import EdgeState


@dataclass(frozen=True)
class Ending:
    """Why a stream ends: ``shutdown``, ``gone`` (the client left), ``stalled`` (it read nothing
    for ``stall_timeout``), or ``refused`` (a WebSocket client broke the protocol)."""

    why: str
    reason: str = ""


SHUTDOWN, GONE = Ending("shutdown"), Ending("gone")


class Stream(abc.ABC):
    kind: StreamKind  # a class default; a WebSocket stream's depends on the codec asked for

    def __init__(self, state: EdgeState, camera: Camera, scope: Scope, receive: Receive, send: Send) -> None:
        self.state = state
        self.camera = camera
        self.scope = scope
        self.receive = receive
        self.send = send

    async def serve(self) -> None:
        registry = self.state.registry
        refusal = registry.refusal(address_of(self.scope))
        if refusal is not None:
            await self.refuse(refusal)
            return
        wire = wire_of(self.scope)
        camera = self.camera
        with registry.open(self.kind, camera.name, self.scope) as conn, camera.watch(conn):
            if not await self.start(conn):
                return
            sub = self.subscriber(conn, wire, registry.totals_for(camera.name, self.kind))
            broadcast = self.broadcast()
            broadcast.add(sub)
            try:
                ending = await self._until_the_end(conn, sub)
            finally:
                broadcast.remove(sub)
            if ending.why == "stalled":
                client_log.info("closing the stream: the client read nothing for %g s", camera.broadcast.stall_timeout)
                wire.abort()  # it cannot take even the end of the stream
                return
            await self.finish(ending)

    async def _until_the_end(self, conn: Connection, sub: Subscriber) -> Ending:
        ending = SHUTDOWN
        with conn.pumping:  # registry.stop_all() cancels it: shutdown
            with anyio.CancelScope() as watching:
                sub.ended.add_done_callback(lambda _: watching.cancel())
                ending = await self.watch(sub)
        if sub.ended.done():
            return Ending(sub.ended.result())
        return ending

    def broadcast(self) -> Broadcast:
        """The camera's fan-out this stream joins: JPEG frames here, access units for H.264."""
        return self.camera.broadcast

    def subscriber(self, conn: Connection, wire: Wire, totals: Totals) -> Subscriber:
        # The payload in this connection's transport framing: built once per frame for all.
        return Subscriber(conn, wire, wire.frame(self.payload()), totals)

    @abc.abstractmethod
    async def refuse(self, message: str) -> None:
        """Answer a client that cannot have a stream now (503 / close 1013)."""

    @abc.abstractmethod
    async def start(self, conn: Connection) -> bool:
        """Open the stream (response head / handshake and hello); ``False``: nothing follows."""

    @abc.abstractmethod
    def payload(self) -> Payload:
        """What this kind of stream sends for a frame (built once per frame for all of them)."""

    @abc.abstractmethod
    async def watch(self, sub: Subscriber) -> Ending:
        """Read from the client until it leaves (or breaks the rules); returns why."""

    @abc.abstractmethod
    async def finish(self, ending: Ending) -> None:
        """End the stream properly, where the client is still there to see it."""
