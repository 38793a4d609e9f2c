"""In-process clients for edge's pure-ASGI parts: Starlette's TestClient (httpx underneath).

Only what needs no real server goes through it: `edge.web.access.AccessControl` around a tiny
app of the test's own, and the app's own answers (errors, redirects, health) from
`edge.web.app.create_app`. Streams need edge's server adapter (the ``edge.wire`` scope
extension, edge/server/), so they are tested against real `python -m edge` processes.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from edge.config import Config, parse_config

with warnings.catch_warnings():
    # Starlette 1.x warns at import that its TestClient will move to httpx2; the pinned httpx is
    # what the suite has, and the TestClient works with it.
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient, WebSocketDenialResponse

__all__ = ["TestClient", "WebSocketDenialResponse", "config", "password_config"]

CAMERA = {"name": "cam0", "source": "virtual", "fps": 10, "width": 160, "height": 120}


def config(server: dict[str, Any] | None = None, cameras: list[dict[str, Any]] | None = None) -> Config:
    """A config as `edge.config` parses it from a file: one small virtual camera by default."""
    return parse_config({"server": server or {}, "cameras": cameras or [CAMERA]}, "in-process.yaml")


def password_config(directory: Path, user: str, password: str, tokens: list[str] | None = None) -> Config:
    """HTTP Basic with the password in a file (and tokens in a tokens_file, if given)."""
    secret = directory / "password"
    secret.write_text(password + "\n")
    server: dict[str, Any] = {"auth": {"username": user, "password_file": str(secret)}}
    if tokens:
        (directory / "tokens").write_text("\n".join(tokens) + "\n")
        server["tokens_file"] = str(directory / "tokens")
    return config(server)
