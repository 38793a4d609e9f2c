"""Fixtures that start real `edge` servers as subprocesses.

`start_server` (per test) and `start_module_server` (per module, to keep the suite fast on two
cores) are factories: `start_server(cameras=[...], server={...})` writes a YAML config into a
temporary directory, starts `python -m edge --config ... --port 0`, waits for the
`listening on http://HOST:PORT` log line and returns an `EdgeServer`.  On teardown every server
gets SIGTERM (killed after 10 s) and its log must contain no Python traceback: an exception
escaping anywhere in the server is a bug even when the test that triggered it passed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import EdgeServer, launch_server, virtual_cam, write_config


class _Factory:
    """Starts servers and tears them all down, checking their logs."""

    def __init__(self, tmp_dir: Path) -> None:
        self.tmp_dir = tmp_dir
        self.servers: list[EdgeServer] = []
        self._n = 0

    def __call__(
        self,
        cameras: list[dict[str, Any]] | None = None,
        server: dict[str, Any] | None = None,
        *,
        port: int | None = 0,
        host: str | None = "127.0.0.1",
        log_level: str | None = "info",
        env_extra: dict[str, str] | None = None,
        wait_listening: bool = True,
        config_path: Path | None = None,
        no_config_flag: bool = False,
    ) -> EdgeServer:
        """Start a server; `no_config_flag` omits `--config` (to test $EDGE_CONFIG)."""
        if config_path is None and not no_config_flag:
            self._n += 1
            config_path = write_config(
                self.tmp_dir / f"edge-{self._n}.yaml",
                cameras if cameras is not None else [virtual_cam()],
                server,
            )
        srv = launch_server(
            config_path,
            host=host,
            port=port,
            log_level=log_level,
            env_extra=env_extra,
            wait_listening=wait_listening,
        )
        self.servers.append(srv)
        return srv

    def teardown(self) -> None:
        problems: list[str] = []
        for srv in self.servers:
            rc = srv.stop(signal.SIGTERM, timeout=10)
            log = srv.log_text()
            if "Traceback" in log:
                problems.append(f"server {srv.args} (exit {rc}) logged a traceback:\n{log[-6000:]}")
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)


StartServer = _Factory


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Per-test server factory (for tests that kill, restart or exhaust a server)."""
    factory = _Factory(tmp_path)
    yield factory
    factory.teardown()


@pytest.fixture(scope="module")
def start_module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartServer]:
    """Per-module server factory: one server shared by the tests of a module."""
    factory = _Factory(tmp_path_factory.mktemp("edge-module"))
    yield factory
    factory.teardown()


@pytest.fixture(scope="module")
def server(start_module_server: StartServer) -> EdgeServer:
    """Default server: one virtual camera `cam0` 640x480 @ 30 fps, quality 80, max_clients 64."""
    return start_module_server(
        cameras=[virtual_cam("cam0", 640, 480, 30, 80)],
        server={"max_clients": 64},
    )


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a config file from cameras/server dicts into the test's tmp_path."""
    counter = {"n": 0}

    def make(cameras: list[dict[str, Any]], server: dict[str, Any] | None = None) -> Path:
        counter["n"] += 1
        return write_config(tmp_path / f"cfg-{counter['n']}.yaml", cameras, server)

    return make


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI (`CI=true`) a skipped test is a failure: CI installs everything tests need."""
    if os.environ.get("CI") != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        for report in skipped:
            print(f"CI: skipped test counts as a failure: {report.nodeid}: {report.longrepr}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
