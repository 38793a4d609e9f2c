"""A hostile or broken client on the LAN costs the server a bounded amount (§7 of docs/interface.md).

* Request heads: over 64 KiB or over 100 headers -> 431 JSON and the connection closed, without
  the server buffering what the client keeps sending (RSS measured from /proc).
* Timeouts: `request_timeout` for a request head (idle sockets closed, slowloris 408),
  `keepalive_timeout` between requests, `stall_timeout` for streams whose client reads nothing.
* Bad input (a request pipelined behind a stream, absurd WebSocket values, floods of malformed
  requests or messages): an answer, no traceback, and a log that stays small.
* `max_streams_per_address`: one address cannot take every stream slot.

Three module-scoped servers keep this quick on two cores: `plain` (defaults, a config the code
before this work accepted too), `timed` (the shortest timeouts), `capped` (a per-address cap).
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.config import virtual_cam
from tests.support.http import BodyReader, fetch, header_fields, read_http_head, status_code
from tests.support.mjpeg import CONTENT_TYPE_RE, MjpegStream
from tests.support.process import HOST, EdgeServer, StartServer
from tests.support.sockets import StreamEnded, close_socket, fresh_loopback_address, open_socket
from tests.support.status import all_clients, get_status, wait_no_clients, wait_status
from tests.support.waiting import wait_for
from tests.support.websocket import RawWebSocket

KIB = 1024
MIB = 1024 * KIB
REQUEST_TIMEOUT = 1
KEEPALIVE_TIMEOUT = 1
STALL_TIMEOUT = 2


@pytest.fixture(scope="module")
def plain(start_module_server: StartServer) -> EdgeServer:
    """Default limits (64 KiB head, 100 headers, 10 s request timeout, 60 s stall timeout)."""
    return start_module_server(cameras=[virtual_cam("cam0", 160, 120, 30)], server={"max_clients": 64})


@pytest.fixture(scope="module")
def timed(start_module_server: StartServer) -> EdgeServer:
    """The shortest timeouts. cam0's frames are 160x120 (~3 KB): a client reading 8 KB/s takes
    each one well within stall_timeout, and one that reads nothing fills its buffers at once.
    big's are 640x480 at quality 90 (~21 KB): at 8 KB/s one frame takes longer than
    stall_timeout, and the client is still reading all along."""
    return start_module_server(
        cameras=[virtual_cam("cam0", 160, 120, 30), virtual_cam("big", 640, 480, 30, 90)],
        server={
            "max_clients": 64,
            "request_timeout": REQUEST_TIMEOUT,
            "keepalive_timeout": KEEPALIVE_TIMEOUT,
            "stall_timeout": STALL_TIMEOUT,
        },
    )


@pytest.fixture(scope="module")
def capped(start_module_server: StartServer) -> EdgeServer:
    return start_module_server(
        cameras=[virtual_cam("cam0", 160, 120, 30)],
        server={"max_clients": 64, "max_streams_per_address": 2},
    )


# ------------------------------------------------------------------------------------------------
# Raw HTTP helpers
# ------------------------------------------------------------------------------------------------


@dataclass
class Answer:
    """Everything the server sent on a connection until it closed it (or the deadline)."""

    data: bytes
    ending: str  # "eof" | "reset" | "timeout"
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self.headers
        return json.loads(self.body)


def read_to_close(sock: socket.socket, timeout: float, limit: int = 1 * MIB) -> Answer:
    """Read until the server closes the connection (EOF or reset), `timeout` s at most."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    ending = "timeout"
    while len(data) < limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            ending = "reset"
            break
        if not chunk:
            ending = "eof"
            break
        data += chunk
    return parse_answer(bytes(data), ending)


def parse_answer(data: bytes, ending: str) -> Answer:
    answer = Answer(data, ending)
    head, sep, body = data.partition(b"\r\n\r\n")
    status = status_code(head)
    if sep and status:
        answer.status = status
        answer.headers = header_fields(head)
        answer.body = body
    return answer


def send_ignoring_close(sock: socket.socket, data: bytes) -> None:
    """The server may stop reading and close once it has answered: that is fine here."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


def log_since(srv: EdgeServer, offset: int) -> str:
    return srv.log_text()[offset:]


def log_barrier(srv: EdgeServer) -> int:
    """Where the log stood when this was called: everything the server logged before is in
    `srv.log_text()[:barrier]` (a WebSocket opened now logs a line after all of it). It comes
    from a loopback address of its own, so the client log limit never holds its line back."""
    ws = RawWebSocket(srv.host, srv.port, "/ws", source_ip=fresh_loopback_address())
    cid = ws.recv_json()["id"]
    ws.close()
    marker = f"[{cid}] websocket stream opened"
    wait_for(lambda: marker in srv.log_text(), 5, 0.02, "the barrier stream's log line")
    log = srv.log_text()
    return log.rfind("\n", 0, log.index(marker)) + 1


def wait_stream_closed(srv: EdgeServer, cid: str) -> None:
    wait_status(srv, lambda st: cid not in {c["id"] for c in all_clients(st)}, 5, f"{cid} closed")


def client_id_for_port(srv: EdgeServer, local_port: int) -> str:
    def find() -> str | None:
        for c in all_clients(get_status(srv)):
            if c["remote"] == f"{HOST}:{local_port}":
                return str(c["id"])
        return None

    return wait_for(find, 5, 0.05, f"the stream from port {local_port} listed")


# ------------------------------------------------------------------------------------------------
# Request head limits
# ------------------------------------------------------------------------------------------------


def test_oversized_header_line_gets_431_json_and_close(plain: EdgeServer) -> None:
    sock = open_socket(plain.host, plain.port)
    try:
        send_ignoring_close(sock, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (100 * KIB) + b"\r\n\r\n")
        answer = read_to_close(sock, 5)
    finally:
        sock.close()
    assert answer.status in (431, 400), f"answered {answer.data[:200]!r}"
    assert "error" in answer.json()
    assert answer.ending in ("eof", "reset"), "the connection must be closed after the refusal"


@pytest.mark.parametrize("count", [101, 10_000])
def test_too_many_headers_get_431(plain: EdgeServer, count: int) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(count))
    sock = open_socket(plain.host, plain.port)
    try:
        send_ignoring_close(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        answer = read_to_close(sock, 5)
    finally:
        sock.close()
    assert answer.status == 431, f"{count} headers answered {answer.data[:200]!r}"
    assert "error" in answer.json()
    assert answer.ending in ("eof", "reset")


def test_large_head_within_the_limits_is_served(plain: EdgeServer) -> None:
    """90 headers, 60 KB: under both limits, so an ordinary answer."""
    value = b"v" * 670
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%02d: %s\r\n" % (i, value) for i in range(89))
    head += b"\r\n"
    assert 59_000 < len(head) < 64 * KIB
    sock = open_socket(plain.host, plain.port)
    try:
        sock.sendall(head)
        resp, rest = read_http_head(sock)
        assert resp.status == 200
        body = BodyReader(sock, rest, chunked=False).read_exact(int(resp.get("Content-Length") or 0))
        assert json.loads(body)["status"] == "ok"
    finally:
        sock.close()


def _stream_header(sock: socket.socket, budget: int, deadline: float) -> tuple[int, bool]:
    """Send one endless header line in 64 KiB chunks until the server answers or closes, the
    budget is spent or the deadline passes; returns (bytes sent, answered/closed)."""
    sock.setblocking(False)
    chunk = b"a" * (64 * KIB)
    sent = 0
    pending = b"GET / HTTP/1.1\r\nHost: x\r\nX-Flood: "
    while sent < budget:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return sent, False
        readable, writable, _ = select.select([sock], [sock], [], min(remaining, 0.5))
        if readable:
            return sent, True
        if writable:
            try:
                n = sock.send(pending)
            except (BrokenPipeError, ConnectionResetError):
                return sent, True
            sent += n
            pending = pending[n:] or chunk
    return sent, False


def test_endless_headers_do_not_grow_the_server_memory(plain: EdgeServer) -> None:
    """Ten connections each sending a header line without end. The server answers once 64 KiB
    arrived and drops the rest; a server that buffered it would grow by what was sent
    (the sending is capped at 20 MB per connection and 20 s, so such a server fails, not hangs)."""
    fetch(plain.url + "/healthz")  # warm up
    before = plain.rss_kib()
    socks = [open_socket(plain.host, plain.port) for _ in range(10)]
    results: list[tuple[int, bool]] = []
    deadline = time.monotonic() + 20
    try:
        for sock in socks:
            results.append(_stream_header(sock, 20 * MIB, deadline))
        grown_kib = plain.rss_kib() - before
    finally:
        for sock in socks:
            sock.close()
    total_sent = sum(sent for sent, _ in results)
    assert grown_kib < 8 * KIB, (
        f"server RSS grew by {grown_kib / KIB:.1f} MiB while 10 clients sent {total_sent / MIB:.1f} MiB of headers"
    )
    assert all(answered for _, answered in results), f"(bytes sent, answered) per connection: {results}"


# ------------------------------------------------------------------------------------------------
# Malformed requests, requests behind streams, absurd WebSocket values
# ------------------------------------------------------------------------------------------------

GARBAGE = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)),  # a TLS ClientHello
    b"GET /\x00 HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
]


def test_malformed_requests_get_json_400_and_a_bounded_log(plain: EdgeServer) -> None:
    """2,000 malformed requests: each gets a JSON 400; the log grows by a few lines (10
    lines per client per 10 s are logged), not one line per request."""
    n = 2000
    offset = len(plain.log_text())
    answers: list[Answer] = []
    deadline = time.monotonic() + 60
    for i in range(n):
        assert time.monotonic() < deadline, f"only {i} of {n} malformed requests answered in 60 s"
        sock = open_socket(plain.host, plain.port, timeout=5)
        try:
            send_ignoring_close(sock, GARBAGE[i % len(GARBAGE)])
            answer = read_to_close(sock, 5, limit=4096)
        finally:
            sock.close()
        if i < len(GARBAGE) or answer.status != 400:
            answers.append(answer)
    written = plain.log_text()[offset : log_barrier(plain)]
    grown = len(written.encode())
    assert grown < 5000, (
        f"{n} malformed requests wrote {grown} bytes of log ({grown / n:.1f} per request):\n" + written[-2000:]
    )
    assert "Invalid HTTP request received" not in written
    bad = [a.data[:120] for a in answers if a.status != 400]
    assert not bad, f"{len(bad)} malformed requests not answered 400, e.g. {bad[:3]}"
    for answer in answers:
        assert "error" in answer.json()
    plain.assert_clean_log(allow_error_lines=False, since=offset)


def test_request_pipelined_behind_a_stream_leaves_no_traceback(plain: EdgeServer) -> None:
    """`GET /stream` and `GET /` in one send, one frame read, then the client leaves: the stream
    must learn that its client left (it once wrote into the closed transport: an ERROR traceback)."""
    offset = len(plain.log_text())
    for i in range(20):
        sock = open_socket(plain.host, plain.port)
        try:
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            head, rest = read_http_head(sock)
            assert head.status == 200
            m = CONTENT_TYPE_RE.fullmatch(head.get("Content-Type") or "")
            assert m, head.raw
            body = BodyReader(sock, rest, chunked="chunked" in (head.get("Transfer-Encoding") or ""))
            boundary = b"\r\n--" + m.group("b").encode() + b"\r\n"
            body.read_until(b"\xff\xd9" + boundary)  # one whole frame
        finally:
            close_socket(sock, rst=i % 2 == 0)  # half the clients vanish with a reset
    wait_no_clients(plain)
    log_barrier(plain)  # whatever the 20 streams' ends logged is in the log now
    plain.assert_clean_log(allow_error_lines=False, since=offset)


def _still_serving(ws: RawWebSocket) -> None:
    """The connection still answers messages and still sends frames."""
    ws.send_text(json.dumps({"type": "probe"}))
    reply = ws.recv_text()
    assert reply["type"] == "error" and "probe" in reply["message"], reply
    ws.recv_binary()


HUGE = "9" * 400

ABSURD = [
    pytest.param(f'{{"type": "settings", "fps": {HUGE}}}', True, id="settings-fps-400-digits"),
    pytest.param(f'{{"type": "settings", "fps": -{HUGE}}}', True, id="settings-fps-minus-400-digits"),
    pytest.param('{"type": "settings", "fps": 1e999}', True, id="settings-fps-1e999"),
    pytest.param('{"type": "settings", "fps": NaN}', True, id="settings-fps-nan"),
    pytest.param(f'{{"type": "settings", "fps": 5, "ack": {HUGE}}}', True, id="settings-ack-400-digits"),
    pytest.param(f'{{"type": "ack", "seq": {HUGE}}}', False, id="ack-seq-400-digits"),
    pytest.param(f'{{"type": "ack", "seq": -{HUGE}}}', False, id="ack-seq-minus-400-digits"),
    pytest.param('{"type": "ack", "seq": 1e999}', True, id="ack-seq-1e999"),
    pytest.param("[" * 20000 + "]" * 20000, True, id="nested-arrays-20000"),
    pytest.param('{"type": "settings", "fps": ' + '{"a": [' * 3000 + "1" + "]}" * 3000 + "}", True, id="nested-fps"),
]


@pytest.mark.parametrize(("message", "is_error"), ABSURD)
def test_absurd_websocket_values_are_answered_and_the_connection_kept(
    plain: EdgeServer, message: str, is_error: bool
) -> None:
    assert len(message.encode()) < 64 * KIB  # under the server's message size limit
    offset = len(plain.log_text())
    ws = RawWebSocket(plain.host, plain.port, "/ws")
    try:
        cid = ws.recv_json()["id"]
        ws.recv_binary()
        ws.send_text(message)
        if is_error:
            reply = ws.recv_text()
            assert reply["type"] == "error" and reply["message"], reply
        _still_serving(ws)
    finally:
        ws.close()
    wait_stream_closed(plain, cid)
    plain.assert_clean_log(allow_error_lines=False, since=offset)


def test_settings_with_a_400_digit_fps_then_valid_settings_work(plain: EdgeServer) -> None:
    offset = len(plain.log_text())
    ws = RawWebSocket(plain.host, plain.port, "/ws")
    try:
        hello = ws.recv_json()
        ws.send_text(f'{{"type": "settings", "fps": {HUGE}}}')
        reply = ws.recv_text()
        assert reply["type"] == "error" and "fps" in reply["message"], reply
        for _ in range(3):
            ws.recv_binary()
        ws.send_text(json.dumps({"type": "settings", "fps": 5}))
        wait_status(
            plain,
            lambda st: any(c["id"] == hello["id"] and c["fps_cap"] == 5 for c in all_clients(st)),
            5,
            "the valid settings applied",
        )
        ws.recv_binary()
    finally:
        ws.close()
    wait_stream_closed(plain, hello["id"])
    plain.assert_clean_log(allow_error_lines=False, since=offset)


def test_ack_with_a_huge_seq_releases_ack_mode(plain: EdgeServer) -> None:
    offset = len(plain.log_text())
    ws = RawWebSocket(plain.host, plain.port, "/ws")
    try:
        cid = ws.recv_json()["id"]
        ws.send_text(json.dumps({"type": "settings", "ack": True}))
        seq = ws.recv_binary().seq
        ws.send_text(json.dumps({"type": "ack", "seq": 10**400}))
        assert ws.recv_binary().seq > seq
    finally:
        ws.close()
    wait_stream_closed(plain, cid)
    plain.assert_clean_log(allow_error_lines=False, since=offset)


def test_websocket_error_flood_writes_a_bounded_log(plain: EdgeServer) -> None:
    """90 malformed messages a second for 3 s (under the 100/s flood limit, so the connection
    stays): each is answered, but only a handful are logged, and a later line says how many
    were not."""
    ws = RawWebSocket(plain.host, plain.port, "/ws")
    errors = 0
    closed: list[int | None] = []
    lock = threading.Lock()
    stop = threading.Event()

    def read() -> None:  # keeps reading frames so the stream never stalls
        nonlocal errors
        try:
            while not stop.is_set():
                op, payload = ws.recv_message()
                if op == ws.OP_CLOSE:
                    closed.append(ws.close_code)
                    return
                if op == ws.OP_TEXT and json.loads(payload)["type"] == "error":
                    with lock:
                        errors += 1
        except (StreamEnded, OSError):
            closed.append(None)

    def errors_seen() -> int:
        with lock:
            return errors

    offset = len(plain.log_text())
    try:
        cid = ws.recv_json()["id"]
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        n = 270
        start = time.monotonic()
        for i in range(n):
            delay = start + i / 90 - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the pacing is the test: 90 messages per second
            ws.send_text(json.dumps({"type": f"bogus-{i}"}))
        wait_for(lambda: errors_seen() >= n, 10, 0.05, f"{n} error replies")
        flood_log = plain.log_text()[offset : log_barrier(plain)]
        lines = [ln for ln in flood_log.splitlines() if "client message rejected" in ln]
        assert len(lines) <= 10, f"{n} malformed messages wrote {len(lines)} log lines:\n" + "\n".join(lines[:20])
        # The held-back count is reported on the first line after the rate window (10 s).
        deadline = time.monotonic() + 15
        while "more client log lines not logged" not in log_since(plain, offset):
            assert time.monotonic() < deadline, "no line reporting the client errors not logged"
            ws.send_text(json.dumps({"type": "late"}))
            time.sleep(0.5)  # one message per half second: polling the rate window
        assert not closed, f"the connection was closed ({closed}); 90 messages/s is under the flood limit"
    finally:
        stop.set()
        ws.close()
    wait_stream_closed(plain, cid)
    plain.assert_clean_log(allow_error_lines=False, since=offset)


# ------------------------------------------------------------------------------------------------
# Open files
# ------------------------------------------------------------------------------------------------


def test_open_files_limit_is_raised_to_the_hard_limit(plain: EdgeServer) -> None:
    limits = Path(f"/proc/{plain.proc.pid}/limits").read_text()
    m = re.search(r"^Max open files\s+(\S+)\s+(\S+)", limits, re.MULTILINE)
    assert m, limits
    soft, hard = m.groups()
    status = get_status(plain)
    assert soft == hard, f"soft open-files limit {soft} not raised to the hard limit {hard}"
    if hard != "unlimited":
        assert status["open_files_limit"] == int(hard)
        if int(hard) > 1024:
            assert status["open_files_limit"] > 1024
    else:
        assert status["open_files_limit"] > 1024


# ------------------------------------------------------------------------------------------------
# request_timeout, keepalive_timeout
# ------------------------------------------------------------------------------------------------


def test_idle_connection_is_closed_after_request_timeout(timed: EdgeServer) -> None:
    sock = open_socket(timed.host, timed.port)
    started = time.monotonic()
    try:
        answer = read_to_close(sock, 6)
    finally:
        sock.close()
    elapsed = time.monotonic() - started
    assert answer.ending in ("eof", "reset"), f"an idle connection was still open after {elapsed:.1f} s"
    assert answer.data == b"", "a connection that sent nothing gets no answer, just a close"
    assert REQUEST_TIMEOUT * 0.8 <= elapsed <= REQUEST_TIMEOUT + 2, f"closed after {elapsed:.2f} s"


def test_slowloris_gets_408_then_close(timed: EdgeServer) -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    sock = open_socket(timed.host, timed.port)
    started = time.monotonic()
    sent = 0
    try:
        while sent < len(head):
            readable, _, _ = select.select([sock], [], [], 0.3)  # one byte every 0.3 s
            if readable:
                break
            try:
                sock.sendall(head[sent : sent + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1
            assert time.monotonic() - started < 10
        answer = read_to_close(sock, 5)
    finally:
        sock.close()
    elapsed = time.monotonic() - started
    assert sent >= 2
    assert answer.status == 408, f"after {sent} bytes in {elapsed:.1f} s: {answer.data[:200]!r}"
    assert "error" in answer.json()
    assert answer.ending in ("eof", "reset")
    assert elapsed <= REQUEST_TIMEOUT + 3, f"answered after {elapsed:.1f} s"


def _get_on(sock: socket.socket, path: str) -> int:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head, rest = read_http_head(sock)
    BodyReader(sock, rest, chunked=False).read_exact(int(head.get("Content-Length") or 0))
    return head.status


def test_idle_keepalive_connection_is_closed_after_keepalive_timeout(timed: EdgeServer) -> None:
    sock = open_socket(timed.host, timed.port)
    try:
        assert _get_on(sock, "/healthz") == 200
        assert _get_on(sock, "/healthz") == 200  # kept alive
        started = time.monotonic()
        answer = read_to_close(sock, 6)
    finally:
        sock.close()
    elapsed = time.monotonic() - started
    assert answer.ending in ("eof", "reset"), f"still open after {elapsed:.1f} s"
    assert answer.data == b""
    assert KEEPALIVE_TIMEOUT * 0.5 <= elapsed <= KEEPALIVE_TIMEOUT + 2, f"closed after {elapsed:.2f} s"


# ------------------------------------------------------------------------------------------------
# stall_timeout
# ------------------------------------------------------------------------------------------------


def _stall_lines(srv: EdgeServer, cid: str) -> list[str]:
    return [ln for ln in srv.log_text().splitlines() if f"[{cid}]" in ln and "read nothing for" in ln]


def _dropped_for_stalling(srv: EdgeServer, cid: str, read: Callable[[], object]) -> None:
    """From now on nothing is read: the server drops `cid` after stall_timeout (not before), and
    what the client still gets ends without a clean end (`read` raises StreamEnded: reset or EOF)."""
    started = time.monotonic()
    wait_status(srv, lambda st: cid not in {c["id"] for c in all_clients(st)}, STALL_TIMEOUT + 6, f"{cid} gone")
    elapsed = time.monotonic() - started
    assert elapsed >= STALL_TIMEOUT * 0.9, f"a stalled client was dropped after {elapsed:.1f} s"
    deadline = time.monotonic() + 10
    with pytest.raises(StreamEnded):
        while time.monotonic() < deadline:
            read()


def _stall_logged_once(srv: EdgeServer, cid: str) -> None:
    wait_for(lambda: _stall_lines(srv, cid), 3, 0.05, "the stall log line")
    lines = _stall_lines(srv, cid)
    assert len(lines) == 1 and " INFO edge.client " in lines[0], lines


def test_stalled_mjpeg_client_is_aborted(timed: EdgeServer) -> None:
    stream = MjpegStream(timed.host, timed.port, "/stream", rcvbuf=4096)
    try:
        cid = client_id_for_port(timed, stream.local_port)
        _dropped_for_stalling(timed, cid, stream.read_part)
        assert stream.eof, "the stream ended cleanly; expected an abort"
    finally:
        stream.close()
    _stall_logged_once(timed, cid)


def test_stalled_websocket_client_is_aborted(timed: EdgeServer) -> None:
    ws = RawWebSocket(timed.host, timed.port, "/ws", rcvbuf=4096)
    try:
        cid = ws.recv_json()["id"]
        _dropped_for_stalling(timed, cid, ws.recv_binary)
        assert ws.close_code is None, "a client that reads nothing cannot be sent a close frame; expected an abort"
    finally:
        ws.close()
    _stall_logged_once(timed, cid)


@pytest.mark.parametrize("path", ["/stream", "/cameras/big/stream"], ids=["small-frames", "frame-slower-than-stall"])
def test_slow_reader_is_not_taken_for_a_stalled_one(timed: EdgeServer, path: str) -> None:
    """Reading 8 KB/s (slower than the camera produces, so most frames are skipped) for 2.5
    stall timeouts: the client keeps its stream, also when one frame takes it longer than
    stall_timeout (progress, not a whole frame, is what counts)."""
    stream = MjpegStream(timed.host, timed.port, path, rcvbuf=4096)
    try:
        cid = client_id_for_port(timed, stream.local_port)
        got = 0
        started = time.monotonic()
        while time.monotonic() - started < STALL_TIMEOUT * 2.5:
            got += stream.read_some(820)
            time.sleep(0.1)  # the pacing is the test: about 8 KB/s
        assert got > 20 * KIB, f"read only {got} bytes"
        status = get_status(timed)
        listed = [c for c in all_clients(status) if c["id"] == cid]
        assert listed, f"the slow reader {cid} was dropped"
        assert not _stall_lines(timed, cid)
        got += stream.read_some(65536)  # and the stream still flows
    finally:
        stream.close()


# ------------------------------------------------------------------------------------------------
# max_streams_per_address
# ------------------------------------------------------------------------------------------------


def _stream_head(srv: EdgeServer, path: str, source_ip: str | None = None) -> tuple[socket.socket, Answer]:
    """Request a stream; returns the open socket and the answer's head (with the body of a refusal)."""
    sock = open_socket(srv.host, srv.port, source_ip=source_ip)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head, rest = read_http_head(sock)
    headers = {name.lower(): value for name, value in head.headers}
    body = b""
    if head.status != 200:
        body = BodyReader(sock, rest, chunked=False).read_exact(int(headers.get("content-length", "0")))
    return sock, Answer(head.raw, "open", head.status, headers, body)


@contextlib.contextmanager
def closing_all(socks: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def test_third_stream_from_one_address_is_refused(capped: EdgeServer) -> None:
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(MjpegStream(capped.host, capped.port, "/stream"))
        second = stack.enter_context(MjpegStream(capped.host, capped.port, "/stream"))
        first.read_part()
        second.read_part()
        sock, answer = _stream_head(capped, "/stream")
        sock.close()
        assert answer.status == 503
        assert answer.headers.get("retry-after"), answer.headers
        assert isinstance(answer.json()["error"], str)

        ws = RawWebSocket(capped.host, capped.port, "/ws")  # accepted, then closed with 1013
        try:
            assert ws.recv_close(5) == 1013
        finally:
            ws.close()

        first.close()
        wait_status(capped, lambda st: len(all_clients(st)) == 1, 5, "one stream left")
        third = stack.enter_context(MjpegStream(capped.host, capped.port, "/stream"))
        assert third.head is not None and third.head.status == 200
        third.read_part()
        second.read_part()
    wait_no_clients(capped)


def test_idle_streams_from_one_address_do_not_lock_out_others(capped: EdgeServer) -> None:
    """The issue's scenario: 64 streams at ?fps=0.01 that are never read. With the cap, the
    address gets its 2 and the rest are refused; snapshots, status and other addresses still
    get served."""
    socks: list[socket.socket] = []
    statuses: list[int] = []
    with closing_all(socks):
        for _ in range(64):
            sock, answer = _stream_head(capped, "/stream?fps=0.01")
            socks.append(sock)
            statuses.append(answer.status)
            if answer.status != 200:
                sock.close()
        assert statuses.count(200) == 2 and statuses.count(503) == 62, statuses
        snap = fetch(capped.url + "/snapshot")
        assert snap.status == 200 and snap.headers["content-type"] == "image/jpeg"
        status = get_status(capped)
        assert len(all_clients(status)) == 2
        sock, answer = _stream_head(capped, "/stream", source_ip="127.0.0.2")
        socks.append(sock)
        assert answer.status == 200, "another address was refused a stream"
        data = b""
        while b"\xff\xd9" not in data:
            chunk = sock.recv(65536)
            assert chunk, "the other address's stream ended"
            data += chunk
        remotes = [c["remote"].rsplit(":", 1)[0] for c in all_clients(get_status(capped))]
        assert sorted(remotes) == ["127.0.0.1", "127.0.0.1", "127.0.0.2"], remotes
    wait_no_clients(capped)
