"""The server adapter's start-up self-check (edge/server/selfcheck.py) beyond missing attributes
(those are in test_broadcast_server.py / test_broadcast.py): a uvicorn whose constructors take
other arguments, and a fast path that no longer matches what uvicorn frames around it, fail at
start-up with a message naming the supported version, not with a TypeError or mid-stream."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from edge.__main__ import main
from edge.fanout.slot import Frame, Framing, Payload
from edge.server import http as server_http
from edge.server import selfcheck
from edge.server import websocket as server_websocket
from edge.server.selfcheck import SUPPORTED, AdapterError, check_uvicorn
from tests.support.config import virtual_cam, write_config


class _CycleWithAnotherSignature(selfcheck.RequestResponseCycle):  # type: ignore[misc]
    """uvicorn's cycle, as a future version that takes its arguments differently might be."""

    def __init__(self, scope: Any, transport: Any, flow: Any, *, app_state: Any) -> None:
        raise AssertionError("never built: the check must notice the signature first")


def test_a_changed_constructor_is_named_not_a_type_error(monkeypatch: pytest.MonkeyPatch) -> None:
    check_uvicorn()  # the pinned uvicorn passes
    monkeypatch.setattr(selfcheck, "RequestResponseCycle", _CycleWithAnotherSignature)
    with pytest.raises(AdapterError, match=rf"uvicorn \S+: a constructor changed .*written for uvicorn {SUPPORTED}"):
        check_uvicorn()


def _broken_chunked(payload: Payload) -> Framing:
    def framing(frame: Frame) -> tuple[bytes, int]:
        data = payload(frame)
        return b"%x\r\n%b" % (len(data), data), len(data)  # the chunk's closing CRLF forgotten

    return framing


def _broken_ws_binary(payload: Payload) -> Framing:
    def framing(frame: Frame) -> tuple[bytes, int]:
        data = payload(frame)
        return bytes((0x81, len(data))) + data, len(data)  # a text frame, not binary

    return framing


def test_a_fast_path_out_of_step_with_uvicorns_chunks_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loopback request sends a frame past uvicorn between two of uvicorn's own body parts."""
    monkeypatch.setattr(server_http, "chunked", _broken_chunked)
    with pytest.raises(AdapterError, match="broke its chunked body"):
        check_uvicorn()


def test_a_fast_path_out_of_step_with_the_websocket_library_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_websocket, "ws_binary", _broken_ws_binary)
    with pytest.raises(AdapterError, match="did not arrive as a binary message"):
        check_uvicorn()


def test_a_failed_probe_stops_the_start_with_exit_1_and_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "edge.yaml", [virtual_cam("cam0", 160, 120, 5)], {"port": 0})
    monkeypatch.setattr(server_http, "chunked", _broken_chunked)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        code = main(["--config", str(config), "--log-level", "error"])
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if " ERROR " in line]
    assert len(lines) == 1 and f"written for uvicorn {SUPPORTED}" in lines[0], err
    assert "Traceback" not in err and "listening on" not in err
