"""Access control on a LAN (§7 of docs/interface.md): Basic, tokens, Host and Origin checks, proxies, headers.

Every test talks to a real `python -m edge` subprocess.  One module-scoped server per
configuration keeps the suite cheap on two cores:

* `auth_srv`   HTTP Basic, password from a file, bound to 0.0.0.0 (reached via 127.0.0.1);
* `env_srv`    HTTP Basic, password from an environment variable;
* `token_srv`  tokens_file only, bound to 0.0.0.0, logging at debug (more lines to leak into);
* `open_srv`   no access keys at all (the old server starts too), bound to 0.0.0.0 (the WARNING);
* `star_srv`   allowed_origins ["*"] and allowed_hosts entries, no credentials;
* `proxy_srv`  trusted_proxies [127.0.0.1], max_streams_per_address 1, allowed_origins entries.

TLS (HTTPS, WSS, a plain-HTTP client on the TLS port, bad certificates) is at the end, and the
pure config validation runs in-process through `edge.config.parse_config`, with one subprocess
run per kind of failure that must end the process with exit status 2.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.config import virtual_cam, write_config
from tests.support.http import HttpHead, merge_headers, read_http_head, request_head
from tests.support.jpeg import decode_jpeg
from tests.support.mjpeg import MjpegStream
from tests.support.process import EdgeServer, StartServer, run_until_exit
from tests.support.programs import requires
from tests.support.sockets import close_socket, open_socket
from tests.support.status import all_clients, wait_no_clients, wait_status
from tests.support.tls import make_cert
from tests.support.waiting import wait_for
from tests.support.websocket import WsFrame, connect_ws, new_key, parse_ws_frame, upgrade_headers

USER = "admin"
PASSWORD = "correct-horse-battery-9f3a"
ENV_PASSWORD = "env-only-Secret-7c1e"
ENV_VAR = "EDGE_TEST_PASSWORD"
TOKEN1 = "tokA1b2C3d4E5f6G7h8"
TOKEN2 = "tokZ9y8X7w6V5u4T3s2q"
REALM = 'Basic realm="edge"'
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; "
    "script-src 'self'; "
    "style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"
)
FRIEND_ORIGIN = "http://friend.example:8000"
EVIL_HOST = "evil.example.com"
WARNING_TEXT = "without access control"
ALLOWED_HOSTS = ["cam.example.org", "*.example.com"]


def small_cam() -> dict[str, Any]:
    """A cheap virtual camera: these tests check access, not throughput."""
    return virtual_cam("cam0", 160, 120, 10, 70)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


GOOD_AUTH = {"Authorization": basic(USER, PASSWORD)}


# --------------------------------------------------------------------------------------------
# Low-level clients that can send arbitrary headers, and read what a refusal answers
# --------------------------------------------------------------------------------------------


def request_lines(method: str, host: str, port: int, path: str, headers: dict[str, str] | None) -> bytes:
    """A request head; a `Host` in `headers` replaces the default one."""
    fields = {"Host": f"{host}:{port}", "User-Agent": "edge-tests", "Accept": "*/*"}
    return request_head(method, path, merge_headers(fields, headers))


def open_mjpeg(
    srv: EdgeServer,
    path: str = "/stream",
    headers: dict[str, str] | None = None,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> MjpegStream:
    """An `MjpegStream` with extra request headers (and optionally over TLS)."""
    return MjpegStream(srv.host, srv.port, path, headers=headers, ssl_context=ssl_context)


def read_body(sock: socket.socket, head: HttpHead, rest: bytes, limit: int = 1 << 20) -> bytes:
    """The body of a non-streaming answer: Content-Length bytes, else up to EOF."""
    length = head.get("Content-Length")
    body = bytearray(rest)
    while length is None or len(body) < int(length):
        assert len(body) <= limit, "body too long"
        data = sock.recv(65536)
        if not data:
            break
        body += data
    return bytes(body)


def raw_request(
    srv: EdgeServer, method: str, path: str, headers: dict[str, str] | None = None, source: str | None = None
) -> tuple[HttpHead, bytes]:
    """One request on a fresh connection (from `source`, another loopback address); the answer's
    head and (non-streaming) body."""
    sock = open_socket(srv.host, srv.port, source_ip=source)
    try:
        sock.sendall(request_lines(method, srv.host, srv.port, path, headers))
        head, rest = read_http_head(sock)
        ctype = head.get("Content-Type") or ""
        body = b"" if ctype.startswith("multipart/") or method == "HEAD" else read_body(sock, head, rest)
        return head, body
    finally:
        close_socket(sock)


def raw_ws_upgrade(
    srv: EdgeServer, path: str = "/ws", headers: dict[str, str] | None = None, source: str | None = None
) -> tuple[HttpHead, bytes]:
    """A WebSocket handshake on a raw socket; the answer's head and, for a denial, its body."""
    upgrade = {**upgrade_headers(new_key()), **(headers or {})}
    sock = open_socket(srv.host, srv.port, source_ip=source)
    try:
        sock.sendall(request_lines("GET", srv.host, srv.port, path, upgrade))
        head, rest = read_http_head(sock)
        body = b"" if head.status == 101 else read_body(sock, head, rest)
        return head, body
    finally:
        close_socket(sock)


def get(url: str, headers: dict[str, str] | None = None, source: str | None = None, **kwargs: Any) -> httpx.Response:
    """GET that also works on stream URLs: the body is read unless it is a multipart stream.

    `source`: connect from that loopback address (a client of its own for the guessing limit)."""
    if source is not None:
        kwargs["transport"] = httpx.HTTPTransport(local_address=source, verify=kwargs.pop("verify", True))
    with httpx.Client(timeout=10, trust_env=False, **kwargs) as client, client.stream("GET", url, headers=headers) as r:
        if not (r.headers.get("content-type") or "").startswith("multipart/"):
            r.read()
        return r


def assert_json_error(status: int, content_type: str | None, body: bytes, expected: int, contains: str = "") -> str:
    assert status == expected, f"expected {expected}, got {status}: {body[:300]!r}"
    assert (content_type or "").startswith("application/json"), f"content-type {content_type!r}"
    doc = json.loads(body)
    assert isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"], doc
    assert contains in doc["error"], doc
    return doc["error"]


def assert_401(r: httpx.Response) -> None:
    assert_json_error(r.status_code, r.headers.get("content-type"), r.content, 401, "authentication required")
    assert r.headers.get("www-authenticate") == REALM, dict(r.headers)


# --------------------------------------------------------------------------------------------
# WebSocket (websockets library)
# --------------------------------------------------------------------------------------------


async def ws_hello_and_frame(url: str, **kwargs: Any) -> tuple[dict[str, Any], WsFrame]:
    """Open a WebSocket, read the hello and one binary frame, close."""
    async with connect_ws(url, **kwargs) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert hello.get("type") == "hello", hello
        async with asyncio.timeout(10):
            while True:
                msg = await asyncio.wait_for(ws.recv(), 5)
                if isinstance(msg, bytes):
                    frame = parse_ws_frame(msg)
                    decode_jpeg(frame.jpeg)
                    return hello, frame


async def ws_refused(url: str, source: str | None = None, **kwargs: Any) -> Any:
    """The handshake must be refused with an HTTP answer; returns that response."""
    if source is not None:
        kwargs["local_addr"] = (source, 0)
    with pytest.raises(InvalidStatus) as info:
        async with connect_ws(url, **kwargs):
            pass
    return info.value.response


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------


@pytest.fixture
def guesser(client_address: str) -> str:
    """A loopback address of this test's own for a test that presents wrong credentials: more
    than 10 of them from one address within 60 s get it refused with 429 (§7), which the
    module's other tests, all from 127.0.0.1, must not inherit."""
    return client_address


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("secrets")
    (d / "password").write_text(PASSWORD + "\n")  # editors end files with a newline
    (d / "tokens").write_text(f"# viewers\n{TOKEN1}\n\n  {TOKEN2}  \n# {TOKEN1}x\n")
    (d / "empty").write_text("")
    (d / "short_tokens").write_text("short-token\n")
    (d / "only_comments").write_text("# nothing here\n\n")
    return d


def on_all_interfaces(srv: EdgeServer) -> EdgeServer:
    """A server started with --host 0.0.0.0 is reached through 127.0.0.1."""
    assert srv.host == "0.0.0.0", srv.host
    srv.host = "127.0.0.1"
    return srv


@pytest.fixture(scope="module")
def auth_srv(start_module_server: StartServer, secrets_dir: Path) -> EdgeServer:
    auth = {"username": USER, "password_file": str(secrets_dir / "password")}
    srv = start_module_server(cameras=[small_cam()], server={"auth": auth, "max_clients": 16}, host="0.0.0.0")
    return on_all_interfaces(srv)


@pytest.fixture(scope="module")
def env_srv(start_module_server: StartServer) -> EdgeServer:
    """Logs at debug: the level at which servers like to dump request headers."""
    return start_module_server(
        cameras=[small_cam()],
        server={"auth": {"username": USER, "password_env": ENV_VAR}},
        env_extra={ENV_VAR: ENV_PASSWORD},
        log_level="debug",
    )


@pytest.fixture(scope="module")
def token_srv(start_module_server: StartServer, secrets_dir: Path) -> EdgeServer:
    srv = start_module_server(
        cameras=[small_cam()],
        server={"tokens_file": str(secrets_dir / "tokens"), "max_clients": 16},
        host="0.0.0.0",
        log_level="debug",
    )
    return on_all_interfaces(srv)


@pytest.fixture(scope="module")
def open_srv(start_module_server: StartServer) -> EdgeServer:
    """No access keys at all (so the server before issue 7 starts too), bound to 0.0.0.0."""
    srv = start_module_server(cameras=[small_cam()], server={"max_clients": 16}, host="0.0.0.0")
    return on_all_interfaces(srv)


@pytest.fixture(scope="module")
def star_srv(start_module_server: StartServer) -> EdgeServer:
    return start_module_server(cameras=[small_cam()], server={"allowed_origins": ["*"], "allowed_hosts": ALLOWED_HOSTS})


@pytest.fixture(scope="module")
def proxy_srv(start_module_server: StartServer) -> EdgeServer:
    return start_module_server(
        cameras=[small_cam()],
        server={
            "trusted_proxies": ["127.0.0.1"],
            "max_streams_per_address": 1,
            "max_clients": 16,
            "allowed_origins": [FRIEND_ORIGIN, "https://tls-friend.example:443"],
        },
    )


# --------------------------------------------------------------------------------------------
# HTTP Basic
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html"),
        ("/snapshot", "image/jpeg"),
        ("/cameras/cam0/snapshot", "image/jpeg"),
        ("/?action=snapshot", "image/jpeg"),
        ("/api/status", "application/json"),
        ("/metrics", "text/plain"),
    ],
)
def test_basic_credentials_grant_access(auth_srv: EdgeServer, path: str, content_type: str) -> None:
    r = get(auth_srv.url + path, GOOD_AUTH)
    assert r.status_code == 200, (r.status_code, r.content[:300])
    assert r.headers["content-type"].startswith(content_type), r.headers
    if content_type == "image/jpeg":
        decode_jpeg(r.content)


def test_basic_status_reports_access(auth_srv: EdgeServer) -> None:
    st = get(auth_srv.url + "/api/status", GOOD_AUTH).json()
    assert st["access"] == {"auth": True, "tokens": False, "tls": False}, st.get("access")


def test_basic_scheme_is_case_insensitive(auth_srv: EdgeServer) -> None:
    token = GOOD_AUTH["Authorization"].split(" ", 1)[1]
    assert get(auth_srv.url + "/api/status", {"Authorization": "basic " + token}).status_code == 200


@pytest.mark.parametrize("path", ["/stream", "/stream.mjpg", "/cameras/cam0/stream", "/?action=stream"])
def test_basic_credentials_open_the_stream(auth_srv: EdgeServer, path: str) -> None:
    with open_mjpeg(auth_srv, path, GOOD_AUTH) as s:
        assert s.head is not None and s.head.status == 200, s.head
        decode_jpeg(s.read_part().jpeg)


WRONG_AUTHORIZATION = {
    "wrong user": basic("root", PASSWORD),
    "user differs in case": basic(USER.upper(), PASSWORD),
    "wrong password": basic(USER, "wrong-password"),
    "password prefix": basic(USER, PASSWORD[:-1]),
    "password with suffix": basic(USER, PASSWORD + "x"),
    "empty password": basic(USER, ""),
    "not base64": "Basic !!!not*base64!!!",
    "base64 without colon": "Basic " + base64.b64encode(f"{USER}{PASSWORD}".encode()).decode(),
    "scheme only": "Basic",
    "bearer scheme": f"Bearer {PASSWORD}",
    "bearer with basic payload": "Bearer " + GOOD_AUTH["Authorization"].split(" ", 1)[1],
    "digest scheme": f'Digest username="{USER}", realm="edge", nonce="x", uri="/", response="y"',
    "empty header": "",
}


@pytest.mark.parametrize("authorization", list(WRONG_AUTHORIZATION.values()), ids=list(WRONG_AUTHORIZATION))
def test_bad_credentials_get_401(auth_srv: EdgeServer, authorization: str, guesser: str) -> None:
    assert_401(get(auth_srv.url + "/api/status", {"Authorization": authorization}, source=guesser))


PROTECTED_PATHS = [
    "/",
    "/?mode=ws",
    "/stream",
    "/stream.mjpg",
    "/cameras/cam0/stream",
    "/?action=stream",
    "/snapshot",
    "/snapshot.jpg",
    "/cameras/cam0/snapshot",
    "/?action=snapshot",
    "/api/status",
    "/metrics",
    "/no/such/path",
    f"/api/status?token={TOKEN1}",  # no tokens_file: a token is no credential
]


@pytest.mark.parametrize("path", PROTECTED_PATHS)
def test_no_credentials_get_401(auth_srv: EdgeServer, path: str) -> None:
    assert_401(get(auth_srv.url + path))


def test_head_of_stream_without_credentials_is_401(auth_srv: EdgeServer) -> None:
    head, _ = raw_request(auth_srv, "HEAD", "/stream")
    assert head.status == 401 and head.get("WWW-Authenticate") == REALM, head.raw


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/healthz", "application/json"),
        ("/readyz", "application/json"),
        ("/static/viewer.js", "text/javascript"),
        ("/static/viewer.css", "text/css"),
    ],
)
def test_health_and_static_stay_open(auth_srv: EdgeServer, path: str, content_type: str) -> None:
    def ok() -> bool:  # /readyz may be 503 for a moment at start-up; never 401
        r = get(auth_srv.url + path)
        assert r.status_code in (200, 503), (path, r.status_code, r.content[:200])
        return r.status_code == 200

    wait_for(ok, 5, 0.1, f"{path} answers 200 without credentials")
    r = get(auth_srv.url + path)
    assert "www-authenticate" not in r.headers
    assert r.headers["content-type"].split(";")[0] in (content_type, "application/javascript"), r.headers


# Paths that start like an open one but are not one: matching the open paths by prefix
# ("/healthz*", "/static*" without its slash) would let them skip the Host check and the login.
LOOK_ALIKE_PATHS = [
    "/healthzX",
    "/healthz/",
    "/healthz/../api/status",
    "/readyz/anything",
    "/readyzz",
    "/staticfoo",
    "/static",
    "/static..%2fapi/status",
    "/Healthz",
    "//healthz",
]


@pytest.mark.parametrize("path", LOOK_ALIKE_PATHS)
def test_look_alike_paths_are_not_open(auth_srv: EdgeServer, path: str) -> None:
    head, body = raw_request(auth_srv, "GET", path)
    assert head.status == 401, (path, head.raw)
    assert head.get("WWW-Authenticate") == REALM, head.raw


@pytest.mark.parametrize("path", LOOK_ALIKE_PATHS)
def test_look_alike_paths_get_the_host_check(auth_srv: EdgeServer, path: str) -> None:
    head, body = raw_request(auth_srv, "GET", path, {"Host": f"{EVIL_HOST}:{auth_srv.port}", **GOOD_AUTH})
    assert head.status == 400, (path, head.raw)
    assert "allowed_hosts" in json.loads(body)["error"]


def test_the_open_paths_themselves_skip_the_host_check(auth_srv: EdgeServer) -> None:
    """A container health check may use any name: the real open paths answer whatever the Host."""
    for path in ("/healthz", "/readyz", "/static/viewer.js"):
        head, _ = raw_request(auth_srv, "GET", path, {"Host": EVIL_HOST})
        assert head.status in (200, 503), (path, head.raw)  # /readyz may be 503 at start-up


async def test_ws_without_credentials_is_refused_401_raw(auth_srv: EdgeServer) -> None:
    """The denial is a real HTTP answer to the handshake: status line, realm header, JSON."""
    head, body = await asyncio.to_thread(raw_ws_upgrade, auth_srv, "/ws")
    assert head.raw.startswith(b"HTTP/1.1 401"), head.raw
    assert head.get("WWW-Authenticate") == REALM, head.raw
    assert_json_error(head.status, head.get("Content-Type"), body, 401, "authentication required")
    assert head.get("Upgrade") is None and head.get("Sec-WebSocket-Accept") is None


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": basic(USER, "wrong")}, {"Authorization": "Basic %%%"}],
    ids=["none", "wrong-password", "malformed"],
)
async def test_ws_with_bad_credentials_is_refused_401(
    auth_srv: EdgeServer, headers: dict[str, str], guesser: str
) -> None:
    for path in ("/ws", "/cameras/cam0/ws"):
        response = await ws_refused(auth_srv.ws_url + path, guesser, additional_headers=headers)
        assert response.status_code == 401, (path, response.status_code)
        assert response.headers.get("WWW-Authenticate") == REALM
        assert "authentication required" in json.loads(response.body)["error"]


async def test_ws_with_basic_header_gets_hello_and_frame(auth_srv: EdgeServer) -> None:
    for path in ("/ws", "/cameras/cam0/ws"):
        hello, frame = await ws_hello_and_frame(auth_srv.ws_url + path, additional_headers=GOOD_AUTH)
        assert hello["camera"] == "cam0" and frame.seq > 0


async def test_ws_origin_is_checked_even_with_credentials(auth_srv: EdgeServer) -> None:
    own = f"http://127.0.0.1:{auth_srv.port}"
    await ws_hello_and_frame(auth_srv.ws_url + "/ws", additional_headers=GOOD_AUTH, origin=own)
    response = await ws_refused(auth_srv.ws_url + "/ws", additional_headers=GOOD_AUTH, origin="http://evil.example")
    assert response.status_code == 403


def test_password_never_shown(auth_srv: EdgeServer, guesser: str) -> None:
    """After requests carrying the password (good and bad), it is in no log line, status or metrics."""
    b64 = GOOD_AUTH["Authorization"].split(" ", 1)[1]
    with open_mjpeg(auth_srv, "/stream", GOOD_AUTH) as s:
        s.read_part()
        status_during = get(auth_srv.url + "/api/status", GOOD_AUTH).text
    wrong = {"Authorization": basic(PASSWORD, PASSWORD + "!")}
    assert get(auth_srv.url + "/api/status", wrong, source=guesser).status_code == 401
    assert get(auth_srv.url + f"/api/status?password={PASSWORD}").status_code == 401
    wait_status_with(auth_srv, GOOD_AUTH, lambda st: not all_clients(st))
    texts = {
        "status while streaming": status_during,
        "status": get(auth_srv.url + "/api/status", GOOD_AUTH).text,
        "metrics": get(auth_srv.url + "/metrics", GOOD_AUTH).text,
        "log": auth_srv.log_text(),
    }
    for where, text in texts.items():
        assert PASSWORD not in text, f"the password appears in the {where}"
        assert b64 not in text, f"the Basic credentials appear in the {where}"


def wait_status_with(srv: EdgeServer, headers: dict[str, str], predicate: Any, query: str = "") -> dict[str, Any]:
    """`wait_status` for a server that wants credentials."""
    result: dict[str, Any] = {}

    def check() -> bool:
        r = get(srv.url + "/api/status" + query, headers)
        assert r.status_code == 200, r.status_code
        result["st"] = r.json()
        return bool(predicate(result["st"]))

    wait_for(check, 10, 0.05, "status condition")
    return result["st"]


# --------------------------------------------------------------------------------------------
# Password from the environment
# --------------------------------------------------------------------------------------------


def test_password_env(env_srv: EdgeServer) -> None:
    good = {"Authorization": basic(USER, ENV_PASSWORD)}
    r = get(env_srv.url + "/api/status", good)
    assert r.status_code == 200 and r.json()["access"]["auth"] is True
    snap = get(env_srv.url + "/snapshot", good)
    assert snap.status_code == 200
    decode_jpeg(snap.content)
    with open_mjpeg(env_srv, "/stream", good) as s:
        decode_jpeg(s.read_part().jpeg)
    assert_401(get(env_srv.url + "/api/status", {"Authorization": basic(USER, PASSWORD)}))
    assert_401(get(env_srv.url + "/snapshot"))
    assert ENV_PASSWORD not in env_srv.log_text()
    assert ENV_PASSWORD not in get(env_srv.url + "/metrics", good).text


async def test_basic_credentials_not_logged_at_debug(env_srv: EdgeServer) -> None:
    creds = basic(USER, ENV_PASSWORD)
    await ws_hello_and_frame(env_srv.ws_url + "/ws", additional_headers={"Authorization": creds})
    await asyncio.to_thread(get, env_srv.url + "/api/status", {"Authorization": creds})
    log = env_srv.log_text()
    assert ENV_PASSWORD not in log
    assert creds.split(" ", 1)[1] not in log, [ln for ln in log.splitlines() if "uthorization" in ln]


# --------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [TOKEN1, TOKEN2], ids=["first", "second-indented"])
@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/?token={t}", "text/html"),
        ("/?mode=mjpeg&token={t}", "text/html"),
        ("/snapshot?token={t}", "image/jpeg"),
        ("/cameras/cam0/snapshot?token={t}", "image/jpeg"),
        ("/?action=snapshot&token={t}", "image/jpeg"),
        ("/api/status?token={t}", "application/json"),
        ("/metrics?token={t}", "text/plain"),
    ],
)
def test_token_grants_access(token_srv: EdgeServer, token: str, path: str, content_type: str) -> None:
    r = get(token_srv.url + path.format(t=token))
    assert r.status_code == 200, (r.status_code, r.content[:300])
    assert r.headers["content-type"].startswith(content_type)


def test_token_status_reports_access(token_srv: EdgeServer) -> None:
    st = get(token_srv.url + f"/api/status?token={TOKEN1}").json()
    assert st["access"] == {"auth": False, "tokens": True, "tls": False}, st.get("access")


@pytest.mark.parametrize(
    "path", ["/stream?token={t}", "/cameras/cam0/stream?fps=5&token={t}", "/?action=stream&token={t}"]
)
def test_token_opens_the_stream(token_srv: EdgeServer, path: str) -> None:
    with open_mjpeg(token_srv, path.format(t=TOKEN1)) as s:
        assert s.head is not None and s.head.status == 200
        decode_jpeg(s.read_part().jpeg)


async def test_token_opens_the_websocket(token_srv: EdgeServer) -> None:
    for path in (f"/ws?token={TOKEN1}", f"/cameras/cam0/ws?token={TOKEN2}"):
        hello, _ = await ws_hello_and_frame(token_srv.ws_url + path)
        assert hello["camera"] == "cam0"


BAD_TOKEN_QUERIES = {
    "wrong": "token=tokNOTaREALtoken00000",
    "prefix": f"token={TOKEN1[:-1]}",
    "with suffix": f"token={TOKEN1}x",
    "other case": f"token={TOKEN1.upper()}",
    "empty": "token=",
    "commented-out line": f"token=%23%20{TOKEN1}x",
    "other parameter name": f"tok={TOKEN1}",
    "none": "",
}


@pytest.mark.parametrize("query", list(BAD_TOKEN_QUERIES.values()), ids=list(BAD_TOKEN_QUERIES))
@pytest.mark.parametrize("path", ["/", "/snapshot", "/stream", "/api/status", "/metrics"])
def test_bad_token_gets_401(token_srv: EdgeServer, path: str, query: str, guesser: str) -> None:
    assert_401(get(token_srv.url + path + (f"?{query}" if query else ""), source=guesser))


def test_basic_header_does_not_work_without_auth(token_srv: EdgeServer) -> None:
    """With only tokens configured, a Basic header (even one carrying a token) is no credential."""
    for creds in (basic(USER, TOKEN1), basic(TOKEN1, TOKEN1), basic(USER, PASSWORD)):
        assert_401(get(token_srv.url + "/api/status", {"Authorization": creds}))


async def test_ws_with_bad_token_is_refused_401(token_srv: EdgeServer, guesser: str) -> None:
    for path in ("/ws", f"/ws?token={TOKEN1}x", f"/cameras/cam0/ws?token={TOKEN2[:-2]}"):
        response = await ws_refused(token_srv.ws_url + path, guesser)
        assert response.status_code == 401, path
        assert response.headers.get("WWW-Authenticate") == REALM


async def test_tokens_never_shown(token_srv: EdgeServer, guesser: str) -> None:
    """Tokens travel in URLs, which servers like to log: after a stream, a WebSocket upgrade and
    status/metrics requests carrying them (and near misses), no log line, status or metrics
    text contains one, not even while the token-carrying connections are listed."""
    mj = await asyncio.to_thread(open_mjpeg, token_srv, f"/stream?token={TOKEN1}")
    try:
        await asyncio.to_thread(mj.read_part)
        url = token_srv.ws_url + f"/ws?token={TOKEN2}"
        async with connect_ws(url) as ws:
            await asyncio.wait_for(ws.recv(), 5)
            await ws.send(json.dumps({"type": "settings", "fps": 2, "token": TOKEN1}))
            await ws.send("not json " + TOKEN1)
            status_during = await asyncio.to_thread(get, token_srv.url + f"/api/status?token={TOKEN1}")
            metrics_during = await asyncio.to_thread(get, token_srv.url + f"/metrics?token={TOKEN2}")
            assert status_during.status_code == 200
            assert len(all_clients(status_during.json())) >= 2
    finally:
        mj.close()
    for query in (f"token={TOKEN1}x", f"token={TOKEN2[:-1]}", f"token={TOKEN1}&x={TOKEN2}"):
        await asyncio.to_thread(get, token_srv.url + f"/api/status?{query}", None, guesser)
    await asyncio.to_thread(raw_ws_upgrade, token_srv, f"/nope?token={TOKEN1}")
    await asyncio.to_thread(raw_request, token_srv, "POST", f"/api/status?token={TOKEN1}")
    await asyncio.to_thread(wait_status_with, token_srv, {}, lambda st: not all_clients(st), f"?token={TOKEN1}")
    await asyncio.sleep(0.2)  # the close lines of the streams
    status_after = await asyncio.to_thread(get, token_srv.url + f"/api/status?token={TOKEN1}")
    log = token_srv.log_text()
    texts = {
        "status while streaming": status_during.text,
        "metrics while streaming": metrics_during.text,
        "status": status_after.text,
        "log": log,
    }
    for where, text in texts.items():
        for token in (TOKEN1, TOKEN2):
            assert token not in text, f"a token appears in the {where}:\n" + "\n".join(
                ln for ln in text.splitlines() if token in ln
            )


# --------------------------------------------------------------------------------------------
# WebSocket Origin (cross-site WebSocket hijacking)
# --------------------------------------------------------------------------------------------


async def test_ws_without_origin_is_allowed(open_srv: EdgeServer) -> None:
    hello, _ = await ws_hello_and_frame(open_srv.ws_url + "/ws")
    assert hello["camera"] == "cam0"


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:{port}", None),
        ("HTTP://127.0.0.1:{port}", None),
        ("http://localhost:{port}", "localhost:{port}"),
        ("http://cam.local:{port}", "cam.local:{port}"),
    ],
    ids=["own", "own-upper-case-scheme", "own-by-name", "own-lan-name"],
)
async def test_ws_allowed_origins(open_srv: EdgeServer, origin: str, host: str | None) -> None:
    """Same-origin is judged against the Host the client used (raw handshake: any Host)."""
    origin = origin.format(port=open_srv.port)
    headers = {"Host": host.format(port=open_srv.port)} if host else {}
    head, body = await asyncio.to_thread(raw_ws_upgrade, open_srv, "/ws", {**headers, "Origin": origin})
    assert head.status == 101, (head.raw, body)
    if host is None:  # the library client sends Host 127.0.0.1:PORT
        hello, _ = await ws_hello_and_frame(open_srv.ws_url + "/ws", origin=origin)
        assert hello["camera"] == "cam0"


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "http://127.0.0.1:{other}",
        "http://127.0.0.1",
        "https://127.0.0.1:{port}",
        "http://localhost:{port}",
        FRIEND_ORIGIN,
        "null",
    ],
    ids=["evil", "other-port", "default-port", "other-scheme", "other-name-than-host", "unlisted", "null"],
)
async def test_ws_foreign_origin_is_refused_403(open_srv: EdgeServer, origin: str) -> None:
    origin = origin.format(port=open_srv.port, other=open_srv.port + 1 if open_srv.port < 65535 else 1)
    head, body = await asyncio.to_thread(raw_ws_upgrade, open_srv, "/ws", {"Origin": origin})
    assert head.get("Sec-WebSocket-Accept") is None
    error = assert_json_error(head.status, head.get("Content-Type"), body, 403, "origin")
    assert "allowed_origins" in error, error
    response = await ws_refused(open_srv.ws_url + "/cameras/cam0/ws", origin=origin)
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        (FRIEND_ORIGIN, 101),
        (FRIEND_ORIGIN.upper(), 101),
        ("http://friend.example", 403),
        ("http://friend.example:8001", 403),
        ("https://friend.example:8000", 403),
        ("http://evil.example", 403),
    ],
)
async def test_ws_listed_origins(proxy_srv: EdgeServer, origin: str, expected: int) -> None:
    head, body = await asyncio.to_thread(raw_ws_upgrade, proxy_srv, "/ws", {"Origin": origin})
    assert head.status == expected, (head.raw, body)
    if expected == 101:
        await asyncio.to_thread(wait_no_clients, proxy_srv)  # the per-address cap is 1
        hello, _ = await ws_hello_and_frame(proxy_srv.ws_url + "/ws", origin=origin)
        assert hello["camera"] == "cam0"
    await asyncio.to_thread(wait_no_clients, proxy_srv)  # the per-address cap is 1


async def test_allowed_origin_with_default_port(proxy_srv: EdgeServer) -> None:
    """allowed_origins `https://tls-friend.example:443` is the origin browsers send without ':443'."""
    for origin in ("https://tls-friend.example", "https://tls-friend.example:443"):
        await asyncio.to_thread(wait_no_clients, proxy_srv)
        head, body = await asyncio.to_thread(raw_ws_upgrade, proxy_srv, "/ws", {"Origin": origin})
        assert head.status == 101, (origin, head.raw, body)
    await asyncio.to_thread(wait_no_clients, proxy_srv)


def test_origin_on_plain_http_is_not_refused(open_srv: EdgeServer) -> None:
    """The Origin rule is about WebSockets: an <img> or fetch from elsewhere gets the snapshot."""
    r = get(open_srv.url + "/snapshot", {"Origin": "http://evil.example"})
    assert r.status_code == 200


async def test_star_allows_any_origin(star_srv: EdgeServer) -> None:
    for origin in ("http://evil.example", "https://other.example:8443", f"http://127.0.0.1:{star_srv.port}"):
        hello, _ = await ws_hello_and_frame(star_srv.ws_url + "/ws", origin=origin)
        assert hello["camera"] == "cam0"


# --------------------------------------------------------------------------------------------
# Host header (DNS rebinding)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{port}",
        "127.0.0.1",
        "[::1]:{port}",
        "[::1]",
        "localhost:{port}",
        "LOCALHOST",
        "192.168.1.20:{port}",
        "cam.local",
        "CAM.LOCAL:{port}",
        "cam.local.",
        "raspberrypi",
        "raspberrypi:{port}",
        "cam.lan",
        "cam.home.arpa",
    ],
)
def test_host_allowed(open_srv: EdgeServer, host: str) -> None:
    """IP literals, localhost, single-label and LAN names need no configuration."""
    r = get(open_srv.url + "/api/status", {"Host": host.format(port=open_srv.port)})
    assert r.status_code == 200, (host, r.status_code, r.content[:300])


FOREIGN_HOSTS = [
    EVIL_HOST,
    f"{EVIL_HOST}:{{port}}",
    "EVIL.example.COM",
    "example.org",
    "notexample.com",
    "cam.example.org.evil.net",
    "example.com.evil.net",
    "local.evil.net",
]


@pytest.mark.parametrize("host", [*FOREIGN_HOSTS, "cam.example.org", "a.example.com"])
def test_foreign_host_is_refused_400(open_srv: EdgeServer, host: str) -> None:
    r = get(open_srv.url + "/api/status", {"Host": host.format(port=open_srv.port)})
    error = assert_json_error(r.status_code, r.headers.get("content-type"), r.content, 400, "host name")
    assert "allowed_hosts" in error, error


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("cam.example.org", 200),
        ("CAM.example.org:{port}", 200),
        ("a.example.com", 200),
        ("x.y.example.com:{port}", 200),
        ("raspberrypi", 200),
        ("127.0.0.1:{port}", 200),
        *((h, 400) for h in FOREIGN_HOSTS if "example.com" not in h.lower()),
    ],
)
def test_allowed_hosts_adds_names(star_srv: EdgeServer, host: str, status: int) -> None:
    r = get(star_srv.url + "/api/status", {"Host": host.format(port=star_srv.port)})
    assert r.status_code == status, (host, r.status_code, r.content[:300])


def test_foreign_host_refused_on_stream_and_ws_but_health_open(open_srv: EdgeServer) -> None:
    evil = {"Host": EVIL_HOST}
    with open_mjpeg(open_srv, "/stream", evil) as s:
        assert s.head is not None and s.head.status == 400, s.head
    head, body = raw_request(open_srv, "GET", "/stream", evil)
    assert_json_error(head.status, head.get("Content-Type"), body, 400, "allowed_hosts")
    head, body = raw_ws_upgrade(open_srv, "/ws", evil)
    assert head.get("Sec-WebSocket-Accept") is None
    assert_json_error(head.status, head.get("Content-Type"), body, 400, "allowed_hosts")
    for path in ("/snapshot", "/", "/metrics"):
        assert get(open_srv.url + path, evil).status_code == 400, path
    assert get(open_srv.url + "/healthz", evil).status_code == 200
    assert get(open_srv.url + "/readyz", evil).status_code in (200, 503)
    assert get(open_srv.url + "/static/viewer.js", evil).status_code == 200


def test_foreign_host_refused_before_credentials(auth_srv: EdgeServer) -> None:
    """With auth, a rebinding page gets no camera data even if the browser has the password."""
    r = get(auth_srv.url + "/api/status", {**GOOD_AUTH, "Host": EVIL_HOST})
    assert r.status_code == 400


# --------------------------------------------------------------------------------------------
# Security headers, 405, slash redirects, WebSocket 404
# --------------------------------------------------------------------------------------------


def assert_security_headers(headers: Any, what: str) -> None:
    assert headers.get("X-Content-Type-Options") == "nosniff", (what, dict(headers))
    assert headers.get("Referrer-Policy") == "no-referrer", (what, dict(headers))
    assert headers.get("Content-Security-Policy") == CSP, (what, dict(headers))


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 200),
        ("GET", "/api/status", 200),
        ("GET", "/snapshot", 200),
        ("GET", "/metrics", 200),
        ("GET", "/healthz", 200),
        ("GET", "/static/viewer.js", 200),
        ("GET", "/no/such/path", 404),
        ("GET", "/cameras/nope/snapshot", 404),
        ("GET", "/stream?fps=abc", 400),
        ("POST", "/api/status", 405),
        ("GET", "/api/status/", 307),
    ],
)
def test_security_headers(open_srv: EdgeServer, method: str, path: str, status: int) -> None:
    head, _ = raw_request(open_srv, method, path)
    assert head.status == status, head.raw
    assert_security_headers(httpx.Headers(head.headers), f"{method} {path}")


def test_security_headers_on_stream_and_denials(open_srv: EdgeServer, auth_srv: EdgeServer) -> None:
    with open_mjpeg(open_srv, "/stream") as s:
        assert s.head is not None and s.head.status == 200
        assert_security_headers(httpx.Headers(s.head.headers), "stream head")
    assert_security_headers(get(auth_srv.url + "/api/status").headers, "401")
    assert_security_headers(get(open_srv.url + "/api/status", {"Host": EVIL_HOST}).headers, "400 host")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
@pytest.mark.parametrize("path", ["/api/status", "/stream", "/snapshot", "/"])
def test_405_has_allow(open_srv: EdgeServer, method: str, path: str) -> None:
    head, body = raw_request(open_srv, method, path, {"Content-Length": "0"})
    assert_json_error(head.status, head.get("Content-Type"), body, 405)
    # docs/interface.md writes `Allow: GET, HEAD`; the order is not meaningful in HTTP (and
    # Starlette's comes from a set, so it varies between server processes).
    allow = head.get("Allow") or ""
    assert sorted(m.strip() for m in allow.split(",")) == ["GET", "HEAD"], head.raw


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/api/status/", "../status"),
        ("/api/status/?a=1", "../status?a=1"),
        ("/metrics/", "../metrics"),
        ("/cameras/cam0/snapshot/", "../snapshot"),
    ],
)
def test_slash_redirect_is_relative(open_srv: EdgeServer, path: str, location: str) -> None:
    for host in (None, "attacker.local", "attacker.local:666"):
        head, _ = raw_request(open_srv, "GET", path, {"Host": host} if host else None)
        assert head.status == 307, head.raw
        assert head.get("Location") == location, head.raw
        assert "attacker" not in head.raw.decode("latin-1")
    # and it resolves to the right place
    target = urljoin(open_srv.url + path, location)
    assert get(target).status_code == 200, target


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/stream",
        "/api/status",
        "/cameras/cam0/stream",
        "/static/viewer.js",
    ],
)
def test_ws_upgrade_without_ws_route_is_404_json(open_srv: EdgeServer, path: str) -> None:
    head, body = raw_ws_upgrade(open_srv, path)
    assert head.get("Sec-WebSocket-Accept") is None
    assert_json_error(head.status, head.get("Content-Type"), body, 404)


@pytest.mark.parametrize("headers", [{}, {"Origin": "http://evil.example"}], ids=["404", "403"])
def test_security_headers_on_ws_denials(open_srv: EdgeServer, headers: dict[str, str]) -> None:
    head, _ = raw_ws_upgrade(open_srv, "/nope" if not headers else "/ws", headers)
    assert head.status in (403, 404), head.raw
    assert_security_headers(httpx.Headers(head.headers), "WebSocket denial")


# --------------------------------------------------------------------------------------------
# X-Forwarded-For and trusted proxies
# --------------------------------------------------------------------------------------------


def remote_host(remote: str) -> str:
    return remote.rpartition(":")[0].strip("[]")


def test_forwarded_for_ignored_without_trusted_proxies(open_srv: EdgeServer) -> None:
    wait_no_clients(open_srv)
    headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    with open_mjpeg(open_srv, "/stream", headers) as s:
        s.read_part()
        st = wait_status(open_srv, lambda st: len(all_clients(st)) == 1, 5, "one client")
        remote = all_clients(st)[0]["remote"]
        assert remote == f"127.0.0.1:{s.local_port}", remote


async def test_forwarded_proto_ignored_without_trusted_proxies(open_srv: EdgeServer) -> None:
    """A client cannot claim https to pass the Origin check for an https origin."""
    origin = f"https://127.0.0.1:{open_srv.port}"
    head, _ = await asyncio.to_thread(raw_ws_upgrade, open_srv, "/ws", {"Origin": origin, "X-Forwarded-Proto": "https"})
    assert head.status == 403, head.raw


def test_forwarded_for_believed_from_trusted_proxy(proxy_srv: EdgeServer) -> None:
    wait_no_clients(proxy_srv)
    with open_mjpeg(proxy_srv, "/stream", {"X-Forwarded-For": "203.0.113.9"}) as s:
        s.read_part()
        st = wait_status(proxy_srv, lambda st: len(all_clients(st)) == 1, 5, "one client")
        assert remote_host(all_clients(st)[0]["remote"]) == "203.0.113.9", all_clients(st)
    assert st["max_streams_per_address"] == 1


async def test_forwarded_proto_from_trusted_proxy_sets_own_origin(proxy_srv: EdgeServer) -> None:
    """Behind a TLS-terminating proxy the page's origin is https://HOST; the WebSocket it opens
    arrives over plain ws from the proxy, with X-Forwarded-Proto: https."""
    https_origin = f"https://127.0.0.1:{proxy_srv.port}"
    http_origin = f"http://127.0.0.1:{proxy_srv.port}"
    cases = [({"X-Forwarded-Proto": "https"}, https_origin, 101), ({"X-Forwarded-Proto": "https"}, http_origin, 403)]
    cases += [({}, http_origin, 101), ({}, https_origin, 403)]
    for headers, origin, expected in cases:
        head, _ = await asyncio.to_thread(raw_ws_upgrade, proxy_srv, "/ws", {**headers, "Origin": origin})
        assert head.status == expected, (headers, origin, head.raw)
    await asyncio.to_thread(wait_no_clients, proxy_srv)


async def test_streams_per_address_counts_the_forwarded_address(proxy_srv: EdgeServer) -> None:
    await asyncio.to_thread(wait_no_clients, proxy_srv)
    first = await asyncio.to_thread(open_mjpeg, proxy_srv, "/stream", {"X-Forwarded-For": "203.0.113.9"})
    streams = [first]
    try:
        await asyncio.to_thread(first.read_part)
        # the same forwarded address: over the cap
        second = await asyncio.to_thread(open_mjpeg, proxy_srv, "/stream", {"X-Forwarded-For": "203.0.113.9"})
        streams.append(second)
        assert second.head is not None and second.head.status == 503, second.head
        assert second.head.get("Retry-After"), second.head.raw
        # a WebSocket from that address is accepted, then closed with 1013
        async with connect_ws(proxy_srv.ws_url + "/ws", additional_headers={"X-Forwarded-For": "203.0.113.9"}) as ws:
            with pytest.raises(ConnectionClosed) as info:
                async with asyncio.timeout(10):
                    while True:
                        await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1013
        # other addresses through the same proxy connection peer (127.0.0.1) are not affected
        for headers in ({"X-Forwarded-For": "203.0.113.10"}, {}):
            other = await asyncio.to_thread(open_mjpeg, proxy_srv, "/stream", headers)
            streams.append(other)
            assert other.head is not None and other.head.status == 200, (headers, other.head)
            await asyncio.to_thread(other.read_part)
        st = await asyncio.to_thread(wait_status, proxy_srv, lambda st: len(all_clients(st)) == 3, 5, "3 clients")
        hosts = sorted(remote_host(c["remote"]) for c in all_clients(st))
        assert hosts == ["127.0.0.1", "203.0.113.10", "203.0.113.9"], hosts
    finally:
        for s in streams:
            s.close()
    await asyncio.to_thread(wait_no_clients, proxy_srv)
    # the slot is free again once the stream ended
    again = await asyncio.to_thread(open_mjpeg, proxy_srv, "/stream", {"X-Forwarded-For": "203.0.113.9"})
    try:
        assert again.head is not None and again.head.status == 200
    finally:
        again.close()


# --------------------------------------------------------------------------------------------
# Start-up warning
# --------------------------------------------------------------------------------------------


def warning_lines(srv: EdgeServer) -> list[str]:
    return [ln for ln in srv.log_text().splitlines() if WARNING_TEXT in ln]


def test_open_server_on_all_interfaces_warns_once(open_srv: EdgeServer) -> None:
    lines = warning_lines(open_srv)
    assert len(lines) == 1, open_srv.log_text()
    assert " WARNING " in lines[0], lines[0]
    assert f"port {open_srv.port}" in lines[0], lines[0]


def test_no_warning_with_access_control_or_on_loopback(
    auth_srv: EdgeServer, token_srv: EdgeServer, star_srv: EdgeServer, proxy_srv: EdgeServer
) -> None:
    """auth_srv and token_srv are on 0.0.0.0 with credentials; the others open on 127.0.0.1."""
    for srv in (auth_srv, token_srv, star_srv, proxy_srv):
        assert get(srv.url + "/healthz").status_code == 200  # started and serving
        assert not warning_lines(srv), srv.log_text()


# --------------------------------------------------------------------------------------------
# Config validation (in-process, plus one subprocess for the exit status)
# --------------------------------------------------------------------------------------------


def parse(server: dict[str, Any]) -> Any:
    from edge.config import parse_config

    return parse_config({"server": server, "cameras": [{"name": "cam0", "source": "virtual"}]}, "test.yaml")


BAD_CONFIGS: dict[str, tuple[dict[str, Any], dict[str, str | None], str, str]] = {
    # id: (server section with {d} = secrets dir, environment, key, part of the message)
    "literal password": (
        {"auth": {"username": USER, "password": "hunter2hunter2"}},
        {},
        "server.auth.password",
        "password_file",
    ),
    "both password sources": (
        {"auth": {"username": USER, "password_file": "{d}/password", "password_env": ENV_VAR}},
        {ENV_VAR: "x" * 12},
        "server.auth",
        "exactly one",
    ),
    "no password source": ({"auth": {"username": USER}}, {}, "server.auth", "exactly one"),
    "missing password file": (
        {"auth": {"username": USER, "password_file": "{d}/nope"}},
        {},
        "server.auth.password_file",
        "nope",
    ),
    "empty password file": (
        {"auth": {"username": USER, "password_file": "{d}/empty"}},
        {},
        "server.auth.password_file",
        "empty",
    ),
    "empty env var": (
        {"auth": {"username": USER, "password_env": ENV_VAR}},
        {ENV_VAR: ""},
        "server.auth.password_env",
        ENV_VAR,
    ),
    "unset env var": (
        {"auth": {"username": USER, "password_env": ENV_VAR}},
        {ENV_VAR: None},
        "server.auth.password_env",
        ENV_VAR,
    ),
    "user with colon": (
        {"auth": {"username": "a:b", "password_env": ENV_VAR}},
        {ENV_VAR: "x" * 12},
        "server.auth.username",
        ":",
    ),
    "no user": ({"auth": {"password_env": ENV_VAR}}, {ENV_VAR: "x" * 12}, "server.auth.username", ""),
    "short token": ({"tokens_file": "{d}/short_tokens"}, {}, "server.tokens_file", "16"),
    "no token": ({"tokens_file": "{d}/only_comments"}, {}, "server.tokens_file", "no token"),
    "missing tokens file": ({"tokens_file": "{d}/nope"}, {}, "server.tokens_file", "nope"),
    "tls without keyfile": ({"tls": {"certfile": "{d}/password"}}, {}, "server.tls.keyfile", "missing"),
    "tls without certfile": ({"tls": {"keyfile": "{d}/password"}}, {}, "server.tls.certfile", "missing"),
    "tls missing file": ({"tls": {"certfile": "{d}/nope", "keyfile": "{d}/nope"}}, {}, "server.tls.certfile", "nope"),
    "tls not a cert": (
        {"tls": {"certfile": "{d}/password", "keyfile": "{d}/password"}},
        {},
        "server.tls",
        "cannot load",
    ),
    "proxy not an IP": ({"trusted_proxies": ["127.0.0.1", "proxy.lan"]}, {}, "server.trusted_proxies[1]", "proxy.lan"),
    "proxies not a list": ({"trusted_proxies": "127.0.0.1"}, {}, "server.trusted_proxies", "list"),
    "request_timeout 0": ({"request_timeout": 0}, {}, "server.request_timeout", "between 1"),
    "request_timeout 0.5": ({"request_timeout": 0.5}, {}, "server.request_timeout", "between 1"),
    "request_timeout text": ({"request_timeout": "10s"}, {}, "server.request_timeout", "number"),
    "stall_timeout 0": ({"stall_timeout": 0}, {}, "server.stall_timeout", "between 1"),
    "origin without scheme": ({"allowed_origins": ["evil.example"]}, {}, "server.allowed_origins[0]", "origin"),
    "negative per-address cap": ({"max_streams_per_address": -1}, {}, "server.max_streams_per_address", "between"),
}


def fill(value: Any, d: Path) -> Any:
    if isinstance(value, str):
        return value.replace("{d}", str(d))
    if isinstance(value, dict):
        return {k: fill(v, d) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, d) for v in value]
    return value


@pytest.mark.parametrize("case", list(BAD_CONFIGS.values()), ids=list(BAD_CONFIGS))
def test_config_errors(case: Any, secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.config import ConfigError

    server, env, key, fragment = case
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        parse(fill(server, secrets_dir))
    assert info.value.key == key, str(info.value)
    assert fragment in info.value.message, str(info.value)
    assert "hunter2hunter2" not in str(info.value)


def test_valid_access_config(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse(
        {
            "host": "0.0.0.0",
            "auth": {"username": USER, "password_file": str(secrets_dir / "password")},
            "tokens_file": str(secrets_dir / "tokens"),
            "allowed_origins": ["https://Example.com", "*"],
            "allowed_hosts": ["cam.example.org", "*.example.com", "*"],
            "trusted_proxies": ["127.0.0.1", "10.0.0.0/8", "::1"],
            "request_timeout": 1,
            "stall_timeout": 2.5,
            "max_streams_per_address": 3,
        }
    ).server
    assert config.auth.username == USER
    assert config.auth.password == PASSWORD  # the file's trailing newline is not part of it
    assert set(config.tokens) == {TOKEN1, TOKEN2}
    assert config.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "::1")
    assert config.allowed_origins == ("https://example.com", "*")
    assert (config.request_timeout, config.stall_timeout, config.max_streams_per_address) == (1, 2.5, 3)
    # the config may be logged or shown in a traceback: its repr holds no secret
    for secret in (PASSWORD, TOKEN1, TOKEN2):
        assert secret not in repr(config)
    monkeypatch.setenv(ENV_VAR, ENV_PASSWORD)
    env_config = parse({"auth": {"username": USER, "password_env": ENV_VAR}}).server
    assert env_config.auth.password == ENV_PASSWORD and ENV_PASSWORD not in repr(env_config)


def run_expecting_exit_2(config: Path, env_extra: dict[str, str] | None = None) -> str:
    rc, log = run_until_exit(config, env_extra)
    assert rc == 2, f"exit {rc}, stderr:\n{log}"
    assert "Traceback" not in log, log
    lines = [ln for ln in log.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{log}"
    assert str(config) in lines[0], lines[0]
    return lines[0]


def test_literal_password_exits_2(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "edge.yaml", [small_cam()], {"auth": {"username": USER, "password": "hunter2hunter2"}}
    )
    line = run_expecting_exit_2(config)
    assert "server.auth.password" in line and "hunter2hunter2" not in line, line


# --------------------------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = make_cert(d, "server")
    _, other_key = make_cert(d, "other")
    return {"cert": cert, "key": key, "other_key": other_key}


@pytest.fixture(scope="module")
def tls_srv(start_module_server: StartServer, certs: dict[str, Path]) -> EdgeServer:
    tls = {"certfile": str(certs["cert"]), "keyfile": str(certs["key"])}
    return start_module_server(cameras=[small_cam()], server={"tls": tls, "max_clients": 16})


@pytest.fixture
def tls_context(certs: dict[str, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs["cert"]))


@requires("openssl")
def test_tls_listening_line_says_https(tls_srv: EdgeServer) -> None:
    assert f"listening on https://127.0.0.1:{tls_srv.port}" in tls_srv.log_text()


@requires("openssl")
def test_https_status_snapshot_and_stream(tls_srv: EdgeServer, tls_context: ssl.SSLContext) -> None:
    base = f"https://127.0.0.1:{tls_srv.port}"
    r = get(base + "/api/status", verify=tls_context)
    assert r.status_code == 200 and r.json()["access"] == {"auth": False, "tokens": False, "tls": True}
    assert r.headers.get("x-content-type-options") == "nosniff"
    snap = get(base + "/snapshot", verify=tls_context)
    assert snap.status_code == 200
    decode_jpeg(snap.content)
    with open_mjpeg(tls_srv, "/stream", ssl_context=tls_context) as s:
        assert s.head is not None and s.head.status == 200
        decode_jpeg(s.read_part().jpeg)
        decode_jpeg(s.read_part().jpeg)


@requires("openssl")
async def test_wss_hello_and_frame(tls_srv: EdgeServer, tls_context: ssl.SSLContext) -> None:
    url = f"wss://127.0.0.1:{tls_srv.port}/ws"
    hello, frame = await ws_hello_and_frame(url, ssl=tls_context)
    assert hello["camera"] == "cam0" and frame.seq > 0
    # same-origin over TLS is https://host:port
    await ws_hello_and_frame(url, ssl=tls_context, origin=f"https://127.0.0.1:{tls_srv.port}")
    response = await ws_refused(url, ssl=tls_context, origin=f"http://127.0.0.1:{tls_srv.port}")
    assert response.status_code == 403


@requires("openssl")
def test_plain_http_to_tls_port_gets_no_http_answer(tls_srv: EdgeServer, tls_context: ssl.SSLContext) -> None:
    before = tls_srv.log_text()
    for _ in range(3):
        sock = open_socket(tls_srv.host, tls_srv.port, timeout=5)
        try:
            sock.sendall(f"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{tls_srv.port}\r\n\r\n".encode())
            received = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    data = sock.recv(65536)
                except (ConnectionResetError, TimeoutError):
                    break
                if not data:
                    break
                received += data
            assert b"HTTP/" not in received and b"camera" not in received, received[:200]
        finally:
            close_socket(sock)
    time.sleep(0.3)
    new = tls_srv.log_text()[len(before) :]
    assert "Traceback" not in new and " ERROR " not in new, new
    # and the server still serves TLS clients
    assert get(f"https://127.0.0.1:{tls_srv.port}/healthz", verify=tls_context).status_code == 200


@requires("openssl")
def test_tls_cert_key_mismatch_exits_2(tmp_path: Path, certs: dict[str, Path]) -> None:
    tls = {"certfile": str(certs["cert"]), "keyfile": str(certs["other_key"])}
    config = write_config(tmp_path / "edge.yaml", [small_cam()], {"tls": tls})
    line = run_expecting_exit_2(config)
    assert "server.tls" in line, line
    assert str(certs["other_key"]) in line, f"the message should name the files it could not load: {line}"


@requires("openssl")
def test_tls_config_errors_in_process(certs: dict[str, Path]) -> None:
    from edge.config import ConfigError

    with pytest.raises(ConfigError) as info:
        parse({"tls": {"certfile": str(certs["cert"]), "keyfile": str(certs["other_key"])}})
    assert info.value.key == "server.tls", str(info.value)
    with pytest.raises(ConfigError) as info:
        parse({"tls": {"certfile": str(certs["cert"])}})
    assert info.value.key == "server.tls.keyfile", str(info.value)
    good = parse({"tls": {"certfile": str(certs["cert"]), "keyfile": str(certs["key"])}}).server
    assert good.tls is not None and good.tls.certfile == str(certs["cert"])
