// The viewer page: reads /api/status, builds one tile per camera, keeps tiles in step with the
// server (state, restarts, outages) and stops all streaming while the tab is hidden.

import { Tile } from "./tile.js";
import { pageUrl } from "./urls.js";

// Browsers allow 6 HTTP/1.1 connections per host and each MJPEG <img> holds one for good; past
// 4 cameras, auto mode uses WebSocket everywhere (JPEG over WebSocket, or the H.264 channels,
// which are WebSockets too) so status requests and snapshots still get one.
const MAX_AUTO_MJPEG_TILES = 4;
const POLL_MS = 2000; // status poll while the server answers (also how fast a dead MJPEG is seen)
const BACKOFF_MIN_S = 0.5;
const BACKOFF_MAX_S = 10;
const MODE_NAMES = { auto: "auto", mjpeg: "MJPEG", ws: "WebSocket", h264: "H.264 (WebCodecs)", mp4: "H.264 (MSE)" };
// The modes for H.264 cameras: their links are added only where they apply (see showH264Modes).
const H264_MODES = {
  h264: ["H.264", "H.264 cameras: decoded with WebCodecs, drawn on a canvas"],
  mp4: ["MSE", "H.264 cameras: fragmented MP4 in a video element (Media Source Extensions)"],
};

const requested = new URLSearchParams(location.search).get("mode") ?? "auto";
const mode = requested in MODE_NAMES ? requested : "auto"; // the server rejects other values anyway

const grid = document.getElementById("grid");
const banner = document.getElementById("banner");
const summary = document.getElementById("summary");

/** @type {Map<string, Tile>} */
let tiles = new Map();
let cameraKey = null; // the camera names the grid was built for

/**
 * Polls /api/status: every POLL_MS while the server answers, with backoff (0.5 s doubling to
 * 10 s) while it does not. Tiles ask it, through check(), whether a failed stream means "server
 * down" so that N tiles cost one request, not N doomed reconnects.
 */
class StatusPoller {
  constructor(handlers) {
    this.url = pageUrl("api/status");
    this.handlers = handlers;
    this.online = true;
    this.startedAt = null; // the server's start time, to notice a restart between two polls
    this.backoff = BACKOFF_MIN_S;
    this.timer = 0;
    this.inflight = null;
    this.running = false;
  }

  start() {
    this.running = true;
    this.check();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
  }

  /** Poll now (sharing a poll already in flight); resolves to whether the server answered. */
  check() {
    this.inflight ??= this.poll().finally(() => {
      this.inflight = null;
    });
    return this.inflight;
  }

  async poll() {
    clearTimeout(this.timer);
    let status = null;
    let reachable = false;
    try {
      const res = await fetch(this.url, { cache: "no-store" });
      // A gateway error from a reverse proxy means the server behind it is down.
      reachable = ![502, 503, 504].includes(res.status);
      if (res.ok) status = await res.json();
    } catch {
      reachable = false;
    }
    let next;
    if (reachable) {
      let restarted = false;
      if (status) {
        const startedAt = Date.now() / 1000 - status.uptime_s;
        restarted = this.startedAt !== null && Math.abs(startedAt - this.startedAt) > 2;
        this.startedAt = startedAt;
      }
      const recovered = !this.online;
      this.online = true;
      this.backoff = BACKOFF_MIN_S;
      this.handlers.onStatus(status, { recovered, restarted });
      next = POLL_MS;
    } else {
      if (this.online) {
        this.online = false;
        this.handlers.onOffline();
      }
      next = this.backoff * 1000;
      this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_S);
    }
    if (this.running) this.timer = setTimeout(() => this.check(), next);
    return reachable;
  }
}

const poller = new StatusPoller({
  onStatus(status, { recovered, restarted }) {
    if (status) render(status);
    showBanner(status ? "" : "The server answers, but its status (api/status) is unavailable.");
    for (const tile of tiles.values()) {
      if (restarted) tile.restartIfMjpeg();
      if (recovered || restarted) tile.resume();
    }
  },
  onOffline() {
    showBanner("Cannot reach the edge server. Reconnecting…");
    for (const tile of tiles.values()) tile.lost();
  },
});

function render(status) {
  const cams = status.cameras ?? [];
  const key = cams.map((c) => c.name).join("\n");
  if (key !== cameraKey) build(cams);
  for (const cam of cams) tiles.get(cam.name)?.update(cam);
  showH264Modes(cams.some((c) => c.codec === "h264") || mode in H264_MODES);
}

/** (Re)build the grid: at start-up, or when a restarted server has other cameras. */
function build(cams) {
  for (const tile of tiles.values()) tile.destroy();
  tiles = new Map();
  cameraKey = cams.map((c) => c.name).join("\n");
  const crowded = mode === "auto" && cams.length > MAX_AUTO_MJPEG_TILES;
  for (const cam of cams) {
    const tile = new Tile(cam, mode, poller, crowded);
    tiles.set(cam.name, tile);
    grid.append(tile.el);
    if (!document.hidden) tile.start();
  }
  const n = cams.length;
  let how = `mode: ${MODE_NAMES[mode]}`;
  if (crowded) how += ` (WebSocket for more than ${MAX_AUTO_MJPEG_TILES} cameras)`;
  summary.textContent = `${n} camera${n === 1 ? "" : "s"} · ${how}`;
  grid.dataset.count = String(n);
}

/** The H.264 mode links, only while a camera sends H.264 (elsewhere they would change nothing). */
function showH264Modes(on) {
  const nav = document.querySelector(".modes");
  for (const [value, [text, title]] of Object.entries(H264_MODES)) {
    let link = nav.querySelector(`a[data-mode="${value}"]`);
    if (!on) {
      link?.remove();
      continue;
    }
    if (link) continue;
    link = document.createElement("a");
    link.dataset.mode = value;
    link.textContent = text;
    link.title = title;
    link.href = pageUrl(`?mode=${value}`);
    if (value === mode) link.setAttribute("aria-current", "page");
    nav.append(link);
  }
}

function showBanner(text) {
  banner.textContent = text;
  banner.hidden = !text;
}

// Overlay numbers (fps, latency) are refreshed once a second, not per frame.
let ticker = 0;

function resume() {
  poller.start();
  for (const tile of tiles.values()) tile.start();
  clearInterval(ticker);
  ticker = setInterval(() => tiles.forEach((t) => t.tick()), 1000);
}

function pause() {
  poller.stop();
  for (const tile of tiles.values()) tile.stop();
  clearInterval(ticker);
}

// Nobody watches a hidden tab: close every stream (saves the device's CPU and uplink, and
// re-opening on return also revives streams iOS Safari froze in the background).
document.addEventListener("visibilitychange", () => (document.hidden ? pause() : resume()));
document.addEventListener("fullscreenchange", () => tiles.forEach((t) => t.syncFullscreen()));

// The header's links are plain relative hrefs in the HTML; a page opened with a token must hand
// it on, or the status link and a mode switch would answer 401.
for (const link of document.querySelectorAll("#status-link, .modes a")) {
  link.href = pageUrl(link.getAttribute("href"));
  if (link.dataset.mode === mode) link.setAttribute("aria-current", "page");
}

if (document.hidden) {
  poller.check(); // build the grid now; streams start when the tab is shown
} else {
  resume();
}
