// MJPEG playback in an <img>: the simplest channel, and the one embedders use.
//
// A browser gives almost no feedback for multipart images: Chromium fires `load` for the first
// part only, and nothing at all when the stream later stops (the last frame just stays). So this
// player only reports "first frame painted" and "failed before painting"; a stream that dies
// later is noticed by the status poller (see viewer.js), which restarts the tile.

const FIRST_FRAME_MS = 3000; // auto mode gives MJPEG this long to paint a frame
const POLL_MS = 100;

export class MjpegPlayer {
  /** @param {HTMLImageElement} img  @param {string} url  @param {{onPlaying: Function, onFail: Function}} on */
  constructor(img, url, on) {
    this.img = img;
    this.url = url;
    this.on = on;
    this.active = false;
    this.painted = false;
    this.timer = 0;
    // One listener pair for the element's lifetime; `active` filters events of a stopped stream.
    img.addEventListener("load", () => this.active && this.paintedFirst());
    img.addEventListener("error", () => this.active && this.fail("the stream request failed"));
  }

  start() {
    this.stop();
    this.active = true;
    this.painted = false;
    const started = performance.now();
    // The cache-buster makes every (re)connect a new request, also in browsers that would reuse
    // a cached image for an unchanged src after a failure. Added to the query, not appended as
    // "?t=": the URL may already carry the page's token.
    const src = new URL(this.url);
    src.searchParams.set("t", String(Date.now()));
    this.img.src = src.href;
    // `load` is enough in Chromium; polling naturalWidth covers browsers that skip it.
    this.timer = setInterval(() => {
      if (this.img.naturalWidth > 0) this.paintedFirst();
      else if (performance.now() - started > FIRST_FRAME_MS) this.fail("no frame within 3 s");
    }, POLL_MS);
  }

  stop() {
    this.active = false;
    clearInterval(this.timer);
    // Removing src (not setting it to "", which fires `error`) aborts the request, so the server
    // sees the connection close: an MJPEG <img> would otherwise hold a connection forever.
    this.img.removeAttribute("src");
  }

  paintedFirst() {
    clearInterval(this.timer);
    if (this.painted) return;
    this.painted = true;
    this.on.onPlaying();
  }

  fail(reason) {
    const painted = this.painted;
    this.stop();
    this.on.onFail(reason, painted);
  }
}
