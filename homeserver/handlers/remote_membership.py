"""Membership changes that need another server: the joining side of federation.

Spec: server-server API "Joining Rooms", "Knocking upon a room", "Inviting
to a room" and "Leaving Rooms (Rejecting Invites)".

- `join`: our user joins a room this server is not in. For each candidate
  server in turn: GET make_join (offering every room version we know), build
  our join from its template, PUT v2/send_join, check the answer
  (`homeserver.federation.join_verification`), then store the auth chain and
  state as outliers and our join over that state, so the room becomes ours
  with its full state and our join at its head (the notifier wakes /sync; the
  federation sender now sends our events to the room's servers).
- `leave`: our user rejects an invite, or withdraws a knock, in a room this
  server is not in: make_leave / v2/send_leave, and the leave stored as an
  outlier and made the user's membership (so /sync moves the room to `leave`).
  When no server answers, the leave is made here, over the invite or knock
  alone, as Synapse does: the user can always get rid of an invite.
- `knock`: make_knock / send_knock; the knock is stored as an outlier with the
  stripped state the resident sent in `unsigned.knock_room_state` (what /sync
  shows in `knock`).
- `invite`: our user invites a user of another server to one of our rooms:
  the invite is built at the head of the room, checked against the rules, sent
  to the invitee's server (PUT v2/invite, with the room version and the state
  that identifies the room, as PDUs), and stored only once that server has
  signed it.

Which server to try is the caller's (the `via` hints, the room ID's server,
the server that invited us). A server that cannot be reached, errs (5xx) or
does not know the room moves us on to the next; a definite refusal (403
M_FORBIDDEN, M_INCOMPATIBLE_ROOM_VERSION) is passed to the client. When every
server failed: 502 M_UNKNOWN, or the last refusal; with no server to try: 404
M_NOT_FOUND, as Synapse answers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, Final, Protocol
from urllib.parse import quote

from signedjson.types import SigningKey, VerifyKey
from unpaddedbase64 import encode_base64

from homeserver.clock import Clock
from homeserver.federation.client import (
    FederationClient,
    FederationRequestError,
    HttpResponseError,
)
from homeserver.federation.event_checks import DroppedPdu, KeySource, parse_pdu
from homeserver.federation.join_verification import (
    InvalidJoinResponse,
    verify_send_join_response,
)
from homeserver.handlers.event_persistence import EventPersister, EventToPersist, PersistedEvent
from homeserver.handlers.room_batch import BatchBuilder, LocalDraft, load_room_view
from homeserver.handlers.sync_rooms import STRIPPED_STATE_KEYS, strip_event
from homeserver.state.auth_common import CREATE_KEY, INVITE, JOIN, KNOCK, LEAVE, MEMBER
from homeserver.state.auth_rules import AuthError, auth_types_for_event, check_auth_rules
from homeserver.storage.room_storage import RoomStorage
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.event_builder import build_event, random_event_id_localpart
from homeserver.types.events import EventBase, InvalidEvent, make_event
from homeserver.types.hashing import compute_reference_hash
from homeserver.types.redaction import prune_event_dict
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion
from homeserver.types.signing import SignatureError, add_hashes_and_signatures, verify_signed_by

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

FEDERATION_V1: Final = "/_matrix/federation/v1"
FEDERATION_V2: Final = "/_matrix/federation/v2"
# send_join answers can be large (the whole state and auth chain of a big room)
# and slow to build: Synapse gives them long too.
SEND_JOIN_TIMEOUT_MS: Final = 120_000
SEND_JOIN_MAX_SIZE: Final = 500 * 1024 * 1024
HANDSHAKE_TIMEOUT_MS: Final = 30_000
# Refusals that another resident might not give (it may be able to authorise a
# restricted join this one cannot), as Synapse fails over on.
_FAILOVER_ERRCODES: Final = frozenset(
    {Codes.NOT_FOUND, "M_UNABLE_AUTHORISE_JOIN", Codes.UNABLE_TO_GRANT_JOIN, Codes.UNRECOGNIZED}
)


class OutOfBandMemberships(Protocol):
    """Where a membership that enters no room state is made the user's (hs.storage.sync)."""

    async def record_out_of_band_membership(
        self, room_id: str, user_id: str, membership: str, event_id: str, stream_ordering: int
    ) -> None: ...


class _TryNext(Exception):
    """This server did not work out; the message says why."""


class RemoteMembershipHandler:
    """Joins, leaves, knocks and invites that go through other servers (see the module docstring)."""

    def __init__(
        self,
        server_name: str,
        clock: Clock,
        signing_key: SigningKey,
        room_storage: RoomStorage,
        persister: EventPersister,
        federation_client: FederationClient,
        keys: KeySource,
        out_of_band: OutOfBandMemberships,
    ) -> None:
        self._server_name = server_name
        self._out_of_band = out_of_band
        self._clock = clock
        self._signing_key = signing_key
        self._storage = room_storage
        self._persister = persister
        self._client = federation_client
        self._keys = keys

    # -- joining

    async def join(
        self, room_id: str, user_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> PersistedEvent:
        """Join `user_id` to a room held by other servers, through the first of `servers` that works."""

        async def attempt(server: str) -> PersistedEvent:
            room_version, template = await self._make(server, "make_join", room_id, user_id, JOIN)
            join = self._event_from_template(room_version, template, content)
            response = await self._send(
                server,
                f"{FEDERATION_V2}/send_join/{_q(room_id)}/{_q(join.event_id)}",
                join,
                timeout_ms=SEND_JOIN_TIMEOUT_MS,
                max_response_size=SEND_JOIN_MAX_SIZE,
            )
            try:
                verified = await verify_send_join_response(self._keys, room_version, join, response)
            except InvalidJoinResponse as e:
                raise _TryNext(f"its send_join answer: {e}") from None
            # Auth chain and state first (as outliers, in auth order), then our
            # join over the state they make: that is what makes the room ours.
            await self._persister.persist(
                [
                    EventToPersist(
                        event, outlier=True, rejected_reason=verified.rejected.get(event.event_id)
                    )
                    for event in verified.events
                ]
            )
            (persisted,) = await self._persister.persist(
                [EventToPersist(verified.join, state_before=dict(verified.state))]
            )
            if persisted.rejected_reason is not None:
                raise _TryNext(f"our join was rejected: {persisted.rejected_reason}")
            return persisted

        return await self._try_servers(servers, attempt, "join")

    # -- knocking and leaving

    async def knock(
        self, room_id: str, user_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> PersistedEvent:
        """Knock on a room held by other servers; the knock, stored as an outlier."""

        async def attempt(server: str) -> PersistedEvent:
            room_version, template = await self._make(server, "make_knock", room_id, user_id, KNOCK)
            knock = self._event_from_template(room_version, template, content)
            response = await self._send(
                server, f"{FEDERATION_V1}/send_knock/{_q(room_id)}/{_q(knock.event_id)}", knock
            )
            stripped = response.get("knock_room_state") if isinstance(response, Mapping) else None
            if not isinstance(stripped, list):
                raise _TryNext("its send_knock answer has no 'knock_room_state' list")
            pdu = knock.pdu_json()
            pdu["unsigned"] = {
                "knock_room_state": [
                    strip_event(e)
                    for e in stripped
                    if isinstance(e, Mapping) and isinstance(e.get("type"), str)
                ]
            }
            stored = make_event(pdu, room_version, event_id=knock.event_id)
            return await self._persist_out_of_band(stored)

        return await self._try_servers(servers, attempt, "knock")

    async def leave(
        self, room_id: str, user_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> PersistedEvent:
        """Reject an invite or withdraw a knock in a room held by other servers; the leave (outlier)."""

        async def attempt(server: str) -> PersistedEvent:
            room_version, template = await self._make(server, "make_leave", room_id, user_id, LEAVE)
            leave = self._event_from_template(room_version, template, content)
            await self._send(
                server, f"{FEDERATION_V2}/send_leave/{_q(room_id)}/{_q(leave.event_id)}", leave
            )
            return await self._persist_out_of_band(leave)

        try:
            return await self._try_servers(servers, attempt, "leave")
        except MatrixError as error:
            # As Synapse: a user must be able to get rid of an invite (or knock)
            # from a room no server will answer for; the room's servers learn of
            # the leave if they ever ask, and we stop showing the invite.
            pending = await self._pending_membership(room_id, user_id)
            if pending is None:
                raise
            logger.info(
                "rejecting %s's %s in %s locally: %s",
                user_id,
                pending.content.get("membership"),
                room_id,
                error,
            )
            return await self._persist_out_of_band(self._local_leave(pending, content))

    async def _pending_membership(self, room_id: str, user_id: str) -> EventBase | None:
        """The user's invite or knock in the room, if that is their latest membership."""
        history = await self._storage.rooms.get_membership_history(room_id, user_id)
        if not history or history[-1][1] not in (INVITE, KNOCK):
            return None
        return await self._storage.events.get_event(history[-1][0])

    def _local_leave(self, pending: EventBase, content: Mapping[str, Any]) -> EventBase:
        """A leave of ours over the invite or knock alone (Synapse's "out-of-band" leave)."""
        room_version = pending.room_version
        assert pending.state_key is not None
        reference_hashes = {}
        if room_version.event_format.format is EventFormat.V1:
            reference = compute_reference_hash(room_version, pending.pdu_json())
            reference_hashes = {pending.event_id: {"sha256": encode_base64(reference)}}
        return build_event(
            room_version=room_version,
            type=MEMBER,
            state_key=pending.state_key,
            sender=pending.state_key,
            content={**content, "membership": LEAVE},
            room_id=pending.room_id,
            prev_event_ids=[pending.event_id],
            auth_event_ids=[pending.event_id],
            depth=pending.depth + 1,
            origin_server_ts=self._clock.time_msec(),
            server_name=self._server_name,
            signing_key=self._signing_key,
            reference_hashes=reference_hashes,
        )

    async def _persist_out_of_band(self, event: EventBase) -> PersistedEvent:
        """Store our user's membership in a room we hold no state of, and make it theirs for /sync."""
        (persisted,) = await self._persister.persist([EventToPersist(event, outlier=True)])
        assert event.state_key is not None
        await self._out_of_band.record_out_of_band_membership(
            event.room_id,
            event.state_key,
            event.content["membership"],
            event.event_id,
            persisted.stream_ordering,
        )
        return persisted

    # -- inviting

    async def invite(
        self, room_id: str, sender: str, target: str, content: Mapping[str, Any]
    ) -> PersistedEvent:
        """Invite a user of another server to a room we are in; the invite, once stored.

        Nothing is stored unless the invitee's server signed the invite; its
        refusal (or silence) is the client's error.
        """
        invite_content = {**content, "membership": INVITE}
        view = await load_room_view(self._storage, room_id)
        builder = BatchBuilder(self._storage, view, self._clock.time_msec())
        try:
            event, (_, state) = await builder.build_local(
                LocalDraft(MEMBER, target, sender, invite_content),
                server_name=self._server_name,
                signing_key=self._signing_key,
                now_ms=self._clock.time_msec(),
            )
        except InvalidEvent as e:
            raise MatrixError(e.errcode, str(e)) from e
        await self._check_auth(event, state)
        invite_room_state = await self._invite_room_state(state)
        destination = target.partition(":")[2]
        try:
            response = await self._client.put_json(
                destination,
                f"{FEDERATION_V2}/invite/{_q(room_id)}/{_q(event.event_id)}",
                {
                    "event": event.pdu_json(),
                    "room_version": event.room_version.identifier,
                    "invite_room_state": invite_room_state,
                },
                timeout_ms=HANDSHAKE_TIMEOUT_MS,
            )
        except HttpResponseError as e:
            if 400 <= e.code < 500:
                raise e.to_matrix_error() from None
            raise MatrixError(
                Codes.UNKNOWN, f"{destination} could not take the invite: {e}", status=502
            ) from None
        except FederationRequestError as e:
            raise MatrixError(
                Codes.UNKNOWN, f"Could not reach {destination} to invite {target}: {e}", status=502
            ) from None
        signed = await self._countersigned_invite(event, destination, response)
        (persisted,) = await self._persister.persist([EventToPersist(signed)])
        if persisted.rejected_reason is not None:
            raise MatrixError(
                Codes.FORBIDDEN, f"The invite was refused: {persisted.rejected_reason}"
            )
        return persisted

    async def _check_auth(self, event: EventBase, state: Mapping[tuple[str, str], str]) -> None:
        keys = auth_types_for_event(event.room_version, event) | {CREATE_KEY}
        ids = {key: state[key] for key in keys if key in state}
        fetched = await self._storage.events.get_events(list(ids.values()))
        try:
            check_auth_rules(
                event.room_version,
                event,
                {key: fetched[i] for key, i in ids.items() if i in fetched},
            )
        except AuthError as e:
            raise MatrixError(Codes.FORBIDDEN, str(e)) from None

    async def _invite_room_state(self, state: Mapping[tuple[str, str], str]) -> list[JsonDict]:
        """The state that tells the invitee what room this is: whole PDUs, the create event first.

        Spec (v1.16): "MUST contain the m.room.create event ... formatted
        according to the room version"; the invitee strips them for its client.
        """
        ids = [state[key] for key in STRIPPED_STATE_KEYS if key in state]
        if CREATE_KEY in state and state[CREATE_KEY] not in ids:
            ids.insert(0, state[CREATE_KEY])
        events = await self._storage.events.get_events(ids)
        return [events[i].pdu_json() for i in ids if i in events]

    async def _countersigned_invite(
        self, sent: EventBase, destination: str, response: Any
    ) -> EventBase:
        """The invite the invitee's server answered with: ours, with its valid signature added."""
        pdu = response.get("event") if isinstance(response, Mapping) else None
        try:
            returned = parse_pdu(pdu, sent.room_version)
        except DroppedPdu as e:
            raise MatrixError(
                Codes.UNKNOWN, f"{destination} answered the invite with {e}", status=502
            ) from None
        if returned.event_id != sent.event_id or returned.content != sent.content:
            raise MatrixError(
                Codes.UNKNOWN,
                f"{destination} answered with another event than our invite",
                status=502,
            )
        signatures = returned.signatures.get(destination)
        key_ids = [k for k in (signatures or {}) if isinstance(k, str) and k.startswith("ed25519:")]
        verify_keys: dict[str, VerifyKey] = {}
        if key_ids:
            # Key fetching fails in many ways (network, bad answers): all mean "unverifiable".
            try:
                found = await self._keys.get_server_keys(destination, key_ids, 0)
            except Exception as e:
                raise MatrixError(
                    Codes.UNKNOWN, f"Could not get {destination}'s keys: {e}", status=502
                ) from None
            verify_keys = {k: v.verify_key for k, v in found.items()}
        try:
            redacted = prune_event_dict(returned.room_version, returned.pdu_json())
            verify_signed_by(redacted, destination, verify_keys)
        except SignatureError as e:
            raise MatrixError(
                Codes.UNKNOWN, f"{destination} did not sign our invite validly: {e}", status=502
            ) from None
        merged = sent.pdu_json()
        merged["signatures"] = {**merged["signatures"], destination: dict(signatures or {})}
        return make_event(merged, sent.room_version, event_id=sent.event_id)

    # -- the handshake

    async def _try_servers(
        self,
        servers: Sequence[str],
        attempt: Callable[[str], Awaitable[PersistedEvent]],
        what: str,
    ) -> PersistedEvent:
        candidates = [s for s in dict.fromkeys(servers) if s != self._server_name]
        if not candidates:
            raise MatrixError(Codes.NOT_FOUND, f"No known servers to {what} the room through")
        refusal: MatrixError | None = None
        for server in candidates:
            try:
                return await attempt(server)
            except _TryNext as e:
                logger.info("could not %s through %s: %s", what, server, e)
            except HttpResponseError as e:
                error = e.to_matrix_error()
                if 400 <= e.code < 500 and e.code != 429 and e.errcode not in _FAILOVER_ERRCODES:
                    raise error from None
                logger.info("could not %s through %s: %s", what, server, e)
                if 400 <= e.code < 500:
                    refusal = error
            except FederationRequestError as e:
                logger.info("could not %s through %s: %s", what, server, e)
        if refusal is not None:
            raise refusal
        raise MatrixError(Codes.UNKNOWN, f"Failed to {what} through any server", status=502)

    async def _make(
        self, server: str, endpoint: str, room_id: str, user_id: str, membership: str
    ) -> tuple[RoomVersion, Mapping[str, Any]]:
        """GET make_join/make_leave/make_knock: the room version and the event template."""
        args = {"ver": list(KNOWN_ROOM_VERSIONS)} if membership != LEAVE else None
        answer = await self._client.get_json(
            server,
            f"{FEDERATION_V1}/{endpoint}/{_q(room_id)}/{_q(user_id)}",
            args,
            timeout_ms=HANDSHAKE_TIMEOUT_MS,
        )
        if not isinstance(answer, Mapping):
            raise _TryNext(f"its {endpoint} answer is not an object")
        version_id = answer.get("room_version", "1")
        room_version = KNOWN_ROOM_VERSIONS.get(version_id) if isinstance(version_id, str) else None
        if room_version is None:
            raise MatrixError(
                Codes.INCOMPATIBLE_ROOM_VERSION,
                f"The room's version {version_id!r} is not supported by this server",
            )
        template = answer.get("event")
        if (
            not isinstance(template, Mapping)
            or template.get("type") != MEMBER
            or template.get("room_id") != room_id
            or template.get("sender") != user_id
            or template.get("state_key") != user_id
            or not isinstance(template.get("content"), Mapping)
            or template["content"].get("membership") != membership
        ):
            raise _TryNext(f"its {endpoint} template is not a {membership} of {user_id}")
        return room_version, template

    def _event_from_template(
        self, room_version: RoomVersion, template: Mapping[str, Any], content: Mapping[str, Any]
    ) -> EventBase:
        """Our event from a make_* template: our content over its, our timestamp, hashes, signature."""
        pdu = {
            k: v
            for k, v in template.items()
            if k not in ("hashes", "signatures", "unsigned", "event_id", "origin")
        }
        # The resident may name who authorises a restricted join; the rest is ours.
        pdu["content"] = {
            **template["content"],
            **content,
            "membership": template["content"]["membership"],
        }
        pdu["origin_server_ts"] = self._clock.time_msec()
        if not room_version.redaction.updated_rules_v11:
            pdu["origin"] = self._server_name
        if room_version.event_format.format is EventFormat.V1:
            pdu["event_id"] = f"${random_event_id_localpart()}:{self._server_name}"
        try:
            signed = add_hashes_and_signatures(
                room_version, pdu, self._server_name, self._signing_key
            )
            return make_event(signed, room_version)
        except (InvalidEvent, TypeError, ValueError) as e:
            raise _TryNext(f"its template makes no valid event: {e}") from None

    async def _send(
        self,
        server: str,
        path: str,
        event: EventBase,
        *,
        timeout_ms: int = HANDSHAKE_TIMEOUT_MS,
        max_response_size: int | None = None,
    ) -> Any:
        return await self._client.put_json(
            server,
            path,
            event.pdu_json(),
            timeout_ms=timeout_ms,
            max_response_size=max_response_size,
        )


def _q(part: str) -> str:
    return quote(part, safe="")


def servers_of(ids: Collection[str]) -> list[str]:
    """The server names of user, room or event IDs, in order, without repeats."""
    return list(dict.fromkeys(i.partition(":")[2] for i in ids if ":" in i))
