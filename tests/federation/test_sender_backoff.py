"""The retry schedule of failing destinations: minimum first, growth with jitter, a cap."""

from __future__ import annotations

import random
from typing import Any

import pytest

from homeserver.config import ConfigError, HomeServerConfig
from homeserver.federation.backoff import JITTER_RANGE, RetrySchedule
from homeserver.storage.stores.federation_sender import RetryTimings

MINUTE = 60_000
DAY = 24 * 60 * MINUTE


class FixedJitter(random.Random):
    """uniform() always gives one end of the range."""

    def __init__(self, end: int) -> None:
        super().__init__()
        self.end = end

    def uniform(self, a: float, b: float) -> float:
        return (a, b)[self.end]


def test_the_first_failure_waits_the_minimum() -> None:
    schedule = RetrySchedule(10 * MINUTE, 2, DAY)
    assert schedule.next_interval(0) == 10 * MINUTE


@pytest.mark.parametrize("end", [0, 1])
def test_each_failure_multiplies_the_interval_within_the_jitter(end: int) -> None:
    schedule = RetrySchedule(10 * MINUTE, 2, DAY, FixedJitter(end))
    assert schedule.next_interval(10 * MINUTE) == int(10 * MINUTE * 2 * JITTER_RANGE[end])


def test_intervals_grow_to_the_cap_and_stay_there() -> None:
    schedule = RetrySchedule(10 * MINUTE, 2, DAY, random.Random(4))
    intervals = [schedule.next_interval(0)]
    while len(intervals) < 20:
        intervals.append(schedule.next_interval(intervals[-1]))
    assert intervals[0] == 10 * MINUTE
    for before, after in zip(intervals, intervals[1:], strict=False):
        assert min(int(before * 2 * 0.8), DAY) <= after <= min(int(before * 2 * 1.4), DAY)
    assert intervals[-1] == DAY
    assert intervals.index(DAY) < 10


def test_jitter_never_goes_below_the_minimum() -> None:
    schedule = RetrySchedule(10 * MINUTE, 1, DAY, FixedJitter(0))
    assert schedule.next_interval(10 * MINUTE) == 10 * MINUTE


def test_after_failure_keeps_when_the_failures_began() -> None:
    schedule = RetrySchedule(MINUTE, 2, DAY, FixedJitter(1))
    first = schedule.after_failure(RetryTimings(), 1_000)
    assert first == RetryTimings(retry_last_ts=1_000, retry_interval=MINUTE, failure_ts=1_000)
    assert first.is_backing_off(1_000 + MINUTE - 1)
    assert not first.is_backing_off(1_000 + MINUTE)
    second = schedule.after_failure(first, 70_000)
    assert second == RetryTimings(
        retry_last_ts=70_000, retry_interval=int(MINUTE * 2.8), failure_ts=1_000
    )
    assert second.failing and not RetryTimings().failing


@pytest.mark.parametrize(
    ("minimum", "multiplier", "maximum"), [(0, 2, DAY), (MINUTE, 0.5, DAY), (DAY, 2, MINUTE)]
)
def test_nonsense_schedules_are_refused(minimum: int, multiplier: float, maximum: int) -> None:
    with pytest.raises(ValueError):
        RetrySchedule(minimum, multiplier, maximum)


def _config(**options: Any) -> Any:
    document = {
        "server_name": "example.com",
        "signing_key_path": "example.com.signing.key",
        "listeners": [{"port": 8008, "resources": [{"names": ["client"]}]}],
        "database": {"name": "sqlite3", "args": {"database": "homeserver.db"}},
        **options,
    }
    return HomeServerConfig.from_dict(document, "/etc/hs/homeserver.yaml").federation


def test_the_config_defaults_are_synapses() -> None:
    config = _config()
    assert config.destination_min_retry_interval_ms == 10 * MINUTE
    assert config.destination_retry_multiplier == 2
    assert config.destination_max_retry_interval_ms == DAY


def test_the_config_takes_durations_and_a_multiplier() -> None:
    config = _config(
        federation={
            "destination_min_retry_interval": "5s",
            "destination_retry_multiplier": 1.5,
            "destination_max_retry_interval": 60000,
        }
    )
    assert config.destination_min_retry_interval_ms == 5000
    assert config.destination_retry_multiplier == 1.5
    assert config.destination_max_retry_interval_ms == 60000


@pytest.mark.parametrize(
    ("section", "error"),
    [
        (
            {"destination_min_retry_interval": 0},
            "federation.destination_min_retry_interval: must be more than 0",
        ),
        (
            {"destination_min_retry_interval": "1h", "destination_max_retry_interval": "1m"},
            "federation.destination_max_retry_interval: must be at least"
            " destination_min_retry_interval",
        ),
        (
            {"destination_retry_multiplier": 0.5},
            "federation.destination_retry_multiplier: 0.5 is less than the minimum of 1",
        ),
        (
            {"destination_retry_interval": "1m"},
            "federation.destination_retry_interval: unknown option",
        ),
    ],
)
def test_config_mistakes_are_named(section: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(federation=section)
    assert info.value.lines == [error]
