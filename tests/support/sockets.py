"""Raw TCP client sockets: how a test connects, and how it leaves (FIN or RST).

The suite's clients are raw sockets rather than HTTP libraries so that a test controls what a
real viewer controls: the receive buffer (set before connecting, so the TCP window stays small
and a stalled reader's backlog sits in the server), when to stop reading, and whether to vanish
with a reset mid-frame.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import struct

# Linux answers the whole of 127.0.0.0/8 on the loopback interface: a client socket bound to
# another of its addresses is another client address as far as the server's per-address
# limits go (guessing, pending connections, streams per address, the client log limit).
_loopback_hosts = itertools.count(1)


def _worker_number() -> int:
    """pytest-xdist's worker number (gw0, gw1, ...: 0, 1, ...); 0 without xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0


# Each process its own second octet, 127.10 to 127.19 (the soak's clients use 127.20 and up), so
# that addresses stay unique across pytest-xdist's workers too.
_SECOND_OCTET = 10 + _worker_number() % 10


def fresh_loopback_address() -> str:
    """A loopback address no earlier call returned in this run (127.10.0.1, 127.10.0.2, ...; a
    pytest-xdist worker gwN counts in 127.(10 + N))."""
    n = next(_loopback_hosts)
    return f"127.{_SECOND_OCTET}.{n // 250 % 250}.{n % 250 + 1}"


class StreamEnded(Exception):
    """The peer closed the connection (or reset it) before the expected bytes arrived."""


def open_socket(
    host: str,
    port: int,
    rcvbuf: int | None = None,
    timeout: float = 10.0,
    source_ip: str | None = None,
) -> socket.socket:
    """TCP connection; SO_RCVBUF must be set before connect for it to bound the window.

    `source_ip` binds the client end to another loopback address (another client address)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if source_ip is not None:
        sock.bind((source_ip, 0))
    sock.settimeout(timeout)
    sock.connect((host, port))
    return sock


def abort_socket(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 1,0), like a client that vanishes."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def close_socket(sock: socket.socket, rst: bool = False) -> None:
    """Close a client socket: RST if `rst`, else FIN.

    shutdown() first, because close() alone does not wake a thread blocked in recv().
    """
    if rst:
        abort_socket(sock)
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
