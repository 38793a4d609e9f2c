"""Turns per-client records into run figures, JSON files and the summary's per-run table rows.

The summary itself (servers side by side, ratios to the floor) is built by ``compare.py``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

FAST_KINDS = ("mjpeg", "ws")
SLOW_FPS = 29.0
# With one read per 0.5 s, ages step in 0.5 s; a trend needs a long run to mean anything.
MIN_TREND_S = 20.0


def _pcts(values: np.ndarray, qs: tuple[int, ...], scale: float = 1.0) -> dict[str, float | None]:
    """Named percentiles (``p50``...) plus ``max``, ``None`` when there are no samples."""
    if not values.size:
        return {**{f"p{q}": None for q in qs}, "max": None}
    out: dict[str, float | None] = {f"p{q}": round(float(np.percentile(values, q)) * scale, 3) for q in qs}
    out["max"] = round(float(values.max()) * scale, 3)
    return out


def _fps(clients: list[dict[str, Any]], duration: float) -> np.ndarray:
    """Delivered fps per client; a failed client delivered nothing, so it counts as 0."""
    return np.array([0.0 if c["failure"] else c["frames_window"] / duration for c in clients], dtype=float)


def _fps_summary(fps: np.ndarray) -> dict[str, float | None]:
    if not fps.size:
        return {"min": None, "median": None, "mean": None, "max": None}
    return {
        "min": round(float(fps.min()), 2),
        "median": round(float(np.median(fps)), 2),
        "mean": round(float(fps.mean()), 2),
        "max": round(float(fps.max()), 2),
    }


def _concat(clients: list[dict[str, Any]], key: str) -> np.ndarray:
    arrays = [c[key] for c in clients if len(c[key])]
    return np.concatenate(arrays) if arrays else np.empty(0)


def summarize_group(clients: list[dict[str, Any]], duration: float) -> dict[str, Any]:
    """Figures for a group of always-reading clients (MJPEG and/or WebSocket)."""
    fps = _fps(clients, duration)
    first = np.array([c["first_frame_s"] for c in clients if c["frames_total"]], dtype=float)
    return {
        "count": len(clients),
        "failed": sum(1 for c in clients if c["failure"]),
        "fps": _fps_summary(fps),
        "clients_below_29fps": int((fps < SLOW_FPS).sum()),
        "latency_ms": _pcts(_concat(clients, "lags"), (50, 95, 99), 1000.0),
        "first_frame_ms": _pcts(first, (50, 95), 1000.0),
        "bad_jpeg": sum(c["bad_jpeg"] for c in clients),
        "framing_errors": sum(sum(c["errors"].values()) for c in clients),
        "repeated_frames": sum(c["repeats"] for c in clients),
        "ws_seq_skipped": sum(c["skipped"] for c in clients),
        "ended_early": sum(1 for c in clients if c["ended_early"]),
        "max_boundary_wait_ms": round(max((c["max_boundary_wait_s"] for c in clients), default=0.0) * 1000, 2),
        "mbytes_per_s": round(sum(c["bytes"] for c in clients) / 1e6 / max(duration, 1e-9), 2),
    }


def summarize_throttled(clients: list[dict[str, Any]], t0: float, duration: float, bucket_s: float) -> dict[str, Any]:
    """Frame age of slow readers, overall and per time bucket, plus its trend.

    The trend (least-squares slope of age against arrival time) is what says "flat": a server
    that queues for slow readers shows a positive slope of roughly 1 s per s.
    """
    ages, arrivals = _concat(clients, "lags"), _concat(clients, "arrivals") - t0
    buckets = []
    for start in np.arange(0.0, duration, bucket_s):
        inside = ages[(arrivals >= start) & (arrivals < start + bucket_s)]
        buckets.append(
            {
                "from_s": float(start),
                "to_s": float(min(start + bucket_s, duration)),
                "frames": int(inside.size),
                **_pcts(inside, (50, 95)),
            }
        )
    slope = float(np.polyfit(arrivals, ages, 1)[0]) if ages.size >= 3 else None
    first = np.array([c["first_frame_s"] for c in clients if c["frames_total"]], dtype=float)
    return {
        "count": len(clients),
        "failed": sum(1 for c in clients if c["failure"]),
        "fps": _fps_summary(_fps(clients, duration)),
        "age_s": _pcts(ages, (50, 95)),
        "age_slope_s_per_s": None if slope is None else round(slope, 4),
        "buckets": buckets,
        "first_frame_s": _pcts(first, (50, 95)),
        "bad_jpeg": sum(c["bad_jpeg"] for c in clients),
        "framing_errors": sum(sum(c["errors"].values()) for c in clients),
        "rcvbuf_effective": sorted({c["info"].get("rcvbuf_effective") for c in clients} - {None}),
    }


def per_client_rows(clients: list[dict[str, Any]], duration: float) -> list[dict[str, Any]]:
    """A compact line per client, so a slow outlier can be found and inspected."""
    rows = []
    for c in clients:
        lags = c["lags"] * 1000.0
        rows.append(
            {
                "kind": c["kind"],
                "fps": 0.0 if c["failure"] else round(c["frames_window"] / duration, 2),
                "lag_p50_ms": round(float(np.percentile(lags, 50)), 2) if lags.size else None,
                "lag_p95_ms": round(float(np.percentile(lags, 95)), 2) if lags.size else None,
                "first_frame_ms": round(c["first_frame_s"] * 1000.0, 1) if c["frames_total"] else None,
                "bad_jpeg": c["bad_jpeg"],
                "errors": c["errors"] or None,
                "failure": c["failure"],
            }
        )
    return rows


def problems(clients: list[dict[str, Any]]) -> dict[str, Any]:
    """Distinct failures, protocol errors and deviations from docs/interface.md seen by any client."""
    failures = Counter(c["failure"] for c in clients if c["failure"])
    errors: Counter[str] = Counter()
    for c in clients:
        errors.update(c["errors"])
    head = sorted({p for c in clients for p in c["info"].get("head_problems", [])})
    exts = sorted({str(c["info"].get("extensions")) for c in clients if c["kind"] == "ws"})
    return {
        "failures": dict(failures),
        "errors": dict(errors),
        "head_problems": head,
        "ws_extensions": exts,
        "chunked": sorted({c["info"]["chunked"] for c in clients if "chunked" in c["info"]}),
    }


def status_digest(status: dict[str, Any] | None) -> dict[str, Any] | None:
    """The server's own view at the end of the window, reduced to totals (it can be large)."""
    if not status:
        return None
    cameras = []
    for cam in status.get("cameras", []):
        listed = cam.get("clients", [])
        cameras.append(
            {
                "name": cam.get("name"),
                "state": cam.get("state"),
                "fps": cam.get("fps"),
                "frames_captured": cam.get("frames_captured"),
                "clients_listed": len(listed),
                "frames_dropped": sum(int(c.get("frames_dropped", 0)) for c in listed),
            }
        )
    return {"clients_total": status.get("clients_total"), "cameras": cameras}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write one run's result file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table_row(r: dict[str, Any]) -> str:
    """One Markdown row; see README.md for the meaning of each column."""
    fast, slow = r["fast"], r.get("throttled") or {}
    n = r["clients"]
    label = f"{n['mjpeg']}"
    if n["ws"]:
        label += f" + {n['ws']} ws"
    if n["throttled"]:
        label += f" + {n['throttled']} slow"
    age = slow.get("age_s", {})
    ages = f"{_fmt(age.get('p50'), 2)} / {_fmt(age.get('p95'), 2)}" if slow else "–"
    bad = fast["bad_jpeg"] + fast["framing_errors"] + slow.get("bad_jpeg", 0)
    cells = [
        f"{r['run']} · {r['server_kind']}" if r.get("server_kind") else r["run"],
        label,
        _fmt(fast["fps"]["min"]),
        _fmt(fast["fps"]["median"]),
        _fmt(fast["latency_ms"]["p50"]),
        _fmt(fast["latency_ms"]["p95"]),
        _fmt(fast["first_frame_ms"]["p95"], 0),
        _fmt(r["server"]["cpu_cores"], 3),
        _fmt(r["server"]["rss_mb"], 0),
        _fmt(r["client"]["cpu_cores"], 2),
        ages,
        str(bad + fast["failed"]),
        _fmt(r["machine"]["loadavg_start"][0], 2),
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| run | clients | min fps | median fps | latency p50 ms | latency p95 ms "
    "| first frame p95 ms | server CPU cores | server RSS MB | client CPU cores "
    "| slow age p50 / p95 s | bad | load1 |\n"
    "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
)


def target_notes(results: list[dict[str, Any]]) -> list[str]:
    """Compare with the targets the numbers are judged against (reported, never asserted)."""
    notes = []
    for r in results:
        fast, cpu = r["fast"], r["server"]["cpu_cores"]
        fps_min, p95 = fast["fps"]["min"], fast["latency_ms"]["p95"]
        name = r["run"]
        if name == "100":
            ok = fps_min >= 29 and p95 is not None and p95 <= 12 and cpu <= 0.20
            notes.append(
                f"100 clients: min fps {fps_min} (≥ 29), p95 {p95} ms (≤ 12), "
                f"server CPU {cpu} (≤ 0.20) → {'met' if ok else 'NOT met'}"
            )
        elif name == "200":
            notes.append(f"200 clients: min fps {fps_min} (≥ 29) → {'met' if fps_min >= 29 else 'NOT met'}")
        elif name == "500":
            notes.append(f"500 clients: min fps {fps_min} (aim ≥ 25) → {'met' if fps_min >= 25 else 'not met'}")
        elif r.get("throttled"):
            notes.append(_throttled_note(r))
    return notes


def _throttled_note(r: dict[str, Any]) -> str:
    slow, fast = r["throttled"], r["fast"]
    p50, slope = slow["age_s"]["p50"], slow["age_slope_s_per_s"]
    duration = r["params"]["duration_s"]
    growth = None if slope is None else slope * duration
    judged = duration >= MIN_TREND_S
    flat = growth is not None and abs(growth) <= 0.5
    ok = p50 is not None and p50 <= 2.6 and (flat or not judged) and fast["fps"]["min"] >= 29
    medians = ", ".join(_fmt(b["p50"], 2) for b in slow["buckets"])
    trend = (
        f"trend {_fmt(growth, 2)} s over the run (flat = within ±0.5 s)"
        if judged
        else f"run too short to judge the trend (< {MIN_TREND_S:.0f} s)"
    )
    return (
        f"{r['run']}: slow age p50 {p50} s (≤ 2.6), {trend}, per-bucket p50 [{medians}] s, "
        f"fast min fps {fast['fps']['min']} (≥ 29) → {'met' if ok else 'NOT met'}"
    )
