"""Checking and canonicalising third-party identifiers (pure)."""

from __future__ import annotations

import pytest

from homeserver.types.threepids import (
    InvalidThreepid,
    canonicalise_address,
    canonicalise_email,
    is_valid_client_secret,
    phone_number_to_msisdn,
)


def test_client_secrets() -> None:
    assert is_valid_client_secret("aZ0.=_-")
    for bad in ("", "a b", "é", "x" * 256, None, 5):
        assert not is_valid_client_secret(bad)


def test_emails_are_canonicalised() -> None:
    assert canonicalise_email("  Ünïcode.User@EXAMPLE.Org ") == "ünïcode.user@example.org"
    for bad in ("no-at", "a@b@c", "@b", "a@", "a b@c", "a\x00@b", "x@" + "y" * 330):
        with pytest.raises(InvalidThreepid):
            canonicalise_email(bad)


def test_phone_numbers_become_msisdns() -> None:
    assert phone_number_to_msisdn("GB", "07700 900123") == "447700900123"
    assert phone_number_to_msisdn("gb", "+44 (0)7700-900123") == "447700900123"
    assert phone_number_to_msisdn("US", "+44 7700 900123") == "447700900123"
    assert phone_number_to_msisdn("US", "(201) 555-0123") == "12015550123"
    for country, number in (("GB", "abc"), ("ZZ", "123"), ("GB", "1"), ("", "07700900123")):
        with pytest.raises(InvalidThreepid):
            phone_number_to_msisdn(country, number)


def test_addresses_by_medium() -> None:
    assert canonicalise_address("msisdn", "+447700900123") == "447700900123"
    assert canonicalise_address("email", "A@B.C") == "a@b.c"
    for medium, address in (("msisdn", "12ab"), ("msisdn", "1" * 16), ("fax", "1")):
        with pytest.raises(InvalidThreepid):
            canonicalise_address(medium, address)
