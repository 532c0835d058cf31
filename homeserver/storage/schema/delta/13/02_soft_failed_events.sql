-- Soft failure (server-server API "Soft failure"): a remote event that passed
-- the authorization rules against its auth events and the state before it,
-- but not against the room's current state (a banned user's message that
-- points at the DAG before the ban). It is stored and takes part in state
-- resolution as usual, but it is never a forward extremity (no new event of
-- ours points at it) and clients are not sent it in timelines.
ALTER TABLE events ADD COLUMN soft_failed BOOLEAN NOT NULL DEFAULT FALSE;
