"""Fault windows, per-client rates outside them, and the figure table."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence

import numpy as np

from tests.soak.monitor import Poll, ProcSample

Interval = tuple[float, float]


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Union of intervals, sorted, overlapping or touching ones joined."""
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def subtract(span: Interval, holes: Sequence[Interval]) -> list[Interval]:
    """``span`` minus the (merged) ``holes``."""
    out: list[Interval] = []
    cursor, end = span
    for h0, h1 in holes:
        if h1 <= cursor or h0 >= end:
            continue
        if h0 > cursor:
            out.append((cursor, h0))
        cursor = max(cursor, h1)
        if cursor >= end:
            break
    if cursor < end:
        out.append((cursor, end))
    return out


def total(intervals: Iterable[Interval]) -> float:
    return sum(b - a for a, b in intervals)


def overlaps(a: Interval, b: Interval) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def fault_windows(polls: Sequence[Poll], outages: Sequence[Interval], margin: float) -> list[Interval]:
    """When the camera may not have been delivering real frames, from the server's own view.

    A run of polls whose state is not ``streaming`` makes a window from the last ``streaming``
    poll before it (the fault started after that answer) to the first ``streaming`` poll after it
    plus ``margin``; each scheduled upstream outage (down .. up) plus ``margin`` is a window too, in
    case the server noticed late or recovered between two polls.  Failed polls say nothing
    either way and make no window: a server too stuck to answer must show up in the clients' rates,
    not be excused by the method.
    """
    raw: list[Interval] = []
    known = [p for p in polls if p.state is not None]
    i = 0
    while i < len(known):
        if known[i].state == "streaming":
            i += 1
            continue
        j = i
        while j < len(known) and known[j].state != "streaming":
            j += 1
        start = known[i - 1].t if i > 0 else known[i].t
        end = known[j].t + margin if j < len(known) else math.inf
        raw.append((start, end))
        i = j
    for down, up in outages:
        raw.append((down, (math.inf if math.isnan(up) else up) + margin))
    return merge(raw)


def unexplained(windows: Sequence[Interval], outages: Sequence[Interval]) -> list[Interval]:
    """Fault windows that contain no scheduled outage: the camera failed by itself."""
    spans = [(d, math.inf if math.isnan(u) else u) for d, u in outages]
    return [w for w in windows if not any(overlaps(w, o) for o in spans)]


def recoveries(polls: Sequence[Poll], outages: Sequence[Interval]) -> list[float]:
    """Per outage: seconds from the upstream coming back to the first ``streaming`` poll after
    the server had noticed the outage (inf if it never streamed again)."""
    out = []
    known = [p for p in polls if p.state is not None]
    for down, up in outages:
        noticed = next((p.t for p in known if p.t >= down and p.state != "streaming"), None)
        if noticed is None or math.isnan(up):
            out.append(math.inf)
            continue
        back = next((p.t for p in known if p.t >= max(noticed, up) and p.state == "streaming"), None)
        out.append(math.inf if back is None else max(0.0, back - up))
    return out


def detections(polls: Sequence[Poll], outages: Sequence[Interval]) -> list[float]:
    """Per outage: seconds from the upstream going down to the first poll that is not ``streaming``."""
    known = [p for p in polls if p.state is not None]
    return [
        next((p.t - down for p in known if p.t >= down and p.state != "streaming"), math.inf) for down, _ in outages
    ]


def count_in(times: np.ndarray, intervals: Sequence[Interval]) -> int:
    """How many of the sorted ``times`` fall inside the intervals."""
    n = 0
    for a, b in intervals:
        n += int(np.searchsorted(times, b, "left") - np.searchsorted(times, a, "left"))
    return n


def median_in(samples: Sequence[ProcSample], a: float, b: float, attr: str) -> float:
    values = [getattr(s, attr) for s in samples if a <= s.t <= b]
    return float(statistics.median(values)) if values else math.nan


def percentile_from_hist(hist: Sequence[int], q: float) -> float:
    """The q-quantile (0..1) of a 1-ms-bin histogram, in ms."""
    n = sum(hist)
    if not n:
        return math.nan
    want = q * n
    acc = 0
    for i, v in enumerate(hist):
        acc += v
        if acc >= want:
            return float(i)
    return float(len(hist) - 1)


def fmt_counts(counts: dict[str, int], limit: int = 12) -> str:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{k} ×{v}" for k, v in items[:limit])
    return text + (f", … {len(items) - limit} more" if len(items) > limit else "")


def table(rows: Sequence[tuple[str, str, str]]) -> str:
    """A compact Markdown table: figure | value | limit / verdict."""
    header = ("figure", "value", "limit")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join(lines)
