"""Pure helpers of the H.264 benchmark, each checked by ``benchmarks/test_h264bench.py``.

Nothing here touches a process or a socket: percentiles and summaries, FFmpeg's SSIM line, the
HTTP/1.1 response head and chunked transfer coding, the multipart parts of an MJPEG body, the
17-byte header of an H.264 WebSocket message (§9), /proc/PID/stat, and the verdict strings.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

WS_HEADER = struct.Struct(">QdB")  # seq, capture time (unix s), flags (bit 0: key frame)
KEY_FLAG = 0x01
INIT_FLAG = 0x02

_SSIM_RE = re.compile(
    r"SSIM Y:(?P<Y>[\d.]+) \([^)]*\) U:(?P<U>[\d.]+) \([^)]*\) V:(?P<V>[\d.]+) \([^)]*\) All:(?P<All>[\d.]+)"
)
_LENGTH_RE = re.compile(rb"Content-Length:\s*(\d+)", re.IGNORECASE)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks (numpy's default); NaN if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(values: Sequence[float]) -> dict[str, float | int]:
    """count, min, p50, p95, max and mean of ``values`` (NaN for an empty list, count 0)."""
    if not values:
        nan = math.nan
        return {"count": 0, "min": nan, "p50": nan, "p95": nan, "max": nan, "mean": nan}
    return {
        "count": len(values),
        "min": min(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values),
        "mean": sum(values) / len(values),
    }


def parse_ssim(stderr: str) -> dict[str, float]:
    """Y, U, V and All from the last ``SSIM Y:... All:...`` line FFmpeg's ssim filter prints."""
    matches = list(_SSIM_RE.finditer(stderr))
    if not matches:
        raise ValueError(f"no SSIM summary line in ffmpeg's output: {stderr[-400:]!r}")
    return {key: float(value) for key, value in matches[-1].groupdict().items()}


def cpu_ticks(stat_line: str) -> int:
    """utime + stime (clock ticks) from one /proc/PID/stat line; the command name may hold spaces
    and parentheses, so the fields are counted from the last ``)``."""
    fields = stat_line[stat_line.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def cores(cpu_before: float, cpu_after: float, wall: float) -> float:
    """CPU seconds over a window as cores (1.0 = one core busy the whole window)."""
    return (cpu_after - cpu_before) / wall if wall > 0 else math.nan


def per_viewer(cores_n: float, cores_0: float, viewers: int) -> float:
    """What each viewer adds: (cores with ``viewers`` - cores with none) / ``viewers``."""
    return (cores_n - cores_0) / viewers if viewers > 0 else math.nan


def split_head(data: bytes) -> tuple[int, dict[str, str], bytes] | None:
    """(status, lower-case headers, rest) of an HTTP response, or None while its head is incomplete."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP status line: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, data[end + 4 :]


class Dechunker:
    """Incremental decoder of HTTP/1.1 chunked transfer coding: ``feed`` returns the payload bytes
    the new data completes; ``payload`` counts them all; ``ended`` after the last (empty) chunk."""

    def __init__(self) -> None:
        self._carry = bytearray()
        self._remaining = 0  # payload bytes of the current chunk still to come
        self._crlf = 0  # CRLF bytes after a chunk's payload still to skip
        self.payload = 0
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        pos = 0
        while pos < len(data) and not self.ended:
            if self._remaining:
                take = min(self._remaining, len(data) - pos)
                out += data[pos : pos + take]
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._crlf = 2
            elif self._crlf:
                take = min(self._crlf, len(data) - pos)
                if data[pos : pos + take] != b"\r\n"[2 - self._crlf : 2 - self._crlf + take]:
                    raise ValueError("chunk payload not followed by CRLF")
                pos += take
                self._crlf -= take
            else:
                end = data.find(b"\n", pos)
                if end < 0:
                    self._carry += data[pos:]
                    if len(self._carry) > 1024:
                        raise ValueError("chunk-size line too long")
                    break
                line = bytes(self._carry + data[pos:end]).rstrip(b"\r")
                self._carry.clear()
                pos = end + 1
                size = int(line.split(b";", 1)[0], 16)
                if size == 0:
                    self.ended = True
                self._remaining = size
        self.payload += len(out)
        return bytes(out)


def multipart_jpegs(body: bytes, limit: int = 1 << 30) -> list[bytes]:
    """The JPEGs of a multipart/x-mixed-replace body (de-chunked), by each part's Content-Length;
    an incomplete last part is left out."""
    jpegs: list[bytes] = []
    pos = 0
    while len(jpegs) < limit:
        head_end = body.find(b"\r\n\r\n", pos)
        if head_end < 0:
            break
        match = _LENGTH_RE.search(body, pos, head_end)
        if match is None:
            raise ValueError(f"a part without Content-Length at byte {pos}")
        start = head_end + 4
        end = start + int(match.group(1))
        if end > len(body):
            break
        jpegs.append(body[start:end])
        pos = end
    return jpegs


@dataclass(frozen=True)
class WsUnit:
    """One binary message of ``?codec=h264``: its header and the access unit after it."""

    seq: int
    captured: float
    key: bool
    init: bool
    unit: bytes


def parse_ws_unit(message: bytes) -> WsUnit:
    """Split a ``?codec=h264`` message (§9): >Q seq, >d capture time, >B flags, then Annex-B."""
    if len(message) < WS_HEADER.size:
        raise ValueError(f"a {len(message)}-byte message is shorter than the {WS_HEADER.size}-byte header")
    seq, captured, flags = WS_HEADER.unpack_from(message)
    return WsUnit(seq, captured, bool(flags & KEY_FLAG), bool(flags & INIT_FLAG), message[WS_HEADER.size :])


def starts_annexb(data: bytes) -> bool:
    """Annex-B starts with a start code (``00 00 01`` or ``00 00 00 01``)."""
    return data.startswith(b"\x00\x00\x01") or data.startswith(b"\x00\x00\x00\x01")


def verdict(value: float, limit: float, *, at_most: bool = True) -> str:
    """PASS/FAIL of ``value`` against ``limit`` (``at_most``: value <= limit; else value >= limit)."""
    if math.isnan(value) or math.isnan(limit):
        return "n/a"
    ok = value <= limit if at_most else value >= limit
    return "PASS" if ok else "FAIL"


def ratio(value: float, reference: float) -> float:
    """value / reference, NaN when the reference is 0 or missing."""
    if not reference or math.isnan(reference) or math.isnan(value):
        return math.nan
    return value / reference


def fmt(value: float | None, digits: int = 3) -> str:
    """A table cell: fixed digits, a dash for missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def rates(counts_before: Iterable[int], counts_after: Iterable[int], wall: float) -> list[float]:
    """Per-client received bytes/s between two samples of their counters."""
    return [(after - before) / wall for before, after in zip(counts_before, counts_after, strict=True)]


def nal_types(data: bytes, limit: int = 8) -> list[int]:
    """Types of the first ``limit`` NAL units of an Annex-B stream (9 AUD, 7 SPS, 8 PPS, 5 IDR, 1 slice)."""
    types: list[int] = []
    pos = 0
    while len(types) < limit:
        start = data.find(b"\x00\x00\x01", pos)
        if start < 0 or start + 3 >= len(data):
            break
        types.append(data[start + 3] & 0x1F)
        pos = start + 3
    return types
