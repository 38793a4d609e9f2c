"""Section 5: capture-to-paint latency in Chromium, as the viewer page's own overlay measures it.

The page's tile (edge/web/static/tile.js) publishes ``data-latency-ms`` once a second: the mean,
over the frames of the last second, of the page's clock when the frame was shown minus its capture
time (both clocks are this machine's). Debian's chromium (through Playwright) opens
``/?mode=auto`` (WebCodecs over ``?codec=h264`` on 127.0.0.1, a secure context) and ``/?mode=mp4``
(Media Source Extensions over ``?codec=mp4``) on the virtual camera with ``codec: h264``, and reads
the attribute every 100 ms for the window, which starts a warm-up after the tile first shows a
latency (the start itself is section 3's). ``/?mode=ws`` (JPEG over the WebSocket, decoded and
encoded by edge for it) is read the same way as the reference. Because the attribute is a 1-s mean,
its p95 is lower than a p95 over single frames would be; both the samples and the distinct
one-second values are reported.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any

from h264bench.edgeproc import HOST, Edge
from h264bench.options import Options
from h264bench.stats import summarize
from tests.support.process import REPO_ROOT

# As tests/test_viewer.py launches it.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PLAYERS = ("edge/web/static/h264.js", "edge/web/static/mse.js")
MODES = (("auto", "webcodecs"), ("mp4", "mse"), ("ws", "ws"))
FPS = 30
CAMERA: dict[str, Any] = {"name": "cam0", "source": "virtual", "codec": "h264", "fps": FPS}
READ_TILE = "el => [el.dataset.mode || '', el.dataset.phase || '', el.dataset.latencyMs || '', el.dataset.frames || '']"
PLAY_WAIT = 25.0


def players_present() -> tuple[bool, str]:
    """Whether the H.264 players are there (h264.js for WebCodecs, mse.js for MSE) and the tile
    publishes ``data-latency-ms``; the note also says what ``grep -r latency`` finds in the players
    (mse.js reports its frames to the tile without the word: requestVideoFrameCallback -> onFrame)."""
    files = [REPO_ROOT / p for p in PLAYERS]
    done = subprocess.run(["grep", "-r", "latency", *map(str, files)], capture_output=True, text=True, check=False)
    found = sorted(p for p in PLAYERS if str(REPO_ROOT / p) in done.stdout)
    tile = REPO_ROOT / "edge/web/static/tile.js"
    attribute = tile.exists() and "latencyMs" in tile.read_text()
    present = all(f.exists() for f in files) and attribute
    note = f"grep -r latency finds it in {', '.join(found) or 'neither player'}"
    note += f"; players {'present' if present else 'missing'}; tile.js data-latency-ms {'yes' if attribute else 'no'}"
    return present, note


def _sample_mode(browser: Any, url: str, expect: str, opts: Options) -> dict[str, Any]:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    try:
        page.goto(url, wait_until="load")
        page.wait_for_selector("section.tile", timeout=PLAY_WAIT * 1000)
        deadline = time.monotonic() + PLAY_WAIT
        state: list[str] = ["", "", "", ""]
        while time.monotonic() < deadline:
            state = page.eval_on_selector("section.tile", READ_TILE)
            if state[1] == "playing" and state[2]:
                break
            time.sleep(0.1)
        else:
            return {
                "url": url,
                "error": f"tile never played with a latency within {PLAY_WAIT:.0f} s: {state}",
                "console_errors": errors[:10],
            }
        # The first one-second mean holds the start (the burst since the last key frame, the
        # decoder's set-up); section 3 measures the start, this one the steady state.
        time.sleep(opts.warmup)
        samples, modes = [], set()
        end = time.monotonic() + opts.browser_window
        next_at = time.monotonic()
        started = time.monotonic()
        while time.monotonic() < end:
            mode, phase, latency, frames = page.eval_on_selector("section.tile", READ_TILE)
            modes.add(mode)
            if phase == "playing" and latency:
                samples.append((time.monotonic() - started, float(latency), int(frames or 0)))
            next_at += opts.browser_sample_every
            time.sleep(max(0.0, next_at - time.monotonic()))
        wall = time.monotonic() - started
        values = [s[1] for s in samples]
        distinct = [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]
        # data-frames moves once a second: the rate between its first and last change in the window.
        changes = [s for i, s in enumerate(samples) if i and s[2] != samples[i - 1][2]]
        span = changes[-1][0] - changes[0][0] if len(changes) > 1 else 0.0
        return {
            "url": url,
            "expected_mode": expect,
            "modes_seen": sorted(modes),
            "mode_ok": modes == {expect},
            "samples": len(samples),
            "latency_ms": summarize(values),
            "one_second_means_ms": summarize(distinct),
            "fps_shown": (changes[-1][2] - changes[0][2]) / span if span > 0 else None,
            "window_s": wall,
            "console_errors": errors[:10],
            "console_error_count": len(errors),
            "raw": samples,
        }
    finally:
        page.close()


def run(opts: Options, log: Any) -> dict[str, Any]:
    present, note = players_present()
    chromium = shutil.which("chromium")
    if not present:
        return {"skipped": f"the H.264 players are not there yet ({note})"}
    if chromium is None:
        return {"skipped": "no chromium on PATH"}
    from playwright.sync_api import sync_playwright

    result: dict[str, Any] = {"players": note, "camera": CAMERA, "frame_period_ms": 1000 / FPS}
    with Edge([CAMERA], opts.workdir, "browser") as edge, sync_playwright() as pw:
        edge.wait_streaming("cam0", "h264")
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            result["chromium"] = browser.version
            for mode, expect in MODES:
                log(
                    f"chromium ?mode={mode} (expects {expect}): latency every "
                    f"{opts.browser_sample_every * 1000:.0f} ms for {opts.browser_window:.0f} s ..."
                )
                result[mode] = _sample_mode(browser, f"http://{HOST}:{edge.port}/?mode={mode}", expect, opts)
        finally:
            browser.close()
        result["edge_log_tail"] = edge.log_tail()[-10:]
    return result
