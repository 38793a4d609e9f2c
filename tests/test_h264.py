"""H.264 cameras end to end (§9 of docs/interface.md): the virtual camera encoded with libx264,
pipe producers (ffmpeg with libx264), H.264 files and a real RTSP server (GStreamer's), served as
raw Annex-B (`/stream.h264`), over the WebSocket as Annex-B units (`?codec=h264`) and as fMP4
fragments (`?codec=mp4`). Everything received is decoded with PyAV without a decode error; the
units are compared with what the producer wrote; a reader that falls behind resumes at a key
frame; the JPEG ways out of an H.264 camera; refusals.

Real server (a subprocess on 127.0.0.1), real clients (httpx, `websockets`, raw sockets).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import struct
import time
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from edge.formats.h264 import AccessUnitSplitter, NalType, nal_type, nal_units, parse_sps
from tests.support.config import virtual_cam
from tests.support.h264 import ffmpeg_h264
from tests.support.jpeg import decode_jpeg
from tests.support.mjpeg import MjpegStream
from tests.support.process import EdgeServer, StartServer
from tests.support.programs import program, requires
from tests.support.rtsp import RtspServer, requires_rtsp, requires_rtsp_h265
from tests.support.status import camera_status, get_status, wait_status
from tests.support.websocket import RawWebSocket, connect_ws

HEADER = struct.Struct(">QdB")
KEY, INIT = 0x01, 0x02


def h264_cam(name: str = "cam0", fps: float = 30, **extra: Any) -> dict[str, Any]:
    cam = virtual_cam(name, 320, 240, fps)
    cam["codec"] = "h264"
    cam.update(extra)
    return cam


def decode_annexb(data: bytes) -> int:
    """Frames PyAV decodes from an Annex-B byte stream; any decode error fails."""
    ctx = av.CodecContext.create("h264", "r")
    frames = 0
    for packet in ctx.parse(data):
        frames += len(ctx.decode(packet))
    frames += len(ctx.decode(None))
    return frames


def decode_units(units: list[bytes]) -> int:
    ctx = av.CodecContext.create("h264", "r")
    frames = 0
    for unit in units:
        frames += len(ctx.decode(av.Packet(unit)))
    frames += len(ctx.decode(None))
    return frames


def read_h264(url: str, seconds: float, max_bytes: int = 16 << 20) -> tuple[httpx.Headers, bytes]:
    """The body of `/stream.h264` for `seconds`."""
    body = bytearray()
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=10) as client, client.stream("GET", url) as r:
        assert r.status_code == 200, r.read()
        for chunk in r.iter_raw():
            body += chunk
            if time.monotonic() >= deadline or len(body) >= max_bytes:
                break
        return r.headers, bytes(body)


async def ws_messages(url: str, count: int) -> tuple[dict[str, Any], list[bytes]]:
    # A new viewer gets the GOP cache in one burst: with the library's default queue of 16
    # messages, closing with the rest unread would stall its closing handshake for close_timeout.
    async with connect_ws(url, max_queue=None) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        messages = []
        while len(messages) < count:
            msg = await asyncio.wait_for(ws.recv(), 10)
            assert isinstance(msg, bytes), f"a text message among the frames: {msg!r}"
            messages.append(msg)
    return hello, messages


@pytest.fixture(scope="module")
def h264_server(start_module_server: StartServer) -> EdgeServer:
    return start_module_server(cameras=[h264_cam("cam0", idle_after=0), virtual_cam("jpeg", 320, 240, 15)])


# -- the virtual camera in H.264 ---------------------------------------------------------------


def test_stream_h264_is_annexb_that_starts_with_sps_pps_idr_and_decodes(h264_server: EdgeServer) -> None:
    headers, body = read_h264(h264_server.url + "/cameras/cam0/stream.h264", 2.0)
    assert headers["content-type"] == "video/h264"
    types = [nal_type(n) for n in nal_units(body)]
    first_vcl = next(i for i, t in enumerate(types) if t in (NalType.SLICE, NalType.IDR))
    assert types[first_vcl] == NalType.IDR, f"the stream starts with a delta frame: {types[:8]}"
    assert NalType.SPS in types[:first_vcl] and NalType.PPS in types[:first_vcl], types[: first_vcl + 1]
    frames = decode_annexb(body)
    assert frames >= 30, f"2 s at 30 fps gave {frames} decoded frames"
    sps = parse_sps(next(n for n in nal_units(body) if nal_type(n) == NalType.SPS))
    assert (sps.width, sps.height) == (320, 240)


def test_default_camera_has_stream_h264_too(h264_server: EdgeServer) -> None:
    _, body = read_h264(h264_server.url + "/stream.h264", 1.0)
    assert decode_annexb(body) > 0


async def test_ws_h264_hello_and_key_frame_first_and_every_unit_decodes(h264_server: EdgeServer) -> None:
    hello, messages = await ws_messages(h264_server.ws_url + "/cameras/cam0/ws?codec=h264", 60)
    assert hello["type"] == "hello" and hello["format"] == "annexb"
    sps = parse_sps(next(n for n in nal_units(messages[0][HEADER.size :]) if nal_type(n) == NalType.SPS))
    assert hello["codec"] == sps.codec and hello["codec"].startswith("avc1.")
    assert (hello["width"], hello["height"]) == (320, 240)
    headers = [HEADER.unpack_from(m) for m in messages]
    assert headers[0][2] & KEY, "the first frame a connection gets must be a key frame"
    seqs = [seq for seq, _, _ in headers]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(abs(ts - time.time()) < 30 for _, ts, _ in headers)
    assert decode_units([m[HEADER.size :] for m in messages]) == len(messages)


async def test_ws_mp4_init_segment_then_one_fragment_per_unit_that_decodes(
    h264_server: EdgeServer, tmp_path: Path
) -> None:
    hello, messages = await ws_messages(h264_server.ws_url + "/cameras/cam0/ws?codec=mp4", 61)
    assert hello["mime"] == f'video/mp4; codecs="{hello["codec"]}"'
    flags = [HEADER.unpack_from(m)[2] for m in messages]
    assert flags[0] & INIT and not flags[1] & INIT and flags[1] & KEY, flags[:3]
    init = messages[0][HEADER.size :]
    assert init[4:8] == b"ftyp" and b"moov" in init
    fragments = [m[HEADER.size :] for m in messages[1:]]
    assert all(f[4:8] == b"moof" and b"mdat" in f for f in fragments)
    path = tmp_path / "ws.mp4"
    path.write_bytes(init + b"".join(fragments))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = sum(1 for _ in container.decode(stream))
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 240)
    assert decoded == len(fragments)


def test_h264_status_and_client_kinds(h264_server: EdgeServer) -> None:
    async def hold() -> dict[str, Any]:
        async with (
            connect_ws(h264_server.ws_url + "/cameras/cam0/ws?codec=h264", max_queue=None) as a,
            connect_ws(h264_server.ws_url + "/cameras/cam0/ws?codec=mp4", max_queue=None) as b,
        ):
            await a.recv()
            await b.recv()
            await a.recv()
            await b.recv()
            return await asyncio.to_thread(
                wait_status,
                h264_server,
                lambda s: {c["kind"] for c in camera_status(s, "cam0")["clients"]} >= {"ws-h264", "ws-mp4"},
                10,
            )

    status = asyncio.run(hold())
    cam = camera_status(status, "cam0")
    assert cam["codec"] == "h264"
    h264 = cam["h264"]
    assert h264["codec"].startswith("avc1.") and (h264["width"], h264["height"]) == (320, 240)
    assert h264["keyframe_interval_s"] == pytest.approx(1.0, abs=0.25), "libx264 is asked for a key frame a second"
    assert h264["bitrate_kbps"] > 0
    assert camera_status(status, "jpeg")["codec"] == "mjpeg" and "h264" not in camera_status(status, "jpeg")


def test_codec_query_on_a_jpeg_camera_or_unknown_is_refused_with_400(h264_server: EdgeServer) -> None:
    host, port = "127.0.0.1", h264_server.port
    for path in ("/cameras/jpeg/ws?codec=h264", "/cameras/cam0/ws?codec=vp9", "/cameras/cam0/ws?codec="):
        with pytest.raises(AssertionError, match="answered 400"):
            RawWebSocket(host, port, path)
    r = httpx.get(h264_server.url + "/cameras/jpeg/stream.h264", timeout=10)
    assert r.status_code == 404 and "JPEG camera" in r.json()["error"]


def test_jpeg_ways_out_of_an_h264_camera(h264_server: EdgeServer) -> None:
    r = httpx.get(h264_server.url + "/cameras/cam0/snapshot", timeout=15)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    image = decode_jpeg(r.content)
    assert image.shape[:2] == (240, 320)
    with MjpegStream(h264_server.host, h264_server.port, "/cameras/cam0/stream") as stream:
        parts = stream.read_parts(10)
    assert all(decode_jpeg(p.jpeg).shape[:2] == (240, 320) for p in parts)
    status = get_status(h264_server)
    assert camera_status(status, "cam0")["h264"]["jpeg_decoding"] is True


async def test_ws_h264_settings_are_refused_with_an_error_message(h264_server: EdgeServer) -> None:
    async with connect_ws(h264_server.ws_url + "/cameras/cam0/ws?codec=h264", max_queue=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "settings", "fps": 5}))
        while True:
            msg = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(msg, str):
                break
        error = json.loads(msg)
        assert error["type"] == "error" and "JPEG streams only" in error["message"]


# -- a reader that falls behind resumes at a key frame ----------------------------------------


def test_a_reader_that_falls_behind_resumes_at_a_key_frame(start_server: StartServer) -> None:
    """A raw WebSocket client with a tiny receive buffer stops reading for 3 s: the server skips
    units for it, and the first unit after the gap in sequence numbers is a key frame."""
    srv = start_server(cameras=[h264_cam(idle_after=0, width=640, height=480)])
    ws = RawWebSocket("127.0.0.1", srv.port, "/cameras/cam0/ws?codec=h264", rcvbuf=4096)
    try:
        ws.recv_text()
        first = [ws.recv_message() for _ in range(5)]
        time.sleep(3.0)  # the point of the test: a client that stops reading for a while
        later = [ws.recv_message() for _ in range(90)]
    finally:
        ws.close()
    seqs_flags = [HEADER.unpack_from(p)[::2] for _, p in first + later]
    gaps = [i for i in range(1, len(seqs_flags)) if seqs_flags[i][0] != seqs_flags[i - 1][0] + 1]
    assert gaps, "the paused reader skipped nothing: the test did not make it fall behind"
    for i in gaps:
        assert seqs_flags[i][1] & KEY, f"after a gap ({seqs_flags[i - 1][0]} -> {seqs_flags[i][0]}) a delta frame came"
    units = [p[HEADER.size :] for _, p in first + later]
    # Decodable as received: every unit after a gap has what it references.
    assert decode_units(units) == len(units)


# -- a pipe producer writing H.264 ---------------------------------------------------------------


@requires("ffmpeg")
@pytest.mark.parametrize("size, quality", [("320x240", ""), ("1280x720", "-crf 18")])
def test_pipe_h264_is_detected_and_passed_through_byte_for_byte(
    start_server: StartServer, tmp_path: Path, size: str, quality: str
) -> None:
    """The producer's output is also written to a file (tee); every unit edge sends must be one of
    the producer's units, byte for byte (ffmpeg writes SPS/PPS with each key frame itself). At
    1280x720 a key frame is larger than ffmpeg's 32 KiB output buffer, so it reaches edge in
    several writes: none may be handed on cut short."""
    copy = tmp_path / "producer.h264"
    producer = ffmpeg_h264(size, extra=f"{quality} -x264-params repeat-headers=1")
    command = f"sh -c {shlex.quote(producer + ' | tee ' + str(copy))}"
    cam = virtual_cam("cam0", 320, 240, 30, source="pipe:" + command)
    cam.update(idle_after=0)
    for key in ("width", "height"):
        cam.pop(key)
    srv = start_server(cameras=[cam])
    status = wait_status(srv, lambda s: camera_status(s, "cam0")["codec"] == "h264", 15)
    cam_status = camera_status(status, "cam0")
    assert "passthrough" in cam_status["processing"] and "H.264" in cam_status["processing"]
    _, messages = asyncio.run(ws_messages(srv.ws_url + "/cameras/cam0/ws?codec=h264", 45))
    time.sleep(0.5)  # let tee's write of the last units reach the file
    written = AccessUnitSplitter().feed(copy.read_bytes())
    received = [m[HEADER.size :] for m in messages]
    known = set(written)
    assert all(unit in known for unit in received), "a unit edge sent is not one the producer wrote"
    assert decode_units(received) == len(received)
    assert camera_status(get_status(srv), "cam0")["frames_invalid"] == 0


@requires("ffmpeg")
def test_pipe_h264_garbage_first_is_counted_and_never_sent(start_server: StartServer) -> None:
    junk = "head -c 3000 /dev/urandom"
    command = f"sh -c {shlex.quote(junk + '; ' + ffmpeg_h264())}"
    cam = virtual_cam("cam0", 320, 240, 30, source="pipe:" + command)
    cam.update(idle_after=0, codec="h264")
    for key in ("width", "height"):
        cam.pop(key)
    srv = start_server(cameras=[cam])
    wait_status(srv, lambda s: camera_status(s, "cam0")["state"] == "streaming", 15)
    _, body = read_h264(srv.url + "/cameras/cam0/stream.h264", 1.5)
    assert decode_annexb(body) > 10


# -- files ----------------------------------------------------------------------------------------


@requires("ffmpeg")
@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".h264"])
def test_h264_files_are_demuxed_not_decoded_and_loop(start_server: StartServer, tmp_path: Path, suffix: str) -> None:
    import subprocess

    clip = tmp_path / f"clip{suffix}"
    subprocess.run(
        [program("ffmpeg"), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-frames:v", "30",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-bf", "0", "-pix_fmt", "yuv420p", str(clip)],
        check=True, timeout=60,
    )  # fmt: skip
    cam = {"name": "cam0", "source": str(clip), "fps": 30, "idle_after": 0}
    srv = start_server(cameras=[cam])
    status = wait_status(srv, lambda s: camera_status(s, "cam0")["frames_captured"] > 45, 20)
    cam_status = camera_status(status, "cam0")
    assert cam_status["codec"] == "h264", cam_status
    assert "H.264 passthrough" in cam_status["processing"]
    _, body = read_h264(srv.url + "/cameras/cam0/stream.h264", 1.5)
    assert decode_annexb(body) >= 20


# -- an RTSP camera (a real RTSP server: GStreamer's, through python3-gi) -----------------------


@requires_rtsp
def test_rtsp_h264_camera_is_passed_through_not_decoded(start_server: StartServer) -> None:
    with RtspServer() as rtsp:
        srv = start_server(cameras=[{"name": "door", "source": rtsp.url("/test"), "fps": 30, "idle_after": 0}])
        status = wait_status(srv, lambda s: camera_status(s, "door")["codec"] == "h264", 20)
        cam = camera_status(status, "door")
        assert cam["source_kind"] == "url" and "H.264 passthrough" in cam["processing"]
        assert (cam["h264"]["width"], cam["h264"]["height"]) == (640, 480)
        _, body = read_h264(srv.url + "/cameras/door/stream.h264", 2.0)
        assert decode_annexb(body) >= 20
        # The camera goes away and comes back: the stream resumes with a key frame.
        rtsp.kill()
        wait_status(srv, lambda s: camera_status(s, "door")["state"] == "reconnecting", 20)
        rtsp.start(port=rtsp.port)
        wait_status(srv, lambda s: camera_status(s, "door")["state"] == "streaming", 30)
        _, body = read_h264(srv.url + "/cameras/door/stream.h264", 1.5)
        assert decode_annexb(body) >= 15


@requires_rtsp_h265
def test_rtsp_h265_camera_is_decoded_to_jpeg_and_says_so(start_server: StartServer) -> None:
    with RtspServer() as rtsp:
        srv = start_server(cameras=[{"name": "door", "source": rtsp.url("/h265"), "fps": 30, "idle_after": 0}])
        status = wait_status(srv, lambda s: camera_status(s, "door")["state"] == "streaming", 30)
        cam = camera_status(status, "door")
        assert cam["codec"] == "mjpeg" and "the source gives no JPEG" in cam["processing"], cam
        r = httpx.get(srv.url + "/cameras/door/stream.h264", timeout=15)
        assert r.status_code == 404
        snap = httpx.get(srv.url + "/cameras/door/snapshot", timeout=15)
        assert decode_jpeg(snap.content).shape[:2] == (480, 640)


# -- bad input: a resolution change, a stream without parameter sets --------------------------


def invalid_counts(server: EdgeServer, camera: str) -> dict[str, float]:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    counts = {}
    for line in text.splitlines():
        if line.startswith(f'edge_frames_invalid_total{{camera="{camera}"'):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            counts[reason] = float(line.rsplit(" ", 1)[1])
    return counts


@requires("ffmpeg")
def test_a_resolution_change_reinitialises_mp4_and_annexb_viewers(start_server: StartServer) -> None:
    """The producer switches from 320x240 to 640x480 (a new SPS): an fMP4 viewer gets a second
    initialization segment, for the new size, right before the new key frame; an Annex-B viewer's
    units all decode, across the change."""
    small = ffmpeg_h264("320x240", extra="-t 1.5")
    large = ffmpeg_h264("640x480")
    command = f"sh -c {shlex.quote(small + '; ' + large)}"
    cam = {"name": "cam0", "source": "pipe:" + command, "fps": 30, "idle_after": 0}
    srv = start_server(cameras=[cam])
    wait_status(srv, lambda s: camera_status(s, "cam0")["codec"] == "h264", 15)

    async def both() -> tuple[list[bytes], list[bytes]]:
        async with (
            connect_ws(srv.ws_url + "/cameras/cam0/ws?codec=mp4", max_queue=None) as mp4,
            connect_ws(srv.ws_url + "/cameras/cam0/ws?codec=h264", max_queue=None) as annexb,
        ):
            await mp4.recv()
            await annexb.recv()
            got_mp4: list[bytes] = []
            got_annexb: list[bytes] = []
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                got_mp4.append(await asyncio.wait_for(mp4.recv(), 10))
                got_annexb.append(await asyncio.wait_for(annexb.recv(), 10))
                sizes = [parse_sps(n) for m in got_annexb for n in nal_units(m[HEADER.size :]) if nal_type(n) == 7]
                if sizes and (sizes[-1].width, sizes[-1].height) == (640, 480) and len(got_annexb) > 10:
                    break
            # The fMP4 viewer got its first init segment as an extra message: it is behind by one.
            got_mp4 += [await asyncio.wait_for(mp4.recv(), 10) for _ in range(3)]
            return got_mp4, got_annexb

    got_mp4, got_annexb = asyncio.run(both())
    inits = [i for i, m in enumerate(got_mp4) if HEADER.unpack_from(m)[2] & INIT]
    widths = [parse_sps(n).width for m in got_annexb for n in nal_units(m[HEADER.size :]) if nal_type(n) == 7]
    assert 640 in widths, f"the change to 640x480 never arrived: {widths}"
    if 320 in widths:  # the viewers joined before the change: a second init segment must come
        assert len(inits) >= 2, f"one init segment for two resolutions: {inits}"
        assert HEADER.unpack_from(got_mp4[inits[-1] + 1])[2] & KEY
        assert b"\x02\x80" in got_mp4[inits[-1]], "the second init segment is not 640 wide"  # tkhd/avc1 width
    ctx = av.CodecContext.create("h264", "r")
    sizes = {(f.width, f.height) for m in got_annexb for f in ctx.decode(av.Packet(m[HEADER.size :]))}
    assert (640, 480) in sizes


@requires("ffmpeg")
def test_a_stream_without_parameter_sets_is_dropped_and_counted(start_server: StartServer) -> None:
    """SPS and PPS removed from the producer's stream: nothing is decodable, so nothing is sent
    (503, not a stream a decoder chokes on) and the drops are counted as no_parameters."""
    command = ffmpeg_h264(extra="-bsf:v filter_units=remove_types=7|8")
    cam = {"name": "cam0", "source": "pipe:" + command, "fps": 30, "idle_after": 0, "codec": "h264"}
    srv = start_server(cameras=[cam])
    deadline = time.monotonic() + 15
    while invalid_counts(srv, "cam0").get("no_parameters", 0) < 5:
        assert time.monotonic() < deadline, invalid_counts(srv, "cam0")
        time.sleep(0.2)
    r = httpx.get(srv.url + "/cameras/cam0/stream.h264", timeout=15)
    assert r.status_code == 503 and "has not delivered H.264" in r.json()["error"]


@requires("ffmpeg")
def test_an_idle_h264_camera_keeps_its_gop_and_a_new_viewer_starts_at_once(start_server: StartServer) -> None:
    """No viewer for longer than idle_after: the camera idles (no JPEG decoding, said once in the
    log), yet its units keep flowing into the GOP cache, so a viewer arriving then gets a key frame
    and the units after it at once, all decodable."""
    cam = {"name": "cam0", "source": "pipe:" + ffmpeg_h264(), "fps": 30, "idle_after": 1}
    srv = start_server(cameras=[cam])
    wait_status(srv, lambda s: camera_status(s, "cam0")["codec"] == "h264", 15)
    wait_status(srv, lambda s: camera_status(s, "cam0")["idle"], 15)
    time.sleep(1.0)  # a second of idling: units keep arriving while nobody watches
    started = time.monotonic()
    hello, messages = asyncio.run(ws_messages(srv.ws_url + "/cameras/cam0/ws?codec=h264", 20))
    elapsed = time.monotonic() - started
    assert HEADER.unpack_from(messages[0])[2] & KEY
    assert decode_units([m[HEADER.size :] for m in messages]) == len(messages)
    assert elapsed < 5
    assert srv.log_text().count("a viewer arrived") <= 1, "idle was left and re-entered for every unit"


@requires("ffmpeg")
def test_a_read_that_ends_at_a_full_output_buffer_does_not_end_a_unit() -> None:
    """A key frame larger than a producer's output buffer (ffmpeg's is 32 KiB) arrives in several
    writes. The pipe source hands a unit on at a short read (the producer paused after a whole
    unit), but not at one that is a whole number of pages: that is a buffer filling up, and the
    unit would go out cut short."""
    import threading

    from edge.config import CameraConfig
    from edge.sources.pipe import PipeSource
    from tests.support.h264 import x264

    cam = CameraConfig(name="cam0", source="pipe:true", codec="h264")
    source = PipeSource(cam, threading.Event(), cam.spec)
    source._set_codec("h264")
    units = AccessUnitSplitter().feed(x264((1920, 1080), frames=12, params="crf=8"))
    big = max(units, key=len)  # a key frame
    assert len(big) > 32768, "precondition: a unit larger than ffmpeg's output buffer"
    got: list[bytes] = []
    for unit in units[:4] + [big] + units[4:8]:
        for start in range(0, len(unit), 32768):  # as ffmpeg writes it: whole buffers, then the rest
            got += source._split(unit[start : start + 32768])
    assert big in got and all(u in units or u == big for u in got), "a unit was handed on cut short"
