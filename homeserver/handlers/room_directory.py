"""RoomDirectoryHandler: room aliases, rooms' visibility in the directory, the public room list.

Spec: client-server API "Room aliases" (PUT/GET/DELETE
/directory/room/{roomAlias}, GET /rooms/{roomId}/aliases), "Published room
directory" (GET/PUT /directory/list/room/{roomId}, GET/POST /publicRooms),
and m.room.canonical_alias (PUT .../state: "servers SHOULD ensure that any
new aliases ... point to the room ID").

Where the spec leaves a choice, as Synapse does:

- an alias is made by a member of the room (server admins and the server
  itself, for createRoom, need not be), only on this server's domain and
  without whitespace; an existing alias is 409 M_UNKNOWN;
- an alias is deleted by whoever made it, a server admin, or a member with
  the power to send m.room.canonical_alias; deleting one the room's
  m.room.canonical_alias lists also removes it from there, as that user,
  and the deletion stands even if they lack the power to (spec note);
- a room's directory visibility is changed by a server admin or a member
  with the power to send m.room.canonical_alias;
- the public room list has the published rooms that have joined members and
  that one may join (join rule public, knock or knock_restricted) or read
  (world_readable), largest first, then by room ID; pages are bounded by
  the last room shown, so a page after a token never repeats a room that
  kept its place.

Aliases of other servers are resolved by asking their server (GET
/_matrix/federation/v1/query/directory, through FederationQueries, which
caches answers briefly); other servers' room directories are read from their
federation /publicRooms. An alias whose server gives no usable answer
resolves to nothing (Synapse: 502); a directory that cannot be fetched is
502, as Synapse does.
"""

from __future__ import annotations

import base64
import binascii
import logging
import string
from collections.abc import Mapping, Sequence
from typing import Any

from homeserver.federation.queries import FederationQueries
from homeserver.handlers.auth import Requester
from homeserver.handlers.event_persistence import EventPersister
from homeserver.handlers.room_stats import CANONICAL_ALIAS, RoomStatsUpdater
from homeserver.handlers.visibility import WORLD_READABLE, check_user_in_room_or_world_readable
from homeserver.state.auth_common import (
    CREATE_KEY,
    JOIN,
    KNOCK_RESTRICTED,
    KNOCK_RULE,
    POWER_LEVELS_KEY,
    PUBLIC,
    AuthError,
)
from homeserver.state.power_levels import PowerLevels
from homeserver.storage.room_storage import RoomStorage
from homeserver.storage.stores.room_stats import PublicRoomsQuery, RoomStats
from homeserver.storage.stores.users import UserStore
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.identifiers import (
    InvalidIdentifier,
    RoomAlias,
    domain_of,
    parse_room_alias,
    parse_room_id,
)
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

PUBLIC_VISIBILITY = "public"
PRIVATE_VISIBILITY = "private"
VISIBILITIES = (PUBLIC_VISIBILITY, PRIVATE_VISIBILITY)

LISTABLE_JOIN_RULES = (PUBLIC, KNOCK_RULE, KNOCK_RESTRICTED)
"""Join rules with which a published room is listed (otherwise only when world_readable)."""


def parse_alias(alias: str) -> RoomAlias:
    """A room alias from a client: 400 M_INVALID_PARAM if it is not one."""
    try:
        return parse_room_alias(alias)
    except InvalidIdentifier as e:
        raise MatrixError(Codes.INVALID_PARAM, f"Room alias invalid: {e}") from e


def _entry(room: RoomStats) -> JsonDict:
    """A PublishedRoomsChunk; keys without a value are left out."""
    entry: JsonDict = {
        "room_id": room.room_id,
        "num_joined_members": room.joined_members,
        "world_readable": room.history_visibility == WORLD_READABLE,
        "guest_can_join": room.guest_access == "can_join",
    }
    optional = {
        "name": room.name,
        "topic": room.topic,
        "avatar_url": room.avatar,
        "canonical_alias": room.canonical_alias,
        "join_rule": room.join_rules,
        "room_type": room.room_type,
    }
    entry.update((key, value) for key, value in optional.items() if value is not None)
    return entry


def encode_batch_token(room: RoomStats, *, forwards: bool) -> str:
    """A page boundary: the room just before the next page (forwards) or after the previous one."""
    text = f"{'n' if forwards else 'p'}{room.joined_members}_{room.room_id}"
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def decode_batch_token(token: str) -> tuple[bool, tuple[int, str]]:
    """(forwards, (joined_members, room_id)) from a token; 400 M_INVALID_PARAM if it is not one."""
    try:
        padded = token + "=" * (-len(token) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
        direction, rest = text[0], text[1:]
        joined, room_id = rest.split("_", 1)
        if direction not in "np" or not joined.isdigit() or not room_id.startswith("!"):
            raise ValueError(text)
        return direction == "n", (int(joined), room_id)
    except (UnicodeError, ValueError, IndexError, binascii.Error) as e:
        raise MatrixError(Codes.INVALID_PARAM, "Invalid pagination token") from e


class RoomDirectoryHandler:
    """Local aliases, directory visibility, and listing the published rooms."""

    def __init__(
        self,
        server_name: str,
        room_storage: RoomStorage,
        users: UserStore,
        persister: EventPersister,
        stats: RoomStatsUpdater,
        *,
        enable_room_list_search: bool = True,
    ) -> None:
        self._server_name = server_name
        self._storage = room_storage
        self._directory = room_storage.directory
        self._users = users
        self._persister = persister
        self._stats = stats
        self._enable_room_list_search = enable_room_list_search
        self._remote: FederationQueries | None = None

    def use_federation(self, queries: FederationQueries) -> None:
        """Resolve other servers' aliases and list their directories through `queries`.

        Given after construction: the HomeServer builds the federation client
        with the accounts, after the room handlers that need this one.
        """
        self._remote = queries

    # -- aliases

    async def create_alias(
        self, requester_user_id: str, alias: str, room_id: str, *, check_permission: bool = True
    ) -> None:
        """Make `alias` point at `room_id`, as `requester_user_id`.

        With `check_permission` the user must be joined to the room unless a
        server admin; without, the server acts for them (createRoom).
        Raises 400 M_INVALID_PARAM (not an alias), 400 M_UNKNOWN (not a local
        alias, whitespace in it, unknown room), 403 M_FORBIDDEN, 409
        M_UNKNOWN (the alias exists).
        """
        parsed = self._parse_local_alias(alias)
        if any(c in string.whitespace for c in parsed.localpart):
            raise MatrixError(Codes.UNKNOWN, "Invalid characters in room alias", status=400)
        if await self._storage.rooms.get_room(room_id) is None:
            raise MatrixError(Codes.UNKNOWN, "Room does not exist", status=400)
        if (
            check_permission
            and not await self._is_joined(room_id, requester_user_id)
            and not await self._is_admin(requester_user_id)
        ):
            raise MatrixError(Codes.FORBIDDEN, "You must be in the room to create an alias for it")
        servers = await self._joined_servers(room_id) or [self._server_name]
        if not await self._directory.create_alias(alias, room_id, requester_user_id, servers):
            raise MatrixError(Codes.UNKNOWN, f"Room alias {alias} already exists.", status=409)

    async def delete_alias(self, alias: str, requester_user_id: str | None) -> str:
        """Remove a local alias; the room it pointed at.

        `requester_user_id` None: the server itself (no permission check, and
        the room's m.room.canonical_alias is left to the caller). Otherwise
        the user must have made the alias, be a server admin, or be a member
        with the power to send m.room.canonical_alias; the alias also leaves
        the room's m.room.canonical_alias if it is there and they may send it.
        Raises 400 (not a local alias), 404 M_NOT_FOUND, 403 M_FORBIDDEN.
        """
        self._parse_local_alias(alias)
        mapping = await self._directory.get_alias(alias)
        if mapping is None:
            raise MatrixError(Codes.NOT_FOUND, f"Room alias {alias} not found.")
        if requester_user_id is not None and not (
            mapping.creator == requester_user_id
            or await self._is_admin(requester_user_id)
            or await self._may_manage_room(mapping.room_id, requester_user_id)
        ):
            raise MatrixError(Codes.FORBIDDEN, "You don't have permission to delete the alias.")
        deleted = await self._directory.delete_alias(alias)
        if deleted is None:  # someone else deleted it since
            raise MatrixError(Codes.NOT_FOUND, f"Room alias {alias} not found.")
        if requester_user_id is not None:
            await self._remove_from_canonical_alias(deleted.room_id, alias, requester_user_id)
        return deleted.room_id

    async def _remove_from_canonical_alias(self, room_id: str, alias: str, user_id: str) -> None:
        event_id = (await self._storage.state.get_current_state_ids(room_id)).get(
            (CANONICAL_ALIAS, "")
        )
        event = await self._storage.events.get_event(event_id) if event_id else None
        if event is None:
            return
        content = dict(event.content)
        changed = False
        if content.get("alias") == alias:
            del content["alias"]
            changed = True
        alt_aliases = content.get("alt_aliases")
        if isinstance(alt_aliases, list) and alias in alt_aliases:
            remaining = [a for a in alt_aliases if a != alias]
            if remaining:
                content["alt_aliases"] = remaining
            else:
                del content["alt_aliases"]
            changed = True
        if not changed:
            return
        try:
            await self._persister.create_and_persist(room_id, CANONICAL_ALIAS, "", user_id, content)
        except AuthError as e:
            # The spec asks that the alias be deleted all the same.
            logger.info("Not updating %s's canonical alias as %s: %s", room_id, user_id, e)

    async def resolve_alias(self, alias: str) -> tuple[str, list[str]] | None:
        """The room an alias points at and servers to join it through; None if none.

        Raises 400 M_INVALID_PARAM if `alias` is not an alias. Another
        server's alias is asked of that server; no usable answer from it is
        None too (see homeserver.federation.queries).
        """
        parsed = parse_alias(alias)
        if parsed.domain == self._server_name:
            mapping = await self._directory.get_alias(alias)
            if mapping is None:
                return None
            room_id, known_servers = mapping.room_id, list(mapping.servers)
        else:
            if self._remote is None:
                return None
            resolved = await self._remote.query_directory(alias, parsed.domain)
            if resolved is None:
                return None
            room_id, known_servers = resolved
        servers = set(known_servers) | set(await self._joined_servers(room_id))
        ordered = sorted(servers - {self._server_name})
        if self._server_name in servers:
            ordered.insert(0, self._server_name)
        return room_id, ordered

    async def get_local_aliases(self, room_id: str) -> list[str]:
        """The aliases on this server pointing at the room, sorted (no permission check)."""
        return await self._directory.get_aliases_for_room(room_id)

    async def get_aliases_for_client(self, requester: Requester, room_id: str) -> list[str]:
        """GET /rooms/{roomId}/aliases: for members, anyone if world_readable, and server admins."""
        try:
            parse_room_id(room_id)
        except InvalidIdentifier as e:
            raise MatrixError(Codes.INVALID_PARAM, f"Room ID invalid: {e}") from e
        if not await self._is_admin(requester.user_id):
            await check_user_in_room_or_world_readable(self._storage, room_id, requester.user_id)
        return await self.get_local_aliases(room_id)

    async def validate_canonical_alias(self, room_id: str, content: Mapping[str, Any]) -> None:
        """Check the aliases an m.room.canonical_alias content adds point at the room.

        Only aliases new relative to the room's current m.room.canonical_alias
        are checked (spec: "Servers do not validate aliases which are being
        removed or are already present"). 400 M_INVALID_PARAM when `alias`
        or an `alt_aliases` entry is not an alias or `alt_aliases` is not a
        list, 400 M_BAD_ALIAS when one does not point at the room.
        """
        current = await self._current_canonical_alias(room_id)
        alias = content.get("alias")
        if alias is not None and alias != "":
            if not isinstance(alias, str):
                raise MatrixError(Codes.INVALID_PARAM, "'alias' must be a string")
            if alias != current.get("alias"):
                await self._check_points_at(alias, room_id)
        if "alt_aliases" not in content:
            return
        alt_aliases = content["alt_aliases"]
        if not isinstance(alt_aliases, list):
            raise MatrixError(Codes.INVALID_PARAM, "'alt_aliases' must be a list")
        old_alt = current.get("alt_aliases")
        known = {a for a in old_alt if isinstance(a, str)} if isinstance(old_alt, list) else set()
        for entry in alt_aliases:
            if not isinstance(entry, str):
                raise MatrixError(Codes.INVALID_PARAM, "'alt_aliases' must be a list of aliases")
            if entry not in known:
                await self._check_points_at(entry, room_id)

    async def _current_canonical_alias(self, room_id: str) -> Mapping[str, Any]:
        event_id = (await self._storage.state.get_current_state_ids(room_id)).get(
            (CANONICAL_ALIAS, "")
        )
        event = await self._storage.events.get_event(event_id) if event_id else None
        return event.content if event is not None else {}

    async def _check_points_at(self, alias: str, room_id: str) -> None:
        resolved = await self.resolve_alias(alias)
        if resolved is None or resolved[0] != room_id:
            raise MatrixError(
                Codes.BAD_ALIAS, f"The alias '{alias}' does not point to this room.", status=400
            )

    def _parse_local_alias(self, alias: str) -> RoomAlias:
        parsed = parse_alias(alias)
        if parsed.domain != self._server_name:
            raise MatrixError(Codes.UNKNOWN, "Room alias must be local", status=400)
        return parsed

    # -- visibility in the published room directory

    async def get_visibility(self, room_id: str) -> str:
        """The room's visibility, "public" or "private"; 404 M_NOT_FOUND for an unknown room."""
        await self._check_room_known(room_id)
        published = await self._directory.is_published(room_id)
        return PUBLIC_VISIBILITY if published else PRIVATE_VISIBILITY

    async def set_visibility(self, room_id: str, visibility: str) -> None:
        """Publish ("public") or unpublish ("private") a room, with no permission check."""
        if visibility not in VISIBILITIES:
            raise MatrixError(Codes.INVALID_PARAM, "visibility must be 'public' or 'private'")
        await self._check_room_known(room_id)
        await self._directory.set_published(room_id, visibility == PUBLIC_VISIBILITY)

    async def change_visibility(self, requester: Requester, room_id: str, visibility: str) -> None:
        """PUT /directory/list/room/{roomId}: as a server admin or a member who may set aliases."""
        if visibility not in VISIBILITIES:
            raise MatrixError(Codes.INVALID_PARAM, "visibility must be 'public' or 'private'")
        if requester.is_guest:
            raise MatrixError(Codes.FORBIDDEN, "Guests cannot edit the published room list")
        if visibility == PUBLIC_VISIBILITY and not self._enable_room_list_search:
            raise MatrixError(
                Codes.FORBIDDEN, "This server does not publish rooms in its room directory"
            )
        await self._check_room_known(room_id)
        user_id = requester.user_id
        if not await self._is_admin(user_id) and not await self._may_manage_room(room_id, user_id):
            raise MatrixError(
                Codes.FORBIDDEN,
                "You need the power to set the room's canonical alias to edit its directory entry",
            )
        await self._directory.set_published(room_id, visibility == PUBLIC_VISIBILITY)

    async def _check_room_known(self, room_id: str) -> None:
        if await self._storage.rooms.get_room(room_id) is None:
            raise MatrixError(Codes.NOT_FOUND, "Room not found")

    # -- the public room list

    async def get_public_rooms(
        self,
        *,
        limit: int | None = None,
        since: str | None = None,
        search_term: str | None = None,
        room_types: Sequence[str | None] | None = None,
        third_party_instance_id: str | None = None,
        include_all_networks: bool = False,
        server: str | None = None,
    ) -> JsonDict:
        """One page of a published room directory (GET/POST /publicRooms).

        `server`: another server whose directory to list, read from its
        federation /publicRooms (None or this server's name: ours).
        `limit` None lists every room. `third_party_instance_id` asks for the
        rooms an application service published for one of its networks; no
        room is published to a network here, so that list is empty, and
        `include_all_networks` adds nothing to ours.
        """
        if limit is not None and limit < 0:
            raise MatrixError(Codes.INVALID_PARAM, "limit must not be negative")
        if server is not None and server != self._server_name:
            if self._remote is None:
                raise MatrixError(Codes.INVALID_PARAM, "Other servers' directories are unavailable")
            return await self._remote.get_public_rooms(
                server,
                limit=limit,
                since=since,
                search_term=search_term,
                room_types=None if room_types is None else list(room_types),
                include_all_networks=include_all_networks,
                third_party_instance_id=third_party_instance_id,
            )
        forwards, bound = True, None
        if since is not None:
            forwards, bound = decode_batch_token(since)
        if not self._enable_room_list_search or third_party_instance_id is not None:
            return {"chunk": [], "total_room_count_estimate": 0}
        # List what clients were told is stored (a room just made public, a
        # name just set) rather than what the stats last caught up with.
        await self._stats.wait_until_current()
        query = PublicRoomsQuery(
            listable_join_rules=LISTABLE_JOIN_RULES,
            search_term=search_term or None,
            room_types=room_types,
            bound=bound,
            forwards=forwards,
            limit=None if limit is None else limit + 1,
        )
        store = self._storage.room_stats
        rooms = await store.get_public_rooms(query)
        more = limit is not None and len(rooms) > limit
        if more:
            assert limit is not None
            rooms = rooms[:limit] if forwards else rooms[len(rooms) - limit :]
        response: JsonDict = {"chunk": [_entry(room) for room in rooms]}
        if rooms:
            # Rooms lie on the side a token came from, and beyond a page cut short.
            has_next = more if forwards else since is not None
            has_previous = since is not None if forwards else more
            if has_next:
                response["next_batch"] = encode_batch_token(rooms[-1], forwards=True)
            if has_previous:
                response["prev_batch"] = encode_batch_token(rooms[0], forwards=False)
        response["total_room_count_estimate"] = await store.count_public_rooms(query)
        return response

    # -- who may do what

    async def _is_admin(self, user_id: str) -> bool:
        user = await self._users.get_user(user_id)
        return user is not None and user.admin

    async def _is_joined(self, room_id: str, user_id: str) -> bool:
        member = await self._storage.rooms.get_membership(room_id, user_id)
        return member is not None and member.membership == JOIN

    async def _may_manage_room(self, room_id: str, user_id: str) -> bool:
        """Whether the user is joined and has the power to send m.room.canonical_alias."""
        if not await self._is_joined(room_id, user_id):
            return False
        room = await self._storage.rooms.get_room(room_id)
        if room is None or room.room_version not in KNOWN_ROOM_VERSIONS:
            return False
        state = await self._storage.state.get_current_state_ids(room_id)
        ids = [state[key] for key in (CREATE_KEY, POWER_LEVELS_KEY) if key in state]
        found = await self._storage.events.get_events(ids)
        levels = PowerLevels.from_events(
            KNOWN_ROOM_VERSIONS[room.room_version],
            found.get(state[CREATE_KEY]) if CREATE_KEY in state else None,
            found.get(state[POWER_LEVELS_KEY]) if POWER_LEVELS_KEY in state else None,
        )
        return levels.user_level(user_id) >= levels.required_level(CANONICAL_ALIAS, "")

    async def _joined_servers(self, room_id: str) -> list[str]:
        members = await self._storage.rooms.get_members(room_id)
        return sorted({domain_of(m.user_id) for m in members})
