"""A server's memory and open files watched while a test does something to it.

A hostile client or a failing publish target must cost the server bounded resources: the tests
sample its RSS and its open file descriptors in a thread while the fault lasts, and compare the
highest readings with the first.
"""

from __future__ import annotations

import os
import threading

from tests.support.process import EdgeServer


def open_files(server: EdgeServer) -> int:
    """How many file descriptors the server process has open, from /proc (Linux)."""
    return len(os.listdir(f"/proc/{server.proc.pid}/fd"))


class ResourcePeaks:
    """Samples ``server``'s RSS and open files every ``every`` seconds in a thread, from its
    creation until :meth:`stop`; the growths are the highest readings less the first."""

    def __init__(self, server: EdgeServer, every: float) -> None:
        self.server = server
        self.every = every
        self.rss_base = self.rss_peak = server.rss_kib()
        self.fds_base = self.fds_peak = open_files(server)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            try:
                rss, fds = self.server.rss_kib(), open_files(self.server)
            except (OSError, AssertionError):  # the server ended (a test failed meanwhile)
                return
            self.rss_peak = max(self.rss_peak, rss)
            self.fds_peak = max(self.fds_peak, fds)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    @property
    def rss_growth_kib(self) -> int:
        return self.rss_peak - self.rss_base

    @property
    def fds_growth(self) -> int:
        return self.fds_peak - self.fds_base
