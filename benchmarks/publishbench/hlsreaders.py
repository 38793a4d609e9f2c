"""N HLS readers in a process of their own, as a media server's viewers load it: each polls the
playlist once a second over a kept-alive HTTP/1.1 connection and fetches every segment it has not
fetched yet, reading and discarding the bytes.

    python benchmarks/publishbench/hlsreaders.py URL N SECONDS      # prints one JSON line at the end

The figures it prints (segments and bytes fetched a second, playlist polls, errors) show the load
was real; the benchmark reads its CPU from /proc, so it is never edge's.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urljoin, urlsplit

POLL = 1.0
CHUNK = 256 * 1024


def segments(playlist: str) -> list[str]:
    """The segment names a media playlist lists, in order."""
    return [line.strip() for line in playlist.splitlines() if line.strip() and not line.startswith("#")]


class Reader:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.seen: set[str] = set()
        self.bytes = 0
        self.segments = 0
        self.polls = 0
        self.errors = 0
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, path: str, keep: bool) -> bytes:
        """One GET on the kept-alive connection: the body (kept only when ``keep``)."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        body = bytearray()
        left = length
        while left:
            data = await reader.read(min(CHUNK, left))
            if not data:
                raise ConnectionError("closed mid-body")
            left -= len(data)
            self.bytes += len(data)
            if keep:
                body += data
        if status != 200:
            raise ConnectionError(f"HTTP {status}")
        return bytes(body)

    async def run(self, until: float) -> None:
        base = urlsplit(self.url).path
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                playlist = (await self.get(base, keep=True)).decode(errors="replace")
                self.polls += 1
                for name in segments(playlist):
                    if name not in self.seen:
                        self.seen.add(name)
                        await self.get(urlsplit(urljoin(self.url, name)).path, keep=False)
                        self.segments += 1
            except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError):
                self.errors += 1
                if self._streams is not None:
                    self._streams[1].close()
                self._streams = None
            await asyncio.sleep(max(0.0, POLL - (time.monotonic() - started)))
        if self._streams is not None:
            self._streams[1].close()


async def main(url: str, count: int, seconds: float) -> dict[str, float]:
    readers = [Reader(url) for _ in range(count)]
    until = time.monotonic() + seconds
    started = time.monotonic()
    # Spread over a poll period, as viewers who arrived at different times would be.
    tasks = []
    for i, reader in enumerate(readers):
        tasks.append(asyncio.ensure_future(reader.run(until)))
        await asyncio.sleep(POLL / max(count, 1) if i < count - 1 else 0)
    await asyncio.gather(*tasks)
    wall = time.monotonic() - started
    return {
        "readers": count,
        "wall_s": wall,
        "segments_per_s": sum(r.segments for r in readers) / wall,
        "mbytes_per_s": sum(r.bytes for r in readers) / wall / 1e6,
        "polls_per_s": sum(r.polls for r in readers) / wall,
        "errors": sum(r.errors for r in readers),
    }


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
    print(json.dumps(result), flush=True)
