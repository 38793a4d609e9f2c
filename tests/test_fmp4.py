"""`edge.formats.fmp4` on real H.264 (libx264 through ffmpeg, cut and checked by
`edge.formats.h264`): the initialisation segment and fragments written one after the other make
a file that FFmpeg plays (PyAV and ffprobe, no error logged), whose boxes say what they should
(read back by the test's own box walker), and that Chromium's Media Source Extensions take in a
headless page: buffered without a gap, every frame decoded, a change of size through a second
initialisation segment included.
"""

from __future__ import annotations

import base64
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from playwright.sync_api import Browser, sync_playwright

from edge.formats import fmp4
from edge.formats.h264 import AccessUnitChecker, CheckedAU, nal_units, parse_sps, split_nals_for_sample
from tests.support.h264 import FRAMES, RATE, split, x264
from tests.support.programs import program, requires

TICKS = fmp4.TIMESCALE // RATE
HIGH_1080P: dict[str, Any] = {"size": (1920, 1080), "profile": "high", "params": "cabac=1:8x8dct=1"}


def checked(data: bytes) -> list[CheckedAU]:
    checker = AccessUnitChecker()
    return [checker.check(unit) for unit in split(data)]


def mp4_segments(units: list[CheckedAU], first_sequence: int = 1, start: int = 0) -> list[bytes]:
    """An initialisation segment before the first unit and each unit whose parameters changed, and
    one fragment per unit, `TICKS` long each: what edge sends an MSE viewer."""
    out: list[bytes] = []
    for n, unit in enumerate(units):
        if unit.changed or n == 0:
            params = unit.params
            out.append(fmp4.init_segment(params.sps, params.pps, params.width, params.height))
        sample = fmp4.sample(split_nals_for_sample(unit.data))
        out.append(fmp4.fragment(first_sequence + n, start + n * TICKS, TICKS, sample, unit.key))
    return out


def boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, offset of the box, offset of its payload end) of each box in ``data[start:end]``."""
    end = len(data) if end is None else end
    while start < end:
        size, kind = struct.unpack_from(">I4s", data, start)
        assert size >= 8 and start + size <= end, f"box {kind!r} at {start} of size {size} overruns {end}"
        yield kind, start, start + size
        start += size


def children(data: bytes, box: tuple[bytes, int, int], skip: int = 0) -> dict[bytes, tuple[bytes, int, int]]:
    """The boxes inside `box` (after `skip` bytes of its own fields), by type (each must be unique)."""
    inner = list(boxes(data, box[1] + 8 + skip, box[2]))
    found = {b[0]: b for b in inner}
    assert len(found) == len(inner), f"repeated boxes in {box[0]!r}: {[b[0] for b in inner]}"
    return found


def payload(data: bytes, box: tuple[bytes, int, int]) -> bytes:
    return data[box[1] + 8 : box[2]]


def test_sample_is_length_prefixed() -> None:
    assert fmp4.sample([b"\x65\x88", b"\x06abc"]) == b"\x00\x00\x00\x02\x65\x88\x00\x00\x00\x04\x06abc"
    assert fmp4.sample([]) == b""


@requires("ffmpeg")
@pytest.mark.parametrize("kwargs", [{}, HIGH_1080P, {"pix_fmt": "yuv444p"}], ids=["baseline", "high", "high444"])
def test_ffmpeg_plays_the_fragments(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    units = checked(x264(**kwargs))
    size = (units[0].params.width, units[0].params.height)
    path = tmp_path / "camera.mp4"
    path.write_bytes(b"".join(mp4_segments(units)))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [(frame.width, frame.height, frame.time) for frame in container.decode(stream)]
    assert [f[:2] for f in frames] == [size] * FRAMES
    assert [round(f[2] * RATE, 6) for f in frames if f[2] is not None] == list(range(FRAMES)), "not 1/30 s apart"
    ffprobe = str(Path(program("ffmpeg")).with_name("ffprobe"))  # part of the ffmpeg package
    result = subprocess.run(
        [ffprobe, "-v", "error", "-count_frames", "-show_entries", "stream=width,height,nb_read_frames,profile"]
        + ["-of", "default=nw=1", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stderr == "", result.stderr
    fields = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert (int(fields["width"]), int(fields["height"]), int(fields["nb_read_frames"])) == (*size, FRAMES)


@requires("ffmpeg")
def test_the_boxes_read_back() -> None:
    units = checked(x264(**HIGH_1080P))
    params = units[0].params
    data = b"".join(mp4_segments(units))
    top = list(boxes(data))
    assert [b[0] for b in top] == [b"ftyp", b"moov"] + [b"moof", b"mdat"] * FRAMES
    ftyp = payload(data, top[0])
    assert ftyp[:4] == b"isom" and {ftyp[i : i + 4] for i in range(8, len(ftyp), 4)} >= {b"isom", b"avc1"}

    moov = children(data, top[1])
    assert set(moov) == {b"mvhd", b"trak", b"mvex"}
    mvhd = payload(data, moov[b"mvhd"])
    assert struct.unpack_from(">I", mvhd, 12)[0] == 1000 and struct.unpack_from(">I", mvhd, len(mvhd) - 4)[0] == 2
    trak = children(data, moov[b"trak"])
    tkhd = payload(data, trak[b"tkhd"])
    assert tkhd[:4] == b"\x00\x00\x00\x03" and struct.unpack_from(">I", tkhd, 12)[0] == 1
    assert struct.unpack_from(">II", tkhd, len(tkhd) - 8) == (1920 << 16, 1080 << 16)
    mdia = children(data, trak[b"mdia"])
    assert struct.unpack_from(">I", payload(data, mdia[b"mdhd"]), 12)[0] == fmp4.TIMESCALE
    assert payload(data, mdia[b"hdlr"])[8:12] == b"vide"
    stbl = children(data, children(data, mdia[b"minf"])[b"stbl"])
    assert set(stbl) == {b"stsd", b"stts", b"stsc", b"stsz", b"stco"}
    avc1 = children(data, stbl[b"stsd"], skip=8)[b"avc1"]
    assert struct.unpack_from(">HH", data, avc1[1] + 8 + 24) == (1920, 1080)
    avcc = payload(data, children(data, avc1, skip=78)[b"avcC"])
    sps_len = struct.unpack_from(">H", avcc, 6)[0]
    assert avcc[:6] == bytes([1, *params.sps[1:4], 0xFF, 0xE1]) and avcc[8 : 8 + sps_len] == params.sps
    pps_at = 8 + sps_len
    pps_len = struct.unpack_from(">H", avcc, pps_at + 1)[0]
    assert avcc[pps_at] == 1 and avcc[pps_at + 3 : pps_at + 3 + pps_len] == params.pps
    # High profile: chroma_format 4:2:0, 8-bit luma and chroma, no SPS extensions.
    assert parse_sps(params.sps).profile_idc == 100 and avcc[pps_at + 3 + pps_len :] == b"\xfd\xf8\xf8\x00"
    trex = payload(data, children(data, moov[b"mvex"])[b"trex"])
    assert struct.unpack(">IIIIII", trex)[1:3] == (1, 1)

    for n, unit in enumerate(units):
        moof, mdat = top[2 + 2 * n], top[3 + 2 * n]
        inner = children(data, moof)
        assert struct.unpack(">II", payload(data, inner[b"mfhd"])) == (0, 1 + n)
        traf = children(data, inner[b"traf"])
        assert struct.unpack(">II", payload(data, traf[b"tfhd"])) == (0x020000, 1)
        assert struct.unpack(">IQ", payload(data, traf[b"tfdt"])) == (1 << 24, n * TICKS)
        flags, count, offset, duration, size, sample_flags = struct.unpack(">IIiIII", payload(data, traf[b"trun"]))
        assert (flags, count, duration) == (0x000701, 1, TICKS)
        assert moof[1] + offset == mdat[1] + 8, "data_offset does not point at the mdat's payload"
        assert size == mdat[2] - mdat[1] - 8
        sample = data[moof[1] + offset : moof[1] + offset + size]
        assert sample == fmp4.sample(split_nals_for_sample(unit.data))
        assert sample_flags == (0x02000000 if unit.key else 0x01010000)
        # The sample's NAL units, read by their lengths, are the unit's but its AUD, SPS and PPS.
        nals, at = [], 0
        while at < len(sample):
            length = struct.unpack_from(">I", sample, at)[0]
            nals.append(sample[at + 4 : at + 4 + length])
            at += 4 + length
        assert at == len(sample) and nals == [nal for nal in nal_units(unit.data) if nal[0] & 0x1F not in (7, 8, 9)]


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
# Appends the segments to a SourceBuffer one at a time, then plays the whole buffer (fast).
MSE_JS = """async ([mime, segments]) => {
  const video = document.createElement("video");
  video.muted = true;
  document.body.append(video);
  const source = new MediaSource();
  video.src = URL.createObjectURL(source);
  await new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }));
  const errors = [];
  const buffer = source.addSourceBuffer(mime);
  buffer.addEventListener("error", () => errors.push("SourceBuffer error"));
  video.addEventListener("error", () => errors.push(`video error: ${video.error && video.error.message}`));
  const sizes = new Set();
  video.addEventListener("resize", () => sizes.add(`${video.videoWidth}x${video.videoHeight}`));
  for (const segment of segments) {
    buffer.appendBuffer(Uint8Array.from(atob(segment), (c) => c.charCodeAt(0)));
    await new Promise((resolve) => buffer.addEventListener("updateend", resolve, { once: true }));
    if (errors.length) break;
  }
  const ranges = [];
  for (let i = 0; i < buffer.buffered.length; i++) ranges.push([buffer.buffered.start(i), buffer.buffered.end(i)]);
  source.endOfStream();
  video.playbackRate = 4;
  await video.play().catch((e) => errors.push(`play: ${e}`));
  await new Promise((resolve) => {
    video.addEventListener("ended", resolve, { once: true });
    setTimeout(resolve, 20000);
  });
  const decoded = video.getVideoPlaybackQuality().totalVideoFrames;
  const supported = MediaSource.isTypeSupported(mime);
  return { supported, ranges, errors, ended: video.ended, decoded, sizes: [...sizes] };
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=program("chromium"), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@requires("ffmpeg", "chromium")
def test_chromium_media_source_takes_the_fragments(browser: Browser) -> None:
    first = checked(x264())
    second = checked(x264(**HIGH_1080P))
    # One timeline, a new initialisation segment where the size (and profile) changes.
    segments = mp4_segments(first) + mp4_segments(second, first_sequence=FRAMES + 1, start=FRAMES * TICKS)
    assert second[0].changed
    page = browser.new_page()
    try:
        result = page.evaluate(
            MSE_JS, [f'video/mp4; codecs="{first[0].params.codec}"', [base64.b64encode(s).decode() for s in segments]]
        )
    finally:
        page.close()
    assert result["supported"] and result["errors"] == [], result
    [(start, end)] = result["ranges"]
    assert start == 0 and abs(end - 2 * FRAMES / RATE) < 0.01, result["ranges"]
    assert result["ended"] and result["decoded"] == 2 * FRAMES, result
    assert set(result["sizes"]) == {"640x480", "1920x1080"}, result["sizes"]
