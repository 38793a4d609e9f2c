"""Checks of the floor (``floor.py``) and of the edge-beside-the-floor comparison.

The floor is only a fair reference if it puts the very bytes on the wire that edge does, so its
framing and response heads are compared with edge's own functions, and a real floor process is
read by the load benchmark's own parsers. The comparison is checked on synthetic results: the
ratios, the targets' PASS/FAIL, and which servers each run goes to.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bench
import cv2
import floor
import numpy as np
import pytest
from loadgen import compare, servers
from loadgen.clients import FrameStats, StreamReceiver
from websockets.sync.client import connect as ws_connect

from edge.config import load_config
from edge.fanout.slot import Frame
from edge.server.wire import chunked, close_delimited, ws_binary
from edge.web import mjpeg, websocket
from edge.web.access import SECURITY_HEADERS
from edge.web.mjpeg import PREAMBLE, STREAM_HEADERS

# The framings as edge's server makes them (edge/server/wire.py).
chunk = chunked(mjpeg.part)
part = close_delimited(mjpeg.part)
message = ws_binary(websocket.payload)


def _jpeg(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", pixels)
    assert ok
    return data.tobytes()


@pytest.mark.parametrize("size", [20, 110, 5000, 70000])
def test_framing_is_byte_identical_to_edges(size: int) -> None:
    jpeg = b"\xff\xd8" + bytes(range(256)) * (size // 256) + b"\xff\xd9"
    frame = Frame(seq=1234, timestamp=1796060155.795952, jpeg=jpeg)
    assert floor.chunk(frame.seq, frame.timestamp, jpeg) == chunk(frame)[0]
    assert floor.part(frame.seq, frame.timestamp, jpeg) == part(frame)[0]
    assert floor.message(frame.seq, frame.timestamp, jpeg) == message(frame)[0]


def test_heads_are_edges() -> None:
    assert floor.STREAM_HEADERS == b"".join(b"%b: %b\r\n" % pair for pair in STREAM_HEADERS)
    security = b"".join(f"{name.lower()}: {value}\r\n".encode() for name, value in SECURITY_HEADERS)
    assert floor.SECURITY == security
    assert floor.PREAMBLE == PREAMBLE


def test_load_frames_from_a_directory_and_from_a_file(tmp_path: Path) -> None:
    jpegs = [_jpeg(seed=i) for i in range(3)]
    for i, data in enumerate(jpegs):
        (tmp_path / f"{i:04d}.jpg").write_bytes(data)
    assert floor.load_frames(tmp_path) == jpegs
    clip = tmp_path / "clip.mjpeg"
    clip.write_bytes(b"RIFF junk 00dc" + b"pad".join(jpegs) + b"idx1 trailer")
    assert floor.load_frames(clip) == jpegs
    assert floor.jpeg_size(jpegs[0]) == (64, 48)
    with pytest.raises(SystemExit):
        floor.load_frames(tmp_path / "nothing here")


@pytest.fixture
def floor_server(tmp_path: Path) -> Any:
    """A real floor process on a free port, with 3 frames of 64x48, stopped with SIGTERM."""
    for i in range(3):
        (tmp_path / f"{i:04d}.jpg").write_bytes(_jpeg(seed=i))
    command = [sys.executable, floor.__file__, str(tmp_path), "--fps", "30"]
    proc = subprocess.Popen(
        [*command, "--config", "x.yaml", "--port", "0", "--log-level", "warning"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
    assert match, line
    yield int(match.group(1)), tmp_path
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0


def _read_stream(port: int, version: str, frames: int) -> FrameStats:
    stats = FrameStats("mjpeg")
    receiver = StreamReceiver(stats)
    buf = bytearray(65536)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET /stream HTTP/{version}\r\nHost: x\r\n\r\n".encode())
        deadline = time.monotonic() + 5
        while stats.frames < frames and time.monotonic() < deadline:
            n = sock.recv_into(buf)
            assert n, "the floor closed the stream"
            receiver.feed(buf, 0, n, time.time())
    return stats


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_floor_streams_what_the_load_client_expects(floor_server: Any, version: str) -> None:
    port, _ = floor_server
    stats = _read_stream(port, version, 4)
    assert stats.frames == 4 and stats.failure is None
    assert stats.bad_jpeg == 0 and stats.errors == {} and stats.repeats == 0
    assert "head_problems" not in stats.info
    assert stats.info["chunked"] is (version == "1.1")
    assert 0 <= max(stats.lags) < 1.0


def test_floor_websocket_snapshot_and_status(floor_server: Any) -> None:
    port, frames_dir = floor_server
    jpegs = {p.read_bytes() for p in frames_dir.glob("*.jpg")}
    with ws_connect(f"ws://127.0.0.1:{port}/ws", compression="deflate") as ws:
        assert ws.response is not None
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None  # declined, like edge
        hello = json.loads(ws.recv())
        assert hello["type"] == "hello" and (hello["width"], hello["height"], hello["fps"]) == (64, 48, 30.0)
        seqs = []
        for _ in range(3):
            data = ws.recv()
            assert isinstance(data, bytes) and data[16:] in jpegs
            seqs.append(int.from_bytes(data[:8], "big"))
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /snapshot HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = b""
        while chunk_ := sock.recv(65536):
            raw += chunk_
    assert raw.startswith(b"HTTP/1.1 200 OK") and raw.partition(b"\r\n\r\n")[2] in jpegs
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = b""
        while chunk_ := sock.recv(65536):
            raw += chunk_
    status = json.loads(raw.partition(b"\r\n\r\n")[2])
    assert status["cameras"][0]["passthrough"] is True and status["cameras"][0]["frames_captured"] > 0


def test_edge_configs_load_with_edges_loader(tmp_path: Path) -> None:
    clip = tmp_path / "clip with space.avi"
    clip.write_bytes(b"not really a video")
    jpeg_dir = tmp_path / "jpegs"
    frames = servers.Frames(clip, jpeg_dir, 120, 19600, 640, 480, 30)
    file_spec = servers.file_server(["edge"], frames)
    file_spec.write_config(tmp_path / "file.yaml")
    config = load_config(tmp_path / "file.yaml")
    cam = config.cameras[0]
    assert cam.source == str(clip) and not cam.size_given and cam.passthrough == "auto"
    assert config.server.max_clients >= 1000
    virtual = servers.virtual_server(["edge"], 640, 480, 30.0, 80)
    virtual.write_config(tmp_path / "virtual.yaml")
    cam = load_config(tmp_path / "virtual.yaml").cameras[0]
    assert (cam.source, cam.width, cam.height, cam.quality) == ("virtual", 640, 480, 80)
    floor_spec = servers.floor_server(frames)
    assert floor_spec.command[-3:] == [str(jpeg_dir), "--fps", "30"]


def test_passthrough_problem() -> None:
    spec = servers.file_server(["edge"], servers.Frames(Path("a.avi"), Path("d"), 1, 1, 640, 480, 30))
    assert servers.passthrough_problem(spec, {"cameras": [{"passthrough": True}]}) is None
    problem = servers.passthrough_problem(spec, {"cameras": [{"passthrough": False, "processing": "encoding (x)"}]})
    assert problem is not None and "passthrough=False" in problem
    assert servers.passthrough_problem(spec, None) is None  # no /api/status: cannot be checked


def test_plan_default_and_chosen_servers() -> None:
    args = bench.parse_args([])
    pairs = bench.plan(args)
    assert ("1", "edge-virtual") in pairs and ("1", "floor") not in pairs
    assert [p for p in pairs if p[0] == "100"] == [("100", "floor"), ("100", "edge-file"), ("100", "edge-virtual")]
    assert ("throttled30", "floor") in pairs
    chosen = bench.plan(bench.parse_args(["--runs", "1,ws", "--servers", "edge-virtual,floor"]))
    assert chosen == [("1", "floor"), ("1", "edge-virtual"), ("ws", "floor"), ("ws", "edge-virtual")]
    with pytest.raises(SystemExit):
        bench.parse_args(["--servers", "nginx"])


def _result(
    run: str, server: str, cpu: float, p95: float, fps: float = 30.0, age: float | None = None
) -> dict[str, Any]:
    fast = {
        "count": 100,
        "failed": 0,
        "fps": {"min": fps, "median": 30.0, "mean": 30.0, "max": 30.0},
        "latency_ms": {"p50": p95 / 2, "p95": p95, "p99": p95, "max": p95},
        "first_frame_ms": {"p50": 10.0, "p95": 20.0, "max": 30.0},
        "bad_jpeg": 0,
        "framing_errors": 0,
        "mbytes_per_s": 58.0,
    }
    throttled = None
    if age is not None:
        buckets = [{"from_s": 0.0, "to_s": 5.0, "frames": 10, "p50": age, "p95": age, "max": age}]
        throttled = {
            "age_s": {"p50": age, "p95": age + 0.5},
            "age_slope_s_per_s": 0.0,
            "buckets": buckets,
            "bad_jpeg": 0,
        }
    return {
        "run": run,
        "server_kind": server,
        "description": f"run {run}",
        "clients": {"mjpeg": 100, "ws": 0, "throttled": 5 if age is not None else 0},
        "params": {"duration_s": 10.0},
        "machine": {
            "date": "2026-11-30T00:00:00+00:00",
            "nproc": 2,
            "cpu_model": "test",
            "python": "3.11",
            "kernel": "k",
            "loadavg_start": [1.0, 1.0, 1.0],
        },
        "server": {"cpu_cores": cpu, "rss_mb": 70.0},
        "client": {"cpu_cores": 0.1},
        "machine_busy_cores": 0.5,
        "fast": fast,
        "throttled": throttled,
    }


def test_comparison_ratios_and_verdicts() -> None:
    results = [
        _result("100", "floor", 0.10, 5.0),
        _result("100", "edge-file", 0.15, 6.5),
        _result("100", "edge-virtual", 0.20, 8.0),
        _result("200", "floor", 0.20, 9.0),
        _result("200", "edge-file", 0.40, 10.0, fps=29.0),
        _result("ws", "floor", 0.10, 5.0),
        _result("ws", "edge-file", 0.18, 6.0),
        _result("throttled", "floor", 0.02, 1.0, age=1.9),
        _result("throttled", "edge-file", 0.03, 1.5, age=2.1),
    ]
    runs = compare.grouped(results)
    assert compare.overall(compare.checks("100", "edge-file", runs)) == "PASS"
    assert compare.overall(compare.checks("100", "edge-virtual", runs)) == "FAIL"  # 2.0x and +3 ms
    two = compare.checks("200", "edge-file", runs)
    assert [c.ok for c in two] == [False, False]  # 2.0x the floor, 29.0 fps
    ws = compare.checks("ws", "edge-file", runs)
    assert ws[0].ok is False and "1.80× vs 1.50×" in ws[0].figure  # +20 % against 100 MJPEG
    slow = compare.checks("throttled", "edge-file", runs)
    assert [c.ok for c in slow] == [False, True, True]
    assert compare.checks("500", "edge-file", runs) == []
    text = compare.markdown(results, ["bench.py"])
    assert "- 100: **PASS**" in text and "- 200: **FAIL**" in text
    line = next(
        x for x in text.splitlines() if x.startswith("| edge, MJPEG file passthrough | 30.0 | 30.0 | 3.0 / 6.0")
    )
    assert "| 1.80× |" in line and "| +1.0 |" in line  # the ws table
    assert "| run · server |" in text and "| 100 · floor |" in text
