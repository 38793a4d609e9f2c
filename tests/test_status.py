"""Status, health and metrics endpoints (§3 and §6 of docs/interface.md).

Dashboards and load balancers poll these; the status must list each open stream exactly once
(a leaked entry means leaked server state) and the fps must be measured, not echoed.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.support.config import virtual_cam
from tests.support.frames import BackgroundReader, mjpeg_reader, ws_reader
from tests.support.http import fetch
from tests.support.mjpeg import MjpegStream
from tests.support.process import EdgeServer, StartServer
from tests.support.status import all_clients, camera_status, wait_status
from tests.support.websocket import RawWebSocket

FPS = 20


@pytest.fixture(scope="module")
def srv(start_module_server: StartServer) -> EdgeServer:
    """One 320x240 virtual camera at 20 fps (a rate distinct from the 30 default)."""
    return start_module_server(cameras=[virtual_cam("cam0", 320, 240, FPS)], server={"max_clients": 16})


def test_status_shape(srv: EdgeServer) -> None:
    """Top level and per-camera fields, types and values for a virtual camera."""
    st = wait_status(
        srv,
        lambda s: 0.8 * FPS <= camera_status(s, "cam0")["fps"] <= 1.2 * FPS,
        timeout=8,
        message=f"measured fps within 20% of {FPS}",
    )
    assert isinstance(st["version"], str) and re.fullmatch(r"\d+\.\d+\.\d+\S*", st["version"]), st["version"]
    assert isinstance(st["uptime_s"], (int, float)) and st["uptime_s"] > 0
    assert isinstance(st["clients_total"], int) and st["clients_total"] >= 0
    assert [c["name"] for c in st["cameras"]] == ["cam0"]
    cam = st["cameras"][0]
    assert cam["source"] == "virtual"
    assert cam["state"] == "streaming"
    assert (cam["width"], cam["height"]) == (320, 240)
    assert isinstance(cam["frames_captured"], int)
    assert isinstance(cam["clients"], list)

    # uptime and frames_captured move forward (uptime may be rounded: poll, don't compare once)
    wait_status(
        srv,
        lambda s: (
            camera_status(s, "cam0")["frames_captured"] > cam["frames_captured"] and s["uptime_s"] > st["uptime_s"]
        ),
        timeout=3,
        message="frames_captured and uptime_s rising",
    )


def _client_by_remote(st: dict[str, Any], port: int) -> list[dict[str, Any]]:
    return [c for c in all_clients(st) if c.get("remote") == f"127.0.0.1:{port}"]


def test_open_streams_are_listed_once_and_removed(srv: EdgeServer) -> None:
    """An MJPEG and a WebSocket client each appear exactly once, with rising counters, then go."""
    t_before = time.time()
    mj = MjpegStream(srv.host, srv.port, "/stream")
    mj_reader = BackgroundReader(mjpeg_reader(mj), "mjpeg")
    ws = RawWebSocket(srv.host, srv.port, "/ws")
    hello = ws.recv_json()
    ws_bg = BackgroundReader(ws_reader(ws), "ws")
    t_after = time.time()
    try:
        st1 = wait_status(
            srv,
            lambda s: (
                len(_client_by_remote(s, mj.local_port)) == 1
                and len(_client_by_remote(s, ws.local_port)) == 1
                and _client_by_remote(s, mj.local_port)[0]["frames_sent"] > 0
                and _client_by_remote(s, ws.local_port)[0]["frames_sent"] > 0
            ),
            timeout=5,
            message="both clients listed with frames sent",
        )
        assert len(all_clients(st1)) == 2, all_clients(st1)
        assert st1["clients_total"] >= 2
        mj_entry = _client_by_remote(st1, mj.local_port)[0]
        ws_entry = _client_by_remote(st1, ws.local_port)[0]
        assert mj_entry["kind"] == "mjpeg"
        assert ws_entry["kind"] == "websocket"
        assert ws_entry["id"] == hello["id"], (ws_entry, hello)
        assert mj_entry["id"] != ws_entry["id"]
        for entry in (mj_entry, ws_entry):
            assert t_before - 1 <= entry["connected_at"] <= t_after + 1, entry
            for key in ("frames_sent", "frames_dropped", "bytes_sent"):
                assert isinstance(entry[key], int) and entry[key] >= 0, (key, entry)

        def counters(s: dict[str, Any], port: int) -> tuple[int, int]:
            e = _client_by_remote(s, port)[0]
            return e["frames_sent"], e["bytes_sent"]

        wait_status(
            srv,
            lambda s: (
                all(a > b for a, b in zip(counters(s, mj.local_port), counters(st1, mj.local_port), strict=True))
                and all(a > b for a, b in zip(counters(s, ws.local_port), counters(st1, ws.local_port), strict=True))
            ),
            timeout=3,
            message="frames_sent and bytes_sent rising for both clients",
        )
        mj_reader.check()
        ws_bg.check()

        # End the MJPEG stream: its entry goes, the WebSocket one stays.
        mj_reader.stop(mj.close)
        wait_status(
            srv,
            lambda s: not _client_by_remote(s, mj.local_port) and len(_client_by_remote(s, ws.local_port)) == 1,
            timeout=5,
            message="MJPEG client removed from status",
        )
        ws_bg.stop(ws.close)
        wait_status(srv, lambda s: not all_clients(s), timeout=5, message="WebSocket client removed")
    finally:
        mj_reader.stop(mj.close)
        ws_bg.stop(ws.close)


def test_healthz_and_readyz(srv: EdgeServer) -> None:
    assert fetch(srv.url + "/healthz").status == 200
    wait_status(srv, lambda s: camera_status(s, "cam0")["state"] == "streaming", 5)
    r = fetch(srv.url + "/readyz")
    assert r.status == 200, (r.status, r.body)


def _families(text: str, kind: str) -> list[str]:
    return re.findall(rf"^# TYPE (edge_\S+) {kind}$", text, re.MULTILINE)


def test_metrics_prometheus_text(srv: EdgeServer) -> None:
    """Per-camera frame counters, active clients by kind, encode-time and frame-age histograms."""
    mj = MjpegStream(srv.host, srv.port, "/stream")
    reader = BackgroundReader(mjpeg_reader(mj), "metrics-mjpeg")
    try:
        wait_status(srv, lambda s: len(all_clients(s)) == 1, 5, "client listed")
        r = fetch(srv.url + "/metrics")
        assert r.status == 200
        assert r.headers.get("content-type", "").startswith("text/plain"), r.headers
        assert r.body is not None
        text = r.body.decode()
        counters = _families(text, "counter")
        gauges = _families(text, "gauge")
        histograms = _families(text, "histogram")
        for word in ("captured", "sent", "dropped"):
            fams = [f for f in counters if word in f]
            assert fams, f"no edge_*{word}* counter among {counters}"
            samples = [ln for ln in text.splitlines() if ln.startswith(tuple(fams)) and '"cam0"' in ln]
            assert samples, f"no sample labelled with camera cam0 for {fams}"
        client_fams = [f for f in gauges if "client" in f]
        assert client_fams, f"no edge_*clients* gauge among {gauges}"
        mjpeg_samples = [
            ln for ln in text.splitlines() if any(ln.startswith(f) for f in client_fams) and '"mjpeg"' in ln
        ]
        assert mjpeg_samples, "no active-clients sample labelled mjpeg"
        assert any(float(ln.rsplit(" ", 1)[1]) >= 1 for ln in mjpeg_samples), mjpeg_samples
        assert any("encode" in f for f in histograms), f"no encode-time histogram among {histograms}"
        assert any("age" in f for f in histograms), f"no frame-age histogram among {histograms}"
        reader.check()
    finally:
        reader.stop(mj.close)
