"""What the test process watches while the clients run: the server's own view (`/api/status`)
and its process (RSS, open file descriptors, CPU time, from /proc)."""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Poll:
    t: float  # wall time the answer arrived
    state: str | None  # camera state; None when the poll failed
    clients_total: int
    fps: float
    error: str = ""


@dataclass(frozen=True)
class ProcSample:
    t: float
    rss_kib: int
    fds: int
    cpu_s: float
    threads: int


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(m.group(1)) if m else 0


def hwm_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"^VmHWM:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(m.group(1)) if m else 0


def thread_count(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"^Threads:\s+(\d+)", text, re.MULTILINE)
    return int(m.group(1)) if m else 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_targets(pid: int) -> dict[str, int]:
    """Open descriptors by kind (socket, pipe, anon_inode:..., or the file path), for a leak report."""
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        key = target.split(":[", 1)[0] if ":[" in target else target
        kinds[key] = kinds.get(key, 0) + 1
    return kinds


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid``."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


class _Loop(threading.Thread):
    """Calls ``tick`` every ``period`` seconds (on a fixed grid) until stopped."""

    def __init__(self, name: str, period: float) -> None:
        super().__init__(name=name, daemon=True)
        self.period = period
        self._stop_event = threading.Event()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self._stop_event.is_set():
            self.tick()
            next_at += self.period
            if next_at < time.monotonic():
                next_at = time.monotonic()
            self._stop_event.wait(max(0.0, next_at - time.monotonic()))

    def tick(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10.0)


class StatusPoller(_Loop):
    """Polls `/api/status` and records the camera's state.  Each poll is its own connection
    (``Connection: close``), so the poller holds no server descriptor between polls."""

    def __init__(self, url: str, camera: str, period: float, timeout: float) -> None:
        """`url`: the status URL (with the token the server wants)."""
        super().__init__("soak-status", period)
        self.url = url
        self.camera = camera
        self.timeout = timeout
        self.polls: list[Poll] = []

    def tick(self) -> None:
        try:
            with httpx.Client(trust_env=False, timeout=self.timeout, headers={"Connection": "close"}) as client:
                body = client.get(self.url).json()
            cam = next(c for c in body["cameras"] if c["name"] == self.camera)
            self.polls.append(Poll(time.time(), str(cam["state"]), int(body["clients_total"]), float(cam["fps"])))
        except (httpx.HTTPError, ValueError, KeyError, StopIteration) as exc:
            self.polls.append(Poll(time.time(), None, -1, 0.0, f"{type(exc).__name__}: {exc}"[:200]))


class ProcSampler(_Loop):
    """Samples the server process's RSS, descriptor count, CPU time and thread count."""

    def __init__(self, pid: int, period: float) -> None:
        super().__init__("soak-proc", period)
        self.pid = pid
        self.samples: list[ProcSample] = []

    def tick(self) -> None:
        try:
            self.samples.append(
                ProcSample(
                    time.time(),
                    rss_kib(self.pid),
                    fd_count(self.pid),
                    cpu_seconds(self.pid),
                    thread_count(self.pid),
                )
            )
        except (OSError, ValueError):
            pass  # the process is gone; the test notices that on its own
