"""Readings from /proc: CPU time and memory of processes, whole-machine CPU, machine facts.

CPU is sampled as cumulative ``utime + stime`` at the start and end of the measurement window;
the difference divided by wall time is "cores used" (1.0 = one core busy all the time). This
counts every thread of the process, which is what matters on a 2-core machine.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may contain spaces)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds; 0 if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After ")": state(0) ppid(1) ... utime(11) stime(12)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, so a server that forks helpers is fully counted."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo and len(found) < 10_000:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants."""
    return sum(cpu_seconds(p) for p in descendants(pid))


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` value from /proc/PID/status (e.g. VmRSS, VmHWM), 0 if unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def thread_count(pid: int) -> int:
    """Number of threads in the process (a leak here would show as growing RSS too)."""
    return status_kib(pid, "Threads")


@dataclass
class MachineCpu:
    """Cumulative busy and total jiffies of all CPUs, from the first line of /proc/stat."""

    busy: int
    total: int

    @classmethod
    def read(cls) -> MachineCpu:
        """Sample now."""
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        total = sum(values[:8])
        return cls(busy=total - idle, total=total)

    def busy_cores_since(self, earlier: MachineCpu, wall: float) -> float:
        """Cores busy (any process) between two samples: shows whether the box was saturated."""
        return (self.busy - earlier.busy) / CLK_TCK / wall if wall > 0 else 0.0


def cpu_model() -> str:
    """The CPU model name as /proc/cpuinfo reports it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit(repo: Path) -> str | None:
    """The server repo's HEAD commit, so results can be tied to a version (None if none yet)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def machine_info(repo: Path) -> dict[str, object]:
    """Facts a reader needs to compare numbers across machines and runs."""
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "loadavg_start": list(os.getloadavg()),
        "python": sys.version.split()[0],
        "kernel": platform.release(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(repo),
    }


def listening_ports(pid: int) -> list[int]:
    """TCP ports on which ``pid`` has a listening socket (IPv4 and IPv6).

    Used only when the server does not print its ``listening on`` line (e.g. because the
    line is logged below the chosen log level): the socket inodes in /proc/PID/fd are
    matched against the LISTEN entries of /proc/net/tcp{,6}.
    """
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(set(ports))
