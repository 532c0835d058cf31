-- Room state as deduplicated deltas; see 02_state_groups.postgres.sql for the
-- meaning of the columns. SQLite: `INTEGER PRIMARY KEY` numbers new rows.
CREATE TABLE state_groups (
    id INTEGER NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL,
    prev_group BIGINT REFERENCES state_groups (id)
);
CREATE INDEX state_groups_room ON state_groups (room_id);
CREATE INDEX state_groups_prev ON state_groups (prev_group);
