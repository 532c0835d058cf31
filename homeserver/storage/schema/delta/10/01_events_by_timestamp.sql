-- Room history by time: GET /rooms/{roomId}/timestamp_to_event looks for the
-- room's event nearest a timestamp, before or after it, by its sender's clock
-- (origin_server_ts), so that lookup must not scan the room.
CREATE INDEX events_room_origin_ts ON events (room_id, origin_server_ts);
