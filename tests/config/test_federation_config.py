"""The server-key and federation-transport options: defaults, parsing and one-line errors."""

from __future__ import annotations

import pytest
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key

from homeserver.config import ConfigError, HomeServerConfig
from homeserver.config.federation import DEFAULT_IP_RANGE_BLOCKLIST


def minimal(**extra: object) -> dict:
    return {
        "server_name": "example.com",
        "signing_key_path": "example.com.signing.key",
        "listeners": [{"port": 8008, "resources": [{"names": ["client"]}]}],
        "database": {"name": "sqlite3", "args": {"database": "homeserver.db"}},
        **extra,
    }


def load(**extra: object):
    return HomeServerConfig.from_dict(minimal(**extra), "/etc/hs/homeserver.yaml").federation


def errors_of(**extra: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(**extra)
    return info.value.lines


def b64_verify_key() -> str:
    return encode_verify_key_base64(get_verify_key(generate_signing_key("x")))


def test_defaults_are_synapses() -> None:
    config = load()
    assert config.key_refresh_interval_ms == 24 * 3600 * 1000
    assert config.old_signing_keys == {}
    (server,) = config.trusted_key_servers
    assert server.server_name == "matrix.org" and server.verify_keys is None
    assert config.verify_certificates is True
    assert config.client_minimum_tls_version == "1"
    assert {str(r) for r in config.ip_range_blocklist.ranges} == {
        *DEFAULT_IP_RANGE_BLOCKLIST,
        "0.0.0.0/32",
        "::/128",
    }
    assert not config.ip_range_allowlist
    # The default trusts matrix.org without pinned keys, so it warns.
    assert config.key_server_warning() is not None
    assert load(suppress_key_server_warning=True).key_server_warning() is None


def test_default_blocklist_covers_loopback_private_and_unspecified() -> None:
    blocked = load().ip_range_blocklist
    for address in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "::1", "fe80::1", "0.0.0.0", "::"):
        assert address in blocked, address
    # IPv4-mapped IPv6 addresses are checked as IPv4.
    assert "::ffff:127.0.0.1" in blocked
    for address in ("8.8.8.8", "2001:4860:4860::8888"):
        assert address not in blocked, address


def test_ip_ranges_replace_the_default_and_keep_unspecified_blocked() -> None:
    config = load(ip_range_blacklist=["10.0.0.0/8"], ip_range_whitelist=["127.0.0.0/8", "::1/128"])
    assert "10.0.0.1" in config.ip_range_blocklist
    assert "127.0.0.1" not in config.ip_range_blocklist
    assert "0.0.0.0" in config.ip_range_blocklist
    assert "127.0.0.1" in config.ip_range_allowlist and "::1" in config.ip_range_allowlist


def test_synapse_newer_range_names_are_accepted_but_not_both() -> None:
    config = load(ip_range_blocklist=[], ip_range_allowlist=["127.0.0.1/32"])
    assert "10.0.0.1" not in config.ip_range_blocklist
    assert "127.0.0.1" in config.ip_range_allowlist
    assert errors_of(ip_range_blocklist=[], ip_range_blacklist=[]) == [
        "ip_range_blocklist: set either ip_range_blocklist or ip_range_blacklist"
        " (the older name), not both"
    ]


def test_bad_ip_range_is_named() -> None:
    assert errors_of(ip_range_whitelist=["127.0.0.0/8", "localhost"]) == [
        "ip_range_whitelist[1]: 'localhost' is not an IP address or CIDR range"
    ]


def test_old_signing_keys_are_decoded() -> None:
    key = b64_verify_key()
    config = load(old_signing_keys={"ed25519:old": {"key": key, "expired_ts": 1234}})
    old = config.old_signing_keys["ed25519:old"]
    assert encode_verify_key_base64(old.verify_key) == key
    assert old.expired_ts == 1234
    assert old.verify_key.version == "old"


def test_bad_old_signing_keys_are_named() -> None:
    assert errors_of(old_signing_keys={"rsa:old": {"key": b64_verify_key(), "expired_ts": 1}}) == [
        "old_signing_keys.rsa:old: key IDs must look like 'ed25519:<version>'"
    ]
    (line,) = errors_of(old_signing_keys={"ed25519:x": {"key": "not base64!", "expired_ts": 1}})
    assert line.startswith("old_signing_keys.ed25519:x: not an unpadded base64 ed25519 public key")
    (line,) = errors_of(old_signing_keys={"ed25519:x": {"key": b64_verify_key()}})
    assert line == "old_signing_keys.ed25519:x.expired_ts: required option is missing"


def test_trusted_key_servers_with_pinned_keys() -> None:
    key = b64_verify_key()
    config = load(
        trusted_key_servers=[{"server_name": "notary.example", "verify_keys": {"ed25519:n": key}}]
    )
    (server,) = config.trusted_key_servers
    assert server.verify_keys is not None
    assert encode_verify_key_base64(server.verify_keys["ed25519:n"]) == key
    assert config.key_server_warning() is None
    assert load(trusted_key_servers=[]).trusted_key_servers == ()


def test_unpinned_notary_needs_certificate_checks_or_an_explicit_opt_in() -> None:
    assert errors_of(
        federation_verify_certificates=False, trusted_key_servers=[{"server_name": "n.example"}]
    ) == [
        "trusted_key_servers[0]: verify_keys is required when federation_verify_certificates"
        " is false (or set accept_keys_insecurely: true)"
    ]
    config = load(
        federation_verify_certificates=False,
        trusted_key_servers=[{"server_name": "n.example", "accept_keys_insecurely": True}],
    )
    assert config.trusted_key_servers[0].accept_keys_insecurely


@pytest.mark.parametrize(
    ("value", "expected"), [("1.2", "1.2"), (1.3, "1.3"), (1, "1"), ("1", "1")]
)
def test_minimum_tls_version(value: object, expected: str) -> None:
    assert load(federation_client_minimum_tls_version=value).client_minimum_tls_version == expected


def test_minimum_tls_version_must_be_known() -> None:
    (line,) = errors_of(federation_client_minimum_tls_version="1.4")
    assert line.startswith("federation_client_minimum_tls_version: '1.4' is not one of")


def test_key_refresh_interval_takes_durations() -> None:
    assert load(key_refresh_interval="2h").key_refresh_interval_ms == 2 * 3600 * 1000
