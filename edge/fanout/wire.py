"""What a stream's connection is to the fan-out: a transport to write frames to directly.

The server adapter (``edge/server``) puts a :class:`Wire` for each connection in the ASGI scope
(the ``edge.wire`` extension); the camera's broadcast writes every frame to it, past the ASGI
machinery. The wire also owns the transport's framing of a frame's payload (an HTTP/1.1 chunk,
nothing for a close-delimited HTTP/1.0 body, a WebSocket frame header): ``wire.frame(payload)``
is the function that frames a payload writer's bytes for this kind of connection, the same
function object for every connection of that kind, so a frame is framed once for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from starlette.types import Scope

from .slot import Framing, Payload

WIRE_EXTENSION = "edge.wire"


class Wire(Protocol):
    """A connection's transport as the broadcast uses it."""

    paused: bool  # the transport holds unsent bytes: the client is not keeping up
    paused_at: float  # time.monotonic() when it last paused
    paused_left: int  # bytes it held then
    on_resume: Callable[[], None] | None

    def write(self, data: bytes) -> None: ...
    def closing(self) -> bool: ...
    def buffered(self) -> int: ...
    def abort(self) -> None: ...
    def frame(self, payload: Payload) -> Framing:
        """``payload``'s bytes in this connection's transport framing (cached by the adapter)."""
        ...


def wire_of(scope: Scope) -> Wire:
    """The connection's :class:`Wire`, which edge's server puts in the scope."""
    wire = scope.get("extensions", {}).get(WIRE_EXTENSION)
    if wire is None:
        raise RuntimeError("edge streams need edge's own server (python -m edge): no transport in the scope")
    return wire  # type: ignore[no-any-return]
