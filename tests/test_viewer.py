"""The viewer page (`GET /`, edge/web/static/) in a real browser: Debian's chromium via Playwright.

Every test fails on any console error or uncaught exception in the page (a Content-Security-Policy
violation is one, see CSP_REPORTER_JS), except for the network
errors a test provokes on purpose (a blocked MJPEG request, a stopped server), which are matched
precisely.  Video is "moving" when the pixels of a tile's <img>/<canvas> change over time.
`playwright install` cannot download browsers here, so the system chromium is used: the tests that
open a page are marked `requires("chromium")`.
"""

from __future__ import annotations

import http.server
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.support.config import virtual_cam
from tests.support.http import http_client, http_server
from tests.support.process import EdgeServer
from tests.support.programs import program, requires
from tests.support.status import get_status
from tests.support.waiting import wait_for

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}
# Two virtual cameras of different sizes and rates.
CAMERAS = [virtual_cam("cam0", 320, 240, 15), virtual_cam("cam1", 480, 270, 10)]
SIZES = {"cam0": (320, 240), "cam1": (480, 270)}

# Every Content-Security-Policy violation becomes a console error, so any test fails on one. Chromium
# logs an inline style attribute itself ("Applying inline style violates ..."), but not a blocked
# eval() whose EvalError the script catches: only this listener (see open_page) reports that.
CSP_REPORTER_JS = """document.addEventListener("securitypolicyviolation", (e) => {
  const blocked = e.blockedURI.split("?")[0]; // no query: it may hold the page's token
  console.error(`CSP violation: ${e.effectiveDirective} blocked ${blocked} at ${e.sourceFile}:${e.lineNumber}`);
});"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=program("chromium"), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def edge(start_module_server: Callable[..., EdgeServer]) -> EdgeServer:
    return start_module_server(cameras=CAMERAS)


# --------------------------------------------------------------------------------------------
# Console watching
# --------------------------------------------------------------------------------------------


class Console:
    """Collects console errors and page exceptions; `expect` whitelists a precise pattern."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        self.allowed: list[tuple[re.Pattern[str], str]] = []  # (message text, resource URL)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught exception: {exc}"))

    def _console(self, msg: ConsoleMessage) -> None:
        # Our own diagnostics are warnings prefixed "edge:" (e.g. a message the server rejected).
        if msg.type == "warning" and msg.text.startswith("edge:"):
            self.errors.append(f"console warning: {msg.text}")
        if msg.type != "error":
            return
        url = msg.location.get("url", "")
        for text_re, url_part in self.allowed:
            if text_re.search(msg.text) and url_part in url:
                return
        self.errors.append(f"console error: {msg.text} ({url})")

    def expect(self, text_pattern: str, url_part: str = "") -> None:
        self.allowed.append((re.compile(text_pattern), url_part))

    def check(self) -> None:
        assert not self.errors, "the page logged errors:\n" + "\n".join(self.errors)


OpenPage = Callable[..., tuple["Page", Console]]


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """Opens a page in a browser context of its own: `open_page(viewport=DESKTOP, **new_context
    arguments)` returns the page and its `Console`. Every page is closed after the test (routes
    a test left pending, such as a held request, are dropped first)."""
    pages: list[Page] = []

    def open_(viewport: dict[str, int] = DESKTOP, **ctx: Any) -> tuple[Page, Console]:
        context = browser.new_context(viewport=viewport, **ctx)
        context.add_init_script(CSP_REPORTER_JS)  # injected by the browser: not subject to the CSP
        page = context.new_page()
        pages.append(page)
        return page, Console(page)

    yield open_
    for page in pages:
        page.unroute_all(behavior="ignoreErrors")
        page.context.close()


def goto(page: Page, url: str) -> None:
    # Not "load": a page with an endless MJPEG <img> may hold the load event back.
    response = page.goto(url, wait_until="domcontentloaded")
    assert response is not None and response.status == 200, f"GET {url} answered {response and response.status}"


# --------------------------------------------------------------------------------------------
# Reading the page
# --------------------------------------------------------------------------------------------

# A hash of what an <img> or <canvas> currently shows (same-origin, so readable).
FRAME_HASH_JS = """(el) => {
  const w = el.naturalWidth || el.width, h = el.naturalHeight || el.height;
  if (!w || !h) return null;
  const c = document.createElement("canvas");
  c.width = w; c.height = h;
  const g = c.getContext("2d");
  g.drawImage(el, 0, 0);
  const d = g.getImageData(0, 0, w, h).data;
  let x = 0;
  for (let i = 0; i < d.length; i += 3) x = (Math.imul(x, 31) + d[i]) | 0;
  return x;
}"""


def tile(page: Page, cam: str) -> Any:
    return page.locator("section.tile", has=page.locator("h2", has_text=re.compile(f"^{cam}$")))


def video(page: Page, cam: str) -> Any:
    """The tile's visible video element (<img> for MJPEG, <canvas> for WebSocket)."""
    return tile(page, cam).locator(".video:not([hidden])")


def hud(page: Page, cam: str) -> str:
    return tile(page, cam).locator(".hud").inner_text()


def wait_hud(page: Page, cam: str, pattern: str, timeout: float = 8.0) -> re.Match[str]:
    rx = re.compile(pattern)
    return wait_for(lambda: rx.search(hud(page, cam)), timeout, 0.1, f"{cam} overlay matching {pattern!r}")


def assert_moving(page: Page, cam: str, timeout: float = 5.0) -> None:
    """The tile's picture changes (the virtual camera prints a frame counter and a clock)."""
    el = video(page, cam)
    first = wait_for(lambda: el.evaluate(FRAME_HASH_JS), timeout, 0.1, f"{cam}: a painted frame")
    wait_for(lambda: el.evaluate(FRAME_HASH_JS) not in (None, first), timeout, 0.1, f"{cam}: the picture to change")


def notice(page: Page, cam: str) -> str:
    el = tile(page, cam).locator(".notice")
    return el.inner_text() if el.is_visible() else ""


def stream_kinds(status: dict[str, Any]) -> dict[str, list[str]]:
    """The kinds of stream open on each camera, from a status."""
    return {c["name"]: sorted(k["kind"] for k in c["clients"]) for c in status["cameras"]}


def clients(edge: EdgeServer) -> dict[str, list[str]]:
    return stream_kinds(get_status(edge))


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


@requires("chromium")
def test_grid_shows_moving_video_from_each_camera(open_page: OpenPage, edge: EdgeServer) -> None:
    page, console = open_page()
    goto(page, edge.url + "/")
    assert page.locator("section.tile").count() == 2
    for cam, (w, h) in SIZES.items():
        t = tile(page, cam)
        wait_hud(page, cam, r"^MJPEG · cam \d+\.\d fps$")
        assert t.locator(".badge").is_visible(), f"{cam}: no 'virtual camera' badge"
        assert t.locator(".badge").inner_text() == "virtual camera"
        assert "streaming" in t.locator(".state").inner_text()
        img = t.locator("img")
        assert img.evaluate("(i) => [i.naturalWidth, i.naturalHeight]") == [w, h]
        assert f"cameras/{cam}/stream" in (img.get_attribute("src") or "")
        assert t.locator("canvas").is_hidden()
        assert_moving(page, cam)
    # The relative snapshot link resolves under the page's own path.
    href = tile(page, "cam0").locator("a.snap").evaluate("(a) => a.href")
    assert href == edge.url + "/cameras/cam0/snapshot"
    wait_for(lambda: clients(edge) == {"cam0": ["mjpeg"], "cam1": ["mjpeg"]}, 5, 0.1, "one MJPEG stream per tile")
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(1200)  # let the overlay show a full second of numbers
    page.screenshot(path=str(ARTIFACTS / "grid.png"))
    console.check()


@requires("chromium")
def test_phone_layout_fits_360px(open_page: OpenPage, edge: EdgeServer) -> None:
    page, console = open_page(PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    goto(page, edge.url + "/")
    for cam in SIZES:
        wait_hud(page, cam, r"^MJPEG")
        assert_moving(page, cam)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "horizontal scrolling"
    boxes = [tile(page, cam).bounding_box() for cam in SIZES]
    assert all(b and b["x"] >= 0 and b["x"] + b["width"] <= PHONE["width"] for b in boxes)
    assert boxes[1]["y"] > boxes[0]["y"], "tiles should stack in one column on a phone"
    for button in page.locator(".tile .btn").all():
        box = button.bounding_box()
        assert box and box["height"] >= 40 and box["width"] >= 40, "touch targets too small"
        assert button.get_attribute("aria-label"), "icon buttons need an accessible name"
    page.screenshot(path=str(ARTIFACTS / "grid-phone.png"), full_page=True)
    console.check()


@requires("chromium")
def test_ws_mode_draws_frames_on_canvas_with_acks(open_page: OpenPage, edge: EdgeServer) -> None:
    page, console = open_page()
    sockets: list[Any] = []
    sent: dict[str, list[str]] = {}
    stream_requests: list[str] = []

    def on_ws(ws: Any) -> None:
        sockets.append(ws)
        sent[ws.url] = []
        ws.on("framesent", lambda payload: sent[ws.url].append(payload))

    page.on("websocket", on_ws)
    page.on("request", lambda r: "/stream" in r.url and stream_requests.append(r.url))
    goto(page, edge.url + "/?mode=ws")
    for cam, (w, h) in SIZES.items():
        wait_hud(page, cam, r"^WS · [\d.]+ fps · -?\d+ ms$")
        canvas = tile(page, cam).locator("canvas")
        assert canvas.is_visible()
        assert canvas.evaluate("(c) => [c.width, c.height]") == [w, h]
        assert tile(page, cam).locator("img").evaluate("(i) => i.hasAttribute('src')") is False
        assert_moving(page, cam)
    urls = sorted(ws.url for ws in sockets)
    assert urls == [f"{edge.ws_url}/cameras/cam0/ws", f"{edge.ws_url}/cameras/cam1/ws"], urls
    for url, messages in sent.items():
        assert messages[0] == '{"type":"settings","ack":true}', f"{url}: first message {messages[:1]}"
        acks = [int(m) for m in re.findall(r'\{"type":"ack","seq":(\d+)\}', "".join(messages[1:]))]
        assert len(acks) >= 3 and acks == sorted(acks), f"{url}: acks {acks[:10]}"

    def acked_ws_only() -> bool:
        kinds = [[(c["kind"], c.get("ack")) for c in cam["clients"]] for cam in get_status(edge)["cameras"]]
        return kinds == [[("websocket", True)]] * 2

    wait_for(acked_ws_only, 5, 0.1, "one WebSocket in ack mode per camera (status)")
    assert not stream_requests, f"WebSocket mode requested MJPEG: {stream_requests}"
    console.check()


@requires("chromium")
def test_ws_latency_and_fps_overlay_are_plausible(open_page: OpenPage, edge: EdgeServer) -> None:
    page, console = open_page()
    goto(page, edge.url + "/?mode=ws")
    for cam, fps in (("cam0", 15), ("cam1", 10)):
        wait_hud(page, cam, r"^WS")
        page.wait_for_timeout(1100)  # one full overlay window
        m = wait_hud(page, cam, r"^WS · (?P<fps>[\d.]+) fps · (?P<ms>-?\d+) ms$")
        latency, measured = int(m["ms"]), float(m["fps"])
        assert 0 <= latency < 500, f"{cam}: latency {latency} ms on loopback"
        assert fps * 0.5 <= measured <= fps * 1.5, f"{cam}: {measured} fps, camera runs at {fps}"
    console.check()


@requires("chromium")
def test_mjpeg_mode_uses_img_only(open_page: OpenPage, edge: EdgeServer) -> None:
    page, console = open_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    goto(page, edge.url + "/?mode=mjpeg")
    for cam in SIZES:
        wait_hud(page, cam, r"^MJPEG · cam")
        assert tile(page, cam).locator("canvas").is_hidden()
        assert_moving(page, cam)
    page.wait_for_timeout(500)
    assert not sockets, f"MJPEG mode opened WebSockets: {sockets}"
    assert page.locator(".modes a[aria-current=page]").inner_text() == "MJPEG"
    console.check()


@requires("chromium")
def test_auto_falls_back_to_ws_when_mjpeg_is_blocked(open_page: OpenPage, edge: EdgeServer) -> None:
    page, console = open_page()
    aborted: list[str] = []

    def abort(route: Any) -> None:
        aborted.append(route.request.url)
        route.abort()

    # Like a proxy that refuses multipart responses: every MJPEG request fails.
    page.route(re.compile(r"/cameras/[^/]+/stream"), abort)
    console.expect(r"^Failed to load resource: net::ERR_FAILED$", f"{edge.url}/cameras/")
    goto(page, edge.url + "/")
    for cam in SIZES:
        wait_hud(page, cam, r"^WS · [\d.]+ fps")
        assert_moving(page, cam)
    wait_for(lambda: clients(edge) == {"cam0": ["websocket"], "cam1": ["websocket"]}, 5, 0.1, "WebSockets only")
    page.wait_for_timeout(1000)
    assert len(aborted) == 2, f"the fallback should stick, but MJPEG was retried: {aborted}"
    console.check()


@requires("chromium")
def test_auto_falls_back_to_ws_when_mjpeg_paints_nothing(open_page: OpenPage, edge: EdgeServer) -> None:
    page, console = open_page()
    held: list[Any] = []
    # Like a proxy that buffers the endless multipart response: the request never answers.
    page.route(re.compile(r"/cameras/cam0/stream"), lambda route: held.append(route))
    goto(page, edge.url + "/")
    wait_hud(page, "cam1", r"^MJPEG · cam")  # unaffected tile stays on MJPEG
    t0 = time.monotonic()
    wait_hud(page, "cam0", r"^WS · [\d.]+ fps", timeout=8)
    # The page's 3 s "no MJPEG frame" timer plus the WebSocket's start, not the checks below.
    took = time.monotonic() - t0
    assert took < 6, f"the fallback to WebSocket took {took:.1f} s"
    assert held, "the MJPEG request was not intercepted"
    assert_moving(page, "cam0")
    assert_moving(page, "cam1")
    console.check()


@requires("chromium")
def test_snapshot_and_full_screen_buttons(open_page: OpenPage, edge: EdgeServer) -> None:
    page, console = open_page(accept_downloads=True)
    goto(page, edge.url + "/")
    wait_hud(page, "cam1", r"^MJPEG · cam")
    t = tile(page, "cam1")
    with page.expect_download() as info:
        t.locator("a.snap").click()
    download = info.value
    assert re.fullmatch(r"cam1.*\.jpg", download.suggested_filename), download.suggested_filename
    data = Path(download.path()).read_bytes()
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9", "snapshot is not a JPEG"

    full = t.locator("button.full")
    assert full.get_attribute("aria-label") == "Full screen: cam1"
    full.click()
    wait_for(lambda: full.get_attribute("aria-label") == "Exit full screen: cam1", 3, 0.05, "full screen on")
    assert page.evaluate("document.fullscreenElement?.matches('section.tile')")
    box = t.bounding_box()
    assert box and box["width"] >= DESKTOP["width"] - 1 and box["height"] >= DESKTOP["height"] - 1
    assert_moving(page, "cam1")
    page.screenshot(path=str(ARTIFACTS / "fullscreen.png"))
    full.click()
    wait_for(lambda: full.get_attribute("aria-label") == "Full screen: cam1", 3, 0.05, "full screen off")
    assert page.evaluate("document.fullscreenElement") is None
    console.check()


@requires("chromium")
def test_hidden_tab_stops_streaming_and_resumes(open_page: OpenPage, edge: EdgeServer) -> None:
    page, console = open_page()
    goto(page, edge.url + "/?mode=auto")
    wait_for(lambda: clients(edge) == {"cam0": ["mjpeg"], "cam1": ["mjpeg"]}, 8, 0.1, "streams open")
    # Headless tabs are always visible: simulate the browser hiding this one.
    page.evaluate("""() => {
        Object.defineProperty(document, "hidden", {configurable: true, get: () => true});
        Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "hidden"});
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    wait_for(lambda: clients(edge) == {"cam0": [], "cam1": []}, 5, 0.1, "all streams closed while hidden")
    page.evaluate("""() => {
        delete document.hidden;
        delete document.visibilityState;
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    wait_for(lambda: clients(edge) == {"cam0": ["mjpeg"], "cam1": ["mjpeg"]}, 5, 0.1, "streams reopened")
    for cam in SIZES:
        assert_moving(page, cam)
    console.check()


@requires("chromium")
def test_more_than_four_cameras_use_websocket_in_auto(
    start_server: Callable[..., EdgeServer], open_page: OpenPage
) -> None:
    srv = start_server(cameras=[virtual_cam(f"c{i}", 160, 120, 5, 60) for i in range(5)])
    page, console = open_page()
    goto(page, srv.url + "/")
    for i in range(5):
        wait_hud(page, f"c{i}", r"^WS · [\d.]+ fps")
    assert "more than 4 cameras" in page.locator("#summary").inner_text()
    assert page.locator("img.video[src]").count() == 0
    console.check()


@requires("chromium")
def test_tiles_recover_after_server_restart(start_server: Callable[..., EdgeServer], open_page: OpenPage) -> None:
    srv = start_server(cameras=CAMERAS)
    port = srv.port
    pages = {}
    for mode in ("auto", "ws"):
        page, console = open_page()
        goto(page, f"{srv.url}/?mode={mode}")
        pages[mode] = (page, console)
    for mode, (page, _) in pages.items():
        for cam in SIZES:
            wait_hud(page, cam, r"^WS ·" if mode == "ws" else r"^MJPEG ·")
    for _, console in pages.values():
        console.check()
        # Only while the server is away: refused connections are what a browser logs then.
        console.expect(r"net::ERR_CONNECTION_(REFUSED|RESET)|net::ERR_EMPTY_RESPONSE", srv.url)
        console.expect(r"^WebSocket connection to .* failed")

    assert srv.stop(signal.SIGTERM) == 0
    for mode, (page, _) in pages.items():
        for cam in SIZES:
            wait_for(lambda: notice(page, cam) == "reconnecting…", 8, 0.1, f"{mode}/{cam}: 'reconnecting…'")  # noqa: B023
            assert tile(page, cam).locator(".state").inner_text() == "server unreachable"
        assert "Reconnecting" in page.locator("#banner").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    pages["auto"][0].screenshot(path=str(ARTIFACTS / "reconnecting.png"))

    start_server(cameras=CAMERAS, port=port)
    for mode, (page, _) in pages.items():
        for cam in SIZES:
            # MJPEG stays MJPEG: a server outage is not a reason to fall back.
            wait_hud(page, cam, r"^WS · [\d.]+ fps" if mode == "ws" else r"^MJPEG · cam", timeout=15)
            assert notice(page, cam) == ""
            assert tile(page, cam).locator(".state").inner_text() == "streaming"
            assert_moving(page, cam)
        assert page.locator("#banner").is_hidden()
    for _, console in pages.values():
        console.allowed.clear()
        console.check()


class _EmbedHandler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # http.server API
        if self.path != "/":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@requires("chromium")
def test_img_embedded_in_a_page_from_another_origin_plays(open_page: OpenPage, edge: EdgeServer) -> None:
    handler = type("Handler", (_EmbedHandler,), {})
    handler.body = (
        "<!doctype html><html><head><meta charset=utf-8><link rel=icon href='data:,'>"
        "<title>dashboard</title></head><body style='margin:0'>"
        f"<img id=cam alt=camera src='{edge.url}/cameras/cam0/stream'></body></html>"
    ).encode()
    with http_server(handler) as port:
        origin = f"http://127.0.0.1:{port}"
        assert origin != edge.url
        page, console = open_page()
        goto(page, origin + "/")
        img = page.locator("#cam")
        wait_for(lambda: img.evaluate("(i) => i.naturalWidth") == 320, 5, 0.1, "the embedded stream to paint")
        # Cross-origin pixels cannot be read from script: compare screenshots instead.
        first = img.screenshot()
        wait_for(lambda: img.screenshot() != first, 5, 0.2, "the embedded stream to move")
        console.check()


# --------------------------------------------------------------------------------------------
# Access control (§7 of docs/interface.md): the page behind HTTP Basic or opened as /?token=T, and its CSP
# --------------------------------------------------------------------------------------------

USER = "admin"
PASSWORD = "viewer-test-password"
TOKEN = "viewer-token-0123456789abcdef"  # tokens are >= 16 printable characters


@dataclass
class Guarded:
    """A server behind access control, and how a viewer gets in: HTTP Basic credentials in the
    browser context, or only `?token=` in the page's own URL."""

    server: EdgeServer
    token: str | None  # None: Basic

    @property
    def context(self) -> dict[str, Any]:
        """new_context() arguments: the browser's credentials (none for a token page)."""
        return {} if self.token else {"http_credentials": {"username": USER, "password": PASSWORD}}

    def page_url(self, query: str = "") -> str:
        parts = ([f"token={self.token}"] if self.token else []) + ([query] if query else [])
        return f"{self.server.url}/" + ("?" + "&".join(parts) if parts else "")

    def status(self) -> dict[str, Any]:
        params = {"token": self.token} if self.token else {}
        with http_client() as client:
            r = client.get(
                self.server.url + "/api/status", params=params, auth=None if self.token else (USER, PASSWORD)
            )
        assert r.status_code == 200, f"/api/status answered {r.status_code}"
        return r.json()

    def clients(self) -> dict[str, list[str]]:
        return stream_kinds(self.status())


@pytest.fixture(scope="module", params=["basic", "token"])
def guarded(
    request: pytest.FixtureRequest,
    start_module_server: Callable[..., EdgeServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Guarded:
    secrets = tmp_path_factory.mktemp(f"secrets-{request.param}")
    if request.param == "basic":
        (secrets / "password").write_text(PASSWORD + "\n")
        access = {"auth": {"username": USER, "password_file": str(secrets / "password")}}
    else:
        (secrets / "tokens").write_text(f"# viewer tests\n{TOKEN}\n")
        access = {"tokens_file": str(secrets / "tokens")}
    return Guarded(start_module_server(cameras=CAMERAS, server=access), TOKEN if request.param == "token" else None)


class Network:
    """What a page asked the server for: HTTP responses, failed requests, WebSockets, and every
    console line (of any type: the token must not appear in one)."""

    def __init__(self, page: Page, server: EdgeServer) -> None:
        self.requests: list[str] = []
        self.responses: list[tuple[int, str]] = []
        self.failed: list[str] = []
        self.sockets: list[str] = []
        self.console: list[str] = []
        page.on("request", lambda r: r.url.startswith(server.url) and self.requests.append(r.url))
        page.on("response", lambda r: self.responses.append((r.status, r.url)))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url}: {r.failure}"))
        page.on("websocket", lambda ws: self.sockets.append(ws.url))
        page.on("console", lambda msg: self.console.append(msg.text))

    def check(self) -> None:
        refused = [f"{status} {url}" for status, url in self.responses if status in (401, 403)]
        assert not refused, f"the page's requests were refused: {refused}"
        assert not self.failed, f"requests failed: {self.failed}"


def token_of(url: str) -> list[str]:
    return parse_qs(urlsplit(url).query).get("token", [])


# Every URL the page put in its links and video elements.
BUILT_URLS_JS = """() => [
  ...[...document.querySelectorAll("a[href]")].map((a) => a.href),
  ...[...document.querySelectorAll("img.video[src]")].map((img) => img.src),
]"""


@requires("chromium")
@pytest.mark.parametrize("mode", ["mjpeg", "ws"])
def test_page_plays_behind_access_control(open_page: OpenPage, guarded: Guarded, mode: str) -> None:
    """Basic: the browser's credentials cover the page, its <img> streams, WebSockets and fetches.
    Token: the page hands its own ?token= on to every URL it builds, and to nothing else."""
    srv = guarded.server
    page, console = open_page(accept_downloads=True, **guarded.context)
    net = Network(page, srv)
    goto(page, guarded.page_url(f"mode={mode}"))
    wait_for(lambda: page.locator("section.tile").count() == 2, 5, 0.1, "the grid (built from /api/status)")
    for cam in SIZES:
        wait_hud(page, cam, r"^WS · [\d.]+ fps · -?\d+ ms$" if mode == "ws" else r"^MJPEG · cam \d+\.\d fps$")
        assert_moving(page, cam)
    kind = "websocket" if mode == "ws" else "mjpeg"
    wait_for(lambda: guarded.clients() == {"cam0": [kind], "cam1": [kind]}, 5, 0.1, f"one {kind} per tile")
    # The first poll built the grid; the next ones (every 2 s) must get through as well.
    with page.expect_response(lambda r: urlsplit(r.url).path == "/api/status", timeout=4000) as polled:
        pass
    assert polled.value.status == 200 and polled.value.json()["access"]["auth"] == (guarded.token is None)
    assert page.locator("#banner").is_hidden()
    assert len(net.sockets) == (2 if mode == "ws" else 0), net.sockets

    built = page.evaluate(BUILT_URLS_JS)
    assert len(built) == 1 + 3 + 2 + (2 if mode == "mjpeg" else 0), built  # status, modes, snaps, imgs
    # Only the page's own scripts and styles (open paths) are fetched without the token.
    fetched = [url for url in net.requests if not urlsplit(url).path.startswith("/static/")]
    expected = [guarded.token] if guarded.token else []
    for url in built + fetched + net.sockets:
        assert token_of(url) == expected, f"{url}: token {token_of(url)}, expected {expected}"
    if guarded.token:
        assert not any(TOKEN in line for line in net.console), "the token appeared in the console"
        stored = page.evaluate("() => [localStorage.length, sessionStorage.length, document.cookie]")
        assert stored == [0, 0, ""], f"the page stored something: {stored}"
    net.check()

    # The header's links (status, modes) work with what the browser has: for a token page,
    # the token they carry.
    for link in page.locator("#status-link, .modes a").all():
        href = link.evaluate("(a) => a.href")
        assert page.context.request.get(href).status == 200, href
    assert "cameras" in page.context.request.get(page.locator("#status-link").evaluate("(a) => a.href")).json()
    with page.expect_download() as info:
        tile(page, "cam0").locator("a.snap").click()
    data = Path(info.value.path()).read_bytes()
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9", f"snapshot is not a JPEG: {data[:80]!r}"
    console.check()


@requires("chromium")
def test_page_without_credentials_is_refused(open_page: OpenPage, guarded: Guarded) -> None:
    page, _ = open_page()
    urls = [guarded.server.url + "/"] + (
        [guarded.server.url + "/?token=not-the-token-0123456789"] if guarded.token else []
    )
    for url in urls:
        with page.expect_response(url) as answer:
            try:
                page.goto(url, wait_until="domcontentloaded")
            except PlaywrightError as exc:
                # How Chromium under Playwright ends a Basic challenge it has no credentials
                # for (a desktop browser would ask for a user name and password instead).
                assert "ERR_INVALID_AUTH_CREDENTIALS" in str(exc), exc
        assert answer.value.status == 401, f"{url}: {answer.value.status}"
        assert answer.value.headers.get("www-authenticate") == 'Basic realm="edge"'
        assert page.locator("section.tile").count() == 0


@requires("chromium")
@pytest.mark.parametrize("mode", ["mjpeg", "ws"])
def test_page_keeps_to_its_content_security_policy(open_page: OpenPage, edge: EdgeServer, mode: str) -> None:
    """The server forbids inline script and style and eval (security headers): the page must play
    under that policy. A violation is a console error (see CSP_REPORTER_JS): console.check()."""
    page, console = open_page()
    response = page.goto(f"{edge.url}/?mode={mode}", wait_until="domcontentloaded")
    assert response is not None and response.status == 200
    policy = response.headers.get("content-security-policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    for name in ("script-src", "style-src"):
        assert directives.get(name) == ["'self'"], f"{name} in the policy {policy!r}"
    assert "'unsafe-" not in policy, policy
    for cam in SIZES:
        wait_hud(page, cam, r"^WS · [\d.]+ fps" if mode == "ws" else r"^MJPEG · cam")
        assert_moving(page, cam)
    console.check()


def test_page_assets_are_local_and_relative() -> None:
    """No CDN (the appliance is offline) and no root-absolute URL (reverse-proxy sub-paths)."""
    static = Path(__file__).resolve().parent.parent / "edge" / "web" / "static"
    html = (static / "index.html").read_text()
    for text in [html] + [p.read_text() for p in static.glob("*.js")] + [p.read_text() for p in static.glob("*.css")]:
        assert not re.search(r"""(src|href)=["'](https?:)?//""", text), "external URL in the page"
        assert not re.search(r"""(src|href)=["']/""", text), "root-absolute URL in the page"
        assert not re.search(r"""(from|import\()\s*["']/""", text), "root-absolute module import"
        assert not re.search(r"""["'`]/(api|cameras|static|stream|snapshot|ws)\b""", text), "root-absolute URL"
