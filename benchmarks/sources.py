"""Server CPU per camera source kind, with 0 and 1 viewer, and wake-up latency from idle.

Why: issue 8 makes edge pass a camera's own JPEG through (no decoding, no encoding) and stop
working when nobody watches. Both claims are about CPU on a Raspberry Pi-class box, so this
measures them against the alternative they replace:

- ``virtual``: the test pattern, drawn and encoded by edge (what a box without a camera does);
- ``file``: an MJPEG file (made here with FFmpeg's ``testsrc2``) passed through at its own size;
- ``never``: the same file with ``passthrough: never`` (decode + re-encode): the reference every
  passthrough figure is divided by;
- ``pipe``: ``pipe:ffmpeg -re -stream_loop -1 -i FILE -c copy -f mjpeg -``, the way a Pi CSI camera
  (``rpicam-vid``) is served. The producer is part of the cost on a Pi, so the server alone and the
  server plus its child processes are both reported.

Each source runs at 640x480 and 1280x720, 30 fps, each run a fresh server process, with

- 1 viewer: one always-reading MJPEG client (the load benchmark's own, in its own process);
- 0 viewers after the camera went idle (``idle_after: 2`` to keep runs short; ``/api/status`` must
  say ``idle`` before and after the window and ``frames_captured`` must not move);
- 0 viewers with ``idle_after: 0`` (never idle), for ``virtual`` and ``never``: what idling saves.

CPU is (utime + stime) from /proc over the window / wall time (1.0 = one core), default 30 s after
a 3 s warm-up. Wake-up runs idle the camera, send ``GET /snapshot`` and record (a) request sent ->
response complete and (b) the frame's capture time (``X-Timestamp``) - request sent, 10 times
(idle again before each). Results: ``results/sources/<run>.json`` and ``results/sources/summary.md``.

Run from the repository root: ``.venv/bin/python benchmarks/sources.py [--runs 'file-*'] [--quick]``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

from loadgen import report
from loadgen.runner import default_server_cmd
from sourcebench.measure import Options, execute
from sourcebench.runs import BENCH_DIR, RUNS, select_runs
from sourcebench.summary import cpu_row, load_results, markdown, wake_row

# -- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command line; ``--quick`` is a smoke test (5 s windows, 3 wake-up samples)."""
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--runs", default="*", help="comma-separated run names or patterns, e.g. 'file-*,wake-*'")
    parser.add_argument("--list", action="store_true", help="print the run names and exit")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per CPU run (30; quick 5)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before the window (3; quick 1)")
    parser.add_argument("--samples", type=int, default=None, help="wake-up samples per run (10; quick 3)")
    parser.add_argument("--quick", action="store_true", help="smoke test; results in results/sources/quick/")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "edge-bench-sources",
        help="where the MJPEG test files are made and kept",
    )
    parser.add_argument(
        "--server-cmd", default=None, help="command that starts the server (default: this python -m edge)"
    )
    return parser.parse_args(argv)


def make_options(args: argparse.Namespace) -> Options:
    """Resolve the defaults, which differ for ``--quick``."""
    quick = args.quick
    return Options(
        server_cmd=shlex.split(args.server_cmd) if args.server_cmd else default_server_cmd(),
        duration=args.duration or (5.0 if quick else 30.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 3.0),
        samples=args.samples or (3 if quick else 10),
        cache=args.cache,
    )


def main(argv: list[str]) -> int:
    """Run the chosen runs one after another, write a JSON each, then summary.md."""
    args = parse_args(argv)
    if args.list:
        print("\n".join(RUNS))
        return 0
    try:
        specs = select_runs(args.runs)
    except ValueError as exc:
        print(f"sources.py: {exc}", file=sys.stderr)
        return 2
    opts = make_options(args)
    out = args.out or (BENCH_DIR / "results" / "sources" / ("quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for i, spec in enumerate(specs, 1):
        started = time.monotonic()
        print(f"[sources] {i}/{len(specs)} {spec.name} ...", file=sys.stderr, flush=True)
        doc = execute(spec, opts)
        report.write_json(out / f"{spec.name}.json", doc)
        took = time.monotonic() - started
        if doc["error"]:
            failed.append(spec.name)
            print(f"[sources]   FAILED ({took:.0f} s): {doc['error']}", file=sys.stderr, flush=True)
        elif spec.mode == "wake":
            print(f"[sources]   {wake_row(doc)}  ({took:.0f} s)", file=sys.stderr, flush=True)
        else:
            print(f"[sources]   {cpu_row(doc, [doc])}  ({took:.0f} s)", file=sys.stderr, flush=True)
        for warning in doc.get("warnings") or []:
            print(f"[sources]   warning: {warning}", file=sys.stderr, flush=True)
    summary = markdown(load_results(out))
    (out / "summary.md").write_text(summary)
    print(summary)
    if failed:
        print(f"[sources] failed runs: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
