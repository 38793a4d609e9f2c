"""``results/sources/summary.md``: the CPU table, the wake-up table and the verdicts against
issue 8's targets, built from the runs' result documents."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from sourcebench.runs import (
    IDLE_AFTER,
    MJPEG_QSCALE,
    MODE_LABELS,
    PASSTHROUGH_SOURCES,
    QUALITY,
    RUNS,
    SOURCE_LABELS,
    TARGET_IDLE,
    TARGET_PASSTHROUGH_720_1VIEWER,
    TARGET_WAKE_MS,
    RunSpec,
)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def verdict(value: float | None, limit: float) -> str:
    """PASS/FAIL against an upper limit; no figure, no verdict."""
    if value is None:
        return "no figure"
    return "PASS" if value <= limit else "FAIL"


def _by_name(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["run"]: r for r in results if not r.get("error")}


def reference(r: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ``never`` run of the same size and viewers that a passthrough run is compared with."""
    if r["source"] not in PASSTHROUGH_SOURCES or r["mode"] == "wake":
        return None
    p = r["params"]
    name = RunSpec("never", p["width"], p["height"], r["mode"]).name
    return _by_name(results).get(name)


def ratio(value: float, ref: float) -> str:
    """``value / ref`` as ``0.12×``; a zero reference has no ratio."""
    return f"{value / ref:.2f}×" if ref > 0 else "–"


def ratio_cell(r: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """Server cores ÷ never's; for a pipe also (server + children) ÷ never's."""
    if r["source"] == "never":
        return "reference"
    ref = reference(r, results)
    if ref is None:
        return "–"
    base = ref["cpu"]["server_cores"]
    cell = ratio(r["cpu"]["server_cores"], base)
    if r["source"] == "pipe":
        cell += f" (+children {ratio(r['cpu']['tree_cores'], base)})"
    return cell


def cpu_target(r: dict[str, Any]) -> str:
    """The issue's target for this row, with PASS/FAIL, or – when none applies."""
    p, cpu = r["params"], r["cpu"]
    if r["mode"] == "idle":
        text = f"≤ {TARGET_IDLE}: {verdict(cpu['server_cores'], TARGET_IDLE)}"
        if r["source"] == "pipe":
            text += f"; +children {verdict(cpu['tree_cores'], TARGET_IDLE)}"
        return text
    if r["mode"] == "1viewer" and r["source"] in PASSTHROUGH_SOURCES and (p["width"], p["height"]) == (1280, 720):
        limit = TARGET_PASSTHROUGH_720_1VIEWER
        text = f"≤ {limit}: {verdict(cpu['server_cores'], limit)}"
        if r["source"] == "pipe":
            text += f"; +children {verdict(cpu['tree_cores'], limit)}"
        return text
    return "–"


CPU_HEADER = (
    "| source | size | viewers | server cores | server + children cores | ÷ never (server) | viewer fps "
    "| server RSS MB | camera fps in window | box busy cores | load1 | target |\n"
    "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|"
)


def cpu_row(r: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """One row of the CPU table (a failed run says why instead)."""
    p = r["params"]
    size = f"{p['width']}x{p['height']}"
    head = [SOURCE_LABELS[r["source"]], size, MODE_LABELS[r["mode"]]]
    if r.get("error"):
        reason = r["error"].splitlines()[0][:160].replace("|", "/")
        return "| " + " | ".join([*head, f"FAILED: {reason}", *["–"] * 8]) + " |"
    cpu, viewer = r["cpu"], r.get("viewer")
    cells = [
        *head,
        _fmt(cpu["server_cores"], 4),
        _fmt(cpu["tree_cores"], 4),
        ratio_cell(r, results),
        _fmt(viewer["fps"], 1) if viewer else "–",
        _fmt(r["memory"]["server_rss_mb"], 0),
        _fmt(r["camera"]["capture_fps"], 1),
        _fmt(cpu["machine_busy_cores"], 2),
        _fmt(r["machine"]["loadavg_start"][0], 2),
        cpu_target(r),
    ]
    return "| " + " | ".join(cells) + " |"


WAKE_HEADER = (
    "| source | size | samples | not fresh | (a) request → response ms, median / max "
    "| (b) capture − request ms, median / max | load1 | target (a) ≤ 150 ms |\n"
    "|---|---|--:|--:|--:|--:|--:|---|"
)


def wake_target(r: dict[str, Any]) -> str:
    """Target for virtual and files: judged on the median and on the worst sample."""
    if r["source"] == "pipe":
        return "– (no target for pipes)"
    a = r["wake"]["response_ms"]
    return f"median {verdict(a['median'], TARGET_WAKE_MS)}, max {verdict(a['max'], TARGET_WAKE_MS)}"


def wake_row(r: dict[str, Any]) -> str:
    """One row of the wake-up table."""
    p = r["params"]
    head = [SOURCE_LABELS[r["source"]], f"{p['width']}x{p['height']}"]
    if r.get("error"):
        reason = r["error"].splitlines()[0][:160].replace("|", "/")
        return "| " + " | ".join([*head, "–", "–", f"FAILED: {reason}", "–", "–", "–"]) + " |"
    w = r["wake"]
    a, b = w["response_ms"], w["capture_minus_sent_ms"]
    cells = [
        *head,
        str(w["count"]),
        str(w["not_fresh"]),
        f"{_fmt(a['median'], 1)} / {_fmt(a['max'], 1)}",
        f"{_fmt(b['median'], 1)} / {_fmt(b['max'], 1)}",
        _fmt(r["machine"]["loadavg_start"][0], 2),
        wake_target(r),
    ]
    return "| " + " | ".join(cells) + " |"


def target_lines(results: list[dict[str, Any]]) -> list[str]:
    """One line per figure that a target of the issue applies to, with PASS/FAIL."""
    lines = []
    for r in results:
        if r.get("error"):
            continue
        p = r["params"]
        where = f"{SOURCE_LABELS[r['source']]} {p['width']}x{p['height']}"
        if r["mode"] == "wake" and r["source"] != "pipe":
            a = r["wake"]["response_ms"]
            lines.append(
                f"wake-up ≤ {TARGET_WAKE_MS:g} ms, {where}: median {_fmt(a['median'], 1)} ms "
                f"{verdict(a['median'], TARGET_WAKE_MS)}, "
                f"max {_fmt(a['max'], 1)} ms {verdict(a['max'], TARGET_WAKE_MS)}"
            )
        elif r["mode"] != "wake" and cpu_target(r) != "–":
            limit = TARGET_IDLE if r["mode"] == "idle" else TARGET_PASSTHROUGH_720_1VIEWER
            what = "0 viewers after idle" if r["mode"] == "idle" else "passthrough 1280x720@30, 1 viewer"
            cpu = r["cpu"]
            line = f"{what} ≤ {limit} cores, {where}: server {cpu['server_cores']:.4f} "
            line += verdict(cpu["server_cores"], limit)
            if r["source"] == "pipe":
                line += f"; server + producer {cpu['tree_cores']:.4f} {verdict(cpu['tree_cores'], limit)}"
            lines.append(line)
    return lines


def markdown(results: list[dict[str, Any]]) -> str:
    """summary.md: machine line, CPU table, wake-up table, warnings and failures."""
    if not results:
        return "No results.\n"
    order = {name: i for i, name in enumerate(RUNS)}
    results = sorted(results, key=lambda r: order.get(r["run"], len(order)))
    m = results[0]["machine"]
    dates = sorted(r["machine"]["date"] for r in results)
    cpu_runs = [r for r in results if r["mode"] != "wake"]
    wake_runs = [r for r in results if r["mode"] == "wake"]
    params = next((r["params"] for r in cpu_runs if r["params"].get("duration_s")), {})
    command = results[-1]["params"].get("command") or ["sources.py"]
    lines = [
        "# edge: CPU per camera source, and wake-up from idle",
        "",
        (
            f"{dates[0]} – {dates[-1]} · {m['nproc']} CPUs ({m['cpu_model']}) · Python {m['python']} · "
            f"kernel {m['kernel']} · server commit {m.get('git_commit') or 'uncommitted'} (plus the working tree) · "
            f"command: `{shlex.join(['.venv/bin/python', 'benchmarks/sources.py', *command[1:]])}`"
        ),
        "",
        (
            f"30 fps; {params.get('duration_s', '?')} s window after {params.get('warmup_s', '?')} s warm-up per run; "
            f"a fresh server per run. The file is FFmpeg `testsrc2` as MJPEG (`-q:v {MJPEG_QSCALE}`), passed at its "
            f"own size; `never` decodes it and encodes at quality {QUALITY}, as does the virtual camera. Idle rows use "
            f"`idle_after: {IDLE_AFTER}` (the default is 10 s) and are measured once `/api/status` said `idle`. "
            "cores = (utime + stime) / wall; server + children adds the pipe's FFmpeg producer. "
            '"box busy cores" is the whole machine in the window (other work skews the figures). '
            "÷ never: server cores over those of `passthrough: never` at the same size and viewers; for idle "
            "rows both are near the noise floor (a few 10 ms clock ticks over the window)."
        ),
        "",
        CPU_HEADER,
        *(cpu_row(r, results) for r in cpu_runs),
        "",
        (
            f"Wake-up: the camera idle (`idle_after: {IDLE_AFTER}`, waited for in `/api/status`, then 0.5 s), "
            "`GET /snapshot` on an open connection; (a) request sent → response complete, (b) the frame's "
            '`X-Timestamp` − request sent. "not fresh": captured before the request, a placeholder, or not a JPEG.'
        ),
        "",
        WAKE_HEADER,
        *(wake_row(r) for r in wake_runs),
        "",
        "Against the targets of issue 8:",
        "",
        *(f"- {line}" for line in target_lines(results)),
        "",
    ]
    notes = [f"- {r['run']}: {w}" for r in results for w in r.get("warnings") or []]
    notes += [f"- {r['run']}: FAILED: {r['error']}" for r in results if r.get("error")]
    if notes:
        lines += ["Warnings and failures:", "", *notes, ""]
    return "\n".join(lines)


def load_results(out: Path) -> list[dict[str, Any]]:
    """Every run's JSON in ``out`` (so a partial re-run keeps the other rows)."""
    results = []
    for name in RUNS:
        path = out / f"{name}.json"
        if path.exists():
            try:
                results.append(json.loads(path.read_text()))
            except ValueError:
                continue
    return results
