-- Every accepted m.room.member event (outliers too: invites arrive as
-- outliers), for the history of a user's membership in a room.
CREATE TABLE room_memberships (
    event_id TEXT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    membership TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL
);
CREATE INDEX room_memberships_user ON room_memberships (user_id, room_id);
CREATE INDEX room_memberships_room ON room_memberships (room_id, user_id);

-- Each user's membership in the room's current state ("members of a room",
-- "rooms of a user"): the m.room.member rows of current_state_events, with the
-- membership taken out of the event so it can be indexed.
CREATE TABLE current_memberships (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id TEXT NOT NULL,
    -- The "events" stream position at which this became the current membership.
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX current_memberships_user ON current_memberships (user_id, membership);
CREATE INDEX current_memberships_room ON current_memberships (room_id, membership);
