"""An oracle that answers protocol questions with Synapse's own code, over JSON lines.

Run with the Python of the Synapse virtualenv (see `tests.interop.synapse_venv`),
never in the project's environment: it imports `synapse` and nothing from this
repository. It reads one JSON request per line on stdin and writes one JSON
answer per line on stdout, in order:

    {"op": "<name>", ...arguments}
    -> {"ok": true, "result": ...}
    -> {"ok": false, "error": "<exception>", "traceback": "..."}

Ops (events are PDU dicts in federation form; `room_version` is an identifier):

- `ping`: Synapse's version and its known room versions.
- `canonical_json` {value}: canonicaljson.encode_canonical_json as text.
- `validate_canonicaljson` {value}: whether synapse.events.utils
  .validate_canonicaljson (the v6+ strict check) accepts the value.
- `content_hash` {event}: synapse.crypto.event_signing.compute_content_hash,
  unpadded base64.
- `check_content_hash` {room_version, event}: check_event_content_hash.
- `event_id` {room_version, event}: make_event_from_dict(...).event_id and its
  room_id (v12 derives the create event's).
- `reference_hash` {room_version, event}: compute_event_reference_hash, base64.
- `redact` {room_version, event}: synapse_rust.events.redact_event_dict (the
  dict pruning used for signing) and redact_event on the event object.
- `sign` {room_version, event, server_name, seed, key_version}:
  add_hashes_and_signatures with the Ed25519 key of that seed (base64).
- `verify` {room_version, event, server_name, verify_key, key_version}: the
  keyring's check, verify_signed_json over redact_event(event).get_pdu_json().
- `auth` {room_version, event, auth_events}: check_state_independent_auth_rules
  (with auth_events as the store) then check_state_dependent_auth_rules.
- `resolve` {room_version, room_id, events, problems: [{state_sets}], rejected}:
  synapse.state.v1 / v2 resolve_events_with_store for each problem (v2 also
  runs v2.1, as Synapse picks from the room version). State sets and results
  are lists of [type, state_key, event_id]. All events are handed to v2 as
  "unpersisted" (`event_map`), so that Synapse computes the auth difference
  and the v2.1 conflicted subgraph itself; its store's auth-chain query then
  sees only empty state sets.

Synapse's async functions run on a Twisted reactor: requests arrive through
`StandardIO` and are handled one after the other; stray prints of imported
code go to stderr, as fd 1 is moved there and answers are written to a private
copy of the real stdout.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

# Answers go to a private copy of stdout; anything else printing to fd 1 lands
# on stderr instead of corrupting the protocol. Done before importing Synapse.
if __name__ == "__main__":
    _ANSWER_FD = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

import logging  # noqa: E402

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

import synapse  # noqa: E402
from synapse import event_auth  # noqa: E402
from synapse.api.errors import SynapseError  # noqa: E402
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS, StateResolutionVersions  # noqa: E402
from synapse.crypto.event_signing import (  # noqa: E402
    add_hashes_and_signatures,
    check_event_content_hash,
    compute_content_hash,
    compute_event_reference_hash,
)
from synapse.events import make_event_from_dict  # noqa: E402
from synapse.events.utils import prune_event, validate_canonicaljson  # noqa: E402
from synapse.state import v1 as state_v1  # noqa: E402
from synapse.state import v2 as state_v2  # noqa: E402
from synapse.storage.databases.main.event_federation import StateDifference  # noqa: E402
from twisted.internet import defer, stdio  # noqa: E402
from twisted.internet import reactor as _reactor  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402

try:  # Synapse >= 1.1xx moved the dict pruning to Rust.
    from synapse.synapse_rust.events import redact_event_dict as _redact_event_dict
except ImportError:  # pragma: no cover - older Synapse
    from synapse.events.utils import prune_event_dict as _redact_event_dict

import canonicaljson  # noqa: E402
from signedjson.key import decode_signing_key_base64, decode_verify_key_bytes  # noqa: E402
from signedjson.sign import verify_signed_json  # noqa: E402
from unpaddedbase64 import decode_base64, encode_base64  # noqa: E402

StateKey = tuple[str, str]
REACTOR: Any = _reactor  # the global reactor (typed loosely: its stub is an interface)


class OracleError(Exception):
    """A request the oracle cannot answer (bad arguments)."""


def _room_version(request: dict[str, Any]) -> Any:
    identifier = request.get("room_version")
    if identifier not in KNOWN_ROOM_VERSIONS:
        raise OracleError(f"unknown room version {identifier!r}")
    return KNOWN_ROOM_VERSIONS[identifier]


def _event(pdu: dict[str, Any], room_version: Any, rejected: bool = False) -> Any:
    try:
        return make_event_from_dict(
            pdu, room_version, rejected_reason="auth_error" if rejected else None
        )
    except SynapseError as e:
        raise OracleError(f"Synapse refuses the event: {e}") from e


# --- simple ops -----------------------------------------------------------------


def op_ping(request: dict[str, Any]) -> Any:
    return {"synapse_version": synapse.__version__, "room_versions": list(KNOWN_ROOM_VERSIONS)}


def op_canonical_json(request: dict[str, Any]) -> Any:
    return canonicaljson.encode_canonical_json(request["value"]).decode("utf-8")


def op_validate_canonicaljson(request: dict[str, Any]) -> Any:
    try:
        validate_canonicaljson(request["value"])
    except SynapseError as e:
        return {"valid": False, "error": str(e)}
    return {"valid": True, "error": None}


def op_content_hash(request: dict[str, Any]) -> Any:
    _name, digest = compute_content_hash(request["event"], hashlib.sha256)
    return encode_base64(digest)


def op_check_content_hash(request: dict[str, Any]) -> Any:
    event = _event(request["event"], _room_version(request))
    try:
        return check_event_content_hash(event)
    except SynapseError as e:  # malformed or missing hashes
        return False if "hashes" in str(e) or "base64" in str(e) else str(e)


def op_event_id(request: dict[str, Any]) -> Any:
    event = _event(request["event"], _room_version(request))
    return {"event_id": event.event_id, "room_id": event.room_id}


def op_reference_hash(request: dict[str, Any]) -> Any:
    event = _event(request["event"], _room_version(request))
    _name, digest = compute_event_reference_hash(event, hashlib.sha256)
    return encode_base64(digest)


def op_redact(request: dict[str, Any]) -> Any:
    room_version = _room_version(request)
    as_dict = _redact_event_dict(room_version, request["event"])
    as_event = None
    if request.get("event_too", True):
        as_event = prune_event(_event(request["event"], room_version)).get_pdu_json()
    return {"dict": as_dict, "event": as_event}


def op_sign(request: dict[str, Any]) -> Any:
    room_version = _room_version(request)
    key = decode_signing_key_base64("ed25519", request["key_version"], request["seed"])
    pdu = json.loads(json.dumps(request["event"]))  # a private copy; it is mutated
    add_hashes_and_signatures(room_version, pdu, request["server_name"], key)
    return pdu


def op_verify(request: dict[str, Any]) -> Any:
    room_version = _room_version(request)
    event = _event(request["event"], room_version)
    verify_key = decode_verify_key_bytes(
        f"ed25519:{request['key_version']}", decode_base64(request["verify_key"])
    )
    try:
        verify_signed_json(prune_event(event).get_pdu_json(), request["server_name"], verify_key)
    except Exception as e:  # SignatureVerifyException
        return {"valid": False, "error": str(e)}
    return {"valid": True, "error": None}


# --- store fakes -------------------------------------------------------------------


class _EventStore:
    """What Synapse's auth and state code fetch events from: an in-memory map."""

    def __init__(self, events: Iterable[Any]) -> None:
        self.events = {event.event_id: event for event in events}

    async def get_events(
        self,
        event_ids: Iterable[str],
        redact_behaviour: Any = None,
        get_prev_content: bool = False,
        allow_rejected: bool = False,
    ) -> dict[str, Any]:
        found = {}
        for event_id in event_ids:
            event = self.events.get(event_id)
            if event is None:
                continue
            if event.rejected_reason is not None and not allow_rejected:
                continue
            found[event_id] = event
        return found

    async def get_auth_chain_difference(
        self,
        room_id: str,
        state_sets: list[set[str]],
        conflicted_state: set[str] | None,
        additional_backwards_reachable_conflicted_events: set[str] | None,
    ) -> Any:
        # Every event is given to Synapse as unpersisted, so it asks the
        # "database" only about persisted events: there are none.
        leftovers = set().union(*state_sets) if state_sets else set()
        leftovers |= conflicted_state or set()
        leftovers |= additional_backwards_reachable_conflicted_events or set()
        if leftovers:
            raise OracleError(f"store asked about events it does not hold: {sorted(leftovers)}")
        return StateDifference(
            auth_difference=set(),
            conflicted_subgraph=set() if conflicted_state is not None else None,
        )


class _Clock:
    async def sleep(self, duration: Any) -> None:
        return None


# --- auth --------------------------------------------------------------------------


async def op_auth(request: dict[str, Any]) -> Any:
    room_version = _room_version(request)
    event = _event(request["event"], room_version)
    auth_events = [_event(pdu, room_version) for pdu in request.get("auth_events", [])]
    try:
        await event_auth.check_state_independent_auth_rules(_EventStore(auth_events), event)
        event_auth.check_state_dependent_auth_rules(event, auth_events)
    except SynapseError as e:  # AuthError, or a 400 for malformed power levels
        return {"allowed": False, "reason": str(e)}
    return {"allowed": True, "reason": None}


# --- state resolution -----------------------------------------------------------------


def _state_map(rows: Iterable[Iterable[str]]) -> dict[StateKey, str]:
    state: dict[StateKey, str] = {}
    for event_type, state_key, event_id in rows:
        state[(event_type, state_key)] = event_id
    return state


def _rows(state: Any) -> list[list[str]]:
    return sorted([t, k, e] for (t, k), e in dict(state).items())


async def op_resolve(request: dict[str, Any]) -> Any:
    room_version = _room_version(request)
    room_id = request["room_id"]
    rejected = set(request.get("rejected", ()))
    events = {}
    for pdu in request["events"]:
        event = _event(pdu, room_version)
        if event.event_id in rejected:
            event = _event(pdu, room_version, rejected=True)
        events[event.event_id] = event
    expected_ids = request.get("event_ids")
    if expected_ids is not None and sorted(expected_ids) != sorted(events):
        raise OracleError(
            "Synapse computes other event IDs: "
            f"ours only {sorted(set(expected_ids) - set(events))}, "
            f"Synapse only {sorted(set(events) - set(expected_ids))}"
        )

    results = []
    for problem in request["problems"]:
        state_sets = [_state_map(rows) for rows in problem["state_sets"]]
        if room_version.state_res == StateResolutionVersions.V1:
            store = _EventStore(events.values())

            async def factory(ids: Iterable[str], store: _EventStore = store) -> dict[str, Any]:
                return await store.get_events(ids, allow_rejected=True)

            resolved = await state_v1.resolve_events_with_store(
                room_id, room_version, state_sets, None, factory
            )
        else:
            resolved = await state_v2.resolve_events_with_store(
                _Clock(),
                room_id,
                room_version,
                state_sets,
                dict(events),  # used (and extended) as a cache: give it a copy
                _EventStore(events.values()),
            )
        results.append(_rows(resolved))
    return results


OPS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "ping": op_ping,
    "canonical_json": op_canonical_json,
    "validate_canonicaljson": op_validate_canonicaljson,
    "content_hash": op_content_hash,
    "check_content_hash": op_check_content_hash,
    "event_id": op_event_id,
    "reference_hash": op_reference_hash,
    "redact": op_redact,
    "sign": op_sign,
    "verify": op_verify,
    "auth": op_auth,
    "resolve": op_resolve,
}


async def handle(line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
        op = OPS.get(str(request.get("op"))) if isinstance(request, dict) else None
        if op is None:
            raise OracleError(f"unknown op in {line[:200]!r}")
        result = op(request)
        if isinstance(result, Awaitable):
            result = await result
        return {"ok": True, "result": result}
    except Exception as e:
        return {
            "ok": False,
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(),
        }


class OracleProtocol(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 256 * 1024 * 1024

    def __init__(self) -> None:
        self._queue: defer.Deferred[None] = defer.succeed(None)

    def lineReceived(self, line: bytes) -> None:
        if not line.strip():
            return
        self._queue.addCallback(lambda _: defer.ensureDeferred(self._answer(line)))

    async def _answer(self, line: bytes) -> None:
        answer = await handle(line)
        data = (json.dumps(answer, ensure_ascii=False) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            written = os.write(_ANSWER_FD, view)
            view = view[written:]

    def lineLengthExceeded(self, line: bytes) -> None:
        sys.stderr.write("oracle: request line too long\n")
        cast(Any, self.transport).loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        # stdin closed: the test session is over.
        self._queue.addBoth(lambda _: REACTOR.stop())


def main() -> None:
    # (mypy reads the signature of Twisted's Windows StandardIO.)
    stdio.StandardIO(OracleProtocol(), stdin=0, stdout=2)  # type: ignore[call-arg,no-untyped-call]
    REACTOR.run()


if __name__ == "__main__":
    main()
