"""The soak's attackers (issue 13), run in a worker process of their own so that their loops cannot
slow the well-behaved clients' own reading, each from a loopback address of its own:

- flooders: WebSocket floods (empty fragments, pings, text messages); closed with 1008 and
  dropped within 1 s of the close;
- guessers: wrong tokens as fast as the answers come (11 are checked, the rest get 429);
- stallers: 40 half-sent upgrade requests each (the server keeps 32 per address, refuses the
  rest with 503, and closes the 32 at `request_timeout`).
"""

from __future__ import annotations

import asyncio
import socket
import time

from tests.soak.context import (
    CONNECT_TIMEOUT,
    ClientStats,
    Ctx,
    close_socket,
    connect,
    exc_name,
    pause,
)
from tests.soak.proto import HEAD_END, ws_handshake
from tests.support.attacks import ServerFrames, masked_frame
from tests.support.http import status_code
from tests.support.websocket import OP_CONT, OP_PING, OP_TEXT

# A flood is one burst of frames per connection (a 64 KB send is what one read of the server
# takes in), then a pause: enough to stall the server before issue 13, cheap for this loop.
FLOOD_BURST = 64 * 1024
FLOOD_PAUSE = (0.3, 0.8)
FLOOD_KINDS = ("fragments", "pings", "texts")
GUESS_PAUSE = 0.05
STALL_SOCKETS = 40  # per staller: more than the server's 32 pending connections per address


_FLOOD_FRAMES = {
    "fragments": masked_frame(OP_TEXT, fin=False) + masked_frame(OP_CONT, fin=False) * (FLOOD_BURST // 6),
    "pings": masked_frame(OP_PING, b"p") * (FLOOD_BURST // 7),
    "texts": b"".join(masked_frame(OP_TEXT, b'{"type":"x%d"}' % i) for i in range(FLOOD_BURST // 19)),
}


async def _ws_open(ctx: Ctx, stats: ClientStats) -> tuple[socket.socket, bytes]:
    """A raw WebSocket from the client's address, after its 101; the bytes read past the head."""
    loop = asyncio.get_running_loop()
    sock = await connect(ctx, source=stats.address)
    try:
        request, _ = ws_handshake(ctx.host, ctx.port, ctx.path("/ws"))
        await asyncio.wait_for(loop.sock_sendall(sock, request), CONNECT_TIMEOUT)
        head = bytearray()
        async with asyncio.timeout(CONNECT_TIMEOUT):
            while HEAD_END not in head:
                data = await loop.sock_recv(sock, 65536)
                if not data:
                    raise ConnectionResetError("closed during the handshake")
                head += data
        if status_code(head) != 101:
            raise ConnectionRefusedError(f"upgrade answered {status_code(head)}")
        return sock, bytes(head[head.index(HEAD_END) + 4 :])
    except BaseException:
        sock.close()
        raise


async def run_flooder(ctx: Ctx, stats: ClientStats) -> None:
    """One burst of flood frames per connection, then read until the server has dropped it;
    records the close code and the delay from the close frame to the drop (§7: within 1 s)."""
    loop = asyncio.get_running_loop()
    n = stats.idx
    while ctx.remaining() > 3.0:
        kind = FLOOD_KINDS[n % len(FLOOD_KINDS)]
        n += 1
        try:
            sock, rest = await _ws_open(ctx, stats)
        except (OSError, TimeoutError) as exc:
            stats.outcome(f"{kind}: no connection ({exc_name(exc)})")
            await pause(ctx, 1.0)
            continue
        stats.connects += 1
        frames = ServerFrames()
        frames.feed(rest)
        try:
            try:
                await asyncio.wait_for(loop.sock_sendall(sock, _FLOOD_FRAMES[kind]), 5.0)
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed while the burst was still going out
            ending = "no end"
            async with asyncio.timeout(5.0):
                while True:
                    try:
                        data = await loop.sock_recv(sock, 65536)
                    except ConnectionResetError:
                        ending = "reset"
                        break
                    if not data:
                        ending = "eof"
                        break
                    frames.feed(data)
            dropped = time.monotonic()
            if frames.closed_at is not None:
                stats.latencies.append(dropped - frames.closed_at)
            stats.outcome(f"{kind}: close {frames.close_code}, then {ending}")
        except TimeoutError:
            stats.outcome(f"{kind}: close {frames.close_code}, still open 5 s later")
        finally:
            close_socket(sock, rst=True)
        await pause(ctx, ctx.rng.uniform(*FLOOD_PAUSE))


async def run_guesser(ctx: Ctx, stats: ClientStats) -> None:
    """Wrong tokens on kept-alive connections, one request after another; counts the answers
    per minute of the run (``401`` is a checked guess: at most 11 a minute may be)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    buf = bytearray(65536)
    guess = 0
    while ctx.remaining() > 1.0:
        try:
            sock = await connect(ctx, source=stats.address)
        except (OSError, TimeoutError) as exc:
            stats.outcome(f"connect failed: {exc_name(exc)}")
            await pause(ctx, 1.0)
            continue
        stats.connects += 1
        pending = b""
        try:
            while ctx.remaining() > 1.0:
                guess += 1
                request = f"GET /snapshot?token=wrong-guess-{guess:08d} HTTP/1.1\r\nHost: {ctx.host}:{ctx.port}\r\n\r\n"
                await asyncio.wait_for(loop.sock_sendall(sock, request.encode()), CONNECT_TIMEOUT)
                head = pending
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    while HEAD_END not in head:
                        n = await loop.sock_recv_into(sock, buf)
                        if n == 0:
                            raise ConnectionResetError("closed")
                        head += bytes(buf[:n])
                raw, _, body = head.partition(HEAD_END)
                fields = dict(line.split(": ", 1) for line in raw.decode("latin-1").split("\r\n")[1:] if ": " in line)
                fields = {k.lower(): v for k, v in fields.items()}
                length = int(fields.get("content-length", "0"))
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    while len(body) < length:
                        n = await loop.sock_recv_into(sock, buf)
                        if n == 0:
                            raise ConnectionResetError("closed")
                        body += bytes(buf[:n])
                pending = body[length:]
                minute = int((loop.time() - start) // 60)
                stats.outcome(f"minute {minute}: {status_code(raw)}")
                if fields.get("connection", "").lower() == "close":
                    break
                await asyncio.sleep(GUESS_PAUSE)
        except (OSError, TimeoutError) as exc:
            stats.error(exc_name(exc))
        finally:
            close_socket(sock)


async def _stall_one(ctx: Ctx, stats: ClientStats) -> None:
    """Send half an upgrade request and wait: refused at once (503), or closed at the timeout."""
    loop = asyncio.get_running_loop()
    buf = bytearray(4096)
    limit = ctx.request_timeout + ctx.idle_grace
    try:
        sock = await connect(ctx, source=stats.address)
    except (OSError, TimeoutError) as exc:
        stats.outcome(f"connect failed: {exc_name(exc)}")
        await pause(ctx, 1.0)
        return
    started = loop.time()
    stats.connects += 1
    try:
        half = f"GET {ctx.path('/ws')} HTTP/1.1\r\nHost: {ctx.host}:{ctx.port}\r\nUpgrade: websocket\r\n"
        await asyncio.wait_for(loop.sock_sendall(sock, half.encode()), CONNECT_TIMEOUT)
        try:
            n = await asyncio.wait_for(loop.sock_recv_into(sock, buf), limit)
        except TimeoutError:
            stats.outcome(f"still open after {limit:.0f} s")
            return
        waited = loop.time() - started
        status = status_code(buf[:n]) if n else 0
        if status == 503:
            stats.outcome("refused (503)")
        else:
            stats.latencies.append(waited)
            stats.outcome(f"closed by the server ({status or 'no answer'})")
    except (OSError, TimeoutError) as exc:
        stats.outcome(f"{exc_name(exc)}")
    finally:
        close_socket(sock)


async def run_staller(ctx: Ctx, stats: ClientStats) -> None:
    """Keep STALL_SOCKETS half-sent upgrade requests open from one address for the whole run."""
    limit = ctx.request_timeout + ctx.idle_grace

    async def keep_one(delay: float) -> None:
        await pause(ctx, delay)
        while ctx.remaining() > limit:
            await _stall_one(ctx, stats)
            await pause(ctx, 0.1)

    await asyncio.gather(*(keep_one(i * 0.01) for i in range(STALL_SOCKETS)))
