// H.264 playback with WebCodecs on a <canvas> (`?codec=h264` of §9 of docs/interface.md): the
// lowest-latency channel for an H.264 camera. Each WebSocket message is one access unit in
// Annex-B; a VideoDecoder configured without a `description` reads the SPS and PPS the key frames
// carry in-band, and every decoded frame is drawn as soon as it comes out (no jitter buffer).
//
// The chunk timestamp is the frame's capture time in microseconds: the decoder hands it back on
// the VideoFrame, so the latency shown is exactly that of the frame on the canvas.

import { readUnit, spsCodec } from "./avc.js";

// Decodes queued beyond this (about 1/3 s at 30 fps) mean the device cannot keep up: drop up to
// the next key frame instead of falling further behind (a delta frame cannot be skipped alone).
const MAX_DECODE_QUEUE = 10;

/** @type {Map<string, Promise<string | null>>} one isConfigSupported() per codec, for all tiles */
const checked = new Map();

/**
 * Why this browser cannot play `codec` (e.g. "avc1.42C01E") with WebCodecs, or null if it can.
 * @param {string} codec
 * @returns {Promise<string | null>}
 */
export function webCodecsProblem(codec) {
  // WebCodecs exists only in secure contexts (https:, or http://localhost / 127.0.0.1).
  if (!window.isSecureContext) return Promise.resolve("the page is not a secure context (WebCodecs needs https: or localhost)");
  if (!("VideoDecoder" in window)) return Promise.resolve("this browser has no WebCodecs VideoDecoder");
  if (!checked.has(codec)) {
    checked.set(
      codec,
      VideoDecoder.isConfigSupported(decoderConfig(codec)).then(
        (r) => (r.supported ? null : `this browser's VideoDecoder cannot decode ${codec}`),
        (err) => `VideoDecoder refused ${codec}: ${err.message}`,
      ),
    );
  }
  return checked.get(codec);
}

function decoderConfig(codec) {
  // No `description`: the stream is Annex-B with SPS/PPS in band. optimizeForLatency asks the
  // decoder to output each frame as soon as it is decoded instead of filling a reorder buffer.
  return { codec, optimizeForLatency: true };
}

export class WebCodecsPlayer {
  /** @param {HTMLCanvasElement} canvas  @param {string} url  the ?codec=h264 WebSocket URL
   *  @param {{onPlaying: Function, onFail: Function, onUnsupported: Function, onFrame: Function,
   *           onSize: Function, onBytes: Function, onCodec: Function}} on */
  constructor(canvas, url, on) {
    this.canvas = canvas;
    this.url = url;
    this.on = on;
    this.ctx = null; // taken on first use: the canvas is shared with the JPEG WebSocket player
    this.session = null;
  }

  start() {
    this.stop();
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    // Per-connection state, so output of an old decoder never touches a new connection.
    const s = { ws, decoder: null, codec: "", needKey: true, painted: false, closed: false };
    this.session = s;
    ws.onmessage = (ev) => {
      if (s.closed) return;
      if (typeof ev.data === "string") this.text(s, ev.data);
      else this.unit(s, ev.data);
    };
    // `error` is always followed by `close`, which carries the code; handle it once, there.
    ws.onclose = (ev) => this.end(s, () => this.on.onFail(`connection closed (${ev.code})`, s.painted, ev.code));
  }

  stop() {
    const s = this.session;
    if (!s) return;
    this.session = null;
    s.closed = true; // our own close: no onFail
    this.release(s);
  }

  /** Close the socket and the decoder (a decoder holds memory, and a hardware slot on phones). */
  release(s) {
    s.ws.onmessage = s.ws.onclose = null;
    s.ws.close();
    if (s.decoder && s.decoder.state !== "closed") s.decoder.close();
  }

  /** End a session once, whichever of socket and decoder gave up first, then tell the tile. */
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
    if (msg.type !== "hello" || s.decoder) return;
    if (msg.width > 0 && msg.height > 0) this.on.onSize(msg.width, msg.height);
    if (typeof msg.codec !== "string") {
      this.end(s, () => this.on.onUnsupported("the server's hello names no H.264 codec"));
      return;
    }
    s.decoder = new VideoDecoder({
      output: (frame) => this.paint(s, frame),
      error: (err) => this.decodeError(s, err),
    });
    this.configure(s, msg.codec);
  }

  configure(s, codec) {
    try {
      s.decoder.configure(decoderConfig(codec)); // the next chunk must be a key frame
    } catch (err) {
      // A config the browser rejects outright (TypeError), e.g. a malformed codec string.
      this.end(s, () => this.on.onUnsupported(`VideoDecoder refused ${codec}: ${err.message}`));
      return;
    }
    s.codec = codec;
    s.needKey = true;
    this.on.onCodec(codec);
  }

  unit(s, buf) {
    const u = readUnit(buf);
    if (!u || !s.decoder) return; // nothing arrives before the hello; a short message is no unit
    this.on.onBytes(buf.byteLength);
    if (s.decoder.decodeQueueSize > MAX_DECODE_QUEUE) s.needKey = true;
    if (u.key) {
      if (s.decoder.decodeQueueSize > MAX_DECODE_QUEUE) return; // still behind: wait for the next
      // The camera may change resolution or profile (a new SPS): a new codec string needs a new
      // configure(); the same string just continues (the decoder handles a new size in band).
      const codec = spsCodec(u.payload);
      if (codec && codec.toUpperCase() !== s.codec.toUpperCase()) {
        this.configure(s, codec);
        if (s.closed) return;
      }
      s.needKey = false;
    } else if (s.needKey) {
      return; // a delta frame without its key frame decodes to garbage, or to an error
    }
    s.decoder.decode(
      new EncodedVideoChunk({
        type: u.key ? "key" : "delta",
        timestamp: Math.round(u.captured * 1e6), // µs since the epoch: below 2^53 until the year 2255
        data: u.payload,
      }),
    );
  }

  paint(s, frame) {
    if (s.closed) {
      frame.close();
      return;
    }
    // displayWidth/Height, not codedWidth/Height: the coded size is padded to whole macroblocks
    // (1080 lines are coded as 1088) and may differ from the picture by the SPS's crop.
    const w = frame.displayWidth;
    const h = frame.displayHeight;
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
      this.on.onSize(w, h);
    }
    this.ctx ??= this.canvas.getContext("2d", { alpha: false });
    this.ctx.drawImage(frame, 0, 0, w, h);
    const captured = frame.timestamp / 1e6;
    frame.close(); // decoded frames come from a small pool: an unclosed one stalls the decoder
    this.on.onFrame(captured);
    if (!s.painted) {
      s.painted = true;
      this.on.onPlaying();
    }
  }

  decodeError(s, err) {
    // NotSupportedError: this browser cannot decode the stream after all (auto mode steps down to
    // the next channel). Anything else is a broken unit: reconnect, which starts at a key frame.
    if (err.name === "NotSupportedError") {
      this.end(s, () => this.on.onUnsupported(`VideoDecoder cannot decode ${s.codec}: ${err.message}`));
    } else {
      this.end(s, () => this.on.onFail(`decoder error: ${err.message}`, s.painted, 0));
    }
  }
}
