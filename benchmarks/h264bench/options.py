"""Window lengths and counts of one invocation (``--quick`` shortens every one of them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Options:
    workdir: Path  # configs of the edges started
    cache: Path  # offline encodes, reused across invocations
    quick: bool = False
    warmup: float = 3.0  # after every viewer has data, before a window
    bandwidth_window: float = 10.0  # section 1
    cpu_window: float = 15.0  # section 2, each of the 0-viewer and N-viewer windows
    viewer_counts: tuple[int, ...] = (100, 500)
    first_samples: int = 50  # section 3
    idle_window: float = 20.0  # section 4
    browser_window: float = 10.0  # section 5
    browser_sample_every: float = 0.1
    seed: int = 20261130
    notes: list[str] = field(default_factory=list)

    @classmethod
    def make(cls, workdir: Path, cache: Path, quick: bool) -> Options:
        if not quick:
            return cls(workdir, cache)
        return cls(
            workdir,
            cache,
            quick=True,
            warmup=1.0,
            bandwidth_window=3.0,
            cpu_window=4.0,
            viewer_counts=(20, 100),
            first_samples=8,
            idle_window=5.0,
            browser_window=4.0,
        )
