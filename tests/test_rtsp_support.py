"""The RTSP test server (tests/support/rtsp.py) works: what the RTSP camera tests stand on.

A reader gets the ``/test`` stream's promised shape (H.264, 640x480, a key frame within the first
31 packets, decodable) and can come back at once; two readers share it; ffmpeg can publish into
``/record``; ``/h265`` serves H.265; and a server killed like a vanished camera ends its readers'
streams and comes back on the same port.
"""

from __future__ import annotations

import subprocess
import time

import av
import av.error
import pytest

from tests.support.programs import program, requires
from tests.support.rtsp import RtspServer, requires_rtsp, requires_rtsp_h265, rtsp_server_fixture

pytestmark = requires_rtsp

rtsp_server = pytest.fixture(rtsp_server_fixture, name="rtsp_server")

OPTIONS = {"rtsp_transport": "tcp"}
TIMEOUT = (5.0, 5.0)


def read_packets(container: av.container.InputContainer, count: int) -> list[av.Packet]:
    """The next `count` packets of the container's video stream that carry data."""
    stream = container.streams.video[0]
    packets: list[av.Packet] = []
    for packet in container.demux(stream):
        if packet.size:
            packets.append(packet)
            if len(packets) == count:
                break
    assert len(packets) == count, f"stream ended after {len(packets)} of {count} packets"
    return packets


def test_test_mount_is_live_h264_that_decodes(rtsp_server: RtspServer) -> None:
    with av.open(rtsp_server.url("/test"), options=OPTIONS, timeout=TIMEOUT) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (640, 480)
        packets = read_packets(container, 60)
        extradata = stream.codec_context.extradata

    keys = [i for i, packet in enumerate(packets) if packet.is_keyframe]
    assert keys and keys[0] <= 30, f"key frames at {keys} of 60 packets"

    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = extradata
    frames = []
    for packet in packets[keys[0] :]:
        frames += decoder.decode(packet)
    frames += decoder.decode(None)
    assert len(frames) >= 30, f"{len(frames)} frames decoded from {60 - keys[0]} packets"
    assert {(frame.width, frame.height) for frame in frames} == {(640, 480)}


@requires_rtsp_h265
def test_h265_mount_serves_hevc(rtsp_server: RtspServer) -> None:
    with av.open(rtsp_server.url("/h265"), options=OPTIONS, timeout=TIMEOUT) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "hevc"
        assert (stream.codec_context.width, stream.codec_context.height) == (640, 480)
        packets = read_packets(container, 31)
    assert any(packet.is_keyframe for packet in packets)


@requires("ffmpeg")
def test_ffmpeg_publishes_into_record(rtsp_server: RtspServer) -> None:
    cmd = [
        program("ffmpeg"),
        *("-v", "error", "-nostdin", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-t", "2"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30", "-bf", "0"),
        *("-f", "rtsp", "-rtsp_transport", "tcp", rtsp_server.url("/record")),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"ffmpeg exit {done.returncode}:\n{done.stderr}\nserver:\n{rtsp_server.stderr_text()}"


def test_killed_server_ends_the_stream_and_restarts_on_its_port() -> None:
    with RtspServer() as server:
        port = server.port
        with av.open(server.url("/test"), options=OPTIONS, timeout=TIMEOUT) as container:
            read_packets(container, 10)
            server.kill()
            # A reader of a vanished camera sees its stream end or fail, within the read timeout.
            began = time.monotonic()
            with pytest.raises((av.error.FFmpegError, OSError, AssertionError)):
                read_packets(container, 10_000)
            assert time.monotonic() - began < 10

        server.start(port=port)
        assert server.port == port
        with av.open(server.url("/test"), options=OPTIONS, timeout=TIMEOUT) as container:
            assert len(read_packets(container, 30)) == 30
        assert server.stop() == 0, server.stderr_text()


def test_a_client_reconnects_at_once(rtsp_server: RtspServer) -> None:
    # The shared media outlives its clients (rtsp_server.py keep_prepared): no 503 on coming back.
    for _ in range(3):
        with av.open(rtsp_server.url("/test"), options=OPTIONS, timeout=TIMEOUT) as container:
            assert read_packets(container, 1)[0].is_keyframe


def test_stop_exits_zero_and_a_second_client_shares_the_stream() -> None:
    server = RtspServer().start()
    try:
        url = server.url()
        with (
            av.open(url, options=OPTIONS, timeout=TIMEOUT) as first,
            av.open(url, options=OPTIONS, timeout=TIMEOUT) as second,
        ):
            assert len(read_packets(first, 5)) == len(read_packets(second, 5)) == 5
    finally:
        status = server.stop()
    assert status == 0, server.stderr_text()
