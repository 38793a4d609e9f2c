// One camera tile: picks and switches the channel (MJPEG or WebSocket), reconnects with backoff,
// and shows name, state, source kind, a mode/fps/latency overlay, snapshot and full screen.

import { MjpegPlayer } from "./mjpeg.js";
import { pageUrl, wsUrl } from "./urls.js";
import { WsPlayer } from "./ws.js";

const BACKOFF_MIN_S = 0.5;
const BACKOFF_MAX_S = 10;
// An MJPEG tile playing this long whose camera lists no MJPEG client has lost its connection
// silently (browsers fire no event when a multipart stream ends): reconnect it.
const MJPEG_GHOST_MS = 4000;

const STATE_TEXT = {
  starting: "starting",
  streaming: "streaming",
  reconnecting: "no signal",
  stopped: "stopped",
};

export class Tile {
  /**
   * @param {object} cam     the camera's entry in /api/status
   * @param {string} mode    "auto" | "mjpeg" | "ws"
   * @param {object} server  the StatusPoller: `online` and `check()`
   */
  constructor(cam, mode, server) {
    this.name = cam.name;
    this.auto = mode === "auto";
    this.channel = mode === "ws" ? "ws" : "mjpeg";
    this.fellBack = false;
    this.server = server;
    this.running = false; // false while the tab is hidden
    this.phase = "idle"; // idle | connecting | playing | waiting
    this.backoff = BACKOFF_MIN_S;
    this.retryTimer = 0;
    this.playingSince = 0;
    this.camFps = null;
    // Overlay counters for the current one-second window (numbers, not arrays: no growth).
    this.frames = 0;
    this.latencySum = 0;
    this.windowStart = performance.now();

    const el = document.getElementById("tile-template").content.firstElementChild.cloneNode(true);
    this.el = el;
    const $ = (sel) => el.querySelector(sel);
    this.view = $(".view");
    this.img = $("img");
    this.canvas = $("canvas");
    this.hud = $(".hud");
    this.notice = $(".notice");
    this.badge = $(".badge");
    this.stateEl = $(".state");
    this.stateText = $(".state-text");
    this.problem = $(".problem");
    this.fullBtn = $(".full");

    const id = `cam-${cam.name}`;
    const heading = $(".name");
    heading.id = id;
    heading.textContent = cam.name;
    el.setAttribute("aria-labelledby", id);
    this.img.alt = `Live video from camera ${cam.name}`;
    this.canvas.setAttribute("aria-label", `Live video from camera ${cam.name}`);
    this.fullLabel = this.fullBtn.querySelector(".label");

    const path = (what) => `cameras/${encodeURIComponent(cam.name)}/${what}`;
    const snap = $(".snap");
    snap.href = pageUrl(path("snapshot"));
    snap.setAttribute("aria-label", `Download a snapshot of ${cam.name}`);
    snap.title = "Download a snapshot"; // the server sends no-store: always the current frame

    const on = {
      onPlaying: () => this.playing(),
      onFail: (reason, painted, code) => this.failed(reason, painted, code),
      onFrame: (captured) => this.frame(captured),
      onSize: (w, h) => this.setAspect(w, h),
    };
    this.mjpeg = new MjpegPlayer(this.img, pageUrl(path("stream")), on);
    this.ws = new WsPlayer(this.canvas, wsUrl(path("ws")), on);

    this.fullBtn.addEventListener("click", () => this.toggleFullscreen());
    this.view.addEventListener("dblclick", () => this.toggleFullscreen());
    this.update(cam);
    this.renderHud();
    this.syncFullscreen();
  }

  get player() {
    return this.channel === "ws" ? this.ws : this.mjpeg;
  }

  // ---- lifecycle -------------------------------------------------------------------------

  start() {
    this.running = true;
    clearTimeout(this.retryTimer);
    this.mjpeg.stop();
    this.ws.stop();
    if (!this.server.online) {
      // Don't spend a doomed connection attempt; the poller calls resume() once it answers.
      this.wait();
      return;
    }
    this.phase = "connecting";
    this.img.hidden = this.channel !== "mjpeg";
    this.canvas.hidden = this.channel !== "ws";
    this.setNotice(this.playingSince ? "reconnecting…" : "connecting…");
    this.resetWindow();
    this.renderHud();
    this.player.start();
  }

  /** Tab hidden: close the connection (an MJPEG <img> would keep streaming in the background). */
  stop() {
    this.running = false;
    this.phase = "idle";
    clearTimeout(this.retryTimer);
    this.mjpeg.stop();
    this.ws.stop();
    this.setNotice("paused");
  }

  /** The server answers again (or restarted): retry now instead of at the end of the backoff. */
  resume() {
    if (!this.running || this.phase !== "waiting") return;
    this.backoff = BACKOFF_MIN_S;
    this.start();
  }

  /** The server became unreachable. WebSocket tiles notice by themselves; MJPEG ones can't. */
  lost() {
    // The last known camera state is stale now; say what we actually know.
    this.stateEl.dataset.state = "unreachable";
    this.stateText.textContent = "server unreachable";
    if (this.running && this.channel === "mjpeg" && this.phase !== "waiting") {
      this.mjpeg.stop();
      this.wait();
    }
  }

  /** The server restarted between two polls: an MJPEG <img> is frozen on its last frame. */
  restartIfMjpeg() {
    if (this.running && this.channel === "mjpeg") this.start();
  }

  playing() {
    this.phase = "playing";
    this.backoff = BACKOFF_MIN_S;
    this.playingSince = performance.now();
    this.img.hidden = this.channel !== "mjpeg";
    this.canvas.hidden = this.channel !== "ws";
    this.setNotice("");
    this.renderHud();
  }

  async failed(reason, painted, closeCode = 0) {
    if (!this.running) return;
    this.wait(closeCode === 1013 ? "server busy, retrying…" : "reconnecting…"); // 1013: max_clients
    // One shared /api/status request tells "server down" (wait for it) from "this channel does
    // not get through" (fall back or retry) for all tiles at once.
    const online = await this.server.check();
    if (!this.running || this.phase !== "waiting" || !online) return;
    if (this.auto && this.channel === "mjpeg" && !painted) {
      // The server answers but MJPEG paints nothing: a proxy buffering or blocking multipart
      // responses. Use WebSocket for this tile from now on.
      console.info(`edge: ${this.name}: MJPEG failed (${reason}), switching to WebSocket`);
      this.channel = "ws";
      this.fellBack = true;
      this.start();
      return;
    }
    this.retryTimer = setTimeout(() => this.start(), this.backoff * 1000);
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_S);
  }

  wait(text = "reconnecting…") {
    this.phase = "waiting";
    this.img.hidden = true; // an <img> without src would show its alt text
    this.setNotice(text);
    this.renderHud();
  }

  // ---- status and overlay -------------------------------------------------------------------

  /** Apply this camera's entry of /api/status. */
  update(cam) {
    const virtual = cam.source_kind === "virtual";
    this.badge.hidden = !virtual;
    this.stateEl.dataset.state = cam.state;
    const kind = virtual ? "" : ` · ${cam.source_kind ?? "camera"}`;
    this.stateText.textContent = (STATE_TEXT[cam.state] ?? cam.state) + kind;
    this.stateEl.title = `source: ${cam.source}` + (cam.processing ? ` · ${cam.processing}` : "") + (cam.idle ? " · idle" : "");
    // Why the source is down, or why `auto` fell back to the virtual camera: said where the
    // user looks, not only in the log.
    this.problem.textContent = cam.problem ?? "";
    this.problem.hidden = !cam.problem;
    this.camFps = typeof cam.fps === "number" ? cam.fps : null;
    this.setAspect(cam.width, cam.height); // the size the camera actually delivers
    const ghost =
      this.channel === "mjpeg" &&
      this.phase === "playing" &&
      performance.now() - this.playingSince > MJPEG_GHOST_MS &&
      Array.isArray(cam.clients) &&
      !cam.clients.some((c) => c.kind === "mjpeg");
    if (ghost) this.start();
  }

  frame(captured) {
    this.frames += 1;
    this.latencySum += Date.now() - captured * 1000;
  }

  resetWindow() {
    this.frames = 0;
    this.latencySum = 0;
    this.windowStart = performance.now();
  }

  /** Called once a second: fps and mean latency over the last window. */
  tick() {
    this.renderHud();
    this.resetWindow();
  }

  renderHud() {
    const parts = [this.channel === "ws" ? "WS" : "MJPEG"];
    if (this.phase === "playing") {
      if (this.channel === "ws") {
        const secs = (performance.now() - this.windowStart) / 1000;
        if (secs > 0.5) parts.push(`${(this.frames / secs).toFixed(1)} fps`);
        // Latency = viewer's clock minus the capture time: meaningful when both clocks agree.
        if (this.frames) parts.push(`${Math.round(this.latencySum / this.frames)} ms`);
      } else if (this.camFps !== null) {
        // Browsers report no per-frame events for MJPEG; show the camera's measured rate.
        parts.push(`cam ${this.camFps.toFixed(1)} fps`);
      }
    }
    this.hud.textContent = parts.join(" · ");
    this.hud.title = this.fellBack ? "WebSocket: MJPEG did not get through" : "";
  }

  setNotice(text) {
    this.notice.textContent = text;
    this.notice.hidden = !text;
  }

  setAspect(w, h) {
    if (w > 0 && h > 0) this.view.style.aspectRatio = `${w} / ${h}`;
  }

  // ---- full screen --------------------------------------------------------------------------

  toggleFullscreen() {
    if (document.fullscreenElement === this.el) {
      document.exitFullscreen().catch(() => {}); // already left (e.g. with Esc): nothing to do
    } else if (this.el.classList.contains("expanded")) {
      this.setExpanded(false);
    } else if (this.el.requestFullscreen) {
      // The Fullscreen API may be refused (iframes, policies): fall back to filling the window.
      this.el.requestFullscreen().catch(() => this.setExpanded(true));
    } else {
      this.setExpanded(true); // iPhone Safari has no element full screen
    }
  }

  setExpanded(on) {
    this.el.classList.toggle("expanded", on);
    document.body.classList.toggle("has-expanded", on);
    if (on) {
      this.escHandler = (ev) => ev.key === "Escape" && this.setExpanded(false);
      document.addEventListener("keydown", this.escHandler);
    } else if (this.escHandler) {
      document.removeEventListener("keydown", this.escHandler);
      this.escHandler = null;
    }
    this.syncFullscreen();
  }

  syncFullscreen() {
    const on = document.fullscreenElement === this.el || this.el.classList.contains("expanded");
    const text = on ? "Exit full screen" : "Full screen";
    this.fullBtn.setAttribute("aria-label", `${text}: ${this.name}`);
    this.fullBtn.title = text;
    this.fullLabel.textContent = text;
  }

  /** Remove from the page for good (the camera list changed). */
  destroy() {
    this.stop();
    if (this.el.classList.contains("expanded")) this.setExpanded(false);
    this.el.remove();
  }
}
