"""Server keys and the federation transport: key publishing and fetching, TLS, IP ranges.

Top-level keys, with Synapse's names and defaults: key_refresh_interval,
old_signing_keys, trusted_key_servers, suppress_key_server_warning,
federation_verify_certificates, federation_client_minimum_tls_version,
ip_range_blacklist / ip_range_whitelist (or Synapse's newer names
ip_range_blocklist / ip_range_allowlist); and from Synapse's `federation`
section, the backoff of failing destinations (destination_min_retry_interval,
destination_retry_multiplier, destination_max_retry_interval).

`IpRangeSet` (a set of CIDR ranges that answers "is this address in it?") is
here too: the federation client checks every address it connects to against
the configured ranges.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from signedjson.key import decode_verify_key_bytes
from signedjson.types import VerifyKey
from unpaddedbase64 import decode_base64

from homeserver.config._schema import ConfigError
from homeserver.config._units import DURATION_SCHEMA, parse_duration_ms

# Synapse's DEFAULT_IP_RANGE_BLOCKLIST: loopback, private, link-local, shared,
# documentation, benchmarking, multicast and other special-purpose ranges.
DEFAULT_IP_RANGE_BLOCKLIST: list[str] = [
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "169.254.0.0/16",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "fec0::/10",
]

# Always refused, whatever the config says (as Synapse does): "this host".
ALWAYS_BLOCKED = ["0.0.0.0/32", "::/128"]

DEFAULT_TRUSTED_KEY_SERVERS: list[dict[str, Any]] = [{"server_name": "matrix.org"}]

TLS_VERSIONS = ("1", "1.1", "1.2", "1.3")

_RANGE_LIST: dict[str, Any] = {"type": ["array", "null"], "items": {"type": "string"}}

SCHEMA: dict[str, Any] = {
    "key_refresh_interval": {**DURATION_SCHEMA, "default": "1d"},
    "old_signing_keys": {
        "type": ["object", "null"],
        "default": {},
        "additionalProperties": {
            "type": "object",
            "additionalProperties": False,
            "required": ["key", "expired_ts"],
            "properties": {
                "key": {"type": "string"},
                "expired_ts": {"type": "integer", "minimum": 0},
            },
        },
    },
    "trusted_key_servers": {
        "type": "array",
        "default": DEFAULT_TRUSTED_KEY_SERVERS,
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["server_name"],
            "properties": {
                "server_name": {"type": "string", "minLength": 1},
                "verify_keys": {"type": "object", "additionalProperties": {"type": "string"}},
                "accept_keys_insecurely": {"type": "boolean", "default": False},
            },
        },
    },
    "suppress_key_server_warning": {"type": "boolean", "default": False},
    "federation_verify_certificates": {"type": "boolean", "default": True},
    "federation_client_minimum_tls_version": {
        "type": ["string", "number"],
        "enum": [*TLS_VERSIONS, 1, 1.1, 1.2, 1.3],
        "default": "1",
    },
    "ip_range_blacklist": {**_RANGE_LIST, "default": None},
    "ip_range_whitelist": {**_RANGE_LIST, "default": None},
    "ip_range_blocklist": {**_RANGE_LIST, "default": None},
    "ip_range_allowlist": {**_RANGE_LIST, "default": None},
    # Synapse's `federation` section; only the backoff of destinations that
    # fail (homeserver/federation/backoff.py) so far.
    "federation": {
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "properties": {
            "destination_min_retry_interval": {**DURATION_SCHEMA, "default": "10m"},
            "destination_retry_multiplier": {"type": "number", "minimum": 1, "default": 2},
            "destination_max_retry_interval": {**DURATION_SCHEMA, "default": "1d"},
        },
    },
}
REQUIRED: list[str] = []

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class IpRangeSet:
    """A set of IP ranges. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) match as IPv4."""

    __slots__ = ("ranges",)

    def __init__(self, ranges: Iterable[str | IPNetwork] = ()) -> None:
        self.ranges: tuple[IPNetwork, ...] = tuple(
            r
            if isinstance(r, ipaddress.IPv4Network | ipaddress.IPv6Network)
            else ipaddress.ip_network(r, strict=False)
            for r in ranges
        )

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        try:
            ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == r.version and ip in r for r in self.ranges)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __repr__(self) -> str:
        return f"IpRangeSet({[str(r) for r in self.ranges]})"


@dataclass(frozen=True, slots=True)
class TrustedKeyServer:
    """A notary asked for other servers' keys (`trusted_key_servers` entry)."""

    server_name: str
    # The notary's own keys, to check its signature on what it answers; None:
    # its signature is not checked (the TLS connection is all there is).
    verify_keys: Mapping[str, VerifyKey] | None
    accept_keys_insecurely: bool


@dataclass(frozen=True, slots=True)
class OldSigningKey:
    """A key this server used to sign with (`old_signing_keys` entry)."""

    verify_key: VerifyKey
    expired_ts: int


@dataclass(frozen=True, slots=True)
class FederationConfig:
    key_refresh_interval_ms: int
    old_signing_keys: Mapping[str, OldSigningKey]
    trusted_key_servers: tuple[TrustedKeyServer, ...]
    suppress_key_server_warning: bool
    verify_certificates: bool
    client_minimum_tls_version: str
    ip_range_blocklist: IpRangeSet
    ip_range_allowlist: IpRangeSet
    # Backoff of destinations whose transactions fail (ms, ms, factor).
    destination_min_retry_interval_ms: int
    destination_max_retry_interval_ms: int
    destination_retry_multiplier: float

    def key_server_warning(self) -> str | None:
        """The warning Synapse logs when matrix.org is trusted without pinned keys, unless suppressed."""
        if self.suppress_key_server_warning:
            return None
        for server in self.trusted_key_servers:
            if server.server_name == "matrix.org" and server.verify_keys is None:
                return (
                    "This server trusts matrix.org to vouch for other servers' signing keys"
                    " (trusted_key_servers), without pinning its keys. Set verify_keys for it,"
                    " or choose other key servers; set suppress_key_server_warning: true to"
                    " hide this warning."
                )
        return None

    @classmethod
    def from_dict(cls, doc: dict[str, Any], resolve_path: Any) -> FederationConfig:
        errors: list[str] = []
        verify_certificates = doc["federation_verify_certificates"]
        old_keys: dict[str, OldSigningKey] = {}
        for key_id, entry in (doc["old_signing_keys"] or {}).items():
            try:
                verify_key = _decode_verify_key(key_id, entry["key"])
            except ValueError as e:
                errors.append(f"old_signing_keys.{key_id}: {e}")
                continue
            old_keys[key_id] = OldSigningKey(verify_key, entry["expired_ts"])

        servers: list[TrustedKeyServer] = []
        for i, entry in enumerate(doc["trusted_key_servers"]):
            where = f"trusted_key_servers[{i}]"
            keys: dict[str, VerifyKey] | None = None
            if "verify_keys" in entry:
                keys = {}
                for key_id, key in entry["verify_keys"].items():
                    try:
                        keys[key_id] = _decode_verify_key(key_id, key)
                    except ValueError as e:
                        errors.append(f"{where}.verify_keys.{key_id}: {e}")
            insecure = entry["accept_keys_insecurely"]
            if keys is None and not verify_certificates and not insecure:
                errors.append(
                    f"{where}: verify_keys is required when federation_verify_certificates is"
                    " false (or set accept_keys_insecurely: true)"
                )
            servers.append(TrustedKeyServer(entry["server_name"], keys, insecure))

        block_name, blocklist = _pick(doc, "ip_range_blocklist", "ip_range_blacklist", errors)
        allow_name, allowlist = _pick(doc, "ip_range_allowlist", "ip_range_whitelist", errors)
        blocked = _ranges(
            block_name, DEFAULT_IP_RANGE_BLOCKLIST if blocklist is None else blocklist, errors
        )
        allowed = _ranges(allow_name, allowlist or [], errors)
        backoff = doc["federation"]
        min_retry_ms = parse_duration_ms(backoff["destination_min_retry_interval"])
        max_retry_ms = parse_duration_ms(backoff["destination_max_retry_interval"])
        if min_retry_ms <= 0:
            errors.append("federation.destination_min_retry_interval: must be more than 0")
        if max_retry_ms < min_retry_ms:
            errors.append(
                "federation.destination_max_retry_interval: must be at least"
                " destination_min_retry_interval"
            )
        if errors:
            raise ConfigError(errors)
        return cls(
            key_refresh_interval_ms=parse_duration_ms(doc["key_refresh_interval"]),
            old_signing_keys=old_keys,
            trusted_key_servers=tuple(servers),
            suppress_key_server_warning=doc["suppress_key_server_warning"],
            verify_certificates=verify_certificates,
            client_minimum_tls_version=_tls_version(doc["federation_client_minimum_tls_version"]),
            ip_range_blocklist=IpRangeSet([*blocked, *ALWAYS_BLOCKED]),
            ip_range_allowlist=IpRangeSet(allowed),
            destination_min_retry_interval_ms=min_retry_ms,
            destination_max_retry_interval_ms=max_retry_ms,
            destination_retry_multiplier=float(backoff["destination_retry_multiplier"]),
        )


def _decode_verify_key(key_id: str, key: str) -> VerifyKey:
    algorithm, _, version = key_id.partition(":")
    if algorithm != "ed25519" or not version:
        raise ValueError("key IDs must look like 'ed25519:<version>'")
    try:
        return decode_verify_key_bytes(key_id, decode_base64(key))
    except Exception as e:  # binascii.Error, nacl ValueError for bad lengths
        raise ValueError(f"not an unpadded base64 ed25519 public key ({e})") from None


def _pick(
    doc: dict[str, Any], new: str, old: str, errors: list[str]
) -> tuple[str, list[str] | None]:
    """(the option's name as written, its value) for an option with two accepted names."""
    if doc[new] is not None and doc[old] is not None:
        errors.append(f"{new}: set either {new} or {old} (the older name), not both")
    if doc[new] is not None:
        return new, list(doc[new])
    return old, None if doc[old] is None else list(doc[old])


def _ranges(name: str, values: list[str], errors: list[str]) -> list[IPNetwork]:
    result = []
    for i, value in enumerate(values):
        try:
            result.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            errors.append(f"{name}[{i}]: {value!r} is not an IP address or CIDR range")
    return result


def _tls_version(value: str | float) -> str:
    text = str(value)
    return "1" if text == "1.0" else text
