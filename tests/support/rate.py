"""A legitimate viewer in a process of its own, and its frame rate second by second.

The attack tests (tests/test_hostile.py) prove that no client, however it misbehaves, lowers
another client's frame rate (§7). The viewer that proves it must not share an interpreter
with the attacker: the attacker's own loop would hold the GIL and the viewer would read late
for reasons that have nothing to do with the server. So `RateWatcher` starts
``python -m tests.support.rate URL`` (a raw-socket MJPEG reader, `MjpegStream`) which prints
the `time.monotonic()` of every complete frame (the clock is the same in every process), and
`frames_per_second` counts them in one-second bins over the attack.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from tests.support.mjpeg import MjpegStream
from tests.support.process import REPO_ROOT


@dataclass(frozen=True)
class RateReport:
    per_second: list[int]
    frames: int

    @property
    def worst(self) -> int:
        return min(self.per_second) if self.per_second else 0

    def __str__(self) -> str:
        return f"{self.frames} frames, per second min {self.worst}: {self.per_second}"


class RateWatcher:
    """A viewer subprocess reading ``path`` from the server; `times` are its frames' arrivals."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str = "/stream",
        *,
        headers: Mapping[str, str] | None = None,
        cafile: str | None = None,
    ) -> None:
        scheme = "https" if cafile else "http"
        cmd = [sys.executable, "-m", "tests.support.rate", f"{scheme}://{host}:{port}{path}"]
        for name, value in (headers or {}).items():
            cmd += ["--header", f"{name}: {value}"]
        if cafile:
            cmd += ["--cafile", cafile]
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.times: list[float] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                value = float(line)
                with self._lock:
                    self.times.append(value)

    def wait_frames(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.times) < n:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the viewer got {len(self.times)} frames, not {n}: {self.stderr()}")
            time.sleep(0.05)

    def rate(self, start: float, end: float) -> RateReport:
        """Frames in each whole second from `start` (monotonic) until `end`."""
        with self._lock:
            times = list(self.times)
        bins = [0] * max(int(end - start), 0)
        for t in times:
            i = int(t - start)
            if start <= t and 0 <= i < len(bins):
                bins[i] += 1
        return RateReport(bins, sum(bins))

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()[-2000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(2)


@contextlib.contextmanager
def watching(host: str, port: int, path: str = "/stream", **kwargs: object) -> Iterator[RateWatcher]:
    """A `RateWatcher` that has its first frames, stopped at the end of the block."""
    watcher = RateWatcher(host, port, path, **kwargs)  # type: ignore[arg-type]
    try:
        watcher.wait_frames(5)
        yield watcher
    finally:
        watcher.stop()


def _main() -> int:
    parser = argparse.ArgumentParser(description="print the arrival time of every MJPEG frame")
    parser.add_argument("url")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--cafile")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    url = urlsplit(args.url)
    context = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    headers = dict(h.split(": ", 1) for h in args.header)
    path = url.path + (f"?{url.query}" if url.query else "")
    assert url.hostname is not None and url.port is not None
    stream = MjpegStream(url.hostname, url.port, path, headers=headers, ssl_context=context, timeout=30)
    assert stream.head is not None and stream.head.status == 200, stream.head
    while True:
        stream.read_part()
        print(f"{time.monotonic():.6f}", flush=True)


if __name__ == "__main__":
    sys.exit(_main())
