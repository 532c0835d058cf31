-- The room directory: aliases hosted here, the rooms published in the public
-- room list, and the summary of each room that list shows. Written by
-- homeserver/storage/stores/directory.py and room_stats.py.

-- Room aliases on this server (#localpart:this.server -> room ID). Aliases of
-- other servers are never stored: they are resolved by asking their server.
--   creator: the user who made the alias, or for whom the server made it
--     (createRoom, room upgrades); they may delete it.
--   servers: JSON array of the servers to join the room through, as known when
--     the alias was made; readers add the servers of the current members.
CREATE TABLE room_aliases (
    room_alias TEXT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL,
    servers TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

-- Rooms whose visibility in the published room directory is "public" (a room
-- not listed here is "private").
CREATE TABLE published_rooms (
    room_id TEXT NOT NULL PRIMARY KEY
);

-- What the published room directory shows of every room we have the state of,
-- taken from the room's current state, so that listing thousands of rooms
-- reads one row per room instead of each room's state. Kept up to date by
-- homeserver/handlers/room_stats.py from current_state_delta_stream.
--   joined_members: how many users' current membership is "join".
--   name, topic, avatar, canonical_alias, join_rules, history_visibility,
--     guest_access: from the current m.room.name (name), m.room.topic (topic),
--     m.room.avatar (url), m.room.canonical_alias (alias), m.room.join_rules
--     (join_rule), m.room.history_visibility and m.room.guest_access events;
--     NULL when the event is absent or the value is not a non-empty string.
--   room_type: the `type` in the m.room.create content, if any.
--   search_text: name, topic and canonical alias, case-folded and joined with
--     newlines, which the directory's generic_search_term is matched against.
CREATE TABLE room_stats (
    room_id TEXT NOT NULL PRIMARY KEY,
    joined_members BIGINT NOT NULL,
    name TEXT,
    topic TEXT,
    avatar TEXT,
    canonical_alias TEXT,
    join_rules TEXT,
    history_visibility TEXT,
    guest_access TEXT,
    room_type TEXT,
    search_text TEXT NOT NULL
);
-- The directory lists rooms by joined_members (largest first), then room_id.
CREATE INDEX room_stats_order ON room_stats (joined_members, room_id);

-- How far room_stats follow the room states: every change of current state
-- at or below this "events" stream position (current_state_delta_stream) is
-- reflected in room_stats. Advanced in the transaction that writes the stats,
-- so after a crash the updater picks up where it was. One row.
CREATE TABLE room_stats_position (
    -- Always 'X': with UNIQUE, this keeps the table to one row.
    lock CHAR(1) NOT NULL DEFAULT 'X' UNIQUE,
    stream_ordering BIGINT NOT NULL,
    CHECK (lock = 'X')
);
INSERT INTO room_stats_position (stream_ordering) VALUES (0);
