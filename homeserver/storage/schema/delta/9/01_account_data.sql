-- Account data (client-server API "Client Config"): JSON objects a user keeps
-- on the server for their clients, global or per room, one per type. Room
-- tags ("Room Tagging") are the room's `m.tag` account data. Written by
-- homeserver/storage/stores/account_data.py; /sync reads what changed since a
-- position of the "account_data" stream.
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    -- The room the data is for; '' for global account data.
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    -- JSON object: the content, as the client gave it.
    content TEXT NOT NULL,
    -- The "account_data" stream position of the write that set this content.
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_user_stream ON account_data (user_id, stream_id);
