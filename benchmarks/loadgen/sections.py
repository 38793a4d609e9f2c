"""A benchmark's numbered sections, each run so that one section's failure keeps the others'
figures (the H.264 and publishing benchmarks)."""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from typing import Any


def run_section(
    number: str, name: str, step: Callable[[], dict[str, Any]], log: Callable[[str], None]
) -> tuple[dict[str, Any], bool]:
    """``step``'s figures with the time it took and the load average it started at; ``False``
    (and the error in the figures) when it raised."""
    load_start = list(os.getloadavg())
    log(f"section {number} ({name}), load average {load_start[0]:.2f} ...")
    t0 = time.monotonic()
    ok = True
    try:
        result = step()
    except Exception as exc:  # one section's failure must not lose the others' figures
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
        ok = False
    result["elapsed_s"] = time.monotonic() - t0
    result["loadavg_start"] = load_start
    log(f"section {number} done in {result['elapsed_s']:.0f} s")
    return result, ok
