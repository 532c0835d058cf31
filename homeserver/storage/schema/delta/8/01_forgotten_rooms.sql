-- Rooms a user has forgotten (POST /rooms/{roomId}/forget): /sync leaves them
-- out of its `leave` section from then on.
--   membership_event_id: the user's leave or ban event that was their current
--     membership when they forgot the room. The room stays forgotten only while
--     that event is still their current membership (current_memberships): a
--     re-join, a new invite or a knock brings the room back, as the spec asks,
--     without anything having to clear this row.
CREATE TABLE forgotten_rooms (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    membership_event_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
