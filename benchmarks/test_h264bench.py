"""Fast checks of ``benchmarks/h264bench.py``'s helpers (``h264bench/``): statistics, FFmpeg's SSIM
line, /proc parsing, HTTP chunks and multipart parts, the WebSocket header, the CRF bisection, the
configs it writes (loaded by edge's own loader) and the summary table. No server, no encoder."""

from __future__ import annotations

import math
import random
import shlex
import struct
from pathlib import Path
from typing import Any

import pytest
from h264bench import bandwidth, browser, cpuload, encode, firstpic, idlecost, stats, summary
from h264bench.edgeproc import SERVER

from edge.config import load_config
from tests.support.config import write_config

SSIM_STDERR = (
    "frame=  300 fps=110 q=-0.0 Lsize=N/A time=00:00:10.00 bitrate=N/A speed=3.67x\n"
    "[Parsed_ssim_2 @ 0x55d1c3c0] SSIM Y:0.981234 (17.264470) U:0.990001 (20.000043) "
    "V:0.989000 (19.586073) All:0.984321 (18.045460)\n"
)


def test_percentile_matches_linear_interpolation() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert stats.percentile(values, 0) == 1.0
    assert stats.percentile(values, 50) == 3.0
    assert stats.percentile(values, 100) == 5.0
    assert stats.percentile(values, 95) == pytest.approx(4.8)
    assert stats.percentile([7.0], 95) == 7.0
    assert math.isnan(stats.percentile([], 50))


def test_summarize_empty_and_full() -> None:
    s = stats.summarize([1.0, 2.0, 3.0, 10.0])
    assert s["count"] == 4 and s["min"] == 1.0 and s["max"] == 10.0 and s["mean"] == 4.0
    assert s["p50"] == 2.5
    empty = stats.summarize([])
    assert empty["count"] == 0 and math.isnan(empty["p95"])


def test_parse_ssim_takes_the_summary_line() -> None:
    got = stats.parse_ssim(SSIM_STDERR)
    assert got == {"Y": 0.981234, "U": 0.990001, "V": 0.989000, "All": 0.984321}
    with pytest.raises(ValueError, match="no SSIM"):
        stats.parse_ssim("frame=  300\n")


def test_cpu_ticks_counts_from_the_last_parenthesis() -> None:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    line = "4242 (ffmpeg (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 3 0"
    assert stats.cpu_ticks(line) == 1234 + 567


def test_cores_and_per_viewer() -> None:
    assert stats.cores(10.0, 13.0, 15.0) == pytest.approx(0.2)
    assert stats.per_viewer(0.25, 0.05, 100) == pytest.approx(0.002)
    assert math.isnan(stats.per_viewer(1.0, 0.0, 0))


def test_split_head_waits_for_the_blank_line() -> None:
    assert stats.split_head(b"HTTP/1.1 200 OK\r\nContent-Type: video/h264\r\n") is None
    status, headers, rest = stats.split_head(
        b"HTTP/1.1 200 OK\r\nContent-Type: video/h264\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"
    ) or (0, {}, b"")
    assert status == 200 and headers["transfer-encoding"] == "chunked" and rest == b"5\r\nab"
    with pytest.raises(ValueError):
        stats.split_head(b"garbage\r\n\r\n")


def chunked(payloads: list[bytes]) -> bytes:
    return b"".join(b"%x;ext=1\r\n" % len(p) + p + b"\r\n" if i % 2 else b"%X\r\n" % len(p) + p + b"\r\n"
                    for i, p in enumerate(payloads)) + b"0\r\n\r\n"  # fmt: skip


@pytest.mark.parametrize("seed", range(5))
def test_dechunker_however_the_reads_are_cut(seed: int) -> None:
    rng = random.Random(seed)
    payloads = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))) for _ in range(20)]
    wire = chunked(payloads)
    dechunk = stats.Dechunker()
    out = bytearray()
    pos = 0
    while pos < len(wire):
        step = rng.choice([1, 2, 3, 7, 100, 4096])
        out += dechunk.feed(wire[pos : pos + step])
        pos += step
    assert bytes(out) == b"".join(payloads)
    assert dechunk.payload == len(out) and dechunk.ended


def test_dechunker_refuses_a_missing_crlf() -> None:
    with pytest.raises(ValueError, match="CRLF"):
        stats.Dechunker().feed(b"3\r\nabcXY")


def part(jpeg: bytes, ts: float = 1.5) -> bytes:
    return (
        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\nX-Timestamp: %.6f\r\n\r\n" % (len(jpeg), ts)
        + jpeg
        + b"\r\n"
    )


def test_multipart_jpegs_by_content_length_and_incomplete_last_left_out() -> None:
    jpegs = [b"\xff\xd8" + bytes([i]) * (50 + i) + b"\r\n\r\n\xff\xd9" for i in range(4)]
    body = b"".join(part(j) for j in jpegs)
    assert stats.multipart_jpegs(body) == jpegs
    assert stats.multipart_jpegs(body, limit=2) == jpegs[:2]
    assert stats.multipart_jpegs(body[:-10]) == jpegs[:3]
    with pytest.raises(ValueError, match="Content-Length"):
        stats.multipart_jpegs(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8")


def test_parse_ws_unit_header() -> None:
    unit = b"\x00\x00\x00\x01\x09\xf0\x00\x00\x00\x01\x67\x42"
    message = struct.pack(">QdB", 1234, 1764500000.25, 0x01) + unit
    got = stats.parse_ws_unit(message)
    assert (got.seq, got.captured, got.key, got.init, got.unit) == (1234, 1764500000.25, True, False, unit)
    assert not stats.parse_ws_unit(struct.pack(">QdB", 1, 0.0, 0x02) + unit).key
    with pytest.raises(ValueError):
        stats.parse_ws_unit(b"\x00" * 16)


def test_nal_types_and_annexb() -> None:
    data = b"\x00\x00\x00\x01\x09\xf0" + b"\x00\x00\x00\x01\x67\x42" + b"\x00\x00\x01\x68\xce" + b"\x00\x00\x01\x65\x88"
    assert stats.nal_types(data) == [9, 7, 8, 5]
    assert stats.nal_types(data, 2) == [9, 7]
    assert stats.starts_annexb(data) and not stats.starts_annexb(b"\xff\xd8")


def test_verdict_ratio_fmt() -> None:
    assert stats.verdict(0.1, 0.2) == "PASS" and stats.verdict(0.3, 0.2) == "FAIL"
    assert stats.verdict(0.99, 0.98, at_most=False) == "PASS"
    assert stats.verdict(math.nan, 1.0) == "n/a"
    assert math.isnan(stats.ratio(1.0, 0.0)) and stats.ratio(1.0, 4.0) == 0.25
    assert stats.fmt(None) == "–" and stats.fmt(math.nan) == "–" and stats.fmt(1.23456, 2) == "1.23"
    assert stats.rates([0, 10], [100, 30], 2.0) == [50.0, 10.0]


@pytest.mark.parametrize("target", [0.999, 0.99, 0.975, 0.9601, 0.9, 0.5])
def test_choose_crf_is_the_highest_crf_meeting_the_target(target: float) -> None:
    def ssim(crf: int) -> float:  # falls as CRF rises, like the encoder's
        return 1.0 - 0.002 * crf

    tried: list[int] = []

    def measured(crf: int) -> float:
        tried.append(crf)
        return ssim(crf)

    got = encode.choose_crf(measured, target)
    lo, hi = encode.CRF_RANGE
    meeting = [c for c in range(lo, hi + 1) if ssim(c) >= target]
    assert got == (max(meeting) if meeting else lo)
    assert len(tried) <= 8, "bisection, not a scan"


def test_producer_commands_split_as_edge_splits_them() -> None:
    source = encode.h264_producer("640x480", crf=28)
    assert source.startswith("pipe:")
    argv = shlex.split(source[len("pipe:") :])
    assert argv[argv.index("-crf") + 1] == "28" and argv[-3:] == ["-f", "h264", "-"]
    assert "repeat-headers=1:aud=1" in argv and "-re" in argv and "testsrc2=size=640x480:rate=30" in argv
    rate = shlex.split(encode.h264_producer("1280x720", bitrate="4M")[5:])
    assert rate[rate.index("-maxrate") + 1] == "4M" and rate[rate.index("-bufsize") + 1] == "1M"
    mj = shlex.split(encode.mjpeg_producer("1280x720")[5:])
    assert mj[mj.index("-q:v") + 1] == "5" and mj[-3:] == ["-f", "mjpeg", "-"]
    assert encode.scene("640x480", 300) == "testsrc2=size=640x480:rate=30:duration=10"


def test_every_config_loads_with_edges_loader(tmp_path: Path) -> None:
    cameras: list[list[dict[str, Any]]] = [
        [cpuload.camera("mjpeg", 30)],
        [cpuload.camera("h264", 30)],
        [{"name": "cam0", "source": encode.h264_producer(firstpic.SIZE, crf=30, gop=firstpic.GOP), "idle_after": 0}],
        [idlecost._camera(0)],
        [idlecost._camera(None)],
        [browser.CAMERA],
        [
            {"name": "mjpeg", "source": encode.mjpeg_producer(bandwidth.SIZE), "idle_after": 0},
            {"name": "h264", "source": encode.h264_producer(bandwidth.SIZE, crf=30), "idle_after": 0},
        ],
    ]
    for i, cams in enumerate(cameras):
        config = load_config(write_config(tmp_path / f"c{i}.yaml", cams, SERVER))
        assert [c.name for c in config.cameras] == [c["name"] for c in cams]
        assert config.server.max_clients >= 1000 and config.server.max_pending_per_address == 0


def synthetic_results() -> dict[str, Any]:
    nan = math.nan
    run = {
        "viewers": 100,
        "ready": {"with_body": 100},
        "edge_cores_0": 0.01,
        "edge_cores_n": 0.05,
        "per_viewer_cores": 0.0004,
        "received_bytes_per_s": {"min": 60e3, "p50": 61e3},
        "sent_fps": {"count": 100, "min": 29.9, "p50": 30.0},
        "lost_total": 0,
        "frames_dropped": 0,
        "viewer_worker_cores": 0.02,
        "zero": {"box_busy_cores": 0.5},
        "loaded": {"box_busy_cores": 0.7, "producer_cores": 0.1},
    }
    window = {"edge_cores": 0.004, "producer_cores": 0.2}
    return {
        "machine": {
            "cpu_model": "Test CPU",
            "nproc": 2,
            "loadavg_start": [0.5, 0.4, 0.3],
            "python": "3.11",
            "kernel": "6",
            "date": "now",
            "git_commit": "abc",
        },
        "command": ".venv/bin/python benchmarks/h264bench.py",
        "elapsed_s": 400.0,
        "notes": ["a note"],
        "sections": {
            "bandwidth": {
                "size": "1280x720",
                "crf": 30,
                "ratio": 0.1,
                "h264_bytes_per_s": 300e3,
                "mjpeg_bytes_per_s": 3e6,
                "ssim_h264": 0.97,
                "ssim_mjpeg": 0.969,
                "decode_check": {"h264": {"decoded": 30, "error": None}, "mjpeg": {"decoded": 30, "error": None}},
            },
            "cpu": {
                "size": "640x480",
                "runs": [
                    {**run, "kind": "mjpeg", "per_viewer_cores": 0.0005},
                    {**run, "kind": "h264", "sent_fps": {"count": 100, "min": 12.0, "p50": 30.0}},
                ],
            },
            "first_picture": {
                "count": 50,
                "errors": 0,
                "not_key_first": 0,
                "first_message_ms": {"p50": 20.0, "p95": 40.0},
                "first_picture_ms": {"p50": 30.0, "p95": 60.0},
                "next_key_wait_ms": {"p50": 500.0, "p95": 950.0},
                "key_age_ms": {"p50": 500.0, "max": 990.0},
            },
            "idle": {"size": "1280x720", "bitrate": "4M", "never_idle": window, "idle": {**window, "edge_cores": 0.02}},
            "browser": {
                "frame_period_ms": 1000 / 30,
                "auto": {"latency_ms": {"p50": 40.0, "p95": 50.0}, "mode_ok": True, "modes_seen": ["webcodecs"]},
                "mp4": {"error": "tile never played"},
                "ws": {"latency_ms": {"p50": 60.0, "p95": nan}},
            },
        },
    }


def test_summary_rows_judge_each_target() -> None:
    rows = summary.rows(synthetic_results())
    by_figure = {row[1]: row for row in rows}
    assert all(len(row) == len(summary.HEADER) for row in rows)
    assert by_figure["bytes/s per viewer, 1280x720@30 (H.264 CRF 30)"][-1] == "PASS"
    assert by_figure["SSIM All vs source (offline, 300 frames)"][-1] == "PASS"
    assert by_figure["edge cores per viewer, 100 viewers, 640x480@30"][-1] == "PASS"  # 0.4 vs 0.5 mcores
    assert by_figure["per-viewer received min / median, sent fps min, 100 viewers"][-1] == "FAIL"  # 12 fps
    idle = [row for row in rows if row[0] == "4"]
    assert [row[-1] for row in idle] == ["PASS", "FAIL"]
    latency = [row for row in rows if row[0] == "5"]
    assert latency[0][-1] == "PASS" and latency[1][2] == "ERROR"


def test_markdown_has_the_machine_and_a_table() -> None:
    text = summary.markdown(synthetic_results())
    assert "Test CPU, 2 cores; load average at start 0.50, 0.40, 0.30" in text
    assert "| § | figure | value | reference (same run) | ratio | target | met |" in text
    assert "CPU per viewer, every run" in text and "- a note" in text


def test_errors_and_skips_become_rows() -> None:
    results = synthetic_results()
    results["sections"] = {"bandwidth": {"error": "RuntimeError: boom\nmore"}, "browser": {"skipped": "not yet"}}
    rows = summary.rows(results)
    assert rows[0][2] == "ERROR" and "boom" in rows[0][3] and rows[1][2] == "skipped"
