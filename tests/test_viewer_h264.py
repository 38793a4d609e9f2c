"""The viewer page with an H.264 camera (§9 of docs/interface.md), in Debian's chromium.

The page plays an H.264 camera with WebCodecs (`?codec=h264` WebSocket, decoded on a <canvas>),
else Media Source Extensions (`?codec=mp4`, fMP4 in a <video>), else MJPEG; a JPEG camera beside
it plays as before. The fixtures, console watching and page helpers are tests/test_viewer.py's:
every test fails on a console error, a CSP violation or an uncaught exception in the page.
http://127.0.0.1 is a secure context, so WebCodecs is available to the page.

Each tile exposes what it plays for these tests as data attributes, refreshed once a second:
`data-mode` (webcodecs, mse, mjpeg, ws), `data-phase`, `data-frames` (painted since the channel
started), `data-bytes`, `data-kbps`, `data-latency-ms` and `data-codec`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page

from tests import test_viewer
from tests.support.config import virtual_cam
from tests.support.process import EdgeServer
from tests.support.programs import requires
from tests.support.status import camera_status, get_status
from tests.support.waiting import wait_for
from tests.test_viewer import FRAME_HASH_JS, OpenPage, clients, goto, hud, tile, video

# tests/test_viewer.py's fixtures: one chromium per module, a context of its own per page.
browser = test_viewer.browser
open_page = test_viewer.open_page

FPS = 30
SIZE = (320, 240)
CAMERAS = [
    {**virtual_cam("cam0", *SIZE, FPS), "codec": "h264"},  # the test pattern, encoded with libx264
    virtual_cam("jpeg", *SIZE, 15),
]

# The tile of camera `cam` (argument of every page function below).
TILE_JS = "[...document.querySelectorAll('section.tile')].find((t) => t.querySelector('h2').textContent === cam)"

# FRAME_HASH_JS (an <img> or <canvas>), for a <video> too.
PICTURE_HASH_JS = FRAME_HASH_JS.replace("el.naturalWidth ||", "el.videoWidth || el.naturalWidth ||").replace(
    "el.naturalHeight ||", "el.videoHeight || el.naturalHeight ||"
)
assert PICTURE_HASH_JS.count("videoWidth") == PICTURE_HASH_JS.count("videoHeight") == 1

# Makes the page's browser lack an API, before any of the page's scripts run.
REMOVE_WEBCODECS_JS = "delete window.VideoDecoder;"
REMOVE_MSE_JS = "delete window.MediaSource; delete window.ManagedMediaSource;"

# buffered end - currentTime of the tile's <video>, sampled every 250 ms for 5 s in the page, and
# currentTime at the first and the last sample.
SAMPLE_LIVE_EDGE_JS = f"""async (cam) => {{
  const v = {TILE_JS}.querySelector("video");
  const lags = [], times = [];
  for (let i = 0; i <= 20; i++) {{
    if (i) await new Promise((r) => setTimeout(r, 250));
    const b = v.buffered;
    lags.push(b.length ? b.end(b.length - 1) - v.currentTime : null);
    times.push(v.currentTime);
  }}
  return {{ lags, times }};
}}"""


@pytest.fixture(scope="module")
def edge(start_module_server: Callable[..., EdgeServer]) -> EdgeServer:
    return start_module_server(cameras=CAMERAS)


def data(page: Page, cam: str) -> dict[str, str]:
    """The tile's data attributes (`data-mode` as "mode", `data-latency-ms` as "latencyMs")."""
    attributes: dict[str, str] = page.evaluate(f"(cam) => ({{...{TILE_JS}.dataset}})", cam)
    return attributes


def wait_playing(page: Page, cam: str, mode: str, timeout_ms: float = 10_000) -> None:
    """Until the tile plays `mode` and has painted a few frames (data-frames: once a second)."""
    page.wait_for_function(
        f"""(cam) => {{
          const d = {TILE_JS}?.dataset;
          return d && d.mode === "{mode}" && d.phase === "playing" && Number(d.frames) >= 5;
        }}""",
        arg=cam,
        timeout=timeout_ms,
    )


def wait_frames(page: Page, cam: str, more_than: int, timeout_ms: float = 5_000) -> int:
    """Until the tile has painted more than `more_than` frames; how many it has then."""
    page.wait_for_function(f"(cam) => Number({TILE_JS}.dataset.frames) > {more_than}", arg=cam, timeout=timeout_ms)
    return int(data(page, cam)["frames"])


def wait_plausible_latency(page: Page, cam: str, timeout_ms: float = 8_000) -> int:
    """The overlay's latency once it is that of live frames: on loopback, well under 500 ms. (A
    viewer's first second may include the camera's last key frame group from before it idled.)"""
    page.wait_for_function(
        f"""(cam) => {{
          const ms = {TILE_JS}.dataset.latencyMs;
          return ms !== "" && Number(ms) >= 0 && Number(ms) < 500;
        }}""",
        arg=cam,
        timeout=timeout_ms,
    )
    return int(data(page, cam)["latencyMs"])


def assert_picture_moves(page: Page, cam: str) -> None:
    """Two hashes of the tile's picture about 0.5 s (15 painted frames) apart differ: the virtual
    camera's test pattern moves."""
    el = video(page, cam)
    first = el.evaluate(PICTURE_HASH_JS)
    assert first is not None, f"{cam}: nothing painted"
    frames = int(data(page, cam)["frames"])
    wait_frames(page, cam, frames + FPS // 2)
    assert el.evaluate(PICTURE_HASH_JS) not in (None, first), f"{cam}: the picture did not change in 0.5 s"


def status_bitrate(edge: EdgeServer) -> float:
    return float(camera_status(get_status(edge), "cam0")["h264"]["bitrate_kbps"])


def assert_jpeg_camera_unchanged(page: Page, edge: EdgeServer) -> None:
    """The JPEG camera beside the H.264 one plays as it always did in auto mode: MJPEG."""
    wait_for(lambda: re.search(r"^MJPEG · cam \d+\.\d fps$", hud(page, "jpeg")), 8, 0.1, "jpeg: the MJPEG overlay")
    assert data(page, "jpeg")["mode"] == "mjpeg"
    assert "cameras/jpeg/stream" in (tile(page, "jpeg").locator("img").get_attribute("src") or "")


def blob_media_allowed(policy: str) -> bool:
    """Whether a Content-Security-Policy lets a <video> load a blob: URL (a MediaSource's)."""
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    sources = directives.get("media-src", directives.get("default-src"))
    return sources is None or "blob:" in sources  # "*" does not cover blob:


def goto_checking_csp(page: Page, url: str) -> None:
    """Open the page; MSE needs `media-src ... blob:` in the server's policy, so say so plainly
    rather than time out on a tile that cannot play."""
    response = page.goto(url, wait_until="domcontentloaded")
    assert response is not None and response.status == 200
    policy = response.headers.get("content-security-policy", "")
    assert blob_media_allowed(policy), (
        "the server's Content-Security-Policy does not allow blob: media, so no MediaSource can be "
        f"attached to a <video> (MSE cannot play); add media-src 'self' blob: to it. Policy: {policy!r}"
    )


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


@requires("chromium")
def test_auto_plays_h264_camera_with_webcodecs(open_page: OpenPage, edge: EdgeServer) -> None:
    page, console = open_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    goto(page, edge.url + "/")
    wait_playing(page, "cam0", "webcodecs")
    canvas = tile(page, "cam0").locator("canvas")
    assert canvas.is_visible() and tile(page, "cam0").locator("video").is_hidden()
    assert canvas.evaluate("(c) => [c.width, c.height]") == list(SIZE)
    assert_picture_moves(page, "cam0")
    # Frames keep coming: another second's worth.
    frames = int(data(page, "cam0")["frames"])
    wait_frames(page, "cam0", frames + FPS // 2, timeout_ms=3_000)

    wait_plausible_latency(page, "cam0")
    m = re.fullmatch(
        r"H\.264 WebCodecs (avc1\.[0-9A-F]{6}) · ([\d.]+) fps · (\d+) kbit/s · (-?\d+) ms", hud(page, "cam0")
    )
    assert m, f"cam0 overlay: {hud(page, 'cam0')!r}"
    status = camera_status(get_status(edge), "cam0")
    assert m[1] == status["h264"]["codec"] == data(page, "cam0")["codec"]
    assert FPS * 0.5 <= float(m[2]) <= FPS * 1.5, f"{m[2]} fps, the camera runs at {FPS}"
    kbps = float(data(page, "cam0")["kbps"])
    assert 0.5 <= kbps / status_bitrate(edge) <= 2, f"page measures {kbps} kbit/s, server {status_bitrate(edge)}"

    wait_for(lambda: clients(edge) == {"cam0": ["ws-h264"], "jpeg": ["mjpeg"]}, 5, 0.1, "ws-h264 + mjpeg clients")
    assert sockets == [f"{edge.ws_url}/cameras/cam0/ws?codec=h264"], sockets
    assert_jpeg_camera_unchanged(page, edge)
    console.check()


@requires("chromium")
@pytest.mark.parametrize("how", ["mode=mp4", "auto without WebCodecs"])
def test_mse_plays_at_the_live_edge(open_page: OpenPage, edge: EdgeServer, how: str) -> None:
    page, console = open_page()
    query = "?mode=mp4"
    if how != "mode=mp4":
        page.add_init_script(REMOVE_WEBCODECS_JS)
        query = ""
    goto_checking_csp(page, edge.url + "/" + query)
    wait_playing(page, "cam0", "mse")
    v = tile(page, "cam0").locator("video")
    assert v.is_visible() and tile(page, "cam0").locator("canvas").is_hidden()
    assert v.evaluate("(v) => [v.videoWidth, v.videoHeight, v.muted]") == [*SIZE, True]
    assert_picture_moves(page, "cam0")

    # Playback advances in step with the camera and never falls behind the newest frame by more
    # than 0.5 s (an MSE player that lets the buffer grow drifts into seconds of delay).
    samples = page.evaluate(SAMPLE_LIVE_EDGE_JS, "cam0")
    lags = samples["lags"]
    assert None not in lags, f"nothing buffered at some point: {lags}"
    assert max(lags) <= 0.5, f"behind the live edge by {max(lags):.3f} s: {[round(x, 3) for x in lags]}"
    times = samples["times"]
    assert all(b >= a for a, b in zip(times, times[1:], strict=False)), f"currentTime went back: {times}"
    advanced = times[-1] - times[0]
    assert 4.0 <= advanced <= 6.0, f"currentTime advanced {advanced:.2f} s in 5 s"

    wait_plausible_latency(page, "cam0")
    text = hud(page, "cam0")
    assert re.fullmatch(r"H\.264 MSE · [\d.]+ fps · \d+ kbit/s · -?\d+ ms", text), f"cam0 overlay: {text!r}"
    wait_for(lambda: clients(edge) == {"cam0": ["ws-mp4"], "jpeg": ["mjpeg"]}, 5, 0.1, "ws-mp4 + mjpeg clients")
    assert_jpeg_camera_unchanged(page, edge)
    console.check()


@requires("chromium")
def test_mjpeg_mode_plays_h264_camera_as_mjpeg(open_page: OpenPage, edge: EdgeServer) -> None:
    page, console = open_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    goto(page, edge.url + "/?mode=mjpeg")
    for cam in ("cam0", "jpeg"):
        wait_for(lambda: re.search(r"^MJPEG · cam \d+\.\d fps$", hud(page, cam)), 8, 0.1, f"{cam}: MJPEG overlay")  # noqa: B023
        img = tile(page, cam).locator("img")
        assert f"cameras/{cam}/stream" in (img.get_attribute("src") or "")
        wait_for(lambda: img.evaluate("(i) => [i.naturalWidth, i.naturalHeight]") == list(SIZE), 5, 0.1, "a frame")  # noqa: B023
        first = img.evaluate(FRAME_HASH_JS)
        wait_for(lambda: img.evaluate(FRAME_HASH_JS) not in (None, first), 5, 0.1, f"{cam}: the picture to move")  # noqa: B023
    assert data(page, "cam0")["mode"] == "mjpeg"
    wait_for(lambda: clients(edge) == {"cam0": ["mjpeg"], "jpeg": ["mjpeg"]}, 5, 0.1, "one MJPEG stream per tile")
    assert not sockets, f"MJPEG mode opened WebSockets: {sockets}"
    console.check()


@requires("chromium")
def test_auto_without_webcodecs_or_mse_plays_mjpeg(open_page: OpenPage, edge: EdgeServer) -> None:
    page, console = open_page()
    page.add_init_script(REMOVE_WEBCODECS_JS + REMOVE_MSE_JS)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    goto(page, edge.url + "/")
    wait_for(lambda: re.search(r"^MJPEG · cam", hud(page, "cam0")), 8, 0.1, "cam0: the MJPEG overlay")
    wait_for(lambda: clients(edge) == {"cam0": ["mjpeg"], "jpeg": ["mjpeg"]}, 5, 0.1, "MJPEG for both cameras")
    # Why it is not H.264, for whoever hovers over the overlay.
    reasons = tile(page, "cam0").locator(".hud").get_attribute("title") or ""
    assert "no WebCodecs VideoDecoder" in reasons and "no Media Source Extensions" in reasons, reasons
    assert not sockets, f"nothing to play over a WebSocket, yet it opened {sockets}"
    console.check()


@requires("chromium")
@pytest.mark.parametrize(
    ("mode", "remove", "message"),
    [
        (
            "h264",
            REMOVE_WEBCODECS_JS,
            "Cannot play H.264 with WebCodecs here: this browser has no WebCodecs VideoDecoder.",
        ),
        (
            "mp4",
            REMOVE_MSE_JS,
            "Cannot play H.264 with Media Source Extensions here: this browser has no Media Source Extensions "
            "(MediaSource).",
        ),
    ],
)
def test_forced_mode_the_browser_lacks_says_so(
    open_page: OpenPage, edge: EdgeServer, mode: str, remove: str, message: str
) -> None:
    page, console = open_page()
    page.add_init_script(remove)
    goto(page, f"{edge.url}/?mode={mode}")
    notice = tile(page, "cam0").locator(".notice")
    wait_for(lambda: notice.is_visible() and notice.inner_text().startswith(message), 8, 0.1, f"the notice {message!r}")
    assert data(page, "cam0")["phase"] == "blocked"
    assert tile(page, "cam0").locator(".video:not([hidden])").count() == 0, "a blank video element is shown"
    # Nothing is streamed for it; the JPEG camera plays (a forced H.264 mode does not apply to it).
    wait_for(lambda: clients(edge) == {"cam0": [], "jpeg": ["mjpeg"]}, 5, 0.1, "no stream for cam0")
    assert_jpeg_camera_unchanged(page, edge)
    assert page.locator(".modes a[aria-current=page]").get_attribute("data-mode") == mode
    console.check()


@requires("chromium")
def test_hidden_tab_closes_the_h264_stream_and_resumes(open_page: OpenPage, edge: EdgeServer) -> None:
    page, console = open_page()
    goto(page, edge.url + "/")
    wait_playing(page, "cam0", "webcodecs")
    wait_for(lambda: clients(edge) == {"cam0": ["ws-h264"], "jpeg": ["mjpeg"]}, 5, 0.1, "streams open")
    # Headless tabs are always visible: simulate the browser hiding this one.
    page.evaluate("""() => {
        Object.defineProperty(document, "hidden", {configurable: true, get: () => true});
        Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "hidden"});
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    wait_for(lambda: clients(edge) == {"cam0": [], "jpeg": []}, 5, 0.1, "all streams closed while hidden")
    page.evaluate("""() => {
        delete document.hidden;
        delete document.visibilityState;
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    wait_for(lambda: clients(edge) == {"cam0": ["ws-h264"], "jpeg": ["mjpeg"]}, 5, 0.1, "streams reopened")
    wait_playing(page, "cam0", "webcodecs")
    assert_picture_moves(page, "cam0")
    console.check()


@requires("chromium")
def test_h264_mode_links_show_only_with_an_h264_camera(
    open_page: OpenPage, edge: EdgeServer, start_server: Callable[..., EdgeServer]
) -> None:
    page, console = open_page()
    goto(page, edge.url + "/")
    wait_playing(page, "cam0", "webcodecs")
    links: dict[str | None, Any] = {a.get_attribute("data-mode"): a for a in page.locator(".modes a").all()}
    assert list(links) == ["auto", "mjpeg", "ws", "h264", "mp4"]
    for mode in ("h264", "mp4"):
        assert links[mode].is_visible()
        assert links[mode].evaluate("(a) => a.href") == f"{edge.url}/?mode={mode}"
    # A server with JPEG cameras only: the H.264 modes would change nothing, so they are not offered.
    jpeg_only = start_server(cameras=[virtual_cam("jpeg", *SIZE, 5)])
    goto(page, jpeg_only.url + "/")
    wait_for(lambda: re.search(r"^MJPEG · cam", hud(page, "jpeg")), 8, 0.1, "jpeg: the MJPEG overlay")
    assert page.locator(".modes a:visible").count() == 3
    assert page.locator(".modes a[href]").count() == 3
    console.check()
