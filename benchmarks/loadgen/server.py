"""Start and stop the server under test as a subprocess, one fresh process per run.

A fresh process per run makes RSS and CPU per-run figures, and means one run's leftovers
(slow clients, leaked tasks) cannot spoil the next run.
"""

from __future__ import annotations

import collections
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from loadgen import procstat
from tests.support.process import LISTEN_RE

# How long to wait for the ``listening on`` line before looking the port up in /proc.
PORT_LINE_WAIT = 1.0


class ServerProcess:
    """The server subprocess: waits for its ``listening on`` line, drains stderr, stops it.

    stderr is drained by a thread for the whole life of the process, because a full pipe
    would block the server's logging and so the server itself; the last lines are kept for
    the report.
    """

    def __init__(self, command: list[str], config: Path, start_timeout: float = 30.0) -> None:
        self.command = [*command, "--config", str(config), "--port", "0", "--log-level", "warning"]
        self.start_timeout = start_timeout
        self.port = 0
        self.port_source = "stderr"
        self.exit_code: int | None = None
        self.shutdown_s: float | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=40)
        self._proc: subprocess.Popen[str] | None = None
        self._port_found = threading.Event()
        self._drain: threading.Thread | None = None

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self._proc is not None
        return self._proc.pid

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Launch and wait for the port; raise with the stderr tail if it never listens."""
        self._proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()
        started = time.monotonic()
        deadline = started + self.start_timeout
        while not self._port_found.wait(0.1):
            if time.monotonic() - started > PORT_LINE_WAIT and self._port_from_proc():
                break
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"server did not start (exit {self.exit_code}): {shlex.join(self.command)}\n" + "\n".join(self.tail)
                )

    def _port_from_proc(self) -> bool:
        """Fallback when no ``listening on`` line came: the process's own listening socket."""
        ports = procstat.listening_ports(self.pid)
        if len(ports) != 1:
            return False
        self.port = ports[0]
        self.port_source = "/proc (no 'listening on' line on stderr)"
        return True

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self.tail.append(line.rstrip())
            if not self._port_found.is_set():
                match = LISTEN_RE.search(line)
                if match:
                    self.port = int(match.group(2))
                    self._port_found.set()

    def wait_for_frames(self, timeout: float = 10.0) -> bool:
        """Poll /snapshot until the camera has a frame, so first-frame times exclude start-up."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=2.0) as client:
            while time.monotonic() < deadline:
                try:
                    if client.get("/snapshot").status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        return False

    def status(self) -> dict[str, object] | None:
        """GET /api/status once (not streaming, so httpx is fine here)."""
        try:
            response = httpx.get(f"http://127.0.0.1:{self.port}/api/status", timeout=5.0)
            return response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then wait ``grace`` seconds (the limit of §1 of docs/interface.md), then SIGKILL."""
        if self._proc is None or self.exit_code is not None:
            return
        started = time.monotonic()
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self._proc.wait(timeout=grace)
            self.shutdown_s = time.monotonic() - started
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self.exit_code = self._proc.wait(timeout=5.0)
            self.tail.append(f"[bench] server ignored SIGTERM for {grace} s; killed")
        if self._drain is not None:
            self._drain.join(timeout=2.0)
