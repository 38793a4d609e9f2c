"""uvicorn as edge runs it: its config, and the server's start-up and shutdown.

* shutdown waits for open connections (forever by default) before the app hears of it, a
  stalled reader never drains, and a signal is re-raised so the exit status is 143: streams
  are ended first, stalled connections are aborted, and a signal-driven shutdown returns
  normally so the process exits 0;
* uvicorn leaves the loop's TLS handshake timeout at 60 s: the handshake gets
  ``request_timeout`` (from the accept, §7 of ``docs/interface.md``) instead.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import socket
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

import uvicorn

from ..config import ServerConfig
from ..web.access import SECURITY_HEADERS
from .http import EdgeHttpProtocol
from .limits import DEFAULT_LIMITS, Limits, PendingConnections
from .websocket import EdgeWebSocketProtocol

log = logging.getLogger("edge.server")

STREAM_STOP_GRACE = 1.0  # seconds streams get to end cleanly before stalled ones are aborted
GRACEFUL_SHUTDOWN_TIMEOUT = 2
TLS_SHUTDOWN_TIMEOUT = 2.0  # seconds a closing TLS connection waits for the client's close_notify


class EdgeServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        stop_streams: Callable[[float], Awaitable[bool]],
        on_started: Callable[[], None],
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(config)
        self._stop_streams = stop_streams
        self._on_started = on_started
        self._limits = limits

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        create_server = loop.create_server

        async def create_tls_server(*args: Any, **kwargs: Any) -> asyncio.Server:
            # uvicorn leaves the loop's TLS handshake timeout (60 s), while §7 wants
            # request_timeout from the TCP accept, the handshake included (the protocol's head
            # timer gets what the handshake left); and a closing TLS connection waits 30 s for
            # the client's close_notify unless told otherwise.
            if kwargs.get("ssl") is not None:
                kwargs.setdefault("ssl_handshake_timeout", self._limits.request_timeout)
                kwargs.setdefault("ssl_shutdown_timeout", TLS_SHUTDOWN_TIMEOUT)
            return await create_server(*args, **kwargs)

        loop.create_server = create_tls_server  # type: ignore[method-assign]
        try:
            await super().startup(sockets)
        finally:
            del loop.create_server  # the loop's own method again
        if self.started:
            self._on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Streams never end on their own, and uvicorn waits for them before telling the
        # app to shut down: end them first; those stuck on a client that stopped reading
        # are aborted by the protocols' shutdown() below.
        log.info("shutting down: ending open streams")
        if not await self._stop_streams(STREAM_STOP_GRACE):
            log.info("some streams did not end within %.1f s; aborting them", STREAM_STOP_GRACE)
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signals it caught once it has shut down, so the exit status
        # would be 128+signal; a requested shutdown that went well exits 0.
        self._captured_signals.clear()


def uvicorn_config(app: Any, server: ServerConfig) -> uvicorn.Config:
    tls = server.tls
    limits, pending = Limits.of(server), PendingConnections.of(server)
    return uvicorn.Config(
        app,
        http=functools.partial(EdgeHttpProtocol, limits=limits, pending=pending),  # type: ignore[arg-type]
        ws=EdgeWebSocketProtocol,
        ws_per_message_deflate=False,  # JPEGs do not compress; deflate only burns CPU
        ws_max_size=64 * 1024,  # client messages are small JSON
        # No keepalive pings: a viewer that stops reading cannot answer them, and would be
        # closed after 40 s instead of getting fresh frames when it reads again (§5 of
        # docs/interface.md); a dead peer still surfaces as a failed send, and shutdown aborts
        # stalled ones.
        ws_ping_interval=None,
        lifespan="on",
        access_log=False,  # one line per stream comes from edge/fanout/connections.py instead
        log_config=None,
        log_level=server.log_level,
        server_header=False,
        headers=SECURITY_HEADERS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_TIMEOUT,
        timeout_keep_alive=math.ceil(server.keepalive_timeout),
        # X-Forwarded-For/-Proto only from the proxies the user named; uvicorn's default trusts
        # 127.0.0.1, which lets any local process (or a port-forward) claim another address.
        proxy_headers=bool(server.trusted_proxies),
        forwarded_allow_ips=list(server.trusted_proxies),
        ssl_certfile=tls.certfile if tls else None,
        ssl_keyfile=tls.keyfile if tls else None,
    )
