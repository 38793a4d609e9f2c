"""A publisher's connection to its server: TCP (or TLS) where every wait has a deadline.

Each target's thread owns one. Nothing here blocks for longer than :data:`TICK` without looking
at the target's stop event, and a server that stops taking bytes is given up on after
:data:`STALL_TIMEOUT` seconds without progress: a dead or stuck server costs its own thread a
few seconds, never the camera or another target.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ..formats.rtmp import RtmpError
from ..formats.rtsp import RtspError

CONNECT_TIMEOUT = 10.0
REPLY_TIMEOUT = 10.0  # a server's answer to a handshake step or a command
STALL_TIMEOUT = 10.0  # a server that takes no byte for this long has stopped reading
TICK = 0.25  # how often a wait looks at the stop event
SEND_BUFFER = 128 * 1024  # bounded: a stalled server holds little of ours in the kernel (it doubles this)

T = TypeVar("T")


class PublishError(Exception):
    """Why a target's connection ended, said so that the user knows what to look at."""


class Stopped(Exception):
    """The target was asked to stop while it waited."""


def describe(exc: BaseException) -> str:
    """An exception as a short line for status and the log."""
    if isinstance(exc, PublishError):
        return str(exc)
    if isinstance(exc, RtmpError | RtspError):
        return f"the server sent what a {'RTMP' if isinstance(exc, RtmpError) else 'RTSP'} server does not: {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, socket.gaierror):
        return "host name not found (check the URL, or the device's DNS)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running, and is the port right?)"
    if isinstance(exc, TimeoutError):
        return "timed out connecting (is the host up and reachable?)"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{os.strerror(exc.errno).lower()} ({errno.errorcode.get(exc.errno, exc.errno)})"
    return f"{type(exc).__name__}: {exc}"


class Link:
    def __init__(self, host: str, port: int, tls: bool, stop: threading.Event) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self._stop = stop
        self._sock: socket.socket | None = None
        self.sent = 0  # bytes the kernel took from us

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if self.tls:
                context = ssl.create_default_context()
                sock.settimeout(REPLY_TIMEOUT)
                sock = context.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(TICK)
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    @property
    def sock(self) -> socket.socket:
        if self._sock is None:
            raise PublishError("not connected")
        return self._sock

    def send(self, data: bytes) -> None:
        """All of ``data``, or :class:`PublishError` once the server takes nothing for
        :data:`STALL_TIMEOUT` seconds."""
        view = memoryview(data)
        progress = time.monotonic()
        while view:
            if self._stop.is_set():
                raise Stopped
            try:
                count = self.sock.send(view)
            except (TimeoutError, ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                count = 0
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise PublishError("the server closed the connection") from exc
            if count:
                view = view[count:]
                self.sent += count
                progress = time.monotonic()
            elif time.monotonic() - progress > STALL_TIMEOUT:
                raise PublishError(f"the server stopped reading (took nothing for {STALL_TIMEOUT:g} s)")

    def receive(self, timeout: float) -> bytes:
        """What the server sent within ``timeout`` seconds (b'' if nothing); PublishError when it
        closed the connection."""
        deadline = time.monotonic() + timeout
        sock = self.sock
        while True:
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            wait = max(0.0, min(TICK, deadline - time.monotonic()))
            if pending or select.select([sock], [], [], wait)[0]:
                try:
                    data = sock.recv(65536)
                except (TimeoutError, ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    data = None
                except ConnectionResetError as exc:
                    raise PublishError("the server reset the connection") from exc
                if data == b"":
                    raise PublishError("the server closed the connection")
                if data:
                    return data
            if self._stop.is_set():
                raise Stopped
            if time.monotonic() >= deadline:
                return b""

    def answer(self, parse: Callable[[bytes], T | None], what: str) -> T:
        """Feeds what the server sends to ``parse`` until it returns something, within
        :data:`REPLY_TIMEOUT`; a server that says nothing usable in time is a PublishError naming
        ``what`` it did not answer."""
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PublishError(f"the server did not answer {what} within {REPLY_TIMEOUT:g} s")
            data = self.receive(left)
            if data:
                result = parse(data)
                if result:
                    return result

    def close(self, abort: bool = False) -> None:
        """``abort``: reset the connection at once (the server stopped reading or misbehaved: what
        is still queued for it must not hold the socket open)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            if abort:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
