"""The soak's vanishers: connect, read 0-2 whole frames and part of the next, then close (FIN) or
reset (RST), pause, and come back: the churn a server's per-connection clean-up must survive."""

from __future__ import annotations

import asyncio
import time

from tests.soak.context import (
    ClientStats,
    Ctx,
    close_socket,
    connect_or_pause,
    exc_name,
    new_reader,
    pause,
)

# Vanishers read in 4 KiB steps so they usually stop inside a JPEG, then pause before the next try.
VANISH_READ = 4096
VANISH_PAUSE = (0.2, 1.0)
VANISH_TIMEOUT = 10.0
VANISH_VARIANTS = ("ws", "ws", "ws", "mjpeg/1.1", "mjpeg/1.0", "mjpeg+pipelined")  # half WebSocket


async def run_vanisher(ctx: Ctx, stats: ClientStats) -> None:
    """Connect, read 0-2 frames and part of the next, vanish (FIN or RST), pause, repeat.

    Variants, drawn at random each time: WebSocket, MJPEG over HTTP/1.1 or HTTP/1.0, and MJPEG
    with a second request pipelined behind the stream (a client that vanishes with a request
    still queued on the connection).
    """
    loop = asyncio.get_running_loop()
    buf = bytearray(VANISH_READ)
    while ctx.remaining() > 1.0:
        variant = ctx.rng.choice(VANISH_VARIANTS)
        rst = ctx.rng.random() < 0.5
        label = f"{variant} {'RST' if rst else 'FIN'}"
        target = ctx.rng.randrange(3)
        request, reader = new_reader(ctx, stats, variant == "ws", http10=variant == "mjpeg/1.0")
        if variant == "mjpeg+pipelined":
            request += f"GET {ctx.path('/snapshot')} HTTP/1.1\r\nHost: {ctx.host}:{ctx.port}\r\n\r\n".encode()
        sock = await connect_or_pause(ctx, stats.outcome)
        if sock is None:
            continue
        try:
            async with asyncio.timeout(min(VANISH_TIMEOUT, max(0.01, ctx.remaining()))):
                await loop.sock_sendall(sock, request)
                stats.connects += 1
                while not (reader.frames >= target and reader.mid_jpeg):
                    n = await loop.sock_recv_into(sock, buf)
                    if n == 0 or reader.failed:
                        break
                    reader.feed(buf, 0, n, time.time())
                    if reader.failed or reader.ended:
                        break
            if reader.frames >= target and reader.mid_jpeg:
                stats.outcome(f"mid-frame ({label})")
            else:
                stats.outcome(f"server ended first: {reader.failed or 'closed'} ({label})")
        except TimeoutError:
            if ctx.remaining() > 0:
                stats.outcome(f"timeout before mid-frame ({label})")
        except OSError as exc:
            stats.outcome(f"{exc_name(exc)} ({label})")
        finally:
            close_socket(sock, rst)
        await pause(ctx, ctx.rng.uniform(*VANISH_PAUSE))
