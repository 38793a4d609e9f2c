// WebSocket playback on a <canvas>: for proxies that buffer or block multipart responses, for
// iOS Safari after backgrounding, and for more than 4 cameras (each MJPEG <img> holds one of the
// browser's 6 HTTP/1.1 connections per host; WebSockets do not count against that limit).
//
// Ack mode: the server sends the next frame only after we acknowledge the one we drew, so at most
// one frame is ever in flight and latency stays at one frame even on a slow link or slow device.

const HEADER_BYTES = 16; // uint64 BE sequence number + float64 BE capture time (unix seconds)

export class WsPlayer {
  /** @param {HTMLCanvasElement} canvas  @param {string} url
   *  @param {{onPlaying: Function, onFail: Function, onFrame: Function, onSize: Function}} on */
  constructor(canvas, url, on) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d", { alpha: false });
    this.url = url;
    this.on = on;
    this.session = null;
  }

  start() {
    this.stop();
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer"; // the header is read with a DataView; no Blob round trip
    // Per-connection state, so a decode still running for an old socket never touches a new one.
    const s = { ws, pending: null, decoding: false, painted: false, closed: false };
    this.session = s;
    ws.onopen = () => ws.send(JSON.stringify({ type: "settings", ack: true }));
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") return this.text(ev.data);
      this.on.onBytes?.(ev.data.byteLength);
      // Keep only the newest frame: if one arrives while we decode, it replaces the waiting one.
      s.pending = ev.data;
      if (!s.decoding) this.decodeLoop(s);
    };
    // `error` is always followed by `close`, which carries the code; handle it once, there.
    ws.onclose = (ev) => {
      if (s.closed) return;
      s.closed = true;
      s.pending = null;
      if (this.session === s) this.session = null;
      this.on.onFail(`connection closed (${ev.code})`, s.painted, ev.code);
    };
  }

  stop() {
    const s = this.session;
    if (!s) return;
    this.session = null;
    s.closed = true; // our own close: no onFail
    s.pending = null;
    s.ws.close();
  }

  text(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg.type === "hello" && msg.width > 0 && msg.height > 0) this.on.onSize(msg.width, msg.height);
    // The server reports rejected messages; they would be our bug, so make them visible.
    if (msg.type === "error") console.warn("edge: server rejected a message:", msg.message);
  }

  async decodeLoop(s) {
    s.decoding = true;
    while (s.pending && !s.closed) {
      const buf = s.pending;
      s.pending = null;
      const head = new DataView(buf, 0, HEADER_BYTES);
      const seq = Number(head.getBigUint64(0)); // exact below 2^53 frames: centuries at 120 fps
      const captured = head.getFloat64(8);
      let bitmap = null;
      try {
        // createImageBitmap decodes off the main thread, without an object URL to revoke.
        bitmap = await createImageBitmap(new Blob([new Uint8Array(buf, HEADER_BYTES)], { type: "image/jpeg" }));
      } catch {
        // An undecodable frame is skipped; still ack it below so the stream keeps flowing.
      }
      if (s.closed) {
        bitmap?.close();
        break;
      }
      if (bitmap) {
        if (this.canvas.width !== bitmap.width || this.canvas.height !== bitmap.height) {
          this.canvas.width = bitmap.width;
          this.canvas.height = bitmap.height;
          this.on.onSize(bitmap.width, bitmap.height);
        }
        this.ctx.drawImage(bitmap, 0, 0);
        bitmap.close(); // free the decoded pixels now rather than at the next GC
        this.on.onFrame(captured);
        if (!s.painted) {
          s.painted = true;
          this.on.onPlaying();
        }
      }
      if (s.ws.readyState === WebSocket.OPEN) s.ws.send(JSON.stringify({ type: "ack", seq }));
    }
    s.decoding = false;
  }
}
