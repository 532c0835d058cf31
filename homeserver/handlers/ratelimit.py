"""Rate limiting: one token bucket per key, read against the injected clock.

A `Ratelimiter` enforces one `RateLimit` (Synapse's `rc_*` settings) over many
keys: an IP address, a user ID, a `(user_id, action)` tuple, any hashable. Each
key's bucket holds up to `burst_count` tokens' worth of recent actions and
drains at `per_second`; an action costing `cost` is allowed when it still fits.
No timer runs: a bucket's level is worked out from the time of its last change
whenever it is looked at.

    limiter = Ratelimiter(clock, config.ratelimits.rc_registration, name="rc_registration")
    limiter.check(client_ip)          # counts the action, or raises 429 M_LIMIT_EXCEEDED
    limiter.can_do(client_ip)         # asks only
    limiter.record(user_id)           # counts an action that already happened

Memory stays bounded: buckets that have drained empty are forgotten (they
hold nothing a fresh bucket wouldn't), swept at most once a minute, and past
`max_keys` the least recently used buckets are dropped too (forgetting a busy
key errs on the side of letting it through).

Spec: client-server API "Rate limiting": `M_LIMIT_EXCEEDED` with
`retry_after_ms` in the body, and a `Retry-After` header on every 429
(`retry_after_header` gives its value for the HTTP layer).

State lives in this process only; with several processes each enforces its
own share, as Synapse's workers do.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable

from homeserver.clock import Clock
from homeserver.config.ratelimits import RateLimit
from homeserver.types.errors import Codes, MatrixError

# Buckets are swept for drained ones at most this often (seconds).
_SWEEP_INTERVAL = 60.0
# Tolerance for float rounding when comparing a bucket's level with its capacity.
_EPSILON = 1e-9


class Ratelimiter:
    """Token buckets for one limit, keyed by anything hashable."""

    def __init__(
        self, clock: Clock, limit: RateLimit, *, name: str = "", max_keys: int = 100_000
    ) -> None:
        self._clock = clock
        self._rate = limit.per_second
        self._burst = limit.burst_count
        self.name = name
        self._max_keys = max_keys
        # key -> (tokens in the bucket, time they were counted); least recently changed first.
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()
        self._next_sweep = clock.time() + _SWEEP_INTERVAL

    def _level(self, key: Hashable, now: float) -> float:
        """The tokens in `key`'s bucket at `now`, after draining."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        level, since = bucket
        return max(0.0, level - max(0.0, now - since) * self._rate)

    def _retry_after(self, level: float, cost: float) -> float | None:
        """Seconds until `cost` more fits in a bucket at `level`; None if it never will."""
        if self._rate <= 0 or cost > self._burst + _EPSILON:
            return None
        return max(0.0, (level + cost - self._burst) / self._rate)

    def can_do(self, key: Hashable, cost: float = 1.0) -> bool:
        """Whether an action costing `cost` would be allowed now. Changes nothing."""
        return self._level(key, self._clock.time()) + cost <= self._burst + _EPSILON

    def retry_after_seconds(self, key: Hashable, cost: float = 1.0) -> float | None:
        """Seconds until an action costing `cost` is allowed (0 if it is now); None if never."""
        level = self._level(key, self._clock.time())
        if level + cost <= self._burst + _EPSILON:
            return 0.0
        return self._retry_after(level, cost)

    def check(self, key: Hashable, cost: float = 1.0, *, consume: bool = True) -> None:
        """Count an action costing `cost` against `key`, or refuse it.

        Raises MatrixError 429 M_LIMIT_EXCEEDED, with `retry_after_ms` when the
        bucket will ever have room, if the action does not fit; a refused
        action is not counted. With `consume=False` nothing is counted either
        way (check first, `record` later: failed logins are counted only once
        known to have failed).
        """
        now = self._clock.time()
        level = self._level(key, now)
        if level + cost > self._burst + _EPSILON:
            extra = {}
            retry_after = self._retry_after(level, cost)
            if retry_after is not None:
                extra["retry_after_ms"] = math.ceil(retry_after * 1000)
            raise MatrixError(Codes.LIMIT_EXCEEDED, "Too Many Requests", **extra)
        if consume:
            self._store(key, level + cost, now)

    def record(self, key: Hashable, cost: float = 1.0) -> None:
        """Count an action that happened, even past the limit (later actions then wait longer)."""
        now = self._clock.time()
        self._store(key, self._level(key, now) + cost, now)

    def reset(self, key: Hashable) -> None:
        """Forget `key`'s past actions."""
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        """The number of buckets held (for tests and metrics)."""
        return len(self._buckets)

    def _store(self, key: Hashable, level: float, now: float) -> None:
        self._buckets[key] = (level, now)
        self._buckets.move_to_end(key)
        if now >= self._next_sweep or len(self._buckets) > self._max_keys:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Forget drained buckets; then, past max_keys, the least recently used ones.

        Over capacity it evicts down to 90% of max_keys, so a flood of new keys
        costs one full sweep per tenth of max_keys insertions, not one each.
        """
        self._next_sweep = now + _SWEEP_INTERVAL
        for key in [k for k in self._buckets if self._level(k, now) <= 0.0]:
            del self._buckets[key]
        if len(self._buckets) > self._max_keys:
            while len(self._buckets) > self._max_keys * 9 // 10:
                self._buckets.popitem(last=False)


def retry_after_header(error: MatrixError) -> str | None:
    """The `Retry-After` header value (whole seconds, rounded up) for a rate-limit error, or None."""
    if error.errcode != Codes.LIMIT_EXCEEDED:
        return None
    retry_after_ms = error.extra.get("retry_after_ms")
    if not isinstance(retry_after_ms, int):
        return None
    return str(max(0, math.ceil(retry_after_ms / 1000)))
