"""The app's own answers in process (§3 and §6 of docs/interface.md): `edge.web.app.create_app` with
a virtual camera, driven through Starlette's TestClient, no server process.

Without its lifespan the app has cameras but no capture running: no camera has a frame, so
`/readyz` is 503 with the reason, `/healthz` names the capture thread that is not running, and a
snapshot is 503. With the lifespan (the TestClient as a context manager) the virtual camera
captures and both turn 200. Errors are JSON: 404 for an unknown path or camera, 405 with a sorted
Allow header; a path that exists with (or without) a trailing slash is a relative redirect. Streams
need edge's server adapter (edge/server/), so they are tested against real servers elsewhere.
"""

from __future__ import annotations

import pytest

from edge.web.app import create_app
from tests.support.asgi import TestClient, WebSocketDenialResponse, config
from tests.support.jpeg import decode_jpeg


@pytest.fixture(scope="module")
def app_client() -> TestClient:
    """The app as `python -m edge` builds it, lifespan not run: nothing captures."""
    return TestClient(create_app(config()), follow_redirects=False)


@pytest.mark.parametrize("path", ["/nope", "/api", "/cameras", "/cameras/cam0", "/static/nope.js", "/ws/x"])
def test_unknown_path_is_404_json(app_client: TestClient, path: str) -> None:
    response = app_client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": f"no such path: {path}"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/status"), ("DELETE", "/stream"), ("PUT", "/cameras/cam0/snapshot"), ("POST", "/")],
)
def test_wrong_method_is_405_with_a_sorted_allow_header(app_client: TestClient, method: str, path: str) -> None:
    response = app_client.request(method, path)
    assert response.status_code == 405
    assert response.json() == {"error": f"method {method} not allowed here"}
    allow = [m.strip() for m in response.headers["allow"].split(",")]
    assert allow == sorted(allow) and {"GET", "HEAD"} <= set(allow), response.headers["allow"]


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/api/status/", "../status"),
        ("/metrics/", "../metrics"),
        ("/cameras/cam0/snapshot/", "../snapshot"),
        ("/cameras/cam0/stream/?fps=1&x=%20y", "../stream?fps=1&x=%20y"),
        ("/static", "static/"),
    ],
)
def test_slash_redirects_are_relative(app_client: TestClient, path: str, location: str) -> None:
    """Relative, so they resolve under a reverse proxy's path prefix; the query is kept."""
    response = app_client.get(path, headers={"Host": "evil.example.local"})
    assert response.status_code == 307
    assert response.headers["location"] == location


@pytest.mark.parametrize("path", ["/nope/", "/api/status//", "/cameras/cam0/nope/"])
def test_no_redirect_to_a_path_that_does_not_exist(app_client: TestClient, path: str) -> None:
    assert app_client.get(path).status_code == 404


@pytest.mark.parametrize("path", ["/cameras/nope/snapshot", "/cameras/nope/stream", "/cameras/CAM0/snapshot"])
def test_unknown_camera_is_404_naming_it(app_client: TestClient, path: str) -> None:
    response = app_client.get(path)
    assert response.status_code == 404
    name = path.split("/")[2]
    assert response.json() == {"error": f"unknown camera {name!r}"}


def test_bad_query_values_are_400(app_client: TestClient) -> None:
    for path, fragment in [
        ("/cameras/cam0/stream?fps=abc", "fps must be a number"),
        ("/stream?fps=11", "fps"),
        ("/?action=dance", "unknown action 'dance'"),
        ("/?mode=flash", "mode must be auto, mjpeg, ws, h264 or mp4"),
    ]:
        response = app_client.get(path)
        assert response.status_code == 400, path
        assert fragment in response.json()["error"], (path, response.json())


def test_without_a_frame_readyz_healthz_and_snapshot_say_why(app_client: TestClient) -> None:
    ready = app_client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "not ready"
    assert ready.json()["reason"].startswith("cam0: no real frame in the last 2 s"), ready.json()
    health = app_client.get("/healthz")
    assert (health.status_code, health.json()["reason"]) == (503, "capture thread not running: cam0")
    snap = app_client.get("/snapshot")
    assert (snap.status_code, snap.headers["retry-after"]) == (503, "1")
    assert "has no frame yet" in snap.json()["error"]


def test_with_the_lifespan_the_camera_captures_and_the_app_is_ready() -> None:
    with TestClient(create_app(config())) as running:
        assert running.get("/readyz").json() == {"status": "ready"}
        assert running.get("/healthz").json() == {"status": "ok"}
        snap = running.get("/cameras/cam0/snapshot")
        assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg"
        assert decode_jpeg(snap.content).shape[:2] == (120, 160)
        status = running.get("/api/status").json()
        assert [c["name"] for c in status["cameras"]] == ["cam0"] and status["clients_total"] == 0


def test_websocket_upgrade_without_a_route_is_a_json_404(app_client: TestClient) -> None:
    for path in ["/nope", "/static/app.js"]:
        with pytest.raises(WebSocketDenialResponse) as denied, app_client.websocket_connect(path):
            pass
        assert denied.value.status_code == 404
        assert denied.value.json() == {"error": f"no WebSocket at {path}"}
