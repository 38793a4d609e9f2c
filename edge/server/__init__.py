"""The one adapter to uvicorn's internals, and serving (§1 of docs/interface.md).

Everything in edge that reaches below the public API of uvicorn, Starlette or the websockets
library lives in this package, and ``selfcheck.py`` looks for all of it at start-up:
``http.py`` and ``websocket.py`` (the protocols, with the limits of §7 of docs/interface.md), ``wire.py`` (the
transport the broadcast writes frames to, and their framing), ``wsguard.py`` (a WebSocket
client's frames counted before they are parsed), ``limits.py``, ``listen.py``, ``runner.py``
(uvicorn's config, start-up and shutdown), ``logs.py`` (uvicorn's log records).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import sys
from collections.abc import Callable

from .. import __version__
from ..config import Config
from .limits import Limits
from .listen import ListenError, listen_socket, raise_open_files_limit
from .logs import set_levels, uvicorn_records
from .runner import EdgeServer, uvicorn_config
from .selfcheck import AdapterError, check_uvicorn

__all__ = ["AdapterError", "ListenError", "check_uvicorn", "log_filters", "serve"]

log = logging.getLogger("edge")
EXIT_OK, EXIT_FAILURE = 0, 1


def log_filters() -> list[Callable[[logging.LogRecord], bool]]:
    """Filters for the log handler that only the adapter can write (they know uvicorn's records)."""
    return [uvicorn_records]


def serve(config: Config) -> int:
    """Serve ``config`` until SIGINT/SIGTERM; the exit status (§1 of docs/interface.md)."""
    from ..web.app import create_app

    server_cfg = config.server
    set_levels(server_cfg.log_level)
    probe = uvicorn_config(None, server_cfg)
    try:
        # uvicorn's loop choice (uvloop when installed): the default loop costs ~2x the CPU per frame sent.
        check_uvicorn(probe.get_loop_factory())
    except AdapterError as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    try:
        sock = listen_socket(server_cfg.host, server_cfg.port)
    except ListenError as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    host, port = sock.getsockname()[:2]
    open_files = raise_open_files_limit()
    log.debug("open files limit: %d", open_files)
    if not server_cfg.access_controlled and not _is_loopback(host):
        log.warning(
            "serving %s without access control: anyone who can reach port %d can watch the cameras; "
            "set server.auth or server.tokens_file (see the README's 'Access control')",
            host,
            port,
        )
    app = create_app(config)
    state = app.state.edge
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if server_cfg.tls else "http"

    def started() -> None:
        names = ", ".join(f"{c.name} ({c.capture.source_description})" for c in state.cameras.values())
        # Printed at every log level: scripts and tests wait for this line to learn the port.
        print(
            f"edge {__version__} listening on {scheme}://{shown}:{port}  cameras: {names}", file=sys.stderr, flush=True
        )

    server = EdgeServer(uvicorn_config(app, server_cfg), state.registry.stop_all, started, Limits.of(server_cfg))
    with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
        runner.run(server.serve(sockets=[sock]))
    if not server.started:
        return EXIT_FAILURE
    log.info("stopped")
    return EXIT_OK


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
