"""The tables of ``results/h264.md``: the machine, one summary row per figure (its reference from the
same run, the ratio, the target and whether it is met), then the details of each section."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from h264bench.stats import fmt, ratio, verdict

Row = tuple[str, str, str, str, str, str, str]
HEADER = ("§", "figure", "value", "reference (same run)", "ratio", "target", "met")
STARVED_FPS = 27.0  # a viewer sent fewer frames/s than this (of 30) counts as starved


def _kb(value: float) -> str:
    return fmt(value / 1000, 1) + " KB/s"


def _pair(summary: dict[str, Any], digits: int = 1) -> str:
    return f"{fmt(summary.get('p50'), digits)} / {fmt(summary.get('p95'), digits)}"


def _error_row(section: str, name: str, result: dict[str, Any]) -> list[Row]:
    if "error" in result:
        return [(section, name, "ERROR", result["error"].splitlines()[0][:120], "", "", "n/a")]
    if "skipped" in result:
        return [(section, name, "skipped", result["skipped"], "", "", "n/a")]
    return []


def bandwidth_rows(r: dict[str, Any]) -> list[Row]:
    early = _error_row("1", "bandwidth at equal quality", r)
    if early:
        return early
    rat = r["ratio"]
    checks = r["decode_check"]
    decoded_ok = all(c["decoded"] >= 30 and c["error"] is None for c in checks.values())
    size = r["size"]
    return [
        (
            "1",
            f"bytes/s per viewer, {size}@30 (H.264 CRF {r['crf']})",
            _kb(r["h264_bytes_per_s"]),
            "MJPEG -q:v 5: " + _kb(r["mjpeg_bytes_per_s"]),
            f"{fmt(rat, 3)} (1/{fmt(1 / rat if rat else math.nan, 1)})",
            "≤ 0.20",
            verdict(rat, 0.2),
        ),
        (
            "1",
            "SSIM All vs source (offline, 300 frames)",
            fmt(r["ssim_h264"], 4),
            "MJPEG: " + fmt(r["ssim_mjpeg"], 4),
            fmt(ratio(r["ssim_h264"], r["ssim_mjpeg"]), 4),
            "≥ MJPEG's",
            verdict(r["ssim_h264"], r["ssim_mjpeg"], at_most=False),
        ),
        (
            "1",
            "frames received from edge decoded by PyAV",
            f"H.264 {checks['h264']['decoded']}/30",
            f"MJPEG {checks['mjpeg']['decoded']}/30",
            "",
            "30/30, no error",
            "PASS" if decoded_ok else "FAIL",
        ),
    ]


def cpu_rows(r: dict[str, Any]) -> list[Row]:
    early = _error_row("2", "CPU per viewer", r)
    if early:
        return early
    rows: list[Row] = []
    counts = sorted({run["viewers"] for run in r["runs"]})
    for n in counts:
        by = {run["kind"]: run for run in r["runs"] if run["viewers"] == n}
        h, m = by.get("h264"), by.get("mjpeg")
        if not h or not m:
            continue
        per_h, per_m = h["per_viewer_cores"], m["per_viewer_cores"]
        rows.append(
            (
                "2",
                f"edge cores per viewer, {n} viewers, {r['size']}@30",
                f"{fmt(per_h * 1000, 3)} mcores",
                f"MJPEG: {fmt(per_m * 1000, 3)} mcores",
                fmt(ratio(per_h, per_m), 2),
                "≤ 1 (≤ MJPEG's)",
                verdict(ratio(per_h, per_m), 1.0),
            )
        )
        rows.append(
            (
                "2",
                f"edge cores total, {n} viewers (0 viewers)",
                f"{fmt(h['edge_cores_n'])} ({fmt(h['edge_cores_0'])})",
                f"MJPEG: {fmt(m['edge_cores_n'])} ({fmt(m['edge_cores_0'])})",
                fmt(ratio(h["edge_cores_n"], m["edge_cores_n"]), 2),
                "",
                "",
            )
        )
        rows.append(
            (
                "2",
                f"per-viewer received min / median, sent fps min, {n} viewers",
                _starve_cell(h),
                "MJPEG: " + _starve_cell(m),
                "",
                f"every viewer ≥ {STARVED_FPS:g} fps",
                "PASS" if not starved(h) and not starved(m) else "FAIL",
            )
        )
    return rows


def starved(run: dict[str, Any]) -> bool:
    """Some viewer got no data, lost its connection, or was sent fewer than STARVED_FPS frames/s."""
    ready = run["ready"]
    fps = run["sent_fps"]
    short = ready["with_body"] < run["viewers"] or fps["count"] < run["viewers"]
    return bool(short or run["lost_total"] or not fps["min"] >= STARVED_FPS)


def _starve_cell(run: dict[str, Any]) -> str:
    rate, fps = run["received_bytes_per_s"], run["sent_fps"]
    return f"{fmt(rate['min'] / 1000, 1)} / {fmt(rate['p50'] / 1000, 1)} KB/s, {fmt(fps['min'], 1)} fps"


def first_rows(r: dict[str, Any]) -> list[Row]:
    early = _error_row("3", "first picture", r)
    if early:
        return early
    wait = r["next_key_wait_ms"]
    rows: list[Row] = []
    for key, name in (
        ("first_message_ms", "first key-frame message"),
        ("first_picture_ms", "first decoded picture (PyAV)"),
    ):
        s = r[key]
        rows.append(
            (
                "3",
                f"new ws?codec=h264 viewer → {name}, p50 / p95 ms",
                _pair(s),
                "wait for the next key frame: " + _pair(wait),
                fmt(ratio(s["p95"], wait["p95"]), 2),
                "p95 ≤ 150 ms",
                verdict(s["p95"], 150.0),
            )
        )
    ok = r["count"] - r["errors"] - r["not_key_first"]
    rows.append(
        (
            "3",
            "first binary message is a key frame",
            f"{ok}/{r['count']}",
            f"key frame age p50 / max {fmt(r['key_age_ms']['p50'], 0)} / {fmt(r['key_age_ms']['max'], 0)} ms",
            "",
            "all",
            "PASS" if ok == r["count"] else "FAIL",
        )
    )
    return rows


def idle_rows(r: dict[str, Any]) -> list[Row]:
    early = _error_row("4", "H.264 camera without viewers", r)
    if early:
        return early
    rows: list[Row] = []
    labels = (
        ("never_idle", "edge cores, 0 viewers, idle_after: 0", True),
        ("idle", "edge cores, 0 viewers, default idle (idle)", True),
        ("one_jpeg_viewer", "edge cores, 1 JPEG viewer (/stream: decode + encode)", False),
    )
    for key, name, target in labels:
        w = r.get(key)
        if not w or "edge_cores" not in w:
            continue
        rows.append(
            (
                "4",
                f"{name}, {r['size']}@30 {r['bitrate']}bit/s",
                fmt(w["edge_cores"], 4),
                "producer (ffmpeg): " + fmt(w["producer_cores"], 4),
                fmt(ratio(w["edge_cores"], w["producer_cores"]), 3),
                "≤ 0.01 cores" if target else "(printed)",
                verdict(w["edge_cores"], 0.01) if target else "",
            )
        )
    return rows


def browser_rows(r: dict[str, Any]) -> list[Row]:
    early = _error_row("5", "latency capture → paint in Chromium", r)
    if early:
        return early
    period = r["frame_period_ms"]
    ref = r.get("ws", {})
    ref_cell = "JPEG over WS (?mode=ws): " + (_pair(ref["latency_ms"], 0) if "latency_ms" in ref else "–")
    rows: list[Row] = []
    for mode, name, limit, target in (
        ("auto", "WebCodecs (?mode=auto)", period + 30, f"p95 ≤ {period + 30:.1f} ms"),
        ("mp4", "MSE (?mode=mp4)", 300.0, "p95 ≤ 300 ms"),
    ):
        m = r.get(mode, {})
        if "latency_ms" not in m:
            rows.append(("5", f"latency {name}", "ERROR", m.get("error", "no samples")[:120], "", target, "n/a"))
            continue
        lat = m["latency_ms"]
        note = "" if m["mode_ok"] else f" (played as {'/'.join(m['modes_seen'])})"
        rows.append(
            (
                "5",
                f"latency capture → paint, {name}, p50 / p95 ms{note}",
                _pair(lat, 0),
                ref_cell,
                fmt(ratio(lat["p95"], ref.get("latency_ms", {}).get("p95", math.nan)), 2),
                target,
                verdict(lat["p95"], limit) if m["mode_ok"] else "FAIL",
            )
        )
    return rows


def rows(results: dict[str, Any]) -> list[Row]:
    s = results["sections"]
    out: list[Row] = []
    for key, build in (
        ("bandwidth", bandwidth_rows),
        ("cpu", cpu_rows),
        ("first_picture", first_rows),
        ("idle", idle_rows),
        ("browser", browser_rows),
    ):
        if key in s:
            out += build(s[key])
    return out


def table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in body]
    return "\n".join(lines)


def cpu_details(r: dict[str, Any]) -> str:
    header = ["kind", "viewers", "edge cores 0", "edge cores N", "per viewer mcores", "producer cores", "worker cores"]
    header += ["received min/p50 KB/s", "sent fps min/p50", "dropped", "box busy", "with body"]
    body = []
    for run in r["runs"]:
        loaded = run["loaded"]
        rate, fps = run["received_bytes_per_s"], run["sent_fps"]
        body.append(
            (
                run["kind"],
                str(run["viewers"]),
                fmt(run["edge_cores_0"]),
                fmt(run["edge_cores_n"]),
                fmt(run["per_viewer_cores"] * 1000, 3),
                fmt(loaded["producer_cores"]),
                fmt(run["viewer_worker_cores"]),
                f"{fmt(rate['min'] / 1000, 1)} / {fmt(rate['p50'] / 1000, 1)}",
                f"{fmt(fps['min'], 1)} / {fmt(fps['p50'], 1)}",
                str(run["frames_dropped"]),
                f"{fmt(run['zero']['box_busy_cores'], 2)} / {fmt(loaded['box_busy_cores'], 2)}",
                f"{run['ready']['with_body']}/{run['viewers']}",
            )
        )
    return table(header, body)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    load = ", ".join(f"{v:.2f}" for v in m["loadavg_start"])
    parts = [
        "# H.264 benchmark (`benchmarks/h264bench.py`)",
        "",
        f"Machine: {m['cpu_model']}, {m['nproc']} cores; load average at start {load}; Python {m['python']}, "
        f"kernel {m['kernel']}; {m['date']}; edge commit {m['git_commit']} (plus the working tree).",
        f"Command: `{results['command']}` ({results.get('elapsed_s', 0):.0f} s).",
        "",
        table(HEADER, rows(results)),
    ]
    s = results["sections"]
    cpu = s.get("cpu")
    if cpu and "runs" in cpu:
        parts += [
            "",
            "CPU per viewer, every run (box busy: whole machine, 0-viewer / N-viewer window):",
            "",
            cpu_details(cpu),
        ]
    if results.get("notes"):
        parts += ["", "Notes:", ""] + [f"- {n}" for n in results["notes"]]
    return "\n".join(parts) + "\n"
