"""Per-connection state and the registry of open streams.

Each stream has one :class:`Connection` object that only its own task mutates (what a
thread-per-client server would keep in ``threading.local``); the registry sets the logging
context variables (``edge/logs.py``) inside that task, so every log line written while serving
it names it, with no connection object passed down to the code that logs.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import ipaddress
import itertools
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.types import Scope

from ..logs import current_client, current_connection

log = logging.getLogger("edge.connections")


class StreamKind(enum.StrEnum):
    MJPEG = "mjpeg"
    WEBSOCKET = "websocket"
    H264 = "h264"  # raw Annex-B over HTTP
    WS_H264 = "ws-h264"  # WebSocket, Annex-B access units (WebCodecs)
    WS_MP4 = "ws-mp4"  # WebSocket, fMP4 fragments (Media Source Extensions)

    @property
    def jpeg(self) -> bool:
        """Whether this kind sends JPEG (an H.264 camera decodes and encodes only for these)."""
        return self in (StreamKind.MJPEG, StreamKind.WEBSOCKET)


@dataclass(eq=False)
class Connection:
    id: str
    kind: StreamKind
    camera: str
    remote: str
    connected_at: float = field(default_factory=time.time)
    # settings
    fps_cap: float | None = None
    ack_mode: bool = False
    # counters
    frames_sent: int = 0
    frames_dropped: int = 0
    bytes_sent: int = 0
    last_seq: int = 0  # camera sequence number of the last frame sent
    # The stream's wait for its end runs inside this scope; cancelling it (shutdown) ends the
    # stream cleanly. It exists from registration on, so a stop that comes before the wait starts
    # is not lost: a scope cancelled before it is entered cancels on entry.
    pumping: anyio.CancelScope = field(default_factory=anyio.CancelScope, repr=False)

    def as_status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "remote": self.remote,
            "connected_at": round(self.connected_at, 3),
            "frames_sent": self.frames_sent,
            "frames_dropped": self.frames_dropped,
            "bytes_sent": self.bytes_sent,
            "fps_cap": self.fps_cap,
            "ack": self.ack_mode,
        }


@dataclass
class Totals:
    """Per (camera, kind) counters that outlive connections, for Prometheus."""

    frames_sent: int = 0
    frames_dropped: int = 0
    bytes_sent: int = 0
    streams: int = 0  # opened


class CapacityError(Exception):
    """All ``max_clients`` stream slots are taken."""


class Registry:
    """The open streams, across all cameras; enforces ``max_clients`` and
    ``max_streams_per_address`` (0: no per-address cap).

    Only the event loop thread touches it, so it needs no lock.
    """

    def __init__(self, max_clients: int, max_per_address: int = 0) -> None:
        self.max_clients = max_clients
        self.max_per_address = max_per_address
        self._open: dict[str, Connection] = {}
        self._per_address: collections.Counter[str] = collections.Counter()
        self._ids = itertools.count(1)
        self.totals: dict[tuple[str, str], Totals] = {}
        self._empty = asyncio.Event()
        self._empty.set()
        self.stopping = False  # shutting down: no new streams

    def refusal(self, address: str) -> str | None:
        """Why a stream from ``address`` cannot open now (a message for the client), or ``None``."""
        if self.stopping:
            return "the server is shutting down; try again shortly"
        if len(self._open) >= self.max_clients:
            return f"all {self.max_clients} stream slots are in use; try again shortly"
        if self.max_per_address and self._per_address[address] >= self.max_per_address:
            return (
                f"this address already has {self.max_per_address} open streams "
                "(server.max_streams_per_address); close one and try again"
            )
        return None

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._open.values()))

    def for_camera(self, camera: str) -> list[Connection]:
        return [c for c in self._open.values() if c.camera == camera]

    def count(self, kind: StreamKind) -> int:
        return sum(1 for c in self._open.values() if c.kind == kind)

    def totals_for(self, camera: str, kind: StreamKind) -> Totals:
        return self.totals.setdefault((camera, kind), Totals())

    @contextmanager
    def open(self, kind: StreamKind, camera: str, scope: Scope) -> Iterator[Connection]:
        """Register a stream for the duration of the block and name it in the log context.

        Raises :class:`CapacityError` when there is no room; callers check :meth:`refusal`
        first to answer in their own protocol's terms (503, close 1013).
        """
        address = address_of(scope)
        reason = self.refusal(address)
        if reason is not None:
            raise CapacityError(reason)
        remote = remote_of(scope)
        conn = Connection(id=f"c{next(self._ids)}", kind=kind, camera=camera, remote=remote)
        self._open[conn.id] = conn
        self._per_address[address] += 1
        self._empty.clear()
        token = current_connection.set(conn.id)
        client_token = current_client.set(address)
        self.totals_for(camera, kind).streams += 1
        started = time.monotonic()
        log.info("%s stream opened: camera=%s remote=%s", kind.value, camera, remote)
        try:
            yield conn
        finally:
            del self._open[conn.id]
            self._per_address[address] -= 1
            if not self._per_address[address]:
                del self._per_address[address]
            if not self._open:
                self._empty.set()
            log.info(
                "%s stream closed after %.1f s: sent=%d dropped=%d bytes=%d",
                kind.value,
                time.monotonic() - started,
                conn.frames_sent,
                conn.frames_dropped,
                conn.bytes_sent,
            )
            current_client.reset(client_token)
            current_connection.reset(token)

    async def stop_all(self, timeout: float) -> bool:
        """Ask every stream to end and wait up to ``timeout`` s; ``True`` if all ended."""
        self.stopping = True
        for conn in self:
            conn.pumping.cancel()
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except TimeoutError:
            return False
        return True


def address_of(scope: Scope) -> str:
    """What per-address limits count the client as: its :func:`address_key` (the forwarded
    address behind a trusted proxy: see ``edge/server``)."""
    client = scope.get("client")
    return address_key(str(client[0])) if client else "unknown"


def address_key(host: str) -> str:
    """The client address that per-address limits count by (§7 of ``docs/interface.md``):
    an IPv4 address as it is, an
    IPv6 address by its /64, since one host picks its privacy addresses from a whole /64, and
    an IPv4-mapped IPv6 address as the IPv4 address it is."""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def remote_of(scope: Scope) -> str:
    client = scope.get("client")
    if not client:
        return "unknown"
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
