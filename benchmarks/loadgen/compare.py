"""Edge beside the floor: one table per load, the ratios, and the issue's targets with PASS/FAIL.

Why ratios: the floor (``benchmarks/floor.py``) runs under the same load, back to back with edge
in the same session, so whatever else the shared machine is doing weighs on both. Edge's server
CPU divided by the floor's, and edge's latency p95 minus the floor's, keep their meaning when
the absolute figures drift by ±20 % between runs.

The targets are judged for edge serving the MJPEG file (``edge-file``: passthrough, the same
bytes per frame as the floor); the virtual camera (``edge-virtual``: draws and encodes every
frame) is reported beside with the same checks, for information. Nothing here fails a run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from loadgen import report
from loadgen.servers import LABELS, SERVER_NAMES

REFERENCE = "floor"
JUDGED = "edge-file"
COMPARISON_RUNS = ("100", "200", "500", "ws", "throttled", "throttled30")

MAX_CPU_RATIO = 1.6  # edge's server CPU ÷ the floor's
MIN_FPS = 29.5  # every viewer
MIN_FPS_500 = 28.0
MAX_P95_DELTA_MS = 2.0  # edge's latency p95 − the floor's
WS_WITHIN = 0.10  # 50 MJPEG + 50 WS against 100 MJPEG
MAX_SLOW_AGE_P50_S = 2.0


@dataclass(frozen=True)
class Check:
    """One target: what, the figure as text, and whether it is met (None: no figure)."""

    what: str
    figure: str
    ok: bool | None

    def text(self) -> str:
        """``what figure PASS``."""
        verdict = "no figure" if self.ok is None else ("PASS" if self.ok else "FAIL")
        return f"{self.what} {self.figure} {verdict}"


def server_of(r: dict[str, Any]) -> str:
    """The server a result was measured on (results from before the floor: edge's virtual camera)."""
    return str(r.get("server_kind") or "edge-virtual")


def grouped(results: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{run: {server: result}}``."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in results:
        out.setdefault(r["run"], {})[server_of(r)] = r
    return out


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def cpu(r: dict[str, Any] | None) -> float | None:
    """Server CPU in cores, or None."""
    return None if r is None else _number(r["server"]["cpu_cores"])


def cpu_ratio(r: dict[str, Any] | None, ref: dict[str, Any] | None) -> float | None:
    """``r``'s server CPU ÷ ``ref``'s (None when either is missing or the reference is 0)."""
    a, b = cpu(r), cpu(ref)
    return None if a is None or not b else a / b


def p95(r: dict[str, Any] | None) -> float | None:
    """Latency p95 of the fast clients, ms."""
    return None if r is None else _number(r["fast"]["latency_ms"]["p95"])


def p95_delta(r: dict[str, Any] | None, ref: dict[str, Any] | None) -> float | None:
    """``r``'s latency p95 − ``ref``'s, ms."""
    a, b = p95(r), p95(ref)
    return None if a is None or b is None else a - b


def min_fps(r: dict[str, Any]) -> float | None:
    """The slowest fast client's fps (a failed client counts as 0)."""
    return _number(r["fast"]["fps"]["min"])


def _fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "–" if value is None else f"{value:.{digits}f}{suffix}"


def _signed(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:+.{digits}f}"


def _le(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _ge(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


def checks(run: str, server: str, runs: dict[str, dict[str, dict[str, Any]]]) -> list[Check]:
    """The issue's targets for ``server``'s result of ``run``, against the floor of the same run."""
    rows = runs.get(run, {})
    r, floor = rows.get(server), rows.get(REFERENCE)
    if r is None:
        return []
    ratio, delta, fps = cpu_ratio(r, floor), p95_delta(r, floor), min_fps(r)
    cpu_check = Check("CPU ÷ floor", f"{_fmt(ratio, 2, '×')} (≤ {MAX_CPU_RATIO}×)", _le(ratio, MAX_CPU_RATIO))
    fps_check = Check("min fps", f"{_fmt(fps)} (≥ {MIN_FPS})", _ge(fps, MIN_FPS))
    p95_check = Check("p95 − floor's", f"{_signed(delta)} ms (≤ +{MAX_P95_DELTA_MS:g})", _le(delta, MAX_P95_DELTA_MS))
    if run == "100":
        return [cpu_check, fps_check, p95_check]
    if run == "200":
        return [cpu_check, fps_check]
    if run == "500":
        return [Check("min fps", f"{_fmt(fps)} (≥ {MIN_FPS_500})", _ge(fps, MIN_FPS_500))]
    if run == "ws":
        base = runs.get("100", {})
        ws_ratio, base_ratio = ratio, cpu_ratio(base.get(server), base.get(REFERENCE))
        change = None if ws_ratio is None or base_ratio is None else ws_ratio / base_ratio - 1.0
        figure = f"{_fmt(ws_ratio, 2, '×')} vs {_fmt(base_ratio, 2, '×')} at 100 MJPEG: {_signed(_pct(change), 0)} %"
        return [
            Check("CPU ÷ floor", f"{figure} (≤ +{WS_WITHIN:.0%})", _le(change, WS_WITHIN)),
            fps_check,
        ]
    if run.startswith("throttled"):
        slow = r.get("throttled") or {}
        age = (slow.get("age_s") or {}).get("p50")
        return [
            Check(
                "slow readers' frame age p50",
                f"{_fmt(age, 3)} s (≤ {MAX_SLOW_AGE_P50_S:g})",
                _le(age, MAX_SLOW_AGE_P50_S),
            ),
            Check("fast min fps", f"{_fmt(fps)} (≥ {MIN_FPS})", _ge(fps, MIN_FPS)),
            Check("fast p95 − floor's", f"{_signed(delta)} ms (≤ +{MAX_P95_DELTA_MS:g})", _le(delta, MAX_P95_DELTA_MS)),
        ]
    return []


def _pct(change: float | None) -> float | None:
    return None if change is None else change * 100.0


def overall(found: list[Check]) -> str:
    """PASS when every check passes; FAIL when one fails; incomplete when a figure is missing."""
    if any(c.ok is False for c in found):
        return "FAIL"
    if not found or any(c.ok is None for c in found):
        return "incomplete"
    return "PASS"


HEADER = (
    "| server | min fps | median fps | latency p50 / p95 ms | p95 − floor's ms | server CPU cores | ÷ floor "
    "| MB/s sent | client CPU cores | box busy cores | slow age p50 / p95 s | bad | load1 |\n"
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
)


def row(r: dict[str, Any], floor: dict[str, Any] | None) -> str:
    """One server's line in a run's comparison table."""
    fast, slow = r["fast"], r.get("throttled") or {}
    age = slow.get("age_s") or {}
    bad = fast["bad_jpeg"] + fast["framing_errors"] + fast["failed"] + slow.get("bad_jpeg", 0)
    lat = fast["latency_ms"]
    is_floor = server_of(r) == REFERENCE
    cells = [
        LABELS.get(server_of(r), server_of(r)),
        _fmt(fast["fps"]["min"]),
        _fmt(fast["fps"]["median"]),
        f"{_fmt(lat['p50'])} / {_fmt(lat['p95'])}",
        "reference" if is_floor else _signed(p95_delta(r, floor)),
        _fmt(cpu(r), 3),
        "reference" if is_floor else _fmt(cpu_ratio(r, floor), 2, "×"),
        _fmt(fast["mbytes_per_s"], 1),
        _fmt(r["client"]["cpu_cores"], 2),
        _fmt(r.get("machine_busy_cores"), 2),
        f"{_fmt(age.get('p50'), 2)} / {_fmt(age.get('p95'), 2)}" if slow else "–",
        str(bad),
        _fmt(r["machine"]["loadavg_start"][0], 2),
    ]
    return "| " + " | ".join(cells) + " |"


def _lag_p99(r: dict[str, Any]) -> float | None:
    """How late the load client's own 50 ms timer fired (p99 over workers, ms): a late client loop
    reads late, its sockets fill, and the server skips frames for it, whatever the server."""
    lags = [w["loop_lag_ms"].get("p99") for w in r["client"].get("workers", []) if w.get("loop_lag_ms")]
    lags = [v for v in lags if v is not None]
    return max(lags) if lags else None


def _limit_note(run: str, rows: dict[str, dict[str, Any]]) -> str | None:
    """500 viewers: the load client's CPU and lateness per server, and whether it, not edge, set the limit."""
    if run != "500" or JUDGED not in rows:
        return None
    edge, floor = rows[JUDGED], rows.get(REFERENCE)
    nproc = edge["machine"]["nproc"]
    parts = []
    for s in SERVER_NAMES:
        if s in rows:
            r = rows[s]
            parts.append(
                f"{s} {r['client']['cpu_cores']:.2f} cores, loop late by {_fmt(_lag_p99(r))} ms (p99), "
                f"box {_fmt(r.get('machine_busy_cores'), 2)} of {nproc} cores busy"
            )
    text = "Load client: " + "; ".join(parts) + "."
    period_ms = 1000.0 / 30.0
    floor_fps, edge_fps, lag = (min_fps(floor) if floor else None), min_fps(edge), _lag_p99(edge)
    if floor_fps is not None and floor_fps < MIN_FPS_500:
        text += " The floor misses the target too: the load client and the machine, not edge, set the limit."
    elif edge_fps is not None and edge_fps < MIN_FPS_500 and lag is not None and lag > 2 * period_ms:
        text += (
            f" In edge's run the client's loop was late by more than two frame periods ({lag:.0f} ms): frames it did"
            " not read in time were skipped for it, so the client shares the blame for the missed target."
        )
    return text


def _floor_note(run: str, rows: dict[str, dict[str, Any]]) -> str | None:
    """An absolute target (fps, frame age) that the floor itself misses is beyond this load on this machine."""
    floor = rows.get(REFERENCE)
    if floor is None:
        return None
    absolute = [c for c in checks(run, REFERENCE, {run: rows}) if c.ok is False and "floor" not in c.what]
    if not absolute:
        return None
    missed = "; ".join(c.text() for c in absolute)
    return f"The floor itself: {missed}. This is beyond what the smallest server does under this load on this machine."


def _trend_note(r: dict[str, Any]) -> str | None:
    """Long throttled run: does the slow readers' age stay flat (per-bucket medians, trend)?"""
    slow = r.get("throttled")
    if not slow or r["params"]["duration_s"] < report.MIN_TREND_S:
        return None
    slope = slow.get("age_slope_s_per_s")
    growth = None if slope is None else slope * r["params"]["duration_s"]
    medians = ", ".join(_fmt(b["p50"], 2) for b in slow["buckets"])
    flat = growth is not None and abs(growth) <= 0.5
    return (
        f"{LABELS[server_of(r)]}: slow readers' age per {slow['buckets'][0]['to_s']:g} s bucket (p50) [{medians}] s, "
        f"trend {_signed(growth, 2)} s over the run ({'flat' if flat else 'NOT flat'}: within ±0.5 s)"
    )


def run_section(run: str, runs: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Heading, the table of every server measured for this run, targets, notes."""
    rows = runs[run]
    any_r = next(iter(rows.values()))
    floor = rows.get(REFERENCE)
    lines = [f"### {run}: {any_r['description']}", "", HEADER]
    lines += [row(rows[s], floor) for s in SERVER_NAMES if s in rows]
    lines.append("")
    for server in (JUDGED, "edge-virtual"):
        found = checks(run, server, runs)
        if not found:
            continue
        role = "target" if server == JUDGED else "same checks, for information"
        lines.append(
            f"- {LABELS[server]} ({role}): " + " · ".join(c.text() for c in found) + f" → **{overall(found)}**"
        )
    notes = [_floor_note(run, rows), _limit_note(run, rows), *(_trend_note(rows[s]) for s in SERVER_NAMES if s in rows)]
    lines += [f"- {n}" for n in notes if n]
    if floor is None:
        lines.append("- no floor measured for this run: no ratios")
    lines.append("")
    return lines


def verdict_lines(runs: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """One line per comparison run for the top of the summary."""
    lines = []
    for run in COMPARISON_RUNS:
        found = checks(run, JUDGED, runs)
        if found:
            lines.append(f"- {run}: **{overall(found)}** ({'; '.join(c.text() for c in found)})")
    return lines


def markdown(results: list[dict[str, Any]], commands: list[str]) -> str:
    """summary.md: machine, how to read it, verdicts, one table per load, then every run in full."""
    if not results:
        return "No results.\n"
    runs = grouped(results)
    m = results[0]["machine"]
    dates = sorted(r["machine"]["date"] for r in results)
    loads = [r["machine"]["loadavg_start"][0] for r in results]
    compared = [run for run in runs if len(runs[run]) > 1 or REFERENCE in runs[run]]
    lines = [
        "# edge load benchmark",
        "",
        (
            f"{dates[0]} – {dates[-1]} · {m['nproc']} CPUs ({m['cpu_model']}) · Python {m['python']} · "
            f"kernel {m['kernel']} · server commit {m.get('git_commit') or 'uncommitted'} (plus the working tree) · "
            f"1-min load average {min(loads):.2f}–{max(loads):.2f} at run starts · "
            + ("commands: " if len(commands) > 1 else "command: ")
            + ", ".join(f"`{c}`" for c in commands)
        ),
        "",
        (
            "Each load runs against each server in turn, back to back, a fresh server process per run: the floor "
            "(`benchmarks/floor.py`: one uvloop timer writes pre-framed bytes to every viewer), edge serving an "
            "MJPEG file passed through (the very JPEGs the floor sends), and edge's virtual camera (draws and encodes "
            "every frame). **÷ floor** = the server's CPU over the floor's in the same load; **p95 − floor's** = its "
            "latency p95 minus the floor's. Server and load client share the machine; the targets are judged for "
            "the file passthrough."
        ),
        "",
    ]
    verdicts = verdict_lines(runs)
    if verdicts:
        lines += ["## Targets (edge, MJPEG file passthrough)", "", *verdicts, ""]
    if compared:
        lines += ["## Edge beside the floor", ""]
        for run in compared:
            lines += run_section(run, runs)
    lines += [
        "## Every run",
        "",
        report.HEADER.replace("| run |", "| run · server |", 1),
        *(report.table_row(r) for r in results),
        "",
    ]
    legacy = [r for r in results if server_of(r) == "edge-virtual"]
    notes = report.target_notes(legacy)
    if notes:
        lines += ["Edge's virtual camera against the earlier absolute targets:", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(lines)
