// H.264 playback with Media Source Extensions in a <video> (`?codec=mp4` of §9 of
// docs/interface.md): for pages where WebCodecs is missing, above all pages outside a secure
// context (http://192.168.1.20:8080/, the usual way to open a camera on a LAN: WebCodecs needs
// https: or localhost, MSE does not), and older browsers. iPhones have ManagedMediaSource
// (iOS 17.1+) instead of MediaSource. Each WebSocket message is an fMP4 init segment or one
// moof + mdat holding one access unit; mse-buffer.js appends them.
//
// A <video> fed by MSE plays whatever is buffered at its own pace, so it drifts behind live if
// nothing holds it (a stall, a slow start, a clock slightly slower than the camera's). This
// player holds it at the live edge: on every fragment it compares the newest buffered time with
// currentTime, plays at 1.1x through a small lag and jumps over a large one.

import { initCodec, mp4Mime, readUnit } from "./avc.js";
import { Feeder } from "./mse-buffer.js";

const JUMP_S = 0.3; // behind the newest buffered frame by more than this: jump...
const JUMP_TO_S = 0.05; // ...to this far before its end (in the last frame; never past the edge)
const FAST_S = 0.1; // behind by more than this: play at FAST_RATE...
const SLOW_S = 0.05; // ...until back under this (hysteresis: no rate flapping). Chromium keeps
// playing smoothly down to about 2 frames buffered; below that it stalls to rebuffer.
const FAST_RATE = 1.1; // 10 % faster: not noticeable in a camera picture, and no audio to pitch
const FIRST_FRAME_MS = 5000; // a stream that shows nothing this long does not play here

// A MediaSource is attached through a blob: URL, which a Content-Security-Policy must allow
// (media-src ... blob:). If it does not, the video element's error says only "URL safety check":
// remember the violation to say what is actually wrong.
let blobMediaRefused = false;
document.addEventListener("securitypolicyviolation", (e) => {
  if (e.blockedURI.startsWith("blob")) blobMediaRefused = true;
});

/** ManagedMediaSource (iOS 17.1+, where MediaSource is missing on iPhone) or MediaSource. */
function mediaSourceClass() {
  return window.ManagedMediaSource || window.MediaSource || null;
}

/**
 * Why this browser cannot play `mime` (e.g. `video/mp4; codecs="avc1.42C01E"`) with MSE, or null.
 * @param {string} mime
 * @returns {string | null}
 */
export function mseProblem(mime) {
  const MS = mediaSourceClass();
  if (!MS) return "this browser has no Media Source Extensions (MediaSource)";
  if (!MS.isTypeSupported(mime)) return `this browser's MediaSource cannot play ${mime}`;
  return null;
}

export class MsePlayer {
  /** @param {HTMLVideoElement} video  @param {string} url  the ?codec=mp4 WebSocket URL
   *  @param {{onPlaying: Function, onFail: Function, onUnsupported: Function, onFrame: Function,
   *           onSize: Function, onBytes: Function, onCodec: Function}} on */
  constructor(video, url, on) {
    this.video = video;
    this.url = url;
    this.on = on;
    this.session = null;
    // ManagedMediaSource only opens on a video whose remote playback (AirPlay) is off; casting
    // could not play this stream anyway. Muted + playsinline (in the HTML): autoplay in the tile.
    video.disableRemotePlayback = true;
    // One listener for the element's lifetime; it acts on the current session only.
    video.addEventListener("error", () => {
      const s = this.session;
      if (!s || !video.error) return;
      const reason = blobMediaRefused
        ? "the page's Content-Security-Policy does not allow blob: media (media-src), which Media Source Extensions need"
        : `the video element refused the stream (${video.error.message || `error ${video.error.code}`})`;
      this.end(s, () => (s.painted ? this.on.onFail(reason, true, 0) : this.on.onUnsupported(reason)));
    });
    if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) {
      // No per-frame callback (Firefox before 132): count the frames shown since the last
      // progress report. The count restarts with each new source.
      let counted = 0;
      video.addEventListener("timeupdate", () => {
        const s = this.session;
        const total = video.getVideoPlaybackQuality().totalVideoFrames;
        if (total < counted) counted = 0;
        for (; s && counted < total; counted++) this.shown(s, video.currentTime);
        counted = total;
      });
    }
  }

  start() {
    this.stop();
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    // Per-connection state, so nothing of an old connection touches a new one.
    const s = {
      ws,
      feeder: null, // mse-buffer.js, once the hello named the stream
      url: "", // the MediaSource's blob: URL
      mime: "",
      frameS: 1 / 30, // one frame's duration, from the hello's fps
      newest: 0, // capture time of the newest fragment in the buffer (unix s)
      fast: false,
      started: false,
      painted: false,
      closed: false,
      rvfc: 0,
      timer: 0,
    };
    this.session = s;
    ws.onmessage = (ev) => {
      if (s.closed) return;
      if (typeof ev.data === "string") this.text(s, ev.data);
      else this.unit(s, ev.data);
    };
    ws.onclose = (ev) => this.end(s, () => this.on.onFail(`connection closed (${ev.code})`, s.painted, ev.code));
    s.timer = setTimeout(() => this.end(s, () => this.on.onFail("no picture within 5 s", false, 0)), FIRST_FRAME_MS);
  }

  stop() {
    const s = this.session;
    if (!s) return;
    this.session = null;
    s.closed = true; // our own close: no onFail
    this.release(s);
  }

  release(s) {
    clearTimeout(s.timer);
    if (s.rvfc) this.video.cancelVideoFrameCallback(s.rvfc);
    s.ws.onmessage = s.ws.onclose = null;
    s.ws.close();
    if (s.url) URL.revokeObjectURL(s.url);
    // Detach: the MediaSource closes and the browser frees its buffer and decoder.
    const v = this.video;
    v.removeAttribute("src");
    v.load();
    v.playbackRate = 1;
  }

  end(s, report) {
    if (s.closed) return;
    s.closed = true;
    if (this.session === s) this.session = null;
    this.release(s);
    report();
  }

  text(s, data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg.type === "error") console.warn("edge: server rejected a message:", msg.message);
    if (msg.type !== "hello" || s.feeder) return;
    if (msg.width > 0 && msg.height > 0) this.on.onSize(msg.width, msg.height);
    if (msg.fps > 0) s.frameS = 1 / msg.fps;
    s.mime = msg.mime ?? (msg.codec ? mp4Mime(msg.codec) : "");
    if (msg.codec) this.on.onCodec(msg.codec);
    const problem = s.mime ? mseProblem(s.mime) : "the server's hello names no MIME type";
    if (problem) {
      this.end(s, () => this.on.onUnsupported(problem));
      return;
    }
    const on = {
      onAppended: (captured) => this.appended(s, captured),
      onError: (reason, unsupported) =>
        this.end(s, () => (unsupported ? this.on.onUnsupported(reason) : this.on.onFail(reason, s.painted, 0))),
    };
    // Attached through a blob: URL, which the page's Content-Security-Policy must allow. (A
    // MediaSource made in a worker and attached by its handle is checked the same way.)
    const ms = new (mediaSourceClass())();
    s.feeder = new Feeder(ms, on);
    s.url = URL.createObjectURL(ms);
    this.video.src = s.url;
  }

  unit(s, buf) {
    const u = readUnit(buf);
    if (!u || !s.feeder) return;
    this.on.onBytes(buf.byteLength);
    if (u.init) {
      // Sent first, and again when the camera changes its parameters: a new profile or level
      // needs the SourceBuffer switched to the new codec (mse-buffer.js: changeType()).
      const codec = initCodec(u.payload);
      if (codec) this.on.onCodec(codec);
      s.feeder.init(u.payload, codec ? mp4Mime(codec) : s.mime);
    } else {
      s.feeder.append(u.payload, u.captured);
    }
    this.chase(s);
  }

  appended(s, captured) {
    if (s.closed) return;
    s.newest = captured;
    if (s.started) return;
    s.started = true;
    if ("requestVideoFrameCallback" in this.video) {
      const onFrame = (_now, meta) => {
        if (s.closed) return;
        s.rvfc = this.video.requestVideoFrameCallback(onFrame);
        this.shown(s, meta.mediaTime);
      };
      s.rvfc = this.video.requestVideoFrameCallback(onFrame);
    }
    this.video.play().catch((err) => {
      // AbortError: we stopped meanwhile. NotAllowedError: autoplay refused even though muted.
      if (err.name === "NotAllowedError") this.end(s, () => this.on.onUnsupported("the browser refused to autoplay the video"));
    });
  }

  /** A frame at media time `mediaTime` is on screen: report its capture time. */
  shown(s, mediaTime) {
    if (s.closed) return;
    const b = this.video.buffered;
    if (b.length) {
      // The newest fragment starts one frame before the buffered end, and the fragments lie end
      // to end, one frame each (mse-buffer.js): what is shown is that much media time older.
      const behind = Math.max(0, b.end(b.length - 1) - s.frameS - mediaTime);
      this.on.onFrame(s.newest - behind);
    }
    if (!s.painted) {
      s.painted = true;
      clearTimeout(s.timer);
      this.on.onPlaying();
    }
  }

  /** Keep playback at the live edge (see the top of this file). */
  chase(s) {
    const v = this.video;
    const b = v.buffered;
    if (!b.length || v.seeking) return;
    const start = b.start(b.length - 1);
    const end = b.end(b.length - 1);
    const lag = end - v.currentTime;
    if (lag > JUMP_S || v.currentTime < start) {
      v.currentTime = Math.max(start, end - JUMP_TO_S);
      s.fast = false;
      v.playbackRate = 1;
    } else if (!s.fast && lag > FAST_S) {
      s.fast = true;
      v.playbackRate = FAST_RATE;
    } else if (s.fast && lag < SLOW_S) {
      s.fast = false;
      v.playbackRate = 1;
    }
  }
}
