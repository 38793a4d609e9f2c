"""Command line: ``python -m edge --config PATH`` serves; ``--check-config PATH`` validates.

Exit codes (contract §1): 0 after a clean shutdown, 2 for a configuration error (one line
on stderr, no traceback), 1 for anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import sys
from typing import NoReturn

from .config import Config, ConfigError, default_config_path, load_config
from .logs import setup_logging
from .redact import source_secrets

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2

log = logging.getLogger("edge")


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 too, but says "usage"
        self.print_usage(sys.stderr)
        self.exit(EXIT_CONFIG, f"edge: error: {message}\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _ArgumentParser(prog="edge", description="Serve cameras as MJPEG, snapshots and WebSocket frames.")
    parser.add_argument("--version", action="version", version=f"edge {_version()}")
    parser.add_argument("--config", metavar="PATH", help="YAML config (default: $EDGE_CONFIG, then config/edge.yaml)")
    parser.add_argument("--check-config", metavar="PATH", help="validate PATH and exit: 0 if valid, 2 if not")
    parser.add_argument("--host", help="listen address (overrides server.host)")
    parser.add_argument("--port", type=int, help="listen port, 0 for any free port (overrides server.port)")
    parser.add_argument("--log-level", help="critical, error, warning, info or debug (overrides server.log_level)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check_config is not None:
        try:
            config = load_config(args.check_config)
        except ConfigError as exc:
            print(f"edge: config error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        print(f"{args.check_config}: ok ({len(config.cameras)} camera(s))")
        return EXIT_OK
    path = args.config or default_config_path()
    try:
        config = load_config(path)
        env = os.environ
        # Environment overrides (the container sets EDGE_HOST=0.0.0.0), then the command line.
        config = config.with_overrides(
            env.get("EDGE_HOST"), _env_port(env.get("EDGE_PORT"), path), env.get("EDGE_LOG_LEVEL")
        )
        config = config.with_overrides(args.host, args.port, args.log_level)
    except ConfigError as exc:
        print(f"edge: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(config.server.log_level, _secrets(config))
    try:
        return serve(config)
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as exc:
        log.debug("fatal error", exc_info=True)
        print(f"edge: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _secrets(config: Config) -> set[str]:
    """Every secret the config holds, for the log's masking filter."""
    secrets: set[str] = set(config.server.tokens)
    if config.server.auth is not None:
        secrets.add(config.server.auth.password)
    for cam in config.cameras:
        secrets |= source_secrets(cam.source)
    return secrets


def serve(config: Config) -> int:
    from .app import create_app
    from .server import (
        AdapterError,
        EdgeServer,
        Limits,
        ListenError,
        check_uvicorn,
        listen_socket,
        raise_open_files_limit,
        uvicorn_config,
    )

    try:
        check_uvicorn()
    except AdapterError as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    server_cfg = config.server
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
            "set server.auth or server.tokens_file (see the README's 'Hardened setup')",
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
            f"edge {_version()} listening on {scheme}://{shown}:{port}  cameras: {names}", file=sys.stderr, flush=True
        )

    server = EdgeServer(uvicorn_config(app, server_cfg), state.registry.stop_all, started, Limits.of(server_cfg))
    # uvicorn's loop choice (uvloop when installed): the default loop costs ~2x the CPU per frame sent.
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


def _env_port(value: str | None, path: str) -> int | None:
    if value is None or value == "":
        return None
    if not value.strip().isdigit():
        raise ConfigError(path, "EDGE_PORT", f"must be a port number, got {value!r}")
    return int(value)


def _version() -> str:
    from . import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
