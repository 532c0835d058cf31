"""The token-bucket rate limiter, with time moved by hand on a twisted Clock."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock as FakeReactor

from homeserver.clock import Clock
from homeserver.config import HomeServerConfig
from homeserver.config.ratelimits import RateLimit
from homeserver.handlers.ratelimit import Ratelimiter, retry_after_header
from homeserver.types.errors import Codes, MatrixError


def make(per_second: float, burst_count: float, **kwargs: object) -> tuple[FakeReactor, Ratelimiter]:
    reactor = FakeReactor()
    reactor.advance(1_700_000_000)
    return reactor, Ratelimiter(Clock(reactor), RateLimit(per_second, burst_count), **kwargs)  # type: ignore[arg-type]


def refused(limiter: Ratelimiter, key: object, cost: float = 1.0) -> MatrixError:
    with pytest.raises(MatrixError) as info:
        limiter.check(key, cost)  # type: ignore[arg-type]
    return info.value


def test_burst_is_allowed_then_the_next_action_is_refused_with_429_and_retry_after() -> None:
    reactor, limiter = make(per_second=0.5, burst_count=3)
    for _ in range(3):
        limiter.check("1.2.3.4")
    error = refused(limiter, "1.2.3.4")
    assert error.status == 429
    assert error.errcode == Codes.LIMIT_EXCEEDED
    # One token drains every 2 seconds.
    assert error.to_dict() == {
        "errcode": "M_LIMIT_EXCEEDED",
        "error": "Too Many Requests",
        "retry_after_ms": 2000,
    }
    assert retry_after_header(error) == "2"


def test_bucket_drains_at_per_second() -> None:
    reactor, limiter = make(per_second=0.5, burst_count=3)
    for _ in range(3):
        limiter.check("k")
    reactor.advance(1.5)
    assert refused(limiter, "k").extra["retry_after_ms"] == 500
    reactor.advance(0.5)
    limiter.check("k")  # one token has drained
    refused(limiter, "k")
    reactor.advance(6)
    for _ in range(3):  # fully drained: a whole burst again
        limiter.check("k")
    refused(limiter, "k")


def test_refused_actions_are_not_counted() -> None:
    reactor, limiter = make(per_second=1, burst_count=1)
    limiter.check("k")
    for _ in range(10):
        refused(limiter, "k")
    reactor.advance(1)
    limiter.check("k")


def test_keys_are_independent() -> None:
    reactor, limiter = make(per_second=0.1, burst_count=2)
    limiter.check(("@alice:example.com", "join"))
    limiter.check(("@alice:example.com", "join"))
    refused(limiter, ("@alice:example.com", "join"))
    limiter.check(("@alice:example.com", "invite"))
    limiter.check("@bob:example.com")


def test_can_do_does_not_consume() -> None:
    reactor, limiter = make(per_second=1, burst_count=2)
    for _ in range(5):
        assert limiter.can_do("k")
    assert len(limiter) == 0
    limiter.check("k")
    limiter.check("k")
    assert not limiter.can_do("k")
    assert limiter.retry_after_seconds("k") == pytest.approx(1.0)
    reactor.advance(1)
    assert limiter.can_do("k")
    assert limiter.retry_after_seconds("k") == 0.0


def test_check_without_consuming_then_record_counts_failures_only() -> None:
    # The failed-login pattern: refuse when already over, count only failures.
    reactor, limiter = make(per_second=0.17, burst_count=3)
    for _ in range(3):
        limiter.check("@alice:example.com", consume=False)  # a successful login: not counted
    for _ in range(3):
        limiter.check("@alice:example.com", consume=False)
        limiter.record("@alice:example.com")  # a failed one
    with pytest.raises(MatrixError):
        limiter.check("@alice:example.com", consume=False)


def test_record_past_the_limit_lengthens_the_wait() -> None:
    reactor, limiter = make(per_second=1, burst_count=2)
    for _ in range(5):
        limiter.record("k")
    # 5 tokens, room for 1 more once 4 have drained.
    assert refused(limiter, "k").extra["retry_after_ms"] == 4000
    limiter.reset("k")
    limiter.check("k")


def test_cost_counts_several_actions_at_once() -> None:
    reactor, limiter = make(per_second=1, burst_count=10)
    limiter.check("k", cost=7)
    error = refused(limiter, "k", cost=5)
    assert error.extra["retry_after_ms"] == 2000
    limiter.check("k", cost=3)


def test_action_larger_than_burst_and_zero_rate_have_no_retry_after() -> None:
    reactor, limiter = make(per_second=1, burst_count=2)
    error = refused(limiter, "k", cost=3)
    assert "retry_after_ms" not in error.to_dict()
    assert retry_after_header(error) is None

    reactor, never = make(per_second=0, burst_count=1)
    never.check("k")
    reactor.advance(10_000)
    error = refused(never, "k")
    assert "retry_after_ms" not in error.to_dict()


def test_drained_buckets_are_forgotten_on_the_periodic_sweep() -> None:
    reactor, limiter = make(per_second=1, burst_count=5)
    for i in range(100):
        limiter.check(f"old-{i}")
    assert len(limiter) == 100
    reactor.advance(61)  # every old bucket has drained, and a sweep is due
    limiter.check("new")
    assert len(limiter) == 1


def test_busy_buckets_survive_the_sweep() -> None:
    reactor, limiter = make(per_second=0.001, burst_count=2)
    limiter.check("busy")
    limiter.check("busy")
    reactor.advance(61)
    limiter.check("other")
    assert len(limiter) == 2
    refused(limiter, "busy")


def test_memory_is_bounded_by_max_keys_least_recently_used_first() -> None:
    reactor, limiter = make(per_second=0.001, burst_count=1, max_keys=100)
    limiter.check("first")
    for i in range(1000):
        limiter.check(f"flood-{i}")
        assert len(limiter) <= 100
    # "first" was evicted, so it starts afresh; the newest keys are still limited.
    limiter.check("first")
    refused(limiter, "flood-999")


def test_retry_after_header_only_for_limit_errors() -> None:
    assert retry_after_header(MatrixError(Codes.FORBIDDEN, "no")) is None
    error = MatrixError(Codes.LIMIT_EXCEEDED, "slow down", retry_after_ms=1001)
    assert retry_after_header(error) == "2"


def test_config_defaults_are_synapses_and_blocks_can_be_overridden() -> None:
    document = {
        "server_name": "example.com",
        "signing_key_path": "key",
        "listeners": [{"port": 8008, "resources": [{"names": ["client"]}]}],
        "database": {"name": "sqlite3", "args": {"database": "hs.db"}},
    }
    limits = HomeServerConfig.from_dict(document, "/etc/hs/homeserver.yaml").ratelimits
    assert limits.rc_message == RateLimit(0.2, 10)
    assert limits.rc_registration == RateLimit(0.17, 3)
    assert limits.rc_login_address == RateLimit(0.003, 5)
    assert limits.rc_login_account == RateLimit(0.003, 5)
    assert limits.rc_login_failed_attempts == RateLimit(0.17, 3)
    assert limits.rc_3pid_validation == RateLimit(0.003, 5)

    document["rc_login"] = {"account": {"burst_count": 20}}
    document["rc_registration"] = {"per_second": 1}
    limits = HomeServerConfig.from_dict(document, "/etc/hs/homeserver.yaml").ratelimits
    assert limits.rc_login_account == RateLimit(0.003, 20)
    assert limits.rc_login_address == RateLimit(0.003, 5)
    assert limits.rc_registration == RateLimit(1, 3)
