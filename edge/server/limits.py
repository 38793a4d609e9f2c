"""What one connection may cost before it has made a request (§7 of ``docs/interface.md``): the
head's size, its
number of headers, the time to send it, and how many such connections one address may hold."""

from __future__ import annotations

import asyncio
import collections
import ipaddress
from dataclasses import dataclass, field

from ..config import ServerConfig
from ..fanout.connections import address_key


@dataclass(frozen=True)
class Limits:
    """What one connection may cost before it has made a request (§7)."""

    max_request_head: int = 64 * 1024
    max_headers: int = 100
    request_timeout: float = 10.0

    @classmethod
    def of(cls, server: ServerConfig) -> Limits:
        return cls(server.max_request_head, server.max_headers, server.request_timeout)


DEFAULT_LIMITS = Limits()


@dataclass
class PendingConnections:
    """Connections per client address (:func:`~edge.connections.address_key`) that are waiting
    for a request head: just accepted, or kept alive between requests. (A TLS connection counts
    from the end of its handshake: the loop tells nobody who is handshaking; the handshake
    itself is bounded in time by ``request_timeout``.)

    Such a connection costs a descriptor and buffers and does nothing for anyone, so one address
    may hold at most ``cap`` (0: no cap); a trusted proxy's connections are not capped (the
    proxy speaks for many clients and sends a complete head at once).
    """

    cap: int = 0
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    counts: collections.Counter[str] = field(default_factory=collections.Counter)

    def admit(self, host: str) -> str | None:
        """Count a new connection from ``host``: its key, or ``None`` if it must be refused."""
        key = address_key(host)
        if self.cap and self.counts[key] >= self.cap and not self._trusted(host):
            return None
        self.counts[key] += 1
        return key

    def waiting(self, key: str) -> None:
        self.counts[key] += 1

    def done(self, key: str) -> None:
        self.counts[key] -= 1
        if self.counts[key] <= 0:
            del self.counts[key]

    def _trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    @classmethod
    def of(cls, server: ServerConfig) -> PendingConnections:
        trusted = tuple(ipaddress.ip_network(p, strict=False) for p in server.trusted_proxies)
        return cls(server.max_pending_per_address, trusted)


def peer_host(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
