// One camera tile: picks and switches the channel, reconnects with backoff, and shows name,
// state, source kind, a codec/fps/bitrate/latency overlay, snapshot and full screen.
//
// Channels: "mjpeg" (an <img>), "ws" (JPEG over WebSocket on a <canvas>), and for an H.264
// camera "webcodecs" (H.264 decoded on a <canvas>) and "mse" (fMP4 in a <video>). A tile tries a
// ladder of them in order: in auto mode an H.264 camera goes WebCodecs, MSE, MJPEG, WebSocket;
// a JPEG camera MJPEG, WebSocket. It steps down when a channel cannot work in this browser, or
// shows nothing while the server answers; a forced mode (?mode=h264) says why instead.

import { mp4Mime } from "./avc.js";
import { WebCodecsPlayer, webCodecsProblem } from "./h264.js";
import { MjpegPlayer } from "./mjpeg.js";
import { MsePlayer, mseProblem } from "./mse.js";
import { pageUrl, wsUrl } from "./urls.js";
import { WsPlayer } from "./ws.js";

const BACKOFF_MIN_S = 0.5;
const BACKOFF_MAX_S = 10;
// An MJPEG tile playing this long whose camera lists no MJPEG client has lost its connection
// silently (browsers fire no event when a multipart stream ends): reconnect it.
const MJPEG_GHOST_MS = 4000;
const BITRATE_WINDOW_MS = 2000;
// Until the status names the camera's codec: H.264 Constrained Baseline level 3.0, what edge's
// own encoder makes. Only used to ask the browser early; the hello's codec is what is played.
const DEFAULT_AVC = "avc1.42C01E";

const STATE_TEXT = {
  starting: "starting",
  streaming: "streaming",
  reconnecting: "no signal",
  stopped: "stopped",
};
const CHANNEL_LABEL = { mjpeg: "MJPEG", ws: "WS", webcodecs: "H.264 WebCodecs", mse: "H.264 MSE" };
const CHANNEL_NAME = {
  mjpeg: "MJPEG",
  ws: "WebSocket",
  webcodecs: "H.264 with WebCodecs",
  mse: "H.264 with Media Source Extensions",
};

/**
 * The channels a tile tries, in order.
 * @param {string} mode      the page's ?mode=
 * @param {boolean} h264     the camera sends H.264 (status `codec`, with its `h264` details)
 * @param {boolean} crowded  auto mode with more than 4 cameras: no MJPEG <img> (see viewer.js)
 */
function ladderFor(mode, h264, crowded) {
  const jpeg = crowded ? ["ws"] : ["mjpeg", "ws"];
  if (mode === "mjpeg") return ["mjpeg"];
  if (mode === "ws") return ["ws"];
  // h264 and mp4 on a JPEG camera: there is no H.264 to decode, so it plays as in auto mode.
  if (!h264) return jpeg;
  if (mode === "h264") return ["webcodecs"];
  if (mode === "mp4") return ["mse"];
  return ["webcodecs", "mse", ...jpeg];
}

export class Tile {
  /**
   * @param {object} cam       the camera's entry in /api/status
   * @param {string} mode      "auto" | "mjpeg" | "ws" | "h264" | "mp4"
   * @param {object} server    the StatusPoller: `online` and `check()`
   * @param {boolean} crowded  auto mode with too many cameras for an MJPEG <img> each
   */
  constructor(cam, mode, server, crowded = false) {
    this.name = cam.name;
    this.mode = mode;
    this.crowded = crowded;
    this.h264 = null; // set by update(): whether the camera sends H.264
    this.avc = DEFAULT_AVC; // its codec string, from the status
    this.ladder = [];
    this.rung = 0;
    this.skipped = []; // why the tile stepped down, for the overlay's tooltip
    this.problem = ""; // set when no channel of a forced mode can play here
    this.codecLabel = "";
    this.server = server;
    this.running = false; // false while the tab is hidden
    this.phase = "idle"; // idle | connecting | playing | waiting | blocked
    this.generation = 0; // bumped by start()/stop(): a capability check of an older start is void
    this.backoff = BACKOFF_MIN_S;
    this.retryTimer = 0;
    this.playingSince = 0;
    this.camFps = null;
    // Overlay counters for the current one-second window (numbers, not arrays: no growth).
    this.frames = 0;
    this.latencySum = 0;
    this.windowStart = performance.now();
    // Totals of the current channel (data attributes), and [time, bytes] samples for kbit/s.
    this.framesTotal = 0;
    this.bytes = 0;
    this.byteSamples = [];
    this.latencyMs = null;
    this.kbps = null;

    const el = document.getElementById("tile-template").content.firstElementChild.cloneNode(true);
    this.el = el;
    const $ = (sel) => el.querySelector(sel);
    this.view = $(".view");
    this.img = $("img");
    this.canvas = $("canvas");
    this.video = $("video");
    this.hud = $(".hud");
    this.notice = $(".notice");
    this.badge = $(".badge");
    this.stateEl = $(".state");
    this.stateText = $(".state-text");
    this.problemEl = $(".problem");
    this.fullBtn = $(".full");

    const id = `cam-${cam.name}`;
    const heading = $(".name");
    heading.id = id;
    heading.textContent = cam.name;
    el.setAttribute("aria-labelledby", id);
    this.img.alt = `Live video from camera ${cam.name}`;
    this.canvas.setAttribute("aria-label", `Live video from camera ${cam.name}`);
    this.video.setAttribute("aria-label", `Live video from camera ${cam.name}`);
    this.fullLabel = this.fullBtn.querySelector(".label");

    const path = (what) => `cameras/${encodeURIComponent(cam.name)}/${what}`;
    const snap = $(".snap");
    snap.href = pageUrl(path("snapshot"));
    snap.setAttribute("aria-label", `Download a snapshot of ${cam.name}`);
    snap.title = "Download a snapshot"; // the server sends no-store: always the current frame

    const on = {
      onPlaying: () => this.playing(),
      onFail: (reason, painted, code) => this.failed(reason, painted, code),
      onUnsupported: (reason) => this.unsupported(reason),
      onFrame: (captured) => this.frame(captured),
      onSize: (w, h) => this.setAspect(w, h),
      onBytes: (n) => {
        this.bytes += n;
      },
      onCodec: (codec) => {
        this.codecLabel = codec;
      },
    };
    const wsCodec = (codec) => {
      const url = new URL(wsUrl(path("ws")));
      url.searchParams.set("codec", codec);
      return url.href;
    };
    this.players = {
      mjpeg: new MjpegPlayer(this.img, pageUrl(path("stream")), on),
      ws: new WsPlayer(this.canvas, wsUrl(path("ws")), on),
      webcodecs: new WebCodecsPlayer(this.canvas, wsCodec("h264"), on),
      mse: new MsePlayer(this.video, wsCodec("mp4"), on),
    };

    this.fullBtn.addEventListener("click", () => this.toggleFullscreen());
    this.view.addEventListener("dblclick", () => this.toggleFullscreen());
    this.update(cam);
    this.renderHud();
    this.syncFullscreen();
  }

  get channel() {
    return this.ladder[this.rung];
  }

  get player() {
    return this.players[this.channel];
  }

  // ---- lifecycle -------------------------------------------------------------------------

  start() {
    this.running = true;
    clearTimeout(this.retryTimer);
    this.stopPlayers();
    if (!this.server.online) {
      // Don't spend a doomed connection attempt; the poller calls resume() once it answers.
      this.wait();
      return;
    }
    const generation = ++this.generation;
    this.phase = "connecting";
    this.problem = "";
    this.setNotice(this.playingSince ? "reconnecting…" : "connecting…");
    this.choose().then(() => {
      if (generation !== this.generation || !this.running) return;
      if (this.problem) {
        this.block();
        return;
      }
      this.showElement();
      this.resetWindow();
      this.resetTotals();
      this.renderHud();
      this.player.start();
    });
  }

  /** Step down the ladder past channels this browser cannot play; the last that fails says why. */
  async choose() {
    for (;;) {
      const problem = await this.problemOf(this.channel);
      if (!problem) return;
      if (!this.stepDown(problem)) {
        this.problem = problem;
        return;
      }
    }
  }

  /** Why `channel` cannot play in this browser (null: it may), without opening anything. */
  problemOf(channel) {
    if (channel === "webcodecs") return webCodecsProblem(this.avc);
    if (channel === "mse") return Promise.resolve(mseProblem(mp4Mime(this.avc)));
    return Promise.resolve(null);
  }

  /** Move to the next channel of the ladder, remembering why; false if this was the last. */
  stepDown(reason) {
    if (this.rung + 1 >= this.ladder.length) return false;
    const from = this.channel;
    this.rung += 1;
    console.info(`edge: ${this.name}: ${CHANNEL_NAME[from]} failed (${reason}), switching to ${CHANNEL_NAME[this.channel]}`);
    this.skipped.push(from === "mjpeg" && this.channel === "ws" ? "WebSocket: MJPEG did not get through" : `${CHANNEL_NAME[from]}: ${reason}`);
    return true;
  }

  /** A forced mode this browser cannot play: say so in the tile rather than show nothing. */
  block() {
    this.phase = "blocked";
    this.stopPlayers();
    this.showElement(true);
    this.setNotice(`Cannot play ${CHANNEL_NAME[this.channel]} here: ${this.problem}. Try mode Auto.`);
    this.renderHud();
  }

  stopPlayers() {
    for (const player of Object.values(this.players)) player.stop();
  }

  /** Show the current channel's element (none while blocked). */
  showElement(none = false) {
    const ch = none ? "" : this.channel;
    this.img.hidden = ch !== "mjpeg";
    this.canvas.hidden = ch !== "ws" && ch !== "webcodecs";
    this.video.hidden = ch !== "mse";
  }

  /** Tab hidden: close the connection (an MJPEG <img> would keep streaming in the background). */
  stop() {
    this.running = false;
    this.generation += 1;
    this.phase = "idle";
    clearTimeout(this.retryTimer);
    this.stopPlayers();
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
      this.players.mjpeg.stop();
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
    this.showElement();
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
    // The server answers but this channel showed nothing: a proxy buffering or blocking
    // multipart responses, a decoder that never produced a picture. A busy server (1013) is
    // no reason: every channel would meet the same limit.
    if (!painted && closeCode !== 1013 && this.stepDown(reason)) {
      this.start();
      return;
    }
    this.retryTimer = setTimeout(() => this.start(), this.backoff * 1000);
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_S);
  }

  /** The channel turned out not to work in this browser (decoder refused the stream, ...). */
  unsupported(reason) {
    if (!this.running) return;
    if (this.stepDown(reason)) {
      this.start();
    } else {
      this.problem = reason;
      this.block();
    }
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
    this.problemEl.textContent = cam.problem ?? "";
    this.problemEl.hidden = !cam.problem;
    this.camFps = typeof cam.fps === "number" ? cam.fps : null;
    this.setAspect(cam.width, cam.height); // the size the camera actually delivers
    this.setCodec(cam);
    const ghost =
      this.channel === "mjpeg" &&
      this.phase === "playing" &&
      performance.now() - this.playingSince > MJPEG_GHOST_MS &&
      Array.isArray(cam.clients) &&
      !cam.clients.some((c) => c.kind === "mjpeg");
    if (ghost) this.start();
  }

  /** H.264 or JPEG, as the status says: it decides the ladder. A camera whose source changed
   *  what it sends (`codec: auto` meeting another camera) starts over on its new ladder. */
  setCodec(cam) {
    const h264 = cam.codec === "h264" && cam.h264 != null;
    if (h264) this.avc = cam.h264.codec ?? DEFAULT_AVC;
    this.el.dataset.camCodec = h264 ? "h264" : "mjpeg";
    if (h264 === this.h264) return;
    const first = this.h264 === null;
    this.h264 = h264;
    this.ladder = ladderFor(this.mode, h264, this.crowded);
    this.rung = 0;
    this.skipped = [];
    this.el.dataset.mode = this.channel;
    if (!first && this.running) this.start();
  }

  frame(captured) {
    this.frames += 1;
    this.framesTotal += 1;
    this.latencySum += Date.now() - captured * 1000;
  }

  resetWindow() {
    this.frames = 0;
    this.latencySum = 0;
    this.windowStart = performance.now();
  }

  resetTotals() {
    this.framesTotal = 0;
    this.bytes = 0;
    this.byteSamples = [[performance.now(), 0]];
    this.latencyMs = null;
    this.kbps = null;
  }

  /** Called once a second: fps and mean latency over the last window, kbit/s over 2 s. */
  tick() {
    const now = performance.now();
    this.latencyMs = this.frames ? Math.round(this.latencySum / this.frames) : null;
    const samples = this.byteSamples;
    samples.push([now, this.bytes]);
    // Keep the newest sample at least BITRATE_WINDOW_MS old as the window's start.
    while (samples.length > 2 && now - samples[1][0] >= BITRATE_WINDOW_MS) samples.shift();
    const [t0, b0] = samples[0];
    this.kbps = now - t0 >= 500 && this.bytes > 0 ? ((this.bytes - b0) * 8) / (now - t0) : null; // bits/ms = kbit/s
    this.renderHud();
    this.resetWindow();
  }

  renderHud() {
    const ch = this.channel;
    const parts = [CHANNEL_LABEL[ch] ?? ch];
    if (ch === "webcodecs" && (this.codecLabel || this.avc)) parts[0] += ` ${this.codecLabel || this.avc}`;
    if (this.phase === "playing") {
      if (ch === "mjpeg") {
        // Browsers report no per-frame events for MJPEG; show the camera's measured rate.
        if (this.camFps !== null) parts.push(`cam ${this.camFps.toFixed(1)} fps`);
      } else {
        const secs = (performance.now() - this.windowStart) / 1000;
        if (secs > 0.5) parts.push(`${(this.frames / secs).toFixed(1)} fps`);
        // H.264 is a bitrate worth watching (it is why one picks it); JPEG-over-WebSocket keeps
        // its old overlay.
        if (ch !== "ws" && this.kbps !== null) parts.push(`${Math.round(this.kbps)} kbit/s`);
        // Latency = viewer's clock minus the capture time: meaningful when both clocks agree.
        if (this.frames) parts.push(`${Math.round(this.latencySum / this.frames)} ms`);
      }
    }
    this.hud.textContent = parts.join(" · ");
    this.hud.title = this.skipped.join("\n");
    // For tests and diagnostics: what plays, how much, how late (updated once a second).
    const d = this.el.dataset;
    d.mode = ch;
    d.phase = this.phase;
    d.frames = String(this.framesTotal);
    d.bytes = String(this.bytes);
    d.latencyMs = this.latencyMs === null ? "" : String(this.latencyMs);
    d.kbps = this.kbps === null ? "" : this.kbps.toFixed(1);
    d.codec = ch === "webcodecs" || ch === "mse" ? this.codecLabel || this.avc : "jpeg";
    if (this.phase === "blocked") d.problem = this.problem;
    else delete d.problem;
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
