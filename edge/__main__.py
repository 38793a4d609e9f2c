"""Command line: ``python -m edge --config PATH`` serves; ``--check-config PATH`` validates.

Exit codes (§1 of docs/interface.md): 0 after a clean shutdown, 2 for a configuration error (one line
on stderr, no traceback), 1 for anything else.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NoReturn

from .config import Config, ConfigError, default_config_path, load_config, with_overrides
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
        config = with_overrides(
            config, env.get("EDGE_HOST"), _env_port(env.get("EDGE_PORT"), path), env.get("EDGE_LOG_LEVEL")
        )
        config = with_overrides(config, args.host, args.port, args.log_level)
    except ConfigError as exc:
        print(f"edge: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from .server import log_filters, serve

    setup_logging(config.server.log_level, _secrets(config), log_filters())
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
        for url in cam.publish:
            secrets |= source_secrets(url)
    return secrets


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
