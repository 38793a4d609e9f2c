"""The publishing path's pure parts, in process: publish URLs as edge reads them, RTMP's chunk
layout, RTSP's Digest answer (RFC 2617's own example) and SDP, and PyAV's muxers writing into
memory (FLV tags for RTMP, RTP packets for RTSP) fed with a real libx264 stream."""

from __future__ import annotations

import base64
import struct

import numpy as np
import pytest

from edge.capture.encoder import H264Encoder
from edge.config.target import PublishTarget
from edge.fanout.units import AccessUnit, UnitFeed
from edge.formats import rtmp, rtsp
from edge.formats.flv import FlvSplitter
from edge.formats.h264 import AccessUnitChecker, NalType, nal_type, nal_units
from edge.publish.muxer import RTP_PACKET, Muxer
from edge.publish.rtsp import control_url


def test_publish_urls_as_edge_reads_them() -> None:
    t = PublishTarget.parse("rtmp://nginx.lan/live/cam0")
    assert (t.protocol, t.host, t.port, t.rtmp_app, t.rtmp_stream, t.tls) == (
        "rtmp",
        "nginx.lan",
        1935,
        "live",
        "cam0",
        False,
    )
    t = PublishTarget.parse("rtmps://a.example:8443/app/inst/key?token=x")
    assert (t.port, t.rtmp_app, t.rtmp_stream, t.tls, t.netloc) == (
        8443,
        "app/inst",
        "key?token=x",
        True,
        "a.example:8443",
    )
    t = PublishTarget.parse("rtsp://user:p%40ss@[::1]:8554/cam0")
    assert (t.protocol, t.host, t.port, t.user, t.password) == ("rtsp", "::1", 8554, "user", "p@ss")
    assert t.url == "rtsp://[::1]:8554/cam0"  # no credentials in what goes on the wire as the URL
    assert PublishTarget.parse("rtsps://h/x").port == 322


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("srt://h:9000", "MediaMTX"),
        ("http://h/x", "rtsp://, rtsps://, rtmp:// or rtmps://"),
        ("rtmp://h/live", "APP/STREAM"),
        ("rtmp://u:p@h/live/x", "?user=U&pass=P"),
        ("rtsp://h", "needs a path"),
        ("rtsp:///x", "no host"),
        ("rtsp://h:99999/x", "not a valid URL"),
    ],
)
def test_bad_publish_urls_say_what_to_write(url: str, words: str) -> None:
    with pytest.raises(ValueError) as info:
        PublishTarget.parse(url)
    assert words in str(info.value)


def test_rtmp_chunks_a_message_with_type_3_continuations() -> None:
    payload = bytes(range(256)) * 40  # 10240 bytes: three 4096-byte chunks
    data = rtmp.chunk(6, rtmp.VIDEO, 1, 1234, payload)
    assert data[:12] == bytes([6]) + (1234).to_bytes(3, "big") + len(payload).to_bytes(3, "big") + bytes(
        [9]
    ) + struct.pack("<I", 1)
    assert data[12 + 4096] == 0xC6 and data[12 + 4096 + 1 + 4096] == 0xC6
    assert len(data) == 12 + len(payload) + 2
    reader = rtmp.ChunkReader()
    reader.chunk_size = 4096
    (message,) = reader.feed(data)
    assert (message.type_id, message.stream_id, message.timestamp, message.payload) == (9, 1, 1234, payload)


def test_rtmp_handshake_rejects_what_is_not_rtmp() -> None:
    with pytest.raises(rtmp.RtmpError, match="not an RTMP server"):
        rtmp.handshake_c2(b"H" + bytes(3072))
    s1 = bytes(range(256)) * 6
    assert rtmp.handshake_c2(b"\x03" + s1 + bytes(1536)) == s1


def test_rtmp_status_text_is_one_line_from_the_server_info() -> None:
    info = {"level": "error", "code": "NetStream.Publish.BadName", "description": "Already publishing"}
    assert rtmp.status_text(info) == "NetStream.Publish.BadName: Already publishing"
    assert rtmp.status_text(None) == "no reason given"


def test_rtsp_digest_answers_rfc_2617s_example() -> None:
    challenge = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    header = rtsp.authorization((challenge,), "GET", "/dir/index.html", "Mufasa", "Circle Of Life", 1, "0a4f113b")
    assert header is not None
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert 'nc=00000001, cnonce="0a4f113b"' in header and 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header


def test_rtsp_basic_and_no_known_challenge() -> None:
    header = rtsp.authorization(('Basic realm="x"',), "ANNOUNCE", "rtsp://h/x", "u", "p")
    assert header == "Basic " + base64.b64encode(b"u:p").decode()
    assert rtsp.authorization(("Bearer x",), "ANNOUNCE", "rtsp://h/x", "u", "p") is None


def test_rtsp_track_url_goes_below_the_streams_before_its_query() -> None:
    assert control_url("rtsp://h:8554/cam0") == "rtsp://h:8554/cam0/streamid=0"
    assert control_url("rtsp://h/live/cam0/?user=u") == "rtsp://h/live/cam0/streamid=0?user=u"


def test_rtsp_session_header_and_request_layout() -> None:
    assert rtsp.session_id("12345678;timeout=30") == ("12345678", 30.0)
    assert rtsp.session_id("abc") == ("abc", 60.0)
    with pytest.raises(rtsp.RtspError):
        rtsp.session_id(None)
    text = rtsp.request("ANNOUNCE", "rtsp://h/x", 3, {"Content-Type": "application/sdp"}, b"v=0\r\n")
    assert text.startswith(b"ANNOUNCE rtsp://h/x RTSP/1.0\r\nCSeq: 3\r\n")
    assert text.endswith(b"Content-Length: 5\r\n\r\nv=0\r\n")
    with pytest.raises(ValueError, match="line break"):
        rtsp.request("OPTIONS", "rtsp://h/x", 1, {"X": "a\r\nInjected: 1"})


def moving_frames(size: tuple[int, int], count: int) -> list[np.ndarray]:
    """Noise with a bar that moves: pictures that make real, fragmented P frames."""
    width, height = size
    rng = np.random.default_rng(7)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    frames = []
    for i in range(count):
        image = base.copy()
        image[:, (i * 8) % width : (i * 8) % width + 16] = 255
        frames.append(image)
    return frames


def encoded_units(count: int = 45, size: tuple[int, int] = (320, 240)) -> list[AccessUnit]:
    encoder = H264Encoder(30)
    checker = AccessUnitChecker()
    feed = UnitFeed(30)
    units = []
    for i, image in enumerate(moving_frames(size, count)):
        for data, _ in encoder.encode(image):
            checked = checker.check(data)
            units.append(feed.make(checked.data, checked.key, checked.params, 1000.0 + i / 30))
    return units


def test_sdp_carries_the_streams_own_parameter_sets() -> None:
    first = encoded_units(1)[0]
    text = rtsp.sdp(first.params.sps, first.params.pps)
    sets = text.split("sprop-parameter-sets=")[1].split("\r\n")[0].split(",")
    assert [base64.b64decode(s) for s in sets] == [first.params.sps, first.params.pps]
    assert f"profile-level-id={first.params.sps[1:4].hex().upper()}" in text


def test_flv_muxer_gives_one_tag_per_unit_with_the_units_own_slices() -> None:
    units = encoded_units()
    muxer = Muxer("flv", units[0], 30)
    splitter = FlvSplitter()
    tags = []
    for unit in units:
        tags += splitter.feed(b"".join(muxer.write(unit)))
    assert tags[0].type_id == 18  # onMetaData
    video = [t for t in tags if t.type_id == 9]
    assert video[0].payload[:2] == b"\x17\x00"  # the AVC sequence header (the camera's SPS/PPS)
    frames = video[1:]
    assert len(frames) == len(units)
    assert [t.timestamp for t in frames] == [round(i * 1000 / 30) for i in range(len(units))]
    for tag, unit in zip(frames, units, strict=True):
        body = tag.payload[5:]
        nals = []
        while body:  # length-prefixed NAL units (FLV), the unit's own bytes
            size = int.from_bytes(body[:4], "big")
            nals.append(body[4 : 4 + size])
            body = body[4 + size :]
        slices = [n for n in nal_units(unit.data) if nal_type(n) in (NalType.SLICE, NalType.IDR)]
        assert [n for n in nals if nal_type(n) in (NalType.SLICE, NalType.IDR)] == slices


def test_rtp_muxer_writes_whole_packets_no_bigger_than_the_limit() -> None:
    units = encoded_units(10, (1280, 720))
    muxer = Muxer("rtp", units[0], 30)
    packets = [p for unit in units for p in muxer.write(unit)]
    assert all(len(p) <= RTP_PACKET and p[0] >> 6 == 2 for p in packets)  # RTP version 2
    video = [p for p in packets if not 200 <= p[1] <= 204]
    markers = [p for p in video if p[1] & 0x80]
    assert len(markers) == len(units)  # the marker bit ends each unit
    assert len(video) > len(units)  # 720p key frames are fragmented (FU-A)
