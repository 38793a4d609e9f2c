"""The listening socket, and enough open files for every viewer."""

from __future__ import annotations

import logging
import resource
import socket

log = logging.getLogger("edge.server")

# Unsent bytes below which the kernel reports a connection writable. Measured with the
# throttled benchmark client (16 KB/s): 16 KiB gave frames 3.0 s old at the median, 4 KiB
# 2.3 s, 1 byte 2.5 s; fast clients' rate and CPU did not change measurably.
NOTSENT_LOWAT = 4 * 1024


class ListenError(Exception):
    """The address cannot be bound (in use, not local, no permission)."""


def listen_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Set on the listener, inherited by every accepted socket.
        sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_NOTSENT_LOWAT", 25), NOTSENT_LOWAT)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def raise_open_files_limit() -> int:
    """Raise the soft open-files limit to the hard one and return it: every viewer and every
    idle or half-open socket holds a descriptor, and the usual soft limit of 1024 is what a
    thousand idle connections exhaust (then new clients are refused without a word)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, exc)
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
