"""Backing off destinations that do not answer: the retry schedule and a destination's timings.

A destination that fails a transaction (no answer, a 5xx, 401 or 429) is
left alone for `retry_interval` milliseconds after the failure. The first
failure waits `destination_min_retry_interval` (default 10 minutes); each
further failure multiplies the previous interval by
`destination_retry_multiplier` (default 2) and by a random jitter factor
between 0.8 and 1.4, up to `destination_max_retry_interval` (default 1 day).
The jitter keeps destinations that failed together (a network outage) from
being retried together. A success clears the interval: the next failure
starts again from the minimum. These are Synapse's rules and defaults.

The timings are stored (table `destinations`), so a restart keeps backing
off a server that was down.
"""

from __future__ import annotations

import random

from homeserver.storage.stores.federation_sender import RetryTimings

JITTER_RANGE = (0.8, 1.4)


class RetrySchedule:
    """How the interval grows from one failure to the next (see the module docstring)."""

    def __init__(
        self,
        min_interval_ms: int,
        multiplier: float,
        max_interval_ms: int,
        rng: random.Random | None = None,
    ) -> None:
        if min_interval_ms <= 0 or max_interval_ms < min_interval_ms or multiplier < 1:
            raise ValueError("need 0 < min interval <= max interval and multiplier >= 1")
        self.min_interval_ms = min_interval_ms
        self.multiplier = multiplier
        self.max_interval_ms = max_interval_ms
        self._rng = rng or random.Random()

    def next_interval(self, previous_ms: int) -> int:
        """The interval after a failure, given the interval before it (0: none)."""
        if previous_ms <= 0:
            return self.min_interval_ms
        grown = int(previous_ms * self.multiplier * self._rng.uniform(*JITTER_RANGE))
        return max(self.min_interval_ms, min(grown, self.max_interval_ms))

    def after_failure(self, timings: RetryTimings, now_ms: int) -> RetryTimings:
        return RetryTimings(
            retry_last_ts=now_ms,
            retry_interval=self.next_interval(timings.retry_interval),
            failure_ts=timings.failure_ts if timings.failure_ts is not None else now_ms,
        )
