"""Signing JSON and events with a server's Ed25519 key, and checking signatures.

Spec: appendices "Signing JSON" > "Signing Details" and "Checking for a
Signature"; server-server API "Signing Events" > "Adding hashes and
signatures to outgoing events" and "Validating hashes and signatures on
received events"; room v8+ auth rules (restricted joins must be signed by the
authorising server).

No I/O: verification takes the verify keys as arguments, as
`{server_name: {key_id: VerifyKey}}`. The caller passes the keys it trusts
for the event (for room v5+, `enforce_key_validity`, only keys valid at the
event's `origin_server_ts`). Keys are `signedjson`/PyNaCl keys (they carry
`alg` and `version`; see `signedjson.key.decode_signing_key_base64`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from signedjson.types import SigningKey, VerifyKey
from unpaddedbase64 import decode_base64, encode_base64

from homeserver.types.canonical_json import encode_canonical_json
from homeserver.types.events import EventBase, make_event
from homeserver.types.frozen import thaw
from homeserver.types.hashing import check_content_hash, content_hash_base64
from homeserver.types.identifiers import InvalidIdentifier, domain_of
from homeserver.types.redaction import prune_event_dict
from homeserver.types.room_versions import EventFormat, RoomVersion


class SignatureError(ValueError):
    """A missing or bad signature; the message names the server and key."""


def key_id_of(key: SigningKey | VerifyKey) -> str:
    """The signing key identifier, `<algorithm>:<version>` (e.g. `ed25519:abc`)."""
    return f"{key.alg}:{key.version}"


def sign_json(obj: Mapping[str, Any], signer: str, signing_key: SigningKey) -> dict[str, Any]:
    """A copy of `obj` with a signature by `signer` added (appendices, "Signing Details").

    The signature covers the canonical JSON of the object without
    `signatures` and `unsigned`; existing signatures and `unsigned` are kept.
    """
    result: dict[str, Any] = thaw(obj)
    signatures = result.pop("signatures", {})
    unsigned = result.pop("unsigned", None)
    signed = signing_key.sign(encode_canonical_json(result))
    signatures.setdefault(signer, {})[key_id_of(signing_key)] = encode_base64(signed.signature)
    result["signatures"] = signatures
    if unsigned is not None:
        result["unsigned"] = unsigned
    return result


def verify_json_signature(
    obj: Mapping[str, Any], signer: str, key_id: str, verify_key: VerifyKey
) -> None:
    """Check `signer`'s signature under `key_id` on `obj` (appendices, "Checking for a Signature").

    Raises `SignatureError` if it is missing, not base64, or does not verify.
    """
    signatures = obj.get("signatures")
    if not isinstance(signatures, Mapping):
        raise SignatureError("object has no 'signatures'")
    by_signer = signatures.get(signer)
    if not isinstance(by_signer, Mapping) or key_id not in by_signer:
        raise SignatureError(f"no signature from {signer!r} with key {key_id!r}")
    encoded = by_signer[key_id]
    try:
        if not isinstance(encoded, str):
            raise ValueError("not a string")
        signature = decode_base64(encoded)
    except Exception:
        raise SignatureError(
            f"signature from {signer!r} with key {key_id!r} is not valid base64"
        ) from None
    message = encode_canonical_json(
        {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    )
    try:
        verify_key.verify(message, signature)
    except Exception:  # nacl.exceptions.BadSignatureError, ValueError for bad lengths
        raise SignatureError(
            f"signature from {signer!r} with key {key_id!r} does not verify"
        ) from None


def verify_signed_by(
    obj: Mapping[str, Any], signer: str, verify_keys: Mapping[str, VerifyKey]
) -> None:
    """Check that `signer` signed `obj` with at least one of `verify_keys` (key_id -> key).

    Signatures under key IDs we have no key for (or other algorithms) are
    skipped; every signature we do have a key for must verify; if none is
    left, the check fails. Raises `SignatureError`.
    """
    signatures = obj.get("signatures")
    by_signer = signatures.get(signer) if isinstance(signatures, Mapping) else None
    if not isinstance(by_signer, Mapping) or not by_signer:
        raise SignatureError(f"not signed by {signer!r}")
    checked = 0
    for key_id in by_signer:
        key = verify_keys.get(key_id)
        if key is None or not key_id.startswith("ed25519:"):
            continue
        verify_json_signature(obj, signer, key_id, key)
        checked += 1
    if not checked:
        raise SignatureError(
            f"no signature from {signer!r} under a known key "
            f"(signed with {sorted(by_signer)}, known {sorted(verify_keys)})"
        )


# --- events -------------------------------------------------------------------


def add_hashes_and_signatures(
    room_version: RoomVersion,
    pdu: Mapping[str, Any],
    server_name: str,
    signing_key: SigningKey,
) -> dict[str, Any]:
    """A copy of a PDU dict with `hashes.sha256` set and signed by `server_name`.

    Spec: "Adding hashes and signatures to outgoing events": the content
    hash is computed, the event is redacted, the redacted form is signed and
    the signature copied back. Existing signatures are kept.
    """
    result: dict[str, Any] = thaw(pdu)
    result["hashes"] = {"sha256": content_hash_base64(result)}
    return sign_event_dict(room_version, result, server_name, signing_key)


def sign_event_dict(
    room_version: RoomVersion,
    pdu: Mapping[str, Any],
    server_name: str,
    signing_key: SigningKey,
) -> dict[str, Any]:
    """A copy of a PDU dict (hashes already set) with `server_name`'s signature added.

    The signature covers the redacted form, so it survives redaction.
    """
    result: dict[str, Any] = thaw(pdu)
    signed = sign_json(prune_event_dict(room_version, result), server_name, signing_key)
    result["signatures"] = signed["signatures"]
    return result


def required_signers(event: EventBase) -> frozenset[str]:
    """The servers whose signatures an event must carry.

    Spec: "Validating hashes and signatures on received events" and the v8+
    auth rules:
    - the sender's server, unless the event is a third-party invite (an
      m.room.member invite with `third_party_invite` in content), which may
      be sent by another server;
    - v1/v2: also the server in the event ID, if different;
    - v8+ (restricted joins): for a join with
      `join_authorised_via_users_server`, that user's server too.
    Raises `InvalidIdentifier` if a required ID has no server name.
    """
    servers: set[str] = set()
    membership = event.content.get("membership")
    is_member = event.type == "m.room.member"
    if not (is_member and membership == "invite" and "third_party_invite" in event.content):
        servers.add(domain_of(event.sender))
    if event.room_version.event_format.format is EventFormat.V1:
        servers.add(domain_of(event.event_id))
    if event.room_version.auth.restricted_join_rule and is_member and membership == "join":
        authoriser = event.content.get("join_authorised_via_users_server")
        if isinstance(authoriser, str):
            servers.add(domain_of(authoriser))
    return frozenset(servers)


def verify_event_signatures(
    event: EventBase,
    verify_keys: Mapping[str, Mapping[str, VerifyKey]],
    *,
    required: Iterable[str] | None = None,
) -> None:
    """Check that every required server signed the (redacted) event.

    `verify_keys` is `{server_name: {key_id: VerifyKey}}`: the keys the
    caller trusts for this event. `required` defaults to
    `required_signers(event)`. Passes whether we hold the full or a redacted
    copy. Raises `SignatureError` naming the first server that fails.
    """
    try:
        servers = required_signers(event) if required is None else frozenset(required)
    except InvalidIdentifier as e:
        raise SignatureError(f"cannot tell which servers must sign: {e}") from e
    redacted = prune_event_dict(event.room_version, event.pdu_json())
    for server in sorted(servers):
        verify_signed_by(redacted, server, verify_keys.get(server, {}))


def redact_event(event: EventBase) -> EventBase:
    """The redacted form of an event, with the same event ID and room ID.

    Spec: client-server API "Redactions" per room version (see
    `homeserver.types.redaction`). `unsigned` is dropped.
    """
    return make_event(
        prune_event_dict(event.room_version, event.pdu_json()),
        event.room_version,
        event_id=event.event_id,
    )


def event_after_hash_check(event: EventBase) -> EventBase:
    """The event to use after checking its content hash.

    Spec: "If the hash check fails, then it is assumed that this is because
    we have only been given a redacted version of the event. To enforce
    this, the receiving server should use the redacted copy": returns the
    event itself if `hashes.sha256` matches, else `redact_event(event)`.
    """
    if check_content_hash(event.pdu_json()):
        return event
    return redact_event(event)
