"""H.264 benchmark: what an H.264 camera (§9 of docs/interface.md) saves and costs against MJPEG.

Run from the repository root: ``.venv/bin/python benchmarks/h264bench.py [--quick] [--sections 1,3]``
(~7 min in full; results in ``benchmarks/results/h264.json`` and ``h264.md``, ``--quick`` in
``results/quick/``). Each figure is reported beside a reference measured in the same run (the
2-core machine is shared and noisy), with the ratio and the target:

1. bandwidth per viewer at equal quality (1280x720@30 ``testsrc2``): MJPEG ``-q:v 5`` against
   libx264 at the highest CRF whose SSIM (offline, against the source) is at least MJPEG's; both
   live as ``pipe:`` cameras of one edge, one viewer each (``/stream``, ``/stream.h264``);
2. edge's CPU per viewer at 100 and 500 viewers, H.264 (``/stream.h264``) against MJPEG passthrough
   (``/stream``), 640x480@30, the 0-viewer cost of the same edge subtracted; whether any viewer starved;
3. first picture for a new ``ws?codec=h264`` viewer (key frame every second), 50 at random phases:
   to the first (key-frame) message and to its picture decoded by PyAV; beside it the wait for the
   next key frame;
4. edge's CPU for an H.264 camera (1280x720@30, 4 Mbit/s) without viewers (``idle_after: 0``, and
   idle), beside its producer's; then with one JPEG viewer (decode + encode);
5. capture-to-paint latency in Chromium (the page's ``data-latency-ms``), WebCodecs and MSE, beside
   JPEG over the WebSocket.

The parts are in ``h264bench/``; ``benchmarks/test_h264bench.py`` checks its helpers.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from h264bench import bandwidth, browser, cpuload, encode, firstpic, idlecost, summary
from h264bench.options import Options
from loadgen import procstat
from loadgen.sections import run_section

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SECTIONS = {"1": "bandwidth", "2": "cpu", "3": "first_picture", "4": "idle", "5": "browser"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="short windows, few viewers; results in results/quick/")
    parser.add_argument("--sections", default="1,2,3,4,5", help="comma-separated subset of 1-5")
    parser.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "edge-bench-h264",
        help="where the offline encodes of section 1 are kept (reused when the arguments are the same)",
    )
    args = parser.parse_args(argv)
    bad = [s for s in args.sections.split(",") if s not in SECTIONS]
    if bad:
        parser.error(f"unknown section(s) {bad}; choose from 1-5")
    return args


def log(message: str) -> None:
    print(f"[h264bench] {message}", file=sys.stderr, flush=True)


def clean(value: Any) -> Any:
    """JSON without NaN/Infinity (null instead), tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def write(out: Path, results: dict[str, Any]) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "h264.json").write_text(json.dumps(clean(results), indent=1) + "\n")
    text = summary.markdown(results)
    (out / "h264.md").write_text(text)
    return text


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    out = args.out or (BENCH_DIR / "results" / ("quick" if args.quick else ""))
    workdir = Path(tempfile.mkdtemp(prefix="h264bench-"))
    opts = Options.make(workdir, args.cache, args.quick)
    machine = procstat.machine_info(REPO)
    load = ", ".join(f"{v:.2f}" for v in machine["loadavg_start"])  # type: ignore[attr-defined]
    print(f"Machine: {machine['cpu_model']}, {machine['nproc']} cores, load average at start {load}", flush=True)
    results: dict[str, Any] = {
        "machine": machine,
        "command": shlex.join([".venv/bin/python", "benchmarks/h264bench.py", *argv]),
        "options": {k: v for k, v in vars(opts).items() if k not in ("workdir", "cache", "notes")},
        "sections": {},
        "notes": [],
    }
    started = time.monotonic()
    crf: dict[str, int] = {}

    def matching_crf() -> int:
        if "crf" not in crf:
            quality = encode.Quality(opts.cache, bandwidth.SIZE)
            crf["crf"] = quality.matching_crf(float(quality.mjpeg().ssim["All"]))
        return crf["crf"]

    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "1": lambda: bandwidth.run(opts, log),
        "2": lambda: cpuload.run(opts, matching_crf(), log),
        "3": lambda: firstpic.run(opts, matching_crf(), log),
        "4": lambda: idlecost.run(opts, log),
        "5": lambda: browser.run(opts, log),
    }
    failed = []
    for number in args.sections.split(","):
        name = SECTIONS[number]
        result, ok = run_section(number, name, steps[number], log)
        if not ok:
            failed.append(number)
        if number == "1" and "crf" in result:
            crf["crf"] = result["crf"]
        results["sections"][name] = result
        results["elapsed_s"] = time.monotonic() - started
        write(out, results)
    results["elapsed_s"] = time.monotonic() - started
    print(write(out, results), flush=True)
    log(f"wrote {out / 'h264.json'} and {out / 'h264.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
