// What the H.264 players need to know about the bytes of §9 of docs/interface.md: the 17-byte
// header of each WebSocket message, and the codec string ("avc1.PPCCLL") that an SPS or an fMP4
// init segment implies, so a player notices a camera that changed profile or level mid-stream.
// No DOM here: mse-worker.js imports it too.

export const UNIT_HEADER_BYTES = 17; // uint64 BE seq, float64 BE capture time (unix s), flags
export const FLAG_KEY = 0x01; // the unit is a key frame (and carries its SPS and PPS)
export const FLAG_INIT = 0x02; // ?codec=mp4: the payload is an init segment (ftyp + moov)

/**
 * The header of one binary message of `?codec=h264` or `?codec=mp4`.
 * @param {ArrayBuffer} buf
 * @returns {{seq: number, captured: number, key: boolean, init: boolean, payload: Uint8Array} | null}
 */
export function readUnit(buf) {
  if (buf.byteLength < UNIT_HEADER_BYTES) return null;
  const head = new DataView(buf, 0, UNIT_HEADER_BYTES);
  const flags = head.getUint8(16);
  return {
    seq: Number(head.getBigUint64(0)), // exact below 2^53 frames: centuries at 120 fps
    captured: head.getFloat64(8),
    key: (flags & FLAG_KEY) !== 0,
    init: (flags & FLAG_INIT) !== 0,
    payload: new Uint8Array(buf, UNIT_HEADER_BYTES),
  };
}

const hex = (b) => b.toString(16).toUpperCase().padStart(2, "0");

/** "avc1." + profile_idc, constraint flags and level_idc, as the server spells it (upper case). */
function codecOf(bytes, at) {
  return `avc1.${hex(bytes[at])}${hex(bytes[at + 1])}${hex(bytes[at + 2])}`;
}

/**
 * The codec string of the first SPS (NAL type 7) in an Annex-B access unit, or null.
 * The three bytes after the NAL header are profile, constraints and level; they cannot hold an
 * emulation-prevention byte (that needs two zero bytes, and profile_idc is never zero).
 * @param {Uint8Array} au
 * @returns {string | null}
 */
export function spsCodec(au) {
  for (let i = 0; i + 6 < au.length; i++) {
    // A start code is 00 00 01 (a 4-byte 00 00 00 01 ends the same way).
    if (au[i] !== 0 || au[i + 1] !== 0 || au[i + 2] !== 1) continue;
    const nal = i + 3;
    if ((au[nal] & 0x1f) === 7) return codecOf(au, nal + 1);
    i = nal; // skip the header byte; slices are long, but scanning them is cheap next to decoding
  }
  return null;
}

/**
 * The codec string of an fMP4 init segment: from its `avcC` box (configurationVersion, then
 * profile, constraints and level), or null if it has none.
 * @param {Uint8Array} init
 * @returns {string | null}
 */
export function initCodec(init) {
  // "avcC" sits a few hundred bytes into moov; searching beats walking the box tree here.
  for (let i = 0; i + 8 < init.length; i++) {
    if (init[i] === 0x61 && init[i + 1] === 0x76 && init[i + 2] === 0x63 && init[i + 3] === 0x43) {
      return codecOf(init, i + 5); // i + 4 is configurationVersion
    }
  }
  return null;
}

/** The MIME type MSE needs for an H.264 codec string (as the server's hello spells it). */
export function mp4Mime(codec) {
  return `video/mp4; codecs="${codec}"`;
}

// ---- fMP4 fragment timing ---------------------------------------------------------------------

const fourcc = (s) => (s.charCodeAt(0) << 24) | (s.charCodeAt(1) << 16) | (s.charCodeAt(2) << 8) | s.charCodeAt(3);
const MOOF = fourcc("moof");
const TRAF = fourcc("traf");
const TFHD = fourcc("tfhd");
const TFDT = fourcc("tfdt");
const TRUN = fourcc("trun");

/** The first box of `type` in [from, to) of `v`: {body, end} (body: after the 8-byte header). */
function findBox(v, from, to, type) {
  for (let at = from; at + 8 <= to; ) {
    const size = v.getUint32(at);
    if (size < 8 || at + size > to) return null; // 64-bit or open-ended sizes: not in one fragment
    if ((v.getUint32(at + 4) | 0) === (type | 0)) return { body: at + 8, end: at + size };
    at += size;
  }
  return null;
}

/** Total duration of a trun's samples, from their own durations or the tfhd's default. */
function runDuration(v, trun, tfhd) {
  const flags = v.getUint32(trun.body) & 0xffffff;
  const count = v.getUint32(trun.body + 4);
  if (flags & 0x100) {
    let at = trun.body + 8 + (flags & 0x01 ? 4 : 0) + (flags & 0x04 ? 4 : 0);
    const stride = 4 * [0x100, 0x200, 0x400, 0x800].filter((f) => flags & f).length;
    let sum = 0;
    for (let i = 0; i < count; i++, at += stride) sum += v.getUint32(at);
    return sum;
  }
  const tf = v.getUint32(tfhd.body) & 0xffffff;
  if (!(tf & 0x08)) return null;
  const at = tfhd.body + 8 + (tf & 0x01 ? 8 : 0) + (tf & 0x02 ? 4 : 0);
  return count * v.getUint32(at);
}

/**
 * Sets the decode time (tfdt) of a moof + mdat, in place, to `time`, and returns how long its
 * samples last (both in the track's timescale); null, leaving it as it is, if it has no such
 * boxes. The player lays the fragments end to end with it (see mse-buffer.js for why).
 * @param {Uint8Array} frag
 * @param {number} time
 * @returns {number | null}
 */
export function retimeFragment(frag, time) {
  const v = new DataView(frag.buffer, frag.byteOffset, frag.byteLength);
  const moof = findBox(v, 0, v.byteLength, MOOF);
  const traf = moof && findBox(v, moof.body, moof.end, TRAF);
  const tfhd = traf && findBox(v, traf.body, traf.end, TFHD);
  const tfdt = traf && findBox(v, traf.body, traf.end, TFDT);
  const trun = traf && findBox(v, traf.body, traf.end, TRUN);
  if (!tfhd || !tfdt || !trun) return null;
  const duration = runDuration(v, trun, tfhd);
  if (duration === null) return null;
  if (v.getUint8(tfdt.body) === 1) v.setBigUint64(tfdt.body + 4, BigInt(time));
  else if (time < 2 ** 32) v.setUint32(tfdt.body + 4, time);
  else return null;
  return duration;
}
