-- The rows of each state group: (type, state_key) -> event_id over the
-- group's prev_group. event_id NULL: the key is absent from this group's state
-- (a state resolution can drop a key a parent state had).
CREATE TABLE state_group_deltas (
    state_group BIGINT NOT NULL REFERENCES state_groups (id),
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT,
    PRIMARY KEY (state_group, type, state_key)
);

-- The state before and after each non-outlier event. They are the same group
-- for a message event and for a rejected event; for an accepted state event
-- the after group has the event in it. Many events share a group.
--   state_group_before: NULL for an empty state (the m.room.create event).
CREATE TABLE event_to_state_groups (
    event_id TEXT NOT NULL PRIMARY KEY,
    state_group_before BIGINT REFERENCES state_groups (id),
    state_group_after BIGINT NOT NULL REFERENCES state_groups (id)
);
CREATE INDEX event_to_state_groups_after ON event_to_state_groups (state_group_after);

-- The room's current state: the resolution of the states after its forward
-- extremities. Rewritten in the transaction that moves the extremities.
CREATE TABLE current_state_events (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);

-- Every change of a room's current state, at the "events" stream position of
-- the batch that made it (sync reads state changes since a token from here).
--   event_id: the new event, NULL if the key left the current state.
--   prev_event_id: what it replaced, NULL if the key is new.
CREATE TABLE current_state_delta_stream (
    stream_ordering BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT,
    prev_event_id TEXT
);
CREATE INDEX current_state_delta_stream_pos ON current_state_delta_stream (stream_ordering);
CREATE INDEX current_state_delta_stream_room ON current_state_delta_stream (room_id, stream_ordering);
