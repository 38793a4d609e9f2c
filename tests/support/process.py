"""`python -m edge` as a child process: start it, learn its port, read its log, stop it.

Every integration test talks to a real server process (edge/__main__.py, edge/server/), never
to the app in-process: signals, exit statuses, the listening socket and the log are part of what
is tested. The log is drained by a thread so the child never blocks on a full pipe, and the
`listening on http://HOST:PORT` line tells a server started with `--port 0` which port it got.
`StartServer` is the factory behind the `start_server` fixtures: it writes each server's config,
starts it, and at teardown stops every server it started and fails if one logged a traceback.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.config import virtual_cam, write_config

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
LISTEN_RE = re.compile(r"listening on https?://(\[[^\]]+\]|[^\s:/]+):(\d+)")


class LogBuffer:
    """Drains a pipe in a background thread so the child never blocks on a full pipe."""

    def __init__(self, stream: Any) -> None:
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: Any) -> None:
        try:
            for raw in iter(stream.readline, b""):
                with self._cond:
                    self._lines.append(raw.decode("utf-8", "replace"))
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def text(self) -> str:
        with self._cond:
            return "".join(self._lines)

    def wait_for_match(
        self, pattern: re.Pattern[str], timeout: float, alive: Callable[[], bool]
    ) -> re.Match[str] | None:
        """Return the first match of `pattern`, or None on timeout / end of stream."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = pattern.search("".join(self._lines))
                if m:
                    return m
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed or not alive():
                    return None
                self._cond.wait(min(remaining, 0.1))

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


@dataclass
class EdgeServer:
    """A running `python -m edge` process and what the tests need to talk to it."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    config_path: Path | None
    stderr_buf: LogBuffer
    stdout_buf: LogBuffer
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def log_text(self) -> str:
        """Everything the server wrote to stderr so far (its log)."""
        return self.stderr_buf.text()

    def stdout_text(self) -> str:
        return self.stdout_buf.text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the server, wait (kill after `timeout`), and return its exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.stderr_buf.join(2)
        self.stdout_buf.join(2)
        return self.proc.returncode

    def rss_kib(self) -> int:
        """Resident set size of the server process, from /proc (Linux)."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        m = re.search(r"^VmRSS:\s+(\d+)\s+kB", status, re.MULTILINE)
        assert m, "VmRSS not found in /proc/PID/status"
        return int(m.group(1))

    def assert_clean_log(self, allow_error_lines: bool = True, since: int = 0) -> None:
        """No Python traceback (and optionally no ERROR line) in the log, from offset `since` on."""
        log = self.log_text()[since:]
        assert "Traceback" not in log, f"server log contains a traceback:\n{log[-6000:]}"
        if not allow_error_lines:
            bad = [ln for ln in log.splitlines() if " ERROR " in ln]
            assert not bad, "server log contains ERROR lines:\n" + "\n".join(bad[:20])


def edge_command(
    config: Path | None,
    *,
    host: str | None = HOST,
    port: int | None = 0,
    log_level: str | None = "info",
    extra_args: Iterable[str] = (),
) -> list[str]:
    """Command line for serving, as documented in §1 of docs/interface.md."""
    cmd = [sys.executable, "-m", "edge"]
    if config is not None:
        cmd += ["--config", str(config)]
    if port is not None:
        cmd += ["--port", str(port)]
    if host is not None:
        cmd += ["--host", host]
    if log_level is not None:
        cmd += ["--log-level", log_level]
    cmd += list(extra_args)
    return cmd


def child_env(extra: dict[str, str] | None = None, keep_edge_config: bool = False) -> dict[str, str]:
    """Environment for server children: unbuffered output, no inherited EDGE_CONFIG."""
    env = dict(os.environ)
    if not keep_edge_config:
        env.pop("EDGE_CONFIG", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def launch_server(
    config: Path | None,
    *,
    host: str | None = HOST,
    port: int | None = 0,
    log_level: str | None = "info",
    env_extra: dict[str, str] | None = None,
    extra_args: Iterable[str] = (),
    wait_listening: bool = True,
    timeout: float = 20.0,
    open_files: int | None = None,
) -> EdgeServer:
    """Start `python -m edge` from the repo root; by default wait for its 'listening on' line.

    With `wait_listening=False` the process is returned immediately (for tests expecting it to
    exit, or for a pre-chosen port); `port` must then be the real port. `open_files` sets the
    process's hard (and soft) limit of open descriptors, as a small device or a container has.
    """
    cmd = edge_command(config, host=host, port=port, log_level=log_level, extra_args=extra_args)

    def limit_files() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=child_env(env_extra),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=limit_files if open_files is not None else None,
    )
    server = EdgeServer(
        proc=proc,
        host=host or HOST,
        port=port or 0,
        config_path=config,
        stderr_buf=LogBuffer(proc.stderr),
        stdout_buf=LogBuffer(proc.stdout),
        args=cmd,
    )
    if not wait_listening:
        return server
    m = server.stderr_buf.wait_for_match(LISTEN_RE, timeout, alive=lambda: proc.poll() is None)
    if m is None:
        rc = proc.poll()
        server.stop(signal.SIGKILL, timeout=5)
        raise AssertionError(
            f"server did not print 'listening on http://HOST:PORT' within {timeout}s "
            f"(exit status {rc}); command {cmd}\nstderr:\n{server.log_text()[-6000:]}"
        )
    server.host = m.group(1).strip("[]")
    server.port = int(m.group(2))
    return server


def run_until_exit(config: Path, env_extra: dict[str, str] | None = None, timeout: float = 30.0) -> tuple[int, str]:
    """Serve `config` expecting the process to end by itself (a refused config); (status, log)."""
    srv = launch_server(config, env_extra=env_extra, wait_listening=False)
    try:
        rc = srv.proc.wait(timeout)
    finally:
        srv.stop()
    return rc, srv.log_text()


def run_edge(
    args: Iterable[str], env_extra: dict[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """`python -m edge ARGS...` to completion (e.g. `--check-config`), output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "edge", *args],
        cwd=REPO_ROOT,
        env=child_env(env_extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (for tests that must know the port up front)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class StartServer:
    """Starts servers from cameras/server dicts and tears them all down, checking their logs.

    `start(cameras=[...], server={...})` writes a YAML config into `tmp_dir`, starts
    `python -m edge --config ... --port 0`, waits for the listening line and returns the
    `EdgeServer`. `teardown` gives every server SIGTERM (killed after 10 s); a Python traceback
    in any log fails the test, since an exception escaping anywhere in the server is a bug even
    when the test that triggered it passed.
    """

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
        host: str | None = HOST,
        log_level: str | None = "info",
        env_extra: dict[str, str] | None = None,
        wait_listening: bool = True,
        config_path: Path | None = None,
        no_config_flag: bool = False,
        open_files: int | None = None,
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
            open_files=open_files,
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
