-- Events of other servers that we accepted on their behalf through send_join,
-- send_leave or send_knock, and so must send to the other servers in the room
-- ourselves (the origin only talks to us). Written before the event is
-- persisted, so the federation sender, following the events stream, always
-- finds the row when it reaches the event; deleted in the transaction that
-- records the event's destinations in destination_rooms.
CREATE TABLE federation_relayed_events (
    event_id TEXT NOT NULL PRIMARY KEY,
    -- The server that handed us the event: it has the event, so is not sent it.
    origin TEXT NOT NULL
);
