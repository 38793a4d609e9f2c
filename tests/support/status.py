"""`/api/status` as the tests read it: the server's own account of its cameras and open streams.

Most tests synchronise on it (a camera `reconnecting`, a client listed or gone) rather than on
time, so waiting for a status condition lives here, with the last status in the failure message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support.http import fetch
from tests.support.process import EdgeServer
from tests.support.waiting import wait_for


def get_status(server: EdgeServer) -> dict[str, Any]:
    """GET /api/status as parsed JSON."""
    r = fetch(server.url + "/api/status")
    assert r.status == 200, f"/api/status answered {r.status}"
    return r.json()


def camera_status(status: dict[str, Any], name: str) -> dict[str, Any]:
    for cam in status["cameras"]:
        if cam["name"] == name:
            return cam
    raise KeyError(f"camera {name!r} not in status: {[c['name'] for c in status['cameras']]}")


def all_clients(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [cl for cam in status["cameras"] for cl in cam["clients"]]


def wait_status(
    server: EdgeServer,
    predicate: Callable[[dict[str, Any]], Any],
    timeout: float,
    message: str = "status condition",
) -> dict[str, Any]:
    """Poll /api/status every 50 ms until `predicate(status)` holds; return that status."""
    result: dict[str, Any] = {}

    def check() -> bool:
        st = get_status(server)
        result["last"] = st
        return bool(predicate(st))

    try:
        wait_for(check, timeout, 0.05, message)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast /api/status: {result.get('last')!r}") from None
    return result["last"]


def wait_no_clients(server: EdgeServer, timeout: float = 10.0) -> dict[str, Any]:
    return wait_status(server, lambda st: not all_clients(st), timeout, "no clients listed")


def wait_all_cameras(server: EdgeServer, state: str, timeout: float) -> dict[str, Any]:
    """Wait until every camera of `server` is in `state` (`streaming`, `reconnecting`)."""
    return wait_status(
        server, lambda st: all(c["state"] == state for c in st["cameras"]), timeout, f"every camera {state}"
    )


def wait_camera_state(server: EdgeServer, name: str, state: str, timeout: float) -> dict[str, Any]:
    """Wait until camera `name` of `server` is in `state`; the status that says so."""
    return wait_status(server, lambda st: camera_status(st, name)["state"] == state, timeout, f"camera {name} {state}")
