"""Load benchmark for the edge server: many MJPEG/WebSocket clients against a fresh server.

Run from the repository root: ``python benchmarks/bench.py [--runs 1,100,throttled] [--quick]
[--servers floor,edge-file,edge-virtual]``. Each run starts its own server (so CPU and RSS are
per run), opens the clients from one or two worker processes, waits for every first frame plus a
warm-up, measures for a fixed window, and writes ``benchmarks/results/<run>.<server>.json``;
``summary.md`` has a table per load with the servers side by side, then one row per run.

Why several servers: the machine is shared and noisy, so the loads that carry targets (100, 200
and 500 viewers, the WebSocket mix, the slow readers) run against a floor (``floor.py``, the
smallest server that does the job) and against edge, back to back in the same session, and edge
is judged by its ratio to the floor. See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadgen import compare, report
from loadgen.runner import Options, RunSpec, default_server_cmd, edge_virtual, execute
from loadgen.servers import SERVER_NAMES, ServerSpec, file_server, floor_server, make_frames

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
# Runs without --servers: the loads that carry targets go to all three servers, the others to
# edge's virtual camera only, as before the floor existed.
DEFAULT_SERVERS = {name: list(SERVER_NAMES) for name in compare.COMPARISON_RUNS}
LEGACY_SERVERS = ["edge-virtual"]


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
    parser.add_argument(
        "--servers",
        default=None,
        help=(
            f"comma-separated servers each run goes to, in turn: {', '.join(SERVER_NAMES)} "
            f"(default: all three for {', '.join(compare.COMPARISON_RUNS)}; edge-virtual for the others)"
        ),
    )
    parser.add_argument(
        "--frames-cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "edge-bench-frames",
        help="where the test clip and its JPEGs for the floor and edge-file are made once",
    )
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument(
        "--summary-only", action="store_true", help="run nothing: rebuild summary.md from the JSON files in --out"
    )
    args = parser.parse_args(argv)
    unknown = [r for r in args.runs.split(",") if r not in RUNS]
    if unknown:
        parser.error(f"unknown run(s) {unknown}; choose from {list(RUNS)}")
    if args.servers is not None:
        bad = [s for s in args.servers.split(",") if s not in SERVER_NAMES]
        if bad or not args.servers:
            parser.error(f"unknown server(s) {bad}; choose from {list(SERVER_NAMES)}")
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(run, server) pairs in the order they run: per load, the servers back to back."""
    chosen = args.servers.split(",") if args.servers else None
    pairs = []
    for name in args.runs.split(","):
        servers = chosen or DEFAULT_SERVERS.get(name, LEGACY_SERVERS)
        pairs += [(name, server) for server in SERVER_NAMES if server in servers]
    return pairs


def server_specs(names: set[str], opts: Options, frames_cache: Path) -> dict[str, ServerSpec]:
    """The servers the plan needs; the test frames are made (once, cached) only if one uses them."""
    specs = {"edge-virtual": edge_virtual(opts)}
    if names & {"floor", "edge-file"}:
        frames = make_frames(frames_cache, opts.width, opts.height, round(opts.fps))
        specs["floor"] = floor_server(frames)
        specs["edge-file"] = file_server(opts.server_cmd, frames)
    return specs


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


def result_path(out: Path, name: str, server: str) -> Path:
    """``results/<run>.<server>.json``."""
    return out / f"{name}.{server}.json"


def load_previous(out: Path, done: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Earlier results for (run, server) pairs not repeated now, so summary.md covers every run."""
    previous = []
    for name in RUNS:
        for server in SERVER_NAMES:
            path = result_path(out, name, server)
            if (name, server) not in done and path.exists():
                try:
                    previous.append(json.loads(path.read_text()))
                except ValueError:
                    continue
    return previous


def ordered(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table order = the order runs are defined in, then floor, edge-file, edge-virtual."""
    order = {name: i for i, name in enumerate(RUNS)}
    servers = {name: i for i, name in enumerate(SERVER_NAMES)}
    return sorted(
        results, key=lambda r: (order.get(r["run"], len(order)), servers.get(compare.server_of(r), len(servers)))
    )


def main(argv: list[str]) -> int:
    """Run the chosen scenarios one after another, write files, print the table."""
    args = parse_args(argv)
    opts = make_options(args)
    out = args.out or (BENCH_DIR / "results" / ("quick" if args.quick else ""))
    pairs = [] if args.summary_only else plan(args)
    try:
        specs = server_specs({server for _, server in pairs}, opts, args.frames_cache)
    except RuntimeError as exc:
        print(f"[bench] {exc}", file=sys.stderr)
        return 2
    command = shlex.join([".venv/bin/python", "benchmarks/bench.py", *argv])
    results, failed = [], []
    for name, server in pairs:
        started = time.monotonic()
        print(f"[bench] run {name} on {server}: {RUNS[name].description} ...", file=sys.stderr, flush=True)
        try:
            result = execute(RUNS[name], opts, specs[server])
        except RuntimeError as exc:
            print(f"[bench] run {name} on {server} FAILED: {exc}", file=sys.stderr, flush=True)
            failed.append(f"{name}.{server}")
            continue
        result["params"]["command"] = command
        report.write_json(result_path(out, name, server), result)
        results.append(result)
        print(
            f"[bench]   {report.table_row(result)}  ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True
        )
    everything = ordered(results + load_previous(out, pairs))
    commands = list(dict.fromkeys(r["params"].get("command") or "bench.py" for r in everything))
    summary = compare.markdown(everything, commands)
    (out / "summary.md").parent.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(summary)
    print(summary)
    if failed:
        print(f"[bench] failed runs: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
