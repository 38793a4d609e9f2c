"""Per-client limits in process, with a clock of the test's own (§7): what a client address is
(`address_key`: IPv6 by its /64), failed logins (`FailedLogins`), pending connections
(`PendingConnections`) and the client log limit (`ClientLogLimiter`). The servers that use
them are tested from outside in tests/test_hostile.py."""

from __future__ import annotations

import logging

import pytest

from edge.fanout.connections import address_key
from edge.logs import ClientLogLimiter, current_client
from edge.server.limits import PendingConnections
from edge.web.access import GUESS_LIMIT, GUESS_WINDOW, FailedLogins


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.168.1.20", "192.168.1.20"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::ffff", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::1", "::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:192.168.1.20", "192.168.1.20"),
        ("unknown", "unknown"),
    ],
)
def test_address_key(host: str, key: str) -> None:
    assert address_key(host) == key


def test_more_than_ten_failures_in_a_minute_block_for_a_minute_after_the_last() -> None:
    clock = Clock()
    logins = FailedLogins(clock=clock)
    for _ in range(GUESS_LIMIT):
        assert not logins.failed("a")
        clock.now += 1
    assert logins.blocked_for("a") == 0
    assert logins.failed("a")  # the 11th
    last = clock.now
    assert logins.blocked_for("a") == pytest.approx(GUESS_WINDOW)
    assert logins.blocked_for("b") == 0  # other addresses are unaffected
    clock.now = last + GUESS_WINDOW - 0.5
    assert logins.blocked_for("a") == pytest.approx(0.5)
    clock.now = last + GUESS_WINDOW
    assert logins.blocked_for("a") == 0


def test_failures_spread_over_more_than_a_minute_do_not_block() -> None:
    clock = Clock()
    logins = FailedLogins(clock=clock)
    for _ in range(100):
        assert not logins.failed("a")
        clock.now += GUESS_WINDOW / GUESS_LIMIT + 0.1  # ten a minute, forever
    assert logins.blocked_for("a") == 0


def test_failed_logins_remember_a_bounded_number_of_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edge.web.access.MAX_TRACKED_ADDRESSES", 100)
    logins = FailedLogins(clock=Clock())
    for i in range(1000):
        logins.failed(f"10.0.{i // 250}.{i % 250}")
    assert len(logins._failures) == 100


def test_pending_connections_are_capped_per_address_but_not_for_trusted_proxies() -> None:
    pending = PendingConnections.of(_server(max_pending_per_address=2, trusted_proxies=("127.0.0.1",)))
    a1, a2 = pending.admit("10.0.0.5"), pending.admit("10.0.0.5")
    assert a1 == a2 == "10.0.0.5"
    assert pending.admit("10.0.0.5") is None
    assert pending.admit("2001:db8::1") == pending.admit("2001:db8::2") == "2001:db8::/64"
    assert pending.admit("2001:db8::3") is None  # the same /64
    assert all(pending.admit("127.0.0.1") for _ in range(10))
    pending.done("10.0.0.5")
    assert pending.admit("10.0.0.5") == "10.0.0.5"
    for _ in range(3):
        pending.done("10.0.0.5")
    assert "10.0.0.5" not in pending.counts  # no entry left behind for an address that has gone


def _server(**values: object) -> object:
    from dataclasses import replace

    from edge.config import ServerConfig

    return replace(ServerConfig(), **values)


def record(client: str, msg: str = "a client fault") -> logging.LogRecord:
    r = logging.LogRecord("edge.client", logging.INFO, __file__, 1, msg, None, None)
    r.client = client
    return r


def test_the_log_limit_is_per_client_with_a_ceiling() -> None:
    clock = Clock()
    limiter = ClientLogLimiter(window=10, per_client=3, total=5, clock=clock)
    assert [limiter.filter(record("a")) for _ in range(5)] == [True, True, True, False, False]
    first_of_b = record("b", "b's fault")
    assert limiter.filter(first_of_b)  # a's flood hides nothing of b's ...
    assert first_of_b.getMessage() == "b's fault (2 more client log lines not logged, 2 from a)"  # ... and is told
    assert limiter.filter(record("b"))
    assert not limiter.filter(record("c"))  # the ceiling: 5 lines in all per window
    clock.now += 10
    kept = record("b", "next window")
    assert limiter.filter(kept)
    assert kept.getMessage() == "next window (1 more client log lines not logged, 1 from c)"


def test_the_log_limit_counts_lines_of_a_stream_by_its_client() -> None:
    limiter = ClientLogLimiter(window=10, per_client=1, total=10, clock=Clock())
    token = current_client.set("10.0.0.9")
    try:
        plain = logging.LogRecord("edge.connections", logging.INFO, __file__, 1, "stream opened", None, None)
        assert limiter.filter(plain)
        again = logging.LogRecord("edge.connections", logging.INFO, __file__, 1, "stream closed", None, None)
        assert not limiter.filter(again)
    finally:
        current_client.reset(token)
    assert limiter.filter(record("10.0.0.10"))


def test_the_log_limit_remembers_a_bounded_number_of_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edge.logs.MAX_HELD_CLIENTS", 10)
    limiter = ClientLogLimiter(window=10, per_client=0, total=0, clock=Clock())
    for i in range(1000):
        limiter.filter(record(f"10.1.{i // 250}.{i % 250}"))
    assert len(limiter._held) <= 11 and limiter.suppressed == 1000
