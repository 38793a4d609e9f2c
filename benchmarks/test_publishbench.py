"""Fast checks of ``benchmarks/publishbench.py``'s helpers: the HLS readers' playlist parsing and
their fetch loop against a real HTTP server on loopback, the configs it writes (loaded by edge's own
loader) and the summary table. No edge, no nginx."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from publishbench import hlsreaders
from publishbench import sections as publishbench

from edge.config import load_config
from tests.support.config import write_config
from tests.support.programs import requires

PLAYLIST = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\ncam0-1.ts\n#EXTINF:1.0,\ncam0-2.ts\n"


def test_segments_are_the_playlists_uris_in_order() -> None:
    assert hlsreaders.segments(PLAYLIST) == ["cam0-1.ts", "cam0-2.ts"]
    assert hlsreaders.segments("#EXTM3U\n") == []


@pytest.fixture
def hls_dir(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "cam0.m3u8").write_text(PLAYLIST)
    for name in ("cam0-1.ts", "cam0-2.ts"):
        (tmp_path / name).write_bytes(b"\x47" * 188 * 100)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # kept alive, as the readers expect

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cam0.m3u8"
    finally:
        server.shutdown()
        thread.join(5)


def test_readers_fetch_each_segment_once_per_reader(hls_dir: str) -> None:
    started = time.monotonic()
    result = asyncio.run(hlsreaders.main(hls_dir, 3, 1.5))
    assert result["errors"] == 0 and result["readers"] == 3
    # Two segments each, fetched once however often the playlist was polled.
    assert round(result["segments_per_s"] * result["wall_s"]) == 6
    assert round(result["polls_per_s"] * result["wall_s"]) >= 3  # each at least once
    assert result["mbytes_per_s"] * result["wall_s"] * 1e6 >= 6 * 188 * 100
    assert time.monotonic() - started < 5


@requires("ffmpeg")
def test_the_cameras_it_starts_are_valid_configs(tmp_path: Path) -> None:
    cam = publishbench.h264_camera(["rtmp://127.0.0.1:1935/live/a", "rtmp://127.0.0.1:1935/live/b"])
    config = load_config(write_config(tmp_path / "edge.yaml", [cam], {"port": 0}))
    assert config.cameras[0].publish == ("rtmp://127.0.0.1:1935/live/a", "rtmp://127.0.0.1:1935/live/b")
    assert config.cameras[0].idle_after == 0


def test_summary_shows_each_figure_beside_its_reference() -> None:
    results = {
        "command": "publishbench.py",
        "machine": {"cpu_model": "cpu", "nproc": 2, "git_commit": "abc"},
        "sections": {
            "passthrough": {
                "camera": "720p",
                "edge_cores_mean": {"0": 0.0100, "1": 0.0150, "3": 0.0280},
                "cores_per_target": {"1": 0.005, "3": 0.006},
                "target_cores_per_target": 0.01,
                "met": True,
            },
        },
    }
    text = publishbench.summary(results)
    assert "| 0 (reference) | 0.0100 |" in text and "| 3 | 0.0280 | 0.0060 |" in text
    assert "cores per target: met" in text
