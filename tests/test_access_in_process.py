"""`edge.web.access.AccessControl` in process (§7 of docs/interface.md): the middleware around a tiny
ASGI app of the test's own, driven through Starlette's TestClient, so each rule is checked on its
own, without a server process: the Host check, HTTP Basic, tokens, 429 after ten wrong passwords
from one address, the open paths (and their look-alikes, which are not open), the WebSocket
Origin check. `test_access.py` checks the same rules end to end against real servers.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from edge.web.access import GUESS_LIMIT, GUESS_WINDOW, REALM, SECURITY_HEADERS, AccessControl
from tests.support.asgi import TestClient, WebSocketDenialResponse, config, password_config

USER, PASSWORD = "admin", "correct horse battery"
TOKEN = "t0ken-of-at-least-16-chars"


async def tiny_app(scope: Scope, receive: Receive, send: Send) -> None:
    """What stands behind the middleware: says which path it served; WebSockets get one message."""
    if scope["type"] == "http":
        await PlainTextResponse(f"served {scope['path']}")(scope, receive, send)
    elif scope["type"] == "websocket":
        ws = WebSocket(scope, receive, send)
        await ws.accept()
        await ws.send_text("hello")
        await ws.close()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def guarded(tmp_path: Path) -> AccessControl:
    """Basic (admin / PASSWORD) and one token."""
    return AccessControl(tiny_app, password_config(tmp_path, USER, PASSWORD, [TOKEN]).server)


SERVER = "192.168.1.10:8080"  # the device, as its users reach it


def client(app: AccessControl, address: str = "192.168.1.20") -> TestClient:
    """A client from `address` (the per-address guess limit counts by it)."""
    return TestClient(app, base_url=f"http://{SERVER}", client=(address, 50000))


def ws_url(path: str) -> str:
    """An absolute URL: the TestClient sends `Host: testserver` for a relative one."""
    return f"ws://{SERVER}{path}"


# -- Host ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["192.168.1.10:8080", "[fe80::1]:8080", "localhost", "camera", "camera.local", "cam.home.arpa", "cam.lan."],
)
def test_hosts_a_lan_user_types_are_answered(host: str) -> None:
    response = client(AccessControl(tiny_app, config().server)).get("/api/status", headers={"Host": host})
    assert (response.status_code, response.text) == (200, "served /api/status"), host


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "camera.local.evil.example"])
def test_other_host_names_are_refused_naming_the_host(host: str) -> None:
    response = client(AccessControl(tiny_app, config().server)).get("/api/status", headers={"Host": host})
    assert response.status_code == 400
    name = host.rsplit(":", 1)[0]
    assert f"does not answer to the host name {name!r}" in response.json()["error"]
    assert "allowed_hosts" in response.json()["error"]


def test_allowed_hosts_add_names_and_wildcards() -> None:
    app = AccessControl(tiny_app, config({"allowed_hosts": ["cam.example.com", "*.example.org"]}).server)
    for host, status in [("cam.example.com", 200), ("a.b.example.org", 200), ("example.org", 400), ("x.com", 400)]:
        assert client(app).get("/", headers={"Host": host}).status_code == status, host


def test_host_is_checked_before_credentials(guarded: AccessControl) -> None:
    response = client(guarded).get("/api/status", headers={"Host": "evil.example", **basic(USER, PASSWORD)})
    assert response.status_code == 400


# -- Basic and tokens --------------------------------------------------------------------------


def test_basic_credentials(guarded: AccessControl) -> None:
    c = client(guarded)
    missing = c.get("/api/status")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == REALM
    assert "HTTP Basic" in missing.json()["error"] and "?token=" in missing.json()["error"]
    assert c.get("/api/status", headers=basic(USER, PASSWORD)).text == "served /api/status"
    for headers in [basic(USER, "wrong"), basic("root", PASSWORD), {"Authorization": "Basic !!notbase64"}]:
        assert c.get("/api/status", headers=headers).status_code == 401, headers
    assert c.get("/api/status", headers={"Authorization": "Bearer " + TOKEN}).status_code == 401


def test_tokens(guarded: AccessControl) -> None:
    c = client(guarded)
    assert c.get(f"/snapshot?token={TOKEN}").text == "served /snapshot"
    assert c.get(f"/snapshot?fps=1&token={TOKEN}").status_code == 200
    assert c.get("/snapshot?token=" + "x" * len(TOKEN)).status_code == 401
    assert c.get(f"/snapshot?tok={TOKEN}").status_code == 401


def test_without_access_keys_everything_is_open() -> None:
    c = client(AccessControl(tiny_app, config().server))
    assert c.get("/api/status").text == "served /api/status"
    assert c.get("/api/status", headers=basic("any", "thing")).status_code == 200


# -- guessing --------------------------------------------------------------------------------------


def test_ten_wrong_passwords_from_one_address_then_429_for_that_address_only(guarded: AccessControl) -> None:
    guesser = client(guarded, "192.168.1.66")
    answers = [
        guesser.get("/api/status", headers=basic(USER, f"guess-{i}")).status_code for i in range(GUESS_LIMIT + 1)
    ]
    assert answers == [401] * (GUESS_LIMIT + 1), "each of the first guesses is checked"
    blocked = guesser.get("/api/status", headers=basic(USER, PASSWORD))
    assert blocked.status_code == 429, "the right password from a blocked address is not checked"
    assert 0 < int(blocked.headers["retry-after"]) <= GUESS_WINDOW
    assert blocked.headers["connection"] == "close"
    assert "too many failed logins" in blocked.json()["error"]
    assert guesser.get("/healthz").status_code == 200, "the open paths stay open"
    assert client(guarded, "192.168.1.67").get("/api/status", headers=basic(USER, PASSWORD)).status_code == 200


def test_missing_credentials_are_not_guesses(guarded: AccessControl) -> None:
    c = client(guarded, "192.168.1.68")
    assert all(c.get("/api/status").status_code == 401 for _ in range(3 * GUESS_LIMIT))
    assert c.get("/api/status", headers=basic(USER, PASSWORD)).status_code == 200


# -- open paths --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/static/app.js", "/static/"])
def test_open_paths_need_no_credentials(guarded: AccessControl, path: str) -> None:
    response = client(guarded).get(path)
    assert (response.status_code, response.text) == (200, f"served {path}")


@pytest.mark.parametrize("path", ["/healthzX", "/healthz/", "/readyz.json", "/staticfoo", "/static", "/Healthz"])
def test_look_alikes_of_open_paths_are_not_open(guarded: AccessControl, path: str) -> None:
    assert client(guarded).get(path).status_code == 401, path


# -- WebSocket Origin ------------------------------------------------------------------------------


def test_websocket_from_the_same_origin_or_an_allowed_one_is_let_through() -> None:
    app = AccessControl(tiny_app, config({"allowed_origins": ["https://viewer.example"]}).server)
    for origin in [None, "http://192.168.1.10:8080", "https://viewer.example", "https://VIEWER.example:443"]:
        headers = {} if origin is None else {"Origin": origin}
        with client(app).websocket_connect(ws_url("/ws"), headers=headers) as ws:
            assert ws.receive_text() == "hello", origin


@pytest.mark.parametrize("origin", ["http://evil.example", "http://192.168.1.10:9999", "null", "not a url"])
def test_websocket_from_another_origin_is_refused_with_an_http_answer(origin: str) -> None:
    app = AccessControl(tiny_app, config().server)
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        client(app).websocket_connect(ws_url("/ws"), headers={"Origin": origin}),
    ):
        pass
    response = denied.value
    assert response.status_code == 403
    assert "allowed_origins" in response.json()["error"]
    for name, value in SECURITY_HEADERS:
        assert response.headers[name] == value, name


def test_websocket_needs_credentials_too(guarded: AccessControl) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied, client(guarded).websocket_connect(ws_url("/ws")):
        pass
    assert denied.value.status_code == 401
    with client(guarded).websocket_connect(ws_url(f"/ws?token={TOKEN}")) as ws:
        assert ws.receive_text() == "hello"
