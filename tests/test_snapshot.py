"""Snapshot endpoints (§3 of docs/interface.md): the latest frame as a single JPEG with its capture time."""

from __future__ import annotations

import time

import pytest

from tests.support.http import fetch
from tests.support.jpeg import decode_jpeg
from tests.support.mjpeg import TIMESTAMP_RE
from tests.support.process import EdgeServer
from tests.support.waiting import wait_for


@pytest.mark.parametrize("path", ["/snapshot", "/snapshot.jpg", "/cameras/cam0/snapshot", "/?action=snapshot"])
def test_snapshot_forms(server: EdgeServer, path: str) -> None:
    """Every snapshot URL answers a decodable image/jpeg of cam0 with a recent X-Timestamp."""
    r = fetch(server.url + path)
    now = time.time()
    assert r.status == 200, f"{path}: {r.status}"
    assert r.headers.get("content-type", "").split(";")[0].strip() == "image/jpeg", r.headers
    assert r.body is not None
    img = decode_jpeg(r.body)
    assert (img.shape[1], img.shape[0]) == (640, 480)
    ts_text = r.headers.get("x-timestamp", "")
    assert TIMESTAMP_RE.fullmatch(ts_text), f"X-Timestamp {ts_text!r} is not unix seconds with 6 decimals"
    assert now - 3.0 < float(ts_text) <= now + 0.05, (ts_text, now)


def test_snapshot_is_the_latest_frame(server: EdgeServer) -> None:
    """Successive snapshots advance: the endpoint serves the newest frame, not a cached one."""
    first = fetch(server.url + "/snapshot")
    t1 = float(first.headers["x-timestamp"])
    wait_for(
        lambda: float(fetch(server.url + "/snapshot").headers["x-timestamp"]) > t1,
        timeout=3,
        message="a newer snapshot timestamp",
    )


def test_unknown_camera_snapshot_is_404_json(server: EdgeServer) -> None:
    r = fetch(server.url + "/cameras/nope/snapshot")
    assert r.status == 404
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
