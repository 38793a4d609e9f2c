// Feeds fMP4 from the `?codec=mp4` WebSocket into a MediaSource's SourceBuffer: one append at a
// time (a SourceBuffer refuses a second while `updating`), a bounded buffer, and a timeline
// without gaps. No DOM here: it would also run in a worker (MediaSource in a worker, attached by
// its handle, is no way around the Content-Security-Policy: Chromium checks that as a blob: URL).
//
// The fragments are laid end to end: each one's decode time is rewritten to the end of the one
// before (avc.js retimeFragment), from 0 at each connection. The server stamps them with the
// capture clock (jitter of several ms) but a fixed duration of one frame, so consecutive frames
// overlap or leave holes; Chromium answers an overlap by dropping the overlapped frame and every
// frame that depends on it, up to the next key frame, which leaves a hole that playback stalls
// in. A stale key frame group before live (a camera waking from idle) would be a jump too.
// Mode "sequence" on top: a new init segment (new camera parameters) continues the timeline,
// and whatever the timestamps, nothing is placed anywhere but at the end.

import { retimeFragment } from "./avc.js";

const KEEP_S = 10; // buffered media kept behind the live edge: bounds memory, allows small seeks
const TRIM_SLACK_S = 2; // trim only once this much more has piled up: one remove() per 2 s
// Appends waiting while the SourceBuffer is busy. A healthy buffer takes each fragment in a few
// ms; this many waiting (about 4 s at 30 fps) means the browser does not keep up.
const MAX_QUEUE = 120;

export class Feeder {
  /**
   * @param {MediaSource} ms  a MediaSource (or ManagedMediaSource) of this realm, being attached
   * @param {{onAppended: (captured: number) => void, onError: (reason: string, unsupported: boolean) => void}} on
   */
  constructor(ms, on) {
    this.ms = ms;
    this.on = on;
    this.sb = null;
    this.mime = "";
    this.queue = []; // {bytes, mime?, captured?}
    this.current = null; // the item being appended
    this.failed = false;
    this.nextTime = 0; // where the next fragment goes, in the track's timescale
    ms.addEventListener("sourceopen", () => this.pump(), { once: true });
  }

  /** An init segment (ftyp + moov), for the SourceBuffer of `mime`. */
  init(bytes, mime) {
    this.push({ bytes, mime });
  }

  /** One moof + mdat; `captured` (unix s) is reported back once it is in the buffer. */
  append(bytes, captured) {
    const duration = retimeFragment(bytes, this.nextTime);
    if (duration !== null) this.nextTime += duration;
    this.push({ bytes, captured });
  }

  push(item) {
    if (this.failed) return;
    if (this.queue.length >= MAX_QUEUE) {
      this.fail("the browser's media buffer does not keep up with the stream", false);
      return;
    }
    this.queue.push(item);
    this.pump();
  }

  pump() {
    if (this.failed || this.ms.readyState !== "open" || this.sb?.updating) return;
    if (this.trim()) return; // remove() is running: `updateend` pumps again
    const item = this.queue.shift();
    if (!item) return;
    try {
      if (item.mime) this.prepare(item.mime);
      if (!this.sb) return; // a fragment before any init segment: nothing could decode it
      this.current = item;
      this.sb.appendBuffer(item.bytes);
    } catch (err) {
      // QuotaExceededError despite the trimming, or a SourceBuffer removed under us.
      this.fail(`appending to the media buffer failed: ${err.message}`, false);
    }
  }

  prepare(mime) {
    if (!this.sb) {
      try {
        this.sb = this.ms.addSourceBuffer(mime);
      } catch (err) {
        this.fail(`MediaSource cannot play ${mime}: ${err.message}`, true);
        return;
      }
      this.sb.mode = "sequence";
      this.sb.addEventListener("updateend", () => this.appended());
      // `error` means the browser could not parse or decode what we appended.
      this.sb.addEventListener("error", () => this.fail("the browser could not decode the stream", false));
      this.mime = mime;
    } else if (mime !== this.mime) {
      // A new profile or level: changeType() lets the same buffer continue with the new codec.
      this.sb.changeType(mime);
      this.mime = mime;
    }
  }

  appended() {
    const item = this.current;
    this.current = null;
    if (item && item.captured !== undefined) this.on.onAppended(item.captured);
    this.pump();
  }

  /** Drop media older than KEEP_S behind the newest; true if a remove() was started. The player
   *  keeps playback within 0.5 s of the newest, so this is also KEEP_S behind what is shown. */
  trim() {
    const b = this.sb?.buffered;
    if (!b || !b.length) return false;
    const start = b.start(0);
    const end = b.end(b.length - 1);
    if (end - start < KEEP_S + TRIM_SLACK_S) return false;
    this.sb.remove(start, end - KEEP_S);
    return true;
  }

  fail(reason, unsupported) {
    if (this.failed) return;
    this.failed = true;
    this.queue = [];
    this.on.onError(reason, unsupported);
  }
}
