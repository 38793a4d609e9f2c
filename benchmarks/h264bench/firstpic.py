"""Section 3: how soon a new ``?codec=h264`` WebSocket viewer has its first picture.

An H.264 camera with a key frame every second (``-g 30`` at 30 fps, the 1280x720 scene of section
1). 50 viewers one after another, each after a random pause of 0 to 1 s (so they arrive at random
phases of the key-frame interval): time from starting the connect (TCP + upgrade) to the first
binary message, which must be a key frame (flags bit 0), and to its picture decoded by PyAV.

The reference beside it is what a viewer would wait if edge started it at the next key frame
instead of the last one: key-frame interval - the age of the key frame it got (its capture time
against the clock when it arrived); that age also shows the phases were spread over the interval.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import av
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from h264bench import encode
from h264bench.edgeproc import HOST, Edge
from h264bench.options import Options
from h264bench.stats import parse_ws_unit, summarize

SIZE = "1280x720"
GOP = 30


async def one_viewer(url: str) -> dict[str, Any]:
    """One new viewer: connect, hello, first binary message, its picture."""
    started = time.perf_counter()
    async with connect(
        url, compression=None, max_size=None, open_timeout=10, close_timeout=2, ping_interval=None, proxy=None
    ) as ws:
        opened = time.perf_counter()
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        ctx = av.CodecContext.create("h264", "r")  # configured on the hello, as a player would
        texts = 0
        while True:
            message = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(message, bytes):
                break
            texts += 1
        first = time.perf_counter()
        arrived = time.time()
        unit = parse_ws_unit(message)
        frames = ctx.decode(av.Packet(unit.unit))
        flushed = not frames
        if flushed:
            frames = ctx.decode(None)
        picture = time.perf_counter()
    return {
        "open_ms": (opened - started) * 1000,
        "first_message_ms": (first - started) * 1000,
        "first_picture_ms": (picture - started) * 1000,
        "key": unit.key,
        "seq": unit.seq,
        "age_ms": (arrived - unit.captured) * 1000,
        "message_bytes": len(message),
        "decoded": len(frames),
        "decoder_flushed": flushed,
        "picture_size": [frames[0].width, frames[0].height] if frames else None,
        "hello_codec": hello.get("codec"),
        "text_messages_before": texts,
    }


async def _samples(url: str, count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    samples = []
    for _ in range(count):
        await asyncio.sleep(rng.uniform(0.0, 1.0))
        try:
            samples.append(await one_viewer(url))
        except (OSError, TimeoutError, ValueError, WebSocketException, av.FFmpegError) as exc:
            samples.append({"error": repr(exc)})
    return samples


def run(opts: Options, crf: int, log: Any) -> dict[str, Any]:
    cam = {"name": "cam0", "source": encode.h264_producer(SIZE, crf=crf, gop=GOP), "idle_after": 0}
    with Edge([cam], opts.workdir, "first-picture") as edge:
        edge.wait_streaming("cam0", "h264")
        time.sleep(opts.warmup)
        status = edge.camera("cam0")
        interval_s = float((status.get("h264") or {}).get("keyframe_interval_s") or GOP / encode.RATE)
        log(
            f"{opts.first_samples} new viewers of ws?codec=h264, random pauses 0-1 s "
            f"(key frame every {interval_s:.2f} s) ..."
        )
        url = f"ws://{HOST}:{edge.port}/cameras/cam0/ws?codec=h264"
        samples = asyncio.run(_samples(url, opts.first_samples, opts.seed))
        log_tail = edge.log_tail()
    good = [s for s in samples if "error" not in s]
    keyed = [s for s in good if s["key"]]
    ages = [s["age_ms"] for s in keyed]
    next_key = [max(0.0, interval_s * 1000 - a) for a in ages]
    return {
        "size": SIZE,
        "crf": crf,
        "camera": cam,
        "keyframe_interval_s": interval_s,
        "samples": samples,
        "count": len(samples),
        "errors": len(samples) - len(good),
        "not_key_first": len(good) - len(keyed),
        "decoded_first": sum(1 for s in keyed if s["decoded"]),
        "decoder_flushed": sum(1 for s in keyed if s["decoder_flushed"]),
        "first_message_ms": summarize([s["first_message_ms"] for s in keyed]),
        "first_picture_ms": summarize([s["first_picture_ms"] for s in keyed if s["decoded"]]),
        "open_ms": summarize([s["open_ms"] for s in good]),
        "key_age_ms": summarize(ages),
        "next_key_wait_ms": summarize(next_key),
        "edge_log_tail": log_tail[-10:],
    }
