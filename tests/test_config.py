"""Configuration validation and command line (§1 and §2 of docs/interface.md).

A typo or a wrong value in the YAML must stop the program with exit status 2 and one clear
stderr line naming the file and the key path, never a traceback: operators read that line in
a service log and must be able to fix the file from it alone.

The many invalid and valid files are checked in process (`edge.config.load_config`, the function
`--check-config` calls); two subprocess runs check what the command line adds to it: the exit
status, the single stderr line and no traceback, for `--check-config` and for serving.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from edge.config import Config, ConfigError, SourceKind, load_config
from tests.support.config import virtual_cam, write_config
from tests.support.http import fetch
from tests.support.process import REPO_ROOT, StartServer, free_port, run_edge, run_until_exit
from tests.support.status import get_status
from tests.support.waiting import wait_for

BASE: dict[str, Any] = {
    "server": {"host": "127.0.0.1", "port": 8080, "max_clients": 64},
    "cameras": [virtual_cam("cam0", 320, 240, 30, 80)],
}


def mutated(fn: Callable[[dict[str, Any]], None]) -> str:
    """YAML text of BASE after applying `fn` to a deep copy."""
    doc = copy.deepcopy(BASE)
    fn(doc)
    return yaml.safe_dump(doc, sort_keys=False)


def setcam(key: str, value: Any, index: int = 0) -> Callable[[dict[str, Any]], None]:
    def fn(doc: dict[str, Any]) -> None:
        doc["cameras"][index][key] = value

    return fn


def setserver(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def fn(doc: dict[str, Any]) -> None:
        doc["server"][key] = value

    return fn


def settop(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def fn(doc: dict[str, Any]) -> None:
        doc[key] = value

    return fn


def deltop(key: str) -> Callable[[dict[str, Any]], None]:
    def fn(doc: dict[str, Any]) -> None:
        del doc[key]

    return fn


def duplicate_camera(doc: dict[str, Any]) -> None:
    doc["cameras"].append(virtual_cam("cam0", 320, 240, 30, 80))


def nameless_camera(doc: dict[str, Any]) -> None:
    del doc["cameras"][0]["name"]


@dataclass(frozen=True)
class Case:
    id: str
    text: str | None  # None: the file does not exist
    key: str | None  # key path the message must name (None: file-level error)
    expect: dict[str, Any] = field(default_factory=dict)  # valid files: attribute path -> loaded value


INVALID: list[Case] = [
    Case("unknown-top-key", mutated(settop("srever", {"port": 1})), "srever"),
    Case("unknown-server-key", mutated(setserver("prot", 8080)), "server.prot"),
    Case("unknown-camera-key", mutated(setcam("fsp", 30)), "cameras[0].fsp"),
    Case(
        "unknown-key-second-camera",
        mutated(lambda d: d["cameras"].append({"name": "cam1", "qualty": 50})),
        "cameras[1].qualty",
    ),
    Case("fps-string", mutated(setcam("fps", "abc")), "cameras[0].fps"),
    Case("port-string", mutated(setserver("port", "x")), "server.port"),
    Case("width-bool", mutated(setcam("width", True)), "cameras[0].width"),
    Case("height-string", mutated(setcam("height", "240")), "cameras[0].height"),
    Case("quality-bool", mutated(setcam("quality", False)), "cameras[0].quality"),
    Case("max-clients-string", mutated(setserver("max_clients", "many")), "server.max_clients"),
    Case("fps-0", mutated(setcam("fps", 0)), "cameras[0].fps"),
    Case("fps-121", mutated(setcam("fps", 121)), "cameras[0].fps"),
    Case("fps-negative", mutated(setcam("fps", -5)), "cameras[0].fps"),
    Case("quality-0", mutated(setcam("quality", 0)), "cameras[0].quality"),
    Case("quality-101", mutated(setcam("quality", 101)), "cameras[0].quality"),
    Case("port-70000", mutated(setserver("port", 70000)), "server.port"),
    Case("max-clients-0", mutated(setserver("max_clients", 0)), "server.max_clients"),
    Case("name-with-space-and-caps", mutated(setcam("name", "Cam 0")), "cameras[0].name"),
    Case("name-uppercase", mutated(setcam("name", "CAM")), "cameras[0].name"),
    Case("name-missing", mutated(nameless_camera), "cameras[0]"),
    Case("duplicate-names", mutated(duplicate_camera), "cameras[1]"),
    Case("missing-cameras", mutated(deltop("cameras")), "cameras"),
    Case("empty-cameras", mutated(settop("cameras", [])), "cameras"),
    Case("cameras-not-a-list", mutated(settop("cameras", "cam0")), "cameras"),
    Case("server-not-a-mapping", mutated(settop("server", 5)), "server"),
    Case("empty-file", "", None),
    Case("only-comments", "# nothing here\n", None),
    Case("top-level-list", "- name: cam0\n", None),
    Case("yaml-syntax-error", "cameras:\n  - name: cam0\n    fps: [30\n  bad: : :\n", None),
    Case("nonexistent-file", None, None),
]

# What a file that gives only a camera's name loads as (the defaults of §2 of docs/interface.md).
SERVER_DEFAULTS = {
    "server.host": "127.0.0.1",
    "server.port": 8080,
    "server.max_clients": 64,
    "server.log_level": "info",
    "server.auth": None,
    "server.tokens": (),
    "server.tls": None,
    "server.request_timeout": 10.0,
    "server.stall_timeout": 60.0,
    "server.max_pending_per_address": 32,
}
CAMERA_DEFAULTS = {
    "cameras[0].source": "auto",
    "cameras[0].spec.kind": SourceKind.AUTO,
    "cameras[0].width": 640,
    "cameras[0].height": 480,
    "cameras[0].size_given": False,
    "cameras[0].fps": 30.0,
    "cameras[0].quality": 80,
    "cameras[0].passthrough": "auto",
    "cameras[0].idle_after": 10.0,
    "cameras[0].rotate": 0,
    "cameras[0].flip": "none",
}
# BASE's camera: a virtual 320x240 @ 30, quality 80, its size given.
BASE_CAMERA = {
    "cameras[0].name": "cam0",
    "cameras[0].spec.kind": SourceKind.VIRTUAL,
    "cameras[0].width": 320,
    "cameras[0].height": 240,
    "cameras[0].size_given": True,
    "cameras[0].fps": 30.0,
    "cameras[0].quality": 80,
}

VALID: list[Case] = [
    Case("full", mutated(lambda d: None), None, {**BASE_CAMERA, "server.port": 8080, "server.log_level": "info"}),
    Case(
        "minimal", "cameras:\n  - name: cam0\n", None, {**SERVER_DEFAULTS, **CAMERA_DEFAULTS, "cameras[0].name": "cam0"}
    ),
    Case("fractional-fps", mutated(setcam("fps", 0.5)), None, {**BASE_CAMERA, "cameras[0].fps": 0.5}),
    Case("fps-0.1", mutated(setcam("fps", 0.1)), None, {"cameras[0].fps": 0.1}),
    Case("fps-120", mutated(setcam("fps", 120)), None, {"cameras[0].fps": 120.0}),
    Case("quality-1", mutated(setcam("quality", 1)), None, {"cameras[0].quality": 1}),
    Case("quality-100", mutated(setcam("quality", 100)), None, {"cameras[0].quality": 100}),
    Case("name-charset", mutated(setcam("name", "front_door-2")), None, {"cameras[0].name": "front_door-2"}),
    Case(
        "two-cameras",
        mutated(lambda d: d["cameras"].append({"name": "cam1"})),
        None,
        {
            **BASE_CAMERA,
            "cameras[1].name": "cam1",
            "cameras[1].spec.kind": SourceKind.AUTO,
            "cameras[1].size_given": False,
            "cameras[1].width": 640,
            "cameras[1].fps": 30.0,
        },
    ),
    Case(
        "source-index",
        mutated(setcam("source", 0)),
        None,
        {"cameras[0].source": 0, "cameras[0].spec.kind": SourceKind.DEVICE, "cameras[0].spec.device": "/dev/video0"},
    ),
    Case(
        "source-digits",
        mutated(setcam("source", " 2 ")),
        None,
        {"cameras[0].source": 2, "cameras[0].spec.kind": SourceKind.DEVICE, "cameras[0].spec.device": "/dev/video2"},
    ),
    Case(
        "source-url",
        mutated(setcam("source", "http://127.0.0.1:9/stream.mjpg")),
        None,
        {"cameras[0].spec.kind": SourceKind.HTTP, "cameras[0].spec.target": "http://127.0.0.1:9/stream.mjpg"},
    ),
    Case(
        "source-auto",
        mutated(setcam("source", "auto")),
        None,
        {
            "cameras[0].spec.kind": SourceKind.AUTO,
            "cameras[0].size_given": True,
            "cameras[0].spec.device": "/dev/video0",
        },
    ),
    Case(
        "source-pipe",
        mutated(setcam("source", "pipe:rpicam-vid -t 0 -o -")),
        None,
        {"cameras[0].spec.kind": SourceKind.PIPE, "cameras[0].spec.target": "rpicam-vid -t 0 -o -"},
    ),
]


def config_file(directory: Path, case: Case) -> Path:
    """`case`'s text in a file of its own (no file at all for `text` None)."""
    path = directory / f"{case.id}.yaml"
    if case.text is not None:
        path.write_text(case.text)
    return path


@pytest.mark.parametrize("case", INVALID, ids=[c.id for c in INVALID])
def test_invalid_config_is_one_clear_line(case: Case, tmp_path: Path) -> None:
    """Each invalid config: a ConfigError (nothing else escapes) whose one line names the file and
    the key path; the command line prints that line and exits 2 (test_check_config_exits_2...)."""
    path = config_file(tmp_path, case)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    line = str(info.value)
    assert "\n" not in line, f"expected one line, got:\n{line}"
    assert str(path) in line, f"message does not name the file {path}: {line!r}"
    if case.key is not None:
        rest = line.replace(str(path), "")
        assert case.key in rest, f"message does not name key path {case.key!r}: {line!r}"


@pytest.mark.parametrize("case", VALID, ids=[c.id for c in VALID])
def test_valid_config_loads(case: Case, tmp_path: Path) -> None:
    """Valid configs, including boundary values and fractional fps, load (`--check-config` exits 0)
    with the values given and the defaults for the rest."""
    path = config_file(tmp_path, case)
    config = load_config(path)
    assert config.path == str(path)
    assert case.expect, "a valid case says what it loads as"
    loaded = {name: loaded_value(config, name) for name in case.expect}
    assert loaded == case.expect


def loaded_value(config: Config, name: str) -> Any:
    """The value at an attribute path such as `cameras[1].spec.kind`."""
    value: Any = config
    for step in name.split("."):
        attr, _, index = step.partition("[")
        value = getattr(value, attr)
        if index:
            value = value[int(index.rstrip("]"))]
    return value


def test_check_config_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    """The command line's side of §1 and §2 of docs/interface.md (the cases above check the message in process):
    `--check-config` exits 2 with exactly one stderr line naming the file and key, no traceback."""
    path = tmp_path / "bad.yaml"
    path.write_text(mutated(setcam("fps", 0)))
    res = run_edge(["--check-config", str(path)])
    assert "Traceback" not in res.stderr, f"traceback on a config error:\n{res.stderr}"
    assert res.returncode == 2, f"exit {res.returncode}, stderr:\n{res.stderr}"
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{res.stderr}"
    assert lines[0] == f"edge: config error: {path}: cameras[0].fps: must be between 0.1 and 120, got 0", lines[0]


def test_serving_a_bad_config_exits_2(tmp_path: Path) -> None:
    """`--config` with an invalid file must not start serving: exit 2, key path, no traceback."""
    path = tmp_path / "bad.yaml"
    path.write_text(mutated(setcam("fps", 0)))
    rc, log = run_until_exit(path)
    assert rc == 2, f"exit {rc}, stderr:\n{log}"
    assert "Traceback" not in log
    assert str(path) in log and "cameras[0].fps" in log, log


def test_edge_config_env_is_used_without_config_flag(start_server: StartServer, tmp_path: Path) -> None:
    """With no `--config`, the path comes from $EDGE_CONFIG (before config/edge.yaml)."""
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump({"cameras": [virtual_cam("envcam", 160, 120, 10)]}))
    srv = start_server(no_config_flag=True, env_extra={"EDGE_CONFIG": str(path)})
    names = [c["name"] for c in get_status(srv)["cameras"]]
    assert names == ["envcam"], names
    # Counterpart of the --log-level warning test below: at `info`, INFO lines do appear.
    assert " INFO " in srv.log_text(), srv.log_text()[-2000:]


def test_config_flag_wins_over_edge_config(start_server: StartServer, tmp_path: Path) -> None:
    """`--config` is explicit and must win over a (here broken) $EDGE_CONFIG."""
    bad = tmp_path / "broken.yaml"
    bad.write_text("cameras: []\n")
    srv = start_server(cameras=[virtual_cam("flagcam", 160, 120, 10)], env_extra={"EDGE_CONFIG": str(bad)})
    assert [c["name"] for c in get_status(srv)["cameras"]] == ["flagcam"]


def test_cli_overrides_host_port_and_log_level(start_server: StartServer) -> None:
    """`--host/--port/--log-level` override the file: config says 127.0.0.1:P1, CLI 127.0.0.2:P2."""
    p1, p2 = free_port(), free_port()
    srv = start_server(
        cameras=[virtual_cam("cam0", 160, 120, 10)],
        server={"host": "127.0.0.1", "port": p1},
        host="127.0.0.2",
        port=p2,
        log_level="warning",
        wait_listening=False,
    )
    srv.host, srv.port = "127.0.0.2", p2
    wait_for(lambda: fetch(srv.url + "/healthz", timeout=2).status == 200, 20, 0.1, "server on 127.0.0.2:P2")
    for host, port in (("127.0.0.1", p1), ("127.0.0.1", p2), ("127.0.0.2", p1)):
        with pytest.raises(httpx.ConnectError):
            fetch(f"http://{host}:{port}/healthz", timeout=2)
    assert srv.proc.poll() is None
    # --log-level warning: requests were served, yet no INFO line may be logged.
    fetch(srv.url + "/api/status")
    info = [ln for ln in srv.log_text().splitlines() if " INFO " in ln]
    assert not info, "INFO lines logged despite --log-level warning:\n" + "\n".join(info[:10])


def test_environment_overrides_file_and_cli_overrides_environment(start_server: StartServer) -> None:
    """EDGE_HOST/EDGE_PORT (the container's way to listen on all addresses) beat the file;
    the command line beats both."""
    p_file, p_env = free_port(), free_port()
    srv = start_server(
        cameras=[virtual_cam("cam0", 160, 120, 10)],
        server={"host": "127.0.0.1", "port": p_file},
        host=None,
        port=None,
        env_extra={"EDGE_HOST": "127.0.0.2", "EDGE_PORT": str(p_env)},
    )
    assert (srv.host, srv.port) == ("127.0.0.2", p_env)
    assert fetch(srv.url + "/healthz").status == 200
    srv.stop()
    p_cli = free_port()
    srv = start_server(
        cameras=[virtual_cam("cam0", 160, 120, 10)],
        host="127.0.0.1",
        port=p_cli,
        env_extra={"EDGE_HOST": "127.0.0.2", "EDGE_PORT": str(p_env)},
    )
    assert (srv.host, srv.port) == ("127.0.0.1", p_cli)


def test_bad_port_in_environment_is_a_config_error(tmp_path: Path) -> None:
    path = write_config(tmp_path / "edge.yaml", [virtual_cam("cam0", 160, 120, 10)])
    proc = run_edge(["--config", str(path)], {"EDGE_PORT": "eighty"}, timeout=30)
    assert proc.returncode == 2
    assert "EDGE_PORT" in proc.stderr and "Traceback" not in proc.stderr


def test_console_script_reports_version_and_checks_config() -> None:
    """`pip install` puts an `edge` command beside `python -m edge` (make install uses it too)."""
    import edge

    script = Path(sys.executable).parent / "edge"
    assert script.exists(), f"{script} missing: the package's console script is not installed"
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.strip() == f"edge {edge.__version__}", version
    check = subprocess.run(
        [str(script), "--check-config", str(REPO_ROOT / "config" / "edge.yaml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr
