"""Fixtures that start real `edge` servers as subprocesses, and the CI rule on skips.

`start_server` (per test) and `start_module_server` (per module, to keep the suite fast on two
cores) are `tests.support.process.StartServer` factories: `start_server(cameras=[...],
server={...})` returns a running `EdgeServer`, and every server a factory started is stopped at
teardown, failing the test if its log holds a Python traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.config import virtual_cam, write_config
from tests.support.process import EdgeServer, StartServer
from tests.support.sockets import fresh_loopback_address


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Per-test server factory (for tests that kill, restart or exhaust a server)."""
    factory = StartServer(tmp_path)
    yield factory
    factory.teardown()


@pytest.fixture(scope="module")
def start_module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartServer]:
    """Per-module server factory: one server shared by the tests of a module."""
    factory = StartServer(tmp_path_factory.mktemp("edge-module"))
    yield factory
    factory.teardown()


@pytest.fixture(scope="module")
def server(start_module_server: StartServer) -> EdgeServer:
    """One virtual camera `cam0` 640x480 @ 30 fps, quality 80, max_clients 64."""
    return start_module_server(
        cameras=[virtual_cam("cam0", 640, 480, 30, 80)],
        server={"max_clients": 64},
    )


@pytest.fixture
def client_address() -> str:
    """A loopback address of the test's own to connect from: a client of its own to the server's
    per-address limits (`tests.support.sockets.fresh_loopback_address`)."""
    return fresh_loopback_address()


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
