"""Durations as Synapse writes them in config files."""

from __future__ import annotations

import pytest

from homeserver.config._units import parse_duration_ms


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (1500, 1500),
        ("1500", 1500),
        ("250ms", 250),
        ("30s", 30_000),
        ("5m", 300_000),
        ("1h", 3_600_000),
        ("2d", 172_800_000),
        ("1w", 604_800_000),
        ("1y", 31_536_000_000),
    ],
)
def test_units(value: int | str, ms: int) -> None:
    assert parse_duration_ms(value) == ms


@pytest.mark.parametrize("value", ["", "1.5h", "h", "10 s", "5M", "-1s"])
def test_malformed_durations_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_duration_ms(value)
