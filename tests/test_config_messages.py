"""What a configuration error says (issue 14): one line with the file, the key path, what is wrong
and how to fix it. The cases that must be refused at all are in test_config.py; these pin the
wording an operator reads in a service log: a suggestion for a misspelt key, the line and column
of a YAML syntax error, the allowed choices, the range, and what was given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.config import ConfigError, load_config, parse_config
from tests.support.process import run_edge

CAM = {"name": "cam0", "source": "virtual"}


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "edge.yaml")
    return str(info.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            {"cameras": [{"name": "cam0", "sorce": "virtual"}]},
            "cameras[0].sorce: unknown key; did you mean `source`?",
            id="camera-key",
        ),
        pytest.param(
            {"server": {"prot": 80}, "cameras": [CAM]},
            "server.prot: unknown key; did you mean `port`?",
            id="server-key",
        ),
        pytest.param({"camera": [CAM]}, "camera: unknown key; did you mean `cameras`?", id="top-level-key"),
        pytest.param(
            {"server": {"tls": {"certfil": "x"}}, "cameras": [CAM]},
            "server.tls.certfil: unknown key; did you mean `certfile`?",
            id="nested-key",
        ),
    ],
)
def test_a_misspelt_key_gets_a_suggestion(data: dict[str, Any], expected: str) -> None:
    message = error_of(data)
    assert message.startswith("edge.yaml: " + expected), message
    assert "(allowed: " in message


def test_an_unknown_key_without_a_near_name_lists_what_is_allowed() -> None:
    message = error_of({"cameras": [{"name": "cam0", "zzzzzz": 1}]})
    assert "did you mean" not in message
    assert (
        "allowed: codec, drop_same_frames, flip, fps, h264_encoder, height, idle_after, name, passthrough, "
        "publish, quality, rotate, source, width" in message
    )


@pytest.mark.parametrize(
    ("camera", "expected"),
    [
        pytest.param({"fps": True}, "cameras[0].fps: must be a number, got a boolean (true)", id="bool-is-no-number"),
        pytest.param(
            {"width": "640"}, "cameras[0].width: must be an integer, got a string ('640')", id="string-is-no-int"
        ),
        pytest.param(
            {"width": 640.5}, "cameras[0].width: must be an integer, got a number (640.5)", id="float-is-no-int"
        ),
        pytest.param({"fps": 500}, "cameras[0].fps: must be between 0.1 and 120, got 500", id="range"),
        pytest.param(
            {"flip": "sideways"},
            "cameras[0].flip: must be one of none, horizontal, vertical, got 'sideways'",
            id="choice",
        ),
        pytest.param(
            {"passthrough": False},
            "cameras[0].passthrough: must be one of auto, always, never, got False",
            id="yaml-no",
        ),
        pytest.param({"rotate": 45}, "cameras[0].rotate: must be one of 0, 90, 180, 270, got 45", id="rotation"),
    ],
)
def test_a_wrong_value_says_what_is_allowed_and_what_was_given(camera: dict[str, Any], expected: str) -> None:
    assert error_of({"cameras": [{**CAM, **camera}]}) == "edge.yaml: " + expected


def test_a_yaml_syntax_error_is_one_line_with_its_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("cameras:\n  - name: cam0\n    fps: [30\n  bad: : :\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: YAML syntax error at line 4, column 6: "), message
    assert "\n" not in message


def test_check_config_prints_that_one_line_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("cameras:\n  - name: cam0\n    sorce: virtual\n")
    result = run_edge(["--check-config", str(path)])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"edge: config error: {path}: cameras[0].sorce: unknown key; did you mean `source`? "
        "(allowed: codec, drop_same_frames, flip, fps, h264_encoder, height, idle_after, name, passthrough, "
        "publish, quality, rotate, source, width)"
    ], lines
