"""The three sections of ``benchmarks/publishbench.py`` and its summary table (see its docstring)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from h264bench import encode
from h264bench.edgeproc import CpuWindow, Edge
from loadgen import procstat

from tests.support.rtmp_server import NginxRtmp

HERE = Path(__file__).resolve().parent
SECTIONS = {"1": "passthrough", "2": "hls_readers", "3": "encoding"}
H264_SIZE = "1280x720"
BITRATE = "4M"
TARGET_CORES_PER_TARGET = 0.01
READERS = (0, 50, 200, 0)
ENCODE_SIZES = ("640x480", "1280x720")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def h264_camera(publish: list[str]) -> dict[str, Any]:
    source = encode.h264_producer(H264_SIZE, bitrate=BITRATE)
    return {"name": "cam0", "source": source, "idle_after": 0, "publish": publish}


def wait_publishing(edge: Edge, count: int) -> None:
    def ready(cam: dict[str, Any]) -> bool:
        return len(cam["publish"]) == count and all(t["state"] == "publishing" for t in cam["publish"])

    if count:
        edge.wait_camera("cam0", ready, 30, f"publishing to {count} targets")


def measure(edge: Edge, seconds: float, others: dict[str, int]) -> dict[str, Any]:
    before = edge.camera("cam0")
    with CpuWindow(edge, others) as cpu:
        time.sleep(seconds)
    after = edge.camera("cam0")
    sent = [a["bytes_sent"] - b["bytes_sent"] for a, b in zip(after["publish"], before["publish"], strict=True)]
    return {
        **cpu.as_json(),
        "fps": after["fps"],
        "targets": [
            {"state": t["state"], "units_dropped": t["units_dropped"], "kbit_s": round(s * 8 / cpu.wall / 1000, 1)}
            for t, s in zip(after["publish"], sent, strict=True)
        ],
        "h264_encoder": after.get("h264_encoder"),
        "rss_mib": edge.rss_mib(),
    }


def passthrough(opts: argparse.Namespace, nginx: NginxRtmp, workdir: Path) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"0": [], "1": [], "3": []}
    for round_ in range(opts.rounds):
        for count in (0, 1, 3):
            urls = [nginx.rtmp_url(f"p{round_}-{count}-{i}") for i in range(count)]
            log(f"passthrough, round {round_ + 1}: {count} targets, {opts.window:.0f} s ...")
            with Edge([h264_camera(urls)], workdir, f"pass-{round_}-{count}") as edge:
                edge.wait_streaming("cam0", "h264")
                wait_publishing(edge, count)
                time.sleep(opts.warmup)
                runs[str(count)].append(measure(edge, opts.window, {"nginx": nginx_pid(nginx)}))
    mean = {k: sum(r["edge_cores"] for r in v) / len(v) for k, v in runs.items()}
    per_target = {k: (mean[k] - mean["0"]) / int(k) for k in ("1", "3")}
    return {
        "camera": f"{H264_SIZE}@30 H.264 {BITRATE}bit/s pipe: producer",
        "runs": runs,
        "edge_cores_mean": mean,
        "cores_per_target": per_target,
        "target_cores_per_target": TARGET_CORES_PER_TARGET,
        "met": all(v <= TARGET_CORES_PER_TARGET for v in per_target.values()),
    }


def nginx_pid(nginx: NginxRtmp) -> int:
    """nginx's worker (the one process that serves RTMP and HTTP: ``worker_processes 1``)."""
    assert nginx.proc is not None
    for pid in procstat.descendants(nginx.proc.pid):
        try:
            if b"worker process" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return nginx.proc.pid


def hls_readers(opts: argparse.Namespace, nginx: NginxRtmp, workdir: Path) -> dict[str, Any]:
    windows = []
    with Edge([h264_camera([nginx.rtmp_url("hls")])], workdir, "hls") as edge:
        edge.wait_streaming("cam0", "h264")
        wait_publishing(edge, 1)
        nginx.wait_playlist("hls")
        time.sleep(opts.warmup)
        for count in READERS:
            log(f"HLS readers: {count}, {opts.window:.0f} s ...")
            others = {"nginx": nginx_pid(nginx)}
            reader = None
            if count:
                command = [sys.executable, str(HERE / "hlsreaders.py")]
                command += [nginx.playlist_url("hls"), str(count), str(opts.window + opts.warmup + 2)]
                reader = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
                others["readers"] = reader.pid
                time.sleep(opts.warmup)
            window = measure(edge, opts.window, others)
            if reader is not None:
                out, _ = reader.communicate(timeout=opts.window + 60)
                window["readers"] = json.loads(out.strip().splitlines()[-1])
            window["count"] = count
            windows.append(window)
    base = [w["edge_cores"] for w in windows if w["count"] == 0]
    return {
        "windows": windows,
        "edge_cores_0_readers": base,
        "edge_cores_by_readers": {str(w["count"]): w["edge_cores"] for w in windows if w["count"]},
        "noise_between_0_windows": abs(base[0] - base[-1]) if len(base) >= 2 else None,
    }


def encoding(opts: argparse.Namespace, nginx: NginxRtmp, workdir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for size in ENCODE_SIZES:
        rows = {}
        for published in (False, True):
            cam = {"name": "cam0", "source": encode.mjpeg_producer(size), "idle_after": 0}
            if published:
                cam["publish"] = [nginx.rtmp_url(f"enc-{size}")]
            log(f"encoding {size}, {'publishing' if published else 'unpublished'}, {opts.window:.0f} s ...")
            with Edge([cam], workdir, f"enc-{size}-{published}") as edge:
                edge.wait_streaming("cam0", "mjpeg")
                wait_publishing(edge, 1 if published else 0)
                time.sleep(opts.warmup)
                rows["publishing" if published else "unpublished"] = measure(edge, opts.window, {})
        delta = rows["publishing"]["edge_cores"] - rows["unpublished"]["edge_cores"]
        encoder = rows["publishing"]["h264_encoder"] or {}
        result[size] = {
            **rows,
            "added_cores": delta,
            "encoder": encoder.get("name"),
            "encoder_ms_per_frame": encoder.get("ms_per_frame"),
            "encoder_cpu_cores_by_status": encoder.get("cpu_cores"),
            "encoded_fps": encoder.get("fps"),
            "bitrate_kbps": encoder.get("bitrate_kbps"),
        }
    return result


def summary(results: dict[str, Any]) -> str:
    lines = ["# Publishing benchmark", "", f"Command: `{results['command']}`", ""]
    m = results["machine"]
    commit = m.get("git_commit")
    lines += [
        f"Machine: {m['cpu_model']}, {m['nproc']} cores; commit {commit} (plus the working tree when it was run)",
        "",
    ]
    s = results["sections"]
    if "cores_per_target" in s.get("passthrough", {}):
        p = s["passthrough"]
        mean = p["edge_cores_mean"]
        lines += [
            "## 1. Passthrough, one H.264 camera " + p["camera"],
            "",
            "| targets | edge cores (mean of rounds) | per target, against 0 |",
            "|---|---|---|",
            f"| 0 (reference) | {mean['0']:.4f} | |",
            f"| 1 | {mean['1']:.4f} | {p['cores_per_target']['1']:.4f} |",
            f"| 3 | {mean['3']:.4f} | {p['cores_per_target']['3']:.4f} |",
            "",
            f"Target ≤ {p['target_cores_per_target']} cores per target: {'met' if p['met'] else 'NOT met'}.",
            "",
        ]
    if "windows" in s.get("hls_readers", {}):
        lines += ["## 2. HLS readers of nginx", "", "| readers | edge cores | nginx cores | segments/s | MB/s |"]
        lines += ["|---|---|---|---|---|"]
        for w in s["hls_readers"]["windows"]:
            r = w.get("readers", {})
            lines.append(
                f"| {w['count']} | {w['edge_cores']:.4f} | {w['other_cores'].get('nginx', 0):.4f} | "
                f"{r.get('segments_per_s', 0):.1f} | {r.get('mbytes_per_s', 0):.2f} |"
            )
        lines.append("")
    if s.get("encoding") and "error" not in s["encoding"]:
        lines += ["## 3. A JPEG camera's encode", ""]
        lines += ["| size | unpublished | publishing | added | encoder | ms/frame |", "|---|---|---|---|---|---|"]
        for size, e in s["encoding"].items():
            if not isinstance(e, dict) or "added_cores" not in e:
                continue
            lines.append(
                f"| {size} | {e['unpublished']['edge_cores']:.3f} | {e['publishing']['edge_cores']:.3f} | "
                f"{e['added_cores']:.3f} | {e['encoder']} | {e['encoder_ms_per_frame']} |"
            )
        lines.append("")
    return "\n".join(lines)
