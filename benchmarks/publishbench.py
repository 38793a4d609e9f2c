"""Publishing benchmark (§10 of docs/interface.md): what pushing a camera to media servers costs edge.

Run from the repository root: ``.venv/bin/python benchmarks/publishbench.py [--quick] [--sections 1,2,3]``
(~7 min; results in ``benchmarks/results/publish.json`` and ``publish.md``, ``--quick`` in
``results/quick/``). The targets are a real nginx with the RTMP module (tests/support/rtmp_server.py).
Each figure is beside a reference measured in the same run, on the same machine:

1. passthrough: edge's CPU for one H.264 camera (a 1280x720@30, 4 Mbit/s ``pipe:`` producer)
   unpublished, publishing to 1 and to 3 targets; two rounds, interleaved; the cost per target
   against the unpublished camera (target: at most 0.01 cores per target);
2. scale-out: the same camera publishing to nginx with 0, 50 and 200 HLS readers of nginx (each
   polls the playlist once a second and fetches every new segment, on loopback), then 0 again:
   edge's CPU should not move (the readers load nginx, never edge);
3. encoding: a JPEG camera (an MJPEG ``pipe:`` producer, as a USB camera in MJPG mode) at 640x480
   and 1280x720, unpublished and publishing to one target: edge's CPU for both, and what the status
   says the encoder (``h264_encoder: auto``, libx264 here) costs.

edge's CPU is its own process's (every thread, not its producer's); nginx's and the readers' are
reported beside it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadgen import procstat
from loadgen.sections import run_section
from publishbench.sections import SECTIONS, encoding, hls_readers, log, passthrough, summary

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))

from tests.support.rtmp_server import NginxRtmp  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="short windows, one round; results in results/quick/")
    parser.add_argument("--sections", default="1,2,3")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.window = 6.0 if args.quick else 20.0
    args.warmup = 2.0 if args.quick else 4.0
    args.rounds = 1 if args.quick else 2
    out = args.out or (BENCH_DIR / "results" / ("quick" if args.quick else ""))
    workdir = Path(tempfile.mkdtemp(prefix="publishbench-"))
    machine = procstat.machine_info(REPO)
    results: dict[str, Any] = {
        "machine": machine,
        "command": shlex.join([".venv/bin/python", "benchmarks/publishbench.py", *argv]),
        "sections": {},
    }
    failed = []
    started = time.monotonic()
    with NginxRtmp(workdir / "nginx") as nginx:
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "1": lambda: passthrough(args, nginx, workdir),
            "2": lambda: hls_readers(args, nginx, workdir),
            "3": lambda: encoding(args, nginx, workdir),
        }
        for number in args.sections.split(","):
            name = SECTIONS[number]
            result, ok = run_section(number, name, steps[number], log)
            if not ok:
                failed.append(number)
            results["sections"][name] = result
    results["elapsed_s"] = time.monotonic() - started
    out.mkdir(parents=True, exist_ok=True)
    (out / "publish.json").write_text(json.dumps(results, indent=2) + "\n")
    text = summary(results)
    (out / "publish.md").write_text(text + "\n")
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
