"""Load benchmark for the edge server: many MJPEG/WebSocket clients against a fresh server.

Run from the repository root: ``python benchmarks/bench.py [--runs 1,100,throttled] [--quick]``.
Each run starts its own server (so CPU and RSS are per run), opens the clients from one or two
worker processes, waits for every first frame plus a warm-up, measures for a fixed window, and
writes ``benchmarks/results/<run>.json``; ``summary.md`` collects one table row per run.
See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from loadgen import report
from loadgen.runner import Options, RunSpec, default_server_cmd, execute

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent

RUNS: dict[str, RunSpec] = {
    spec.name: spec
    for spec in [
        *(RunSpec(str(n), fast=n, description=f"{n} MJPEG clients") for n in (1, 10, 50, 100, 200, 500)),
        RunSpec("ws", fast=50, ws=50, description="50 MJPEG + 50 WebSocket clients"),
        RunSpec("throttled", fast=10, throttled=5, description="10 fast + 5 slow (16 KB/s) readers"),
        RunSpec(
            "throttled30",
            fast=10,
            throttled=5,
            long=True,
            description="10 fast + 5 slow readers, long run: is the slow readers' age flat?",
        ),
        RunSpec(
            "100-http10",
            fast=100,
            http_version="1.0",
            description="100 MJPEG clients over HTTP/1.0 (close-delimited body)",
        ),
    ]
}
DEFAULT_RUNS = ["1", "10", "50", "100", "200", "500", "ws", "throttled", "throttled30"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command line; ``--quick`` shortens every phase for a smoke test."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", default=",".join(DEFAULT_RUNS), help=f"comma-separated subset of: {', '.join(RUNS)}")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per run (10)")
    parser.add_argument(
        "--long-duration", type=float, default=None, help="measured seconds of the long throttled run (30)"
    )
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds after the last first frame before measuring (2)"
    )
    parser.add_argument("--quick", action="store_true", help="short phases, results in results/quick/")
    parser.add_argument(
        "--http",
        choices=("1.1", "1.0"),
        default="1.1",
        help="HTTP version of MJPEG requests (1.1 = chunked body, like browsers)",
    )
    parser.add_argument("--workers", type=int, default=0, help="load worker processes (0 = auto)")
    parser.add_argument(
        "--ws-compression",
        choices=("deflate", "none"),
        default="deflate",
        help="offer permessage-deflate like browsers do (default) or not",
    )
    parser.add_argument(
        "--server-cmd",
        default=None,
        help="command that starts the server (default: this python -m edge); --config/--port/--log-level are appended",
    )
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    args = parser.parse_args(argv)
    unknown = [r for r in args.runs.split(",") if r not in RUNS]
    if unknown:
        parser.error(f"unknown run(s) {unknown}; choose from {list(RUNS)}")
    return args


def make_options(args: argparse.Namespace) -> Options:
    """Resolve defaults, which differ between a full and a ``--quick`` invocation."""
    quick = args.quick
    return Options(
        server_cmd=shlex.split(args.server_cmd) if args.server_cmd else default_server_cmd(),
        repo=REPO,
        duration=args.duration or (3.0 if quick else 10.0),
        long_duration=args.long_duration or (8.0 if quick else 30.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 2.0),
        bucket_s=5.0 if not quick else 4.0,
        http_version=args.http,
        workers=args.workers,
        ws_compression=None if args.ws_compression == "none" else "deflate",
    )


def load_previous(out: Path, names: list[str]) -> list[dict[str, Any]]:
    """Earlier results for runs not repeated now, so summary.md always covers every run."""
    previous = []
    for name in RUNS:
        path = out / f"{name}.json"
        if name not in names and path.exists():
            try:
                previous.append(json.loads(path.read_text()))
            except ValueError:
                continue
    return previous


def ordered(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table order = the order runs are defined in."""
    order = {name: i for i, name in enumerate(RUNS)}
    return sorted(results, key=lambda r: order.get(r["run"], len(order)))


def main(argv: list[str]) -> int:
    """Run the chosen scenarios one after another, write files, print the table."""
    args = parse_args(argv)
    opts = make_options(args)
    out = args.out or (BENCH_DIR / "results" / ("quick" if args.quick else ""))
    names = args.runs.split(",")
    results, failed = [], []
    for name in names:
        started = time.monotonic()
        print(f"[bench] run {name}: {RUNS[name].description} ...", file=sys.stderr, flush=True)
        try:
            result = execute(RUNS[name], opts)
        except RuntimeError as exc:
            print(f"[bench] run {name} FAILED: {exc}", file=sys.stderr, flush=True)
            failed.append(name)
            continue
        report.write_json(out / f"{name}.json", result)
        results.append(result)
        print(
            f"[bench]   {report.table_row(result)}  ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True
        )
    summary = report.markdown(ordered(results + load_previous(out, names)))
    (out / "summary.md").parent.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(summary)
    print(summary)
    if failed:
        print(f"[bench] failed runs: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
