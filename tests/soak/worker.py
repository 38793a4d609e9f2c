"""Runs the soak's clients in a process of their own: ``python -m tests.soak.worker CONFIG.json``.

A separate process keeps the client load off the test process, where the fake upstream camera
and the status/proc monitors must keep their timing (one interpreter, one GIL), and lets the
client side's CPU be measured on its own.  The config names the mix, the server, the duration and
where to write the results: a JSON summary and an ``.npz`` with the arrival times of every fast and
slow client's real and placeholder frames (the test process cuts them by fault windows).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import numpy as np

from tests.soak.abuse import run_garbage, run_idle
from tests.soak.attackers import run_flooder, run_guesser, run_staller
from tests.soak.churn import run_vanisher
from tests.soak.context import LAG_BINS_MS, ClientStats, Ctx
from tests.soak.readers import run_fast, run_slow

KINDS = ("mjpeg_fast", "ws_fast", "mjpeg_slow", "ws_slow", "vanish", "garbage", "idle", "flood", "guess", "stall")
KEEP_ARRIVALS = {"mjpeg_fast", "ws_fast", "mjpeg_slow", "ws_slow"}
# Kinds that are somebody else on the LAN (a scanner, a broken device, an attacker): each client
# connects from a loopback address of its own, 127.<20 + kind>.0.<idx + 1>.
OTHER_HOSTS = ("garbage", "idle", "flood", "guess", "stall")
STAGGER = 2.0  # seconds over which the clients start (a thundering herd is not what this tests)
END_SLACK = 20.0  # a client task still running this long after the deadline is reported as hung


def _client(ctx: Ctx, stats: ClientStats) -> Coroutine[Any, Any, None]:
    kind = stats.kind
    if kind == "mjpeg_fast":
        return run_fast(ctx, stats, ws=False, http10=stats.idx % 2 == 1)  # both body framings
    if kind == "ws_fast":
        return run_fast(ctx, stats, ws=True)
    if kind == "mjpeg_slow":
        return run_slow(ctx, stats, ws=False)
    if kind == "ws_slow":
        return run_slow(ctx, stats, ws=True)
    if kind == "vanish":
        return run_vanisher(ctx, stats)
    if kind == "garbage":
        return run_garbage(ctx, stats)
    if kind == "idle":
        return run_idle(ctx, stats)
    if kind == "flood":
        return run_flooder(ctx, stats)
    if kind == "guess":
        return run_guesser(ctx, stats)
    if kind == "stall":
        return run_staller(ctx, stats)
    raise ValueError(f"unknown client kind {kind!r}")


def address_of(kind: str, idx: int) -> str | None:
    if kind not in OTHER_HOSTS:
        return None
    return f"127.{20 + OTHER_HOSTS.index(kind)}.0.{idx + 1}"


async def _delayed(delay: float, job: Coroutine[Any, Any, None]) -> None:
    await asyncio.sleep(delay)
    await job


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    rng = random.Random(cfg["seed"])
    ctx = Ctx(
        host=cfg["host"],
        port=cfg["port"],
        deadline=loop.time() + cfg["duration"],
        width=cfg["width"],
        height=cfg["height"],
        real_min_bytes=cfg["real_min_bytes"],
        request_timeout=cfg["request_timeout"],
        idle_grace=cfg["idle_grace"],
        rng=rng,
        token=cfg.get("token", ""),
    )
    mix: dict[str, int] = cfg["mix"]
    clients = [
        ClientStats(kind, i, ctx, kind in KEEP_ARRIVALS, address_of(kind, i))
        for kind in KINDS
        for i in range(mix.get(kind, 0))
    ]
    order = list(range(len(clients)))
    rng.shuffle(order)  # start kinds interleaved
    t_start = time.time()
    cpu_start = time.process_time()
    tasks = [
        asyncio.create_task(_delayed(STAGGER * pos / max(1, len(order)), _client(ctx, clients[i])))
        for pos, i in enumerate(order)
    ]
    done, pending = await asyncio.wait(tasks, timeout=cfg["duration"] + END_SLACK)
    t_end = time.time()
    hung = len(pending)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5.0)
    crashed = [repr(t.exception()) for t in done if not t.cancelled() and t.exception() is not None]
    await asyncio.sleep(0.5)  # let the last closes reach the server before this process exits
    lag_hist: dict[str, list[int]] = {}
    for c in clients:
        if c.kind in KEEP_ARRIVALS:
            acc = lag_hist.setdefault(c.kind, [0] * (LAG_BINS_MS + 1))
            for i, v in enumerate(c.lag_hist):
                if v:
                    acc[i] += v
    return {
        "t_start": t_start,
        "t_end": t_end,
        "deadline_wall": t_start + cfg["duration"],
        "cpu_s": time.process_time() - cpu_start,
        "hung_tasks": hung,
        "crashed_tasks": crashed[:10],
        "clients": [c.summary() for c in clients],
        "lag_hist": lag_hist,
        "_arrays": {
            **{f"real_{c.kind}_{c.idx}": np.asarray(c.real) for c in clients if c.keep_arrivals},
            **{f"ph_{c.kind}_{c.idx}": np.asarray(c.placeholders) for c in clients if c.keep_arrivals},
        },
    }


def main(argv: list[str]) -> int:
    cfg = json.loads(Path(argv[1]).read_text())
    runner_kwargs: dict[str, Any] = {}
    with contextlib.suppress(ImportError):
        import uvloop

        runner_kwargs["loop_factory"] = uvloop.new_event_loop
    with asyncio.Runner(**runner_kwargs) as runner:
        result = runner.run(run(cfg))
    arrays = result.pop("_arrays")
    np.savez(cfg["arrays_out"], **arrays)
    Path(cfg["out"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
