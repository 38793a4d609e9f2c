"""Fast checks of ``benchmarks/sources.py`` (its parts in ``sourcebench/``): run list, configs,
snapshot parsing, summary.

No server is started: the configs are checked with edge's own loader, the snapshot parser is fed
responses cut at awkward places, and the summary is built from synthetic result documents.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from sourcebench import runs, summary, talk

from edge.config import load_config


def test_run_names_unique_and_complete() -> None:
    names = [spec.name for spec in runs.all_runs()]
    assert len(names) == len(set(names)) == 28
    assert "file-1280x720-1viewer" in names
    assert "never-640x480-awake" in names
    assert "wake-pipe-1280x720" in names
    assert "file-640x480-awake" not in names  # the never-idle reference is for virtual and never only


def test_select_runs_patterns_keep_table_order() -> None:
    picked = [s.name for s in runs.select_runs("wake-*-640x480,file-1280x720-*")]
    assert picked == [
        "file-1280x720-1viewer",
        "file-1280x720-idle",
        "wake-virtual-640x480",
        "wake-file-640x480",
        "wake-never-640x480",
        "wake-pipe-640x480",
    ]
    with pytest.raises(ValueError, match="no run matches"):
        runs.select_runs("nonsense")


@pytest.mark.parametrize("name", ["virtual-640x480-1viewer", "file-1280x720-idle", "never-640x480-awake"])
def test_configs_load_with_edges_loader(tmp_path: Path, name: str) -> None:
    spec = runs.RUNS[name]
    media = tmp_path / "clip with space.avi"
    media.write_bytes(b"not really a video")
    path = tmp_path / "edge.yaml"
    runs.write_run_config(path, spec, None if spec.source == "virtual" else media)
    cam = load_config(path).cameras[0]
    assert cam.idle_after == spec.idle_after
    assert cam.fps == runs.FPS
    if spec.source == "virtual":
        assert (cam.width, cam.height, cam.size_given) == (spec.width, spec.height, True)
    else:
        assert cam.source == str(media)
        assert not cam.size_given  # the file's own size must be passed through
        assert cam.passthrough == ("never" if spec.source == "never" else "auto")


def test_pipe_command_quotes_the_file() -> None:
    command = runs.pipe_command(Path("/tmp/a b/clip.avi"))
    assert command.startswith("pipe:ffmpeg ")
    argv = shlex.split(command.removeprefix("pipe:"))
    assert argv[argv.index("-i") + 1] == "/tmp/a b/clip.avi"
    assert argv[-5:] == ["-c", "copy", "-f", "mjpeg", "-"]
    assert "-re" in argv and argv[argv.index("-stream_loop") + 1] == "-1"


JPEG = b"\xff\xd8" + bytes(range(256)) * 10 + b"\xff\xd9"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: image/jpeg\r\nx-timestamp: 1796058153.532751\r\n"
    + f"content-length: {len(JPEG)}\r\n\r\n".encode()
    + JPEG
)


def test_response_complete_only_with_the_whole_body() -> None:
    for cut in range(len(RESPONSE)):
        assert not talk.response_complete(RESPONSE[:cut]), cut
    assert talk.response_complete(RESPONSE)
    parsed = talk.parse_snapshot(RESPONSE)
    assert parsed is not None
    status, headers, body = parsed
    assert status == 200 and body == JPEG
    assert float(headers["x-timestamp"]) == pytest.approx(1796058153.532751)


def test_snapshot_result_freshness() -> None:
    fresh = talk.SnapshotResult(100.0, 100.05, 200, 100.02, False, 5000, True).as_json()
    assert fresh["fresh"] and fresh["response_ms"] == pytest.approx(50.0)
    assert fresh["capture_minus_sent_ms"] == pytest.approx(20.0)
    stale = talk.SnapshotResult(100.0, 103.0, 200, 99.0, False, 5000, True).as_json()
    assert not stale["fresh"] and stale["capture_minus_sent_ms"] < 0


def _cpu_doc(
    source: str, mode: str, server: float, tree: float | None = None, size: str = "1280x720"
) -> dict[str, Any]:
    width, height = (int(v) for v in size.split("x"))
    return {
        "run": runs.RunSpec(source, width, height, mode).name,
        "source": source,
        "mode": mode,
        "params": {"width": width, "height": height, "duration_s": 30.0, "warmup_s": 3.0, "command": ["sources.py"]},
        "machine": {
            "date": "2026-11-30T00:00:00+00:00",
            "nproc": 2,
            "cpu_model": "test",
            "python": "3.11",
            "kernel": "k",
            "loadavg_start": [0.5, 0.5, 0.5],
        },
        "cpu": {"server_cores": server, "tree_cores": server if tree is None else tree, "machine_busy_cores": 0.1},
        "memory": {"server_rss_mb": 70.0},
        "camera": {"capture_fps": 30.0 if mode != "idle" else 0.0},
        "viewer": {"fps": 30.0} if mode == "1viewer" else None,
        "warnings": [],
        "error": None,
    }


def _wake_doc(source: str, median: float, worst: float) -> dict[str, Any]:
    doc = _cpu_doc(source, "wake", 0.0, size="640x480")
    doc["wake"] = {
        "count": 10,
        "not_fresh": 0,
        "response_ms": {"median": median, "max": worst},
        "capture_minus_sent_ms": {"median": median - 1, "max": worst - 1},
    }
    return doc


def test_summary_ratios_and_verdicts() -> None:
    results = [
        _cpu_doc("never", "1viewer", 0.40),
        _cpu_doc("file", "1viewer", 0.02),
        _cpu_doc("pipe", "1viewer", 0.02, tree=0.05),
        _cpu_doc("pipe", "idle", 0.005, tree=0.02),
        _wake_doc("virtual", 20.0, 200.0),
        _wake_doc("pipe", 50.0, 60.0),
    ]
    text = summary.markdown(results)
    file_row = next(line for line in text.splitlines() if line.startswith("| MJPEG file, passthrough | 1280x720 | 1 "))
    assert "0.05×" in file_row and "≤ 0.03: PASS" in file_row
    pipe_row = next(line for line in text.splitlines() if line.startswith("| pipe: ffmpeg -c copy | 1280x720 | 1 "))
    assert "0.05× (+children 0.12×)" in pipe_row and "+children FAIL" in pipe_row
    assert "≤ 0.01: PASS; +children FAIL" in text
    assert "median PASS, max FAIL" in text
    assert "– (no target for pipes)" in text


def test_failed_run_shows_in_the_table() -> None:
    doc = _cpu_doc("pipe", "1viewer", 0.0)
    doc["error"] = "RuntimeError: camera not streaming within 20 s"
    text = summary.markdown([doc])
    assert "FAILED: RuntimeError: camera not streaming" in text
