"""Publishing to media servers (§10 of docs/interface.md), against real servers from Debian:
nginx with libnginx-mod-rtmp (RTMP in, HLS out) and GStreamer's RTSP server in record mode
(RTSP in, played out to TCP readers).

- An H.264 camera (an ffmpeg producer, its output kept through tee) published over RTMP: the
  HLS playlist nginx writes decodes, and every slice in its segments is one the producer wrote;
  over RTSP the same, pulled by a reader.
- A JPEG camera that publishes is encoded once (libx264 here), the encoder and its cost are in
  status, and it encodes only while a target connects or publishes.
- Faults: the target absent at start-up (retrying, then publishing once it appears), killed
  mid-stream, accepting and then no longer reading. In each, a local viewer in a process of its
  own keeps at least 90 % of the camera's rate, and the server's RSS and open files stay bounded.
- Secrets in publish URLs are never shown.

Real edge (a subprocess on 127.0.0.1), real clients (PyAV, httpx, a raw-socket MJPEG reader).
"""

from __future__ import annotations

import contextlib
import shlex
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from edge.formats.h264 import AccessUnitSplitter, NalType, nal_type, nal_units
from tests.support.config import virtual_cam
from tests.support.h264 import ffmpeg_h264
from tests.support.process import EdgeServer, StartServer, free_port
from tests.support.programs import requires
from tests.support.rate import RateWatcher, watching
from tests.support.resources import ResourcePeaks
from tests.support.rtmp_server import NginxRtmp, requires_nginx_rtmp
from tests.support.rtsp import RtspServer, requires_rtsp
from tests.support.stalling import StallProxy
from tests.support.status import camera_status, get_status, wait_status
from tests.support.waiting import wait_for

pytestmark = requires("ffmpeg")

SLICES = (NalType.SLICE, NalType.IDR)
RATE = 30
MIN_FPS = 0.9 * RATE


def targets(srv: EdgeServer, cam: str = "cam0") -> list[dict[str, Any]]:
    return list(camera_status(get_status(srv), cam)["publish"])


def wait_target(srv: EdgeServer, state: str, timeout: float, cam: str = "cam0", index: int = 0) -> dict[str, Any]:
    status = wait_status(
        srv,
        lambda s: camera_status(s, cam)["publish"][index]["state"] == state,
        timeout,
        f"{cam}'s target {index} {state}",
    )
    return dict(camera_status(status, cam)["publish"][index])


def producer_camera(tmp_path: Path, publish: list[str], size: str = "320x240") -> tuple[dict[str, Any], Path]:
    """An H.264 camera whose producer's output is also written to a file (the camera's own bytes)."""
    copy = tmp_path / "producer.h264"
    producer = ffmpeg_h264(size, extra="-x264-params repeat-headers=1")
    command = f"sh -c {shlex.quote(producer + ' | tee ' + str(copy))}"
    return {"name": "cam0", "source": "pipe:" + command, "fps": RATE, "idle_after": 0, "publish": publish}, copy


def slices_of(data: bytes) -> set[bytes]:
    return {nal for unit in AccessUnitSplitter().feed(data) for nal in nal_units(unit) if nal_type(nal) in SLICES}


def hls_slices(playlist: Path) -> tuple[list[bytes], int]:
    """The slices in the segments a playlist lists (complete ones: nginx lists a segment once it
    has written it) and the pictures they decode to."""
    slices: list[bytes] = []
    pictures = 0
    listed = [line for line in playlist.read_text().splitlines() if line.endswith(".ts")]
    for segment in listed:
        with av.open(str(playlist.parent / segment)) as container:
            decoder = av.CodecContext.create("h264", "r")
            for packet in container.demux(video=0):
                if packet.size:
                    slices += [n for n in nal_units(bytes(packet)) if nal_type(n) in SLICES]
                    pictures += len(decoder.decode(packet))
    return slices, pictures


def decode_url(url: str, pictures: int, **options: Any) -> tuple[int, set[tuple[int, int]]]:
    """Pictures decoded from ``url`` (PyAV), up to ``pictures``, and their sizes."""
    count, sizes = 0, set()
    with av.open(url, timeout=10, **options) as container:
        for frame in container.decode(video=0):
            count += 1
            sizes.add((frame.width, frame.height))
            if count >= pictures:
                break
    return count, sizes


class Rates:
    """A local viewer's frame rate while a fault happens, and the server's resources meanwhile."""

    def __init__(self, srv: EdgeServer, watcher: RateWatcher) -> None:
        self.watcher = watcher
        self.start = time.monotonic()
        self.resources = ResourcePeaks(srv, every=0.5)

    def check(self) -> None:
        self.resources.stop()
        report = self.watcher.rate(self.start, time.monotonic())
        assert len(report.per_second) >= 3, report
        assert report.worst >= MIN_FPS, f"the local viewer fell below {MIN_FPS:g} fps: {report}"
        used = self.resources
        assert used.rss_growth_kib < 40 * 1024, f"RSS grew by {used.rss_growth_kib} KiB"
        assert used.fds_growth <= 8, f"open files went from {used.fds_base} to {used.fds_peak}"


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[NginxRtmp]:
    with NginxRtmp(tmp_path / "nginx") as server:
        yield server


# -- the camera's own bytes, through real servers ------------------------------------------------


@requires_nginx_rtmp
def test_h264_camera_over_rtmp_reaches_nginx_hls_as_the_cameras_own_bytes(
    start_server: StartServer, tmp_path: Path, nginx: NginxRtmp
) -> None:
    cam, copy = producer_camera(tmp_path, [nginx.rtmp_url("cam0")])
    srv = start_server(cameras=[cam])
    target = wait_target(srv, "publishing", 20)
    assert target["url"] == nginx.rtmp_url("cam0") and target["error"] is None
    assert abs(target["since"] - time.time()) < 30
    playlist = nginx.wait_playlist("cam0")
    wait_for(lambda: playlist.read_text().count(".ts") >= 3, 20, 0.2, "three HLS segments listed")
    count, sizes = decode_url(nginx.playlist_url("cam0"), 30)
    assert count == 30 and sizes == {(320, 240)}
    published, pictures = hls_slices(playlist)
    assert published and pictures >= 30
    written = slices_of(copy.read_bytes())
    foreign = [s for s in published if s not in written]
    assert not foreign, f"{len(foreign)} of {len(published)} published slices are not the camera's own bytes"
    status = camera_status(get_status(srv), "cam0")
    assert status["codec"] == "h264" and "h264_encoder" not in status  # passed through, never encoded
    assert status["publish"][0]["bytes_sent"] > sum(len(s) for s in published) / 2
    metrics = httpx.get(srv.url + "/metrics").text
    assert f'edge_publish_up{{camera="cam0",target="{nginx.rtmp_url("cam0")}"}} 1.0' in metrics
    assert "edge_publish_bytes_sent_total" in metrics


@requires_nginx_rtmp
def test_jpeg_camera_is_encoded_once_for_its_targets(start_server: StartServer, nginx: NginxRtmp) -> None:
    urls = [nginx.rtmp_url("a"), nginx.rtmp_url("b")]
    cam = virtual_cam("cam0", 320, 240, RATE)
    cam.update(idle_after=0, publish=urls)
    srv = start_server(cameras=[cam])
    for index in range(2):
        wait_target(srv, "publishing", 20, index=index)
    for name in ("a", "b"):
        nginx.wait_playlist(name)
        count, sizes = decode_url(nginx.playlist_url(name), 20)
        assert count == 20 and sizes == {(320, 240)}
    status = camera_status(get_status(srv), "cam0")
    encoder = status["h264_encoder"]
    assert encoder["name"] == "libx264" and encoder["running"] and encoder["error"] is None
    assert encoder["ms_per_frame"] > 0 and 0 < encoder["cpu_cores"] < 1
    assert (encoder["width"], encoder["height"]) == (320, 240)
    assert encoder["fps"] >= 0.5 * RATE
    # One encoder for both targets: they got the same units.
    units = [t["units_sent"] for t in status["publish"]]
    assert abs(units[0] - units[1]) <= RATE, units
    assert status["codec"] == "mjpeg"
    assert httpx.get(srv.url + "/stream.h264").status_code == 404  # still a JPEG camera locally
    assert "encoding H.264 for publishing with libx264" in srv.log_text()


@requires_rtsp
def test_h264_camera_over_rtsp_is_pulled_by_a_reader_as_the_cameras_own_bytes(
    start_server: StartServer, tmp_path: Path
) -> None:
    out = free_port()
    with RtspServer(record_tcp_port=out) as server:
        cam, copy = producer_camera(tmp_path, [server.url("/record")])
        srv = start_server(cameras=[cam])
        wait_target(srv, "publishing", 20)
        received = bytearray()
        with socket.create_connection(("127.0.0.1", out), timeout=10) as reader:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                received += reader.recv(65536)
        units = AccessUnitSplitter().feed(bytes(received))
        published = [n for u in units for n in nal_units(u) if nal_type(n) in SLICES]
        assert len(published) >= 60
        written = slices_of(copy.read_bytes())
        assert all(s in written for s in published), "a slice the reader pulled is not the camera's own"
        key = next(i for i, u in enumerate(units) if any(nal_type(n) == NalType.IDR for n in nal_units(u)))
        decoder = av.CodecContext.create("h264", "r")
        pictures = sum(len(decoder.decode(av.Packet(u))) for u in units[key:])
        assert pictures >= len(units[key:]) - 2
        assert targets(srv)[0]["url"] == server.url("/record")


# -- faults ------------------------------------------------------------------------------------------


def publishing_camera(publish: list[str]) -> dict[str, Any]:
    cam = virtual_cam("cam0", 320, 240, RATE)
    cam.update(idle_after=0, publish=publish)
    return cam


@requires_nginx_rtmp
def test_target_absent_at_start_up_is_retried_then_published(start_server: StartServer, nginx: NginxRtmp) -> None:
    url = nginx.rtmp_url("cam0")
    nginx.stop()
    started = time.monotonic()
    srv = start_server(cameras=[publishing_camera([url])])
    assert time.monotonic() - started < 10  # start-up does not wait for the target
    with watching(srv.host, srv.port, "/stream") as watcher:
        rates = Rates(srv, watcher)
        target = wait_target(srv, "retrying", 10)
        assert "refused" in target["error"]
        wait_status(srv, lambda s: camera_status(s, "cam0")["publish"][0]["failures"] >= 4, 20, "a fourth try")
        nginx.start()
        target = wait_target(srv, "publishing", 40)
        assert target["error"] is None and target["failures"] >= 2
        nginx.wait_playlist("cam0")
        rates.check()
    log = srv.log_text()
    warnings = [line for line in log.splitlines() if " WARNING " in line and "publish" in line]
    assert len(warnings) == 1 and "cannot publish to " + url in warnings[0] and "connection refused" in warnings[0]
    assert f"publishing to {url} again" in log


@requires_nginx_rtmp
def test_target_killed_mid_stream_is_retried_and_recovers(start_server: StartServer, nginx: NginxRtmp) -> None:
    url = nginx.rtmp_url("cam0")
    srv = start_server(cameras=[publishing_camera([url])])
    wait_target(srv, "publishing", 20)
    with watching(srv.host, srv.port, "/stream") as watcher:
        rates = Rates(srv, watcher)
        nginx.kill()
        target = wait_target(srv, "retrying", 20)
        assert target["error"]
        # Down for four tries (at least 3.5 s with the backoff), so the viewer is measured through it.
        wait_status(srv, lambda s: camera_status(s, "cam0")["publish"][0]["failures"] >= 4, 20, "a fourth try")
        nginx.start()
        wait_target(srv, "publishing", 40)
        rates.check()
    log = srv.log_text()
    assert f"publishing to {url} stopped" in log and f"publishing to {url} again" in log


@requires_nginx_rtmp
def test_target_that_stops_reading_costs_nobody_else(start_server: StartServer, nginx: NginxRtmp) -> None:
    """Two cameras publish, one through a proxy that stops reading: its target is given up on
    after the stall timeout and retried; the other camera's target and the local viewer go on."""
    with StallProxy("127.0.0.1", nginx.rtmp_port) as proxy:
        # 1280x720: enough bytes a second to fill the socket buffers soon after the stall.
        h264 = {"name": "h264", "source": "virtual", "codec": "h264", "width": 1280, "height": 720}
        h264.update(fps=RATE, idle_after=0, publish=[proxy.url_for(nginx.rtmp_url("stalled"))])
        cam = publishing_camera([nginx.rtmp_url("fine")])
        srv = start_server(cameras=[cam, h264])
        wait_target(srv, "publishing", 20, cam="h264")
        wait_target(srv, "publishing", 20)
        with watching(srv.host, srv.port, "/cameras/cam0/stream") as watcher:
            rates = Rates(srv, watcher)
            fine_before = targets(srv)[0]["units_sent"]
            proxy.stall()
            stalled = wait_target(srv, "retrying", 30, cam="h264")
            assert "stopped reading" in stalled["error"], stalled
            assert stalled["units_dropped"] > 0
            fine = targets(srv)[0]
            assert fine["state"] == "publishing" and fine["units_sent"] - fine_before >= 10 * RATE * 0.9
            rates.check()
        proxy.resume()
        wait_target(srv, "publishing", 40, cam="h264")
        began = time.monotonic()
        assert srv.stop() == 0 and time.monotonic() - began < 8
    srv.assert_clean_log(allow_error_lines=False)


def test_a_server_that_accepts_and_never_answers_is_given_up_on(start_server: StartServer) -> None:
    """A TCP listener that accepts and reads nothing: the RTMP handshake times out (the process
    is never frozen by it: the viewer keeps its rate) and the target retries."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        srv = start_server(cameras=[publishing_camera([f"rtmp://127.0.0.1:{port}/live/cam0"])])
        with watching(srv.host, srv.port, "/stream") as watcher:
            rates = Rates(srv, watcher)
            target = wait_target(srv, "retrying", 25)
            assert "did not answer the RTMP handshake" in target["error"]
            rates.check()


# -- secrets -------------------------------------------------------------------------------------------


def test_secrets_in_publish_urls_are_never_shown(start_server: StartServer) -> None:
    port = free_port()  # nothing listens: every try fails, so the URL reaches the log too
    urls = [f"rtsp://admin:Sup3rSecret@127.0.0.1:{port}/cam0", f"rtmp://127.0.0.1:{port}/live/${{STREAM_KEY}}"]
    cam = publishing_camera(urls)
    srv = start_server(cameras=[cam], env_extra={"STREAM_KEY": "key-9f8e7d6c"})
    status = wait_status(
        srv,
        lambda s: all(t["failures"] >= 1 for t in camera_status(s, "cam0")["publish"]),
        15,
        "both targets tried",
    )
    shown = [t["url"] for t in camera_status(status, "cam0")["publish"]]
    assert shown == [f"rtsp://***@127.0.0.1:{port}/cam0", f"rtmp://127.0.0.1:{port}/live/${{STREAM_KEY}}"]
    everything = httpx.get(srv.url + "/api/status").text + httpx.get(srv.url + "/metrics").text + srv.log_text()
    for secret in ("Sup3rSecret", "key-9f8e7d6c"):
        assert secret not in everything


class QuotingRtspServer:
    """A server that refuses every RTSP request with a reason quoting the request's path (as
    some servers name the stream they refuse): a stream key in the path comes back in the reply."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.refused = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                sock, _ = self.listener.accept()
                with sock:
                    sock.settimeout(5)
                    head = b""
                    while b"\r\n\r\n" not in head and len(head) < 8192:
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                    lines = head.decode("latin-1").split("\r\n")
                    path = lines[0].split(" ")[1].split("/", 3)[-1] if " " in lines[0] else "?"
                    cseq = next((ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith("cseq:")), "1")
                    sock.sendall(f"RTSP/1.0 404 no stream {path}\r\nCSeq: {cseq}\r\n\r\n".encode())
                    self.refused.set()

    def close(self) -> None:
        self.listener.close()


def test_a_server_quoting_the_stream_key_in_its_refusal_never_shows_it(start_server: StartServer) -> None:
    quoting = QuotingRtspServer()
    try:
        srv = start_server(
            cameras=[publishing_camera([f"rtsp://127.0.0.1:{quoting.port}/live/${{STREAM_KEY}}"])],
            env_extra={"STREAM_KEY": "key-9f8e7d6c"},
        )
        status = wait_status(srv, lambda s: camera_status(s, "cam0")["publish"][0]["error"], 15, "a refusal")
        assert quoting.refused.is_set()
        error = camera_status(status, "cam0")["publish"][0]["error"]
        assert "404 no stream live/***" in error, error  # what the server said, less the key
        everything = httpx.get(srv.url + "/api/status").text + httpx.get(srv.url + "/metrics").text + srv.log_text()
        assert "key-9f8e7d6c" not in everything
    finally:
        quoting.close()


def test_bad_publish_config_stops_the_start_with_one_line(start_server: StartServer) -> None:
    cam = publishing_camera(["srt://127.0.0.1:9000?streamid=x"])
    srv = start_server(cameras=[cam], wait_listening=False)
    assert srv.proc.wait(20) == 2
    assert "cameras[0].publish[0]: srt:// is not supported" in srv.log_text()
