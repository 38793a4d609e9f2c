"""One edge process for one measurement: its config, its status, its CPU and its producers' CPU.

The process is ``python -m edge --config FILE --port 0`` started by the load benchmark's
``loadgen.server.ServerProcess`` (which learns the port from the ``listening on`` line, drains
stderr and stops it with SIGTERM). A ``pipe:`` producer is a child of edge (in a process group of
its own, §8), so edge's own CPU is read from /proc/PID/stat alone (every thread of the python
process, no children) and the producer's from the processes below it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from loadgen import procstat
from loadgen.server import ServerProcess

from tests.support.config import write_config

HOST = "127.0.0.1"
# Slots for 500 viewers; no cap on connections that wait to send their request, since 500 clients
# from one address connect within a second (limits.md).
SERVER = {"host": HOST, "port": 0, "max_clients": 2000, "max_pending_per_address": 0}


def edge_command() -> list[str]:
    """This interpreter's ``python -m edge`` (the venv's)."""
    return [sys.executable, "-m", "edge"]


class Edge:
    """A fresh edge for ``cameras``; a context manager that stops it (and its producers) at the end."""

    def __init__(self, cameras: list[dict[str, Any]], workdir: Path, name: str) -> None:
        self.cameras = cameras
        self.config = write_config(workdir / f"{name}.yaml", cameras, SERVER)
        self.process = ServerProcess(edge_command(), self.config)

    def __enter__(self) -> Self:
        self.process.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.process.stop()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def status(self) -> dict[str, Any]:
        """``/api/status`` (raises if edge does not answer it)."""
        response = httpx.get(self.url + "/api/status", timeout=10.0)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def camera(self, name: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
        """One camera's entry of the status."""
        for cam in (status or self.status())["cameras"]:
            if cam["name"] == name:
                return dict(cam)
        raise KeyError(name)

    def wait_camera(
        self, name: str, ready: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        """Poll the status until ``ready(camera)``; raise with the last status and log if it never is."""
        deadline = time.monotonic() + timeout
        cam: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                cam = self.camera(name)
                if ready(cam):
                    return cam
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.2)
        tail = "\n".join(self.process.tail)
        raise RuntimeError(f"camera {name} not {what} within {timeout:.0f} s; status {cam}\nedge log:\n{tail}")

    def wait_streaming(self, name: str, codec: str, timeout: float = 20.0) -> dict[str, Any]:
        """The camera delivers frames of ``codec``."""

        def ready(cam: dict[str, Any]) -> bool:
            return bool(cam.get("codec") == codec and cam.get("state") == "streaming" and cam.get("frames_captured"))

        return self.wait_camera(name, ready, timeout, f"streaming {codec}")

    def cpu(self) -> float:
        """edge's own CPU seconds (all threads of the python process, no children)."""
        return procstat.cpu_seconds(self.pid)

    def children(self) -> list[int]:
        """Processes below edge: its producers."""
        return [p for p in procstat.descendants(self.pid) if p != self.pid]

    def children_cpu(self) -> float:
        """CPU seconds of edge's producers (and anything else below it)."""
        return sum(procstat.cpu_seconds(p) for p in self.children())

    def rss_mib(self) -> float:
        return procstat.status_kib(self.pid, "VmRSS") / 1024

    def log_tail(self) -> list[str]:
        return list(self.process.tail)


class CpuWindow:
    """Samples edge, its producers, extra processes and the whole machine at both ends of a window."""

    def __init__(self, edge: Edge, others: dict[str, int] | None = None) -> None:
        self.edge = edge
        self.others = others or {}

    def __enter__(self) -> Self:
        self._machine = procstat.MachineCpu.read()
        self._t0 = time.monotonic()
        self._edge0 = self.edge.cpu()
        self._kids = self.edge.children()
        self._kids0 = sum(procstat.cpu_seconds(p) for p in self._kids)
        self._others0 = {k: procstat.cpu_seconds(p) for k, p in self.others.items()}
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        edge1 = self.edge.cpu()
        kids1 = sum(procstat.cpu_seconds(p) for p in self._kids)
        # A producer that was restarted inside the window would make its figure meaningless.
        self.producers_same = self.edge.children() == self._kids
        others1 = {k: procstat.cpu_seconds(p) for k, p in self.others.items()}
        self.wall = time.monotonic() - self._t0
        self.edge_cores = (edge1 - self._edge0) / self.wall
        self.producer_cores = (kids1 - self._kids0) / self.wall
        self.other_cores = {k: (others1[k] - self._others0[k]) / self.wall for k in self.others}
        self.box_busy_cores = procstat.MachineCpu.read().busy_cores_since(self._machine, self.wall)

    def as_json(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall, 3),
            "edge_cores": self.edge_cores,
            "producer_cores": self.producer_cores,
            "other_cores": self.other_cores,
            "box_busy_cores": self.box_busy_cores,
            "producer_pids": self._kids,
            "producers_same": self.producers_same,
        }
