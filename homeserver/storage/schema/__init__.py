"""The database schema, as numbered migrations for SQLite and PostgreSQL.

Layout (applied by `homeserver.storage.prepare`, at start, in one transaction):

    delta/<N>/*.sql   the step from version N-1 to N. Files run in name order;
                      `x.sql` runs on both engines, `x.sqlite.sql` only on SQLite,
                      `x.postgres.sql` only on PostgreSQL. Keep engine-specific
                      DDL for one table in one such pair.
    full/<N>/*.sql    a snapshot of the whole schema at version N, same naming.
                      A fresh database is created from the newest snapshot at or
                      below SCHEMA_VERSION, then brought up with the deltas after
                      it. Snapshots are optional and may be added at any version.

Adding a change:
    1. Write delta/<SCHEMA_VERSION + 1>/NN_what.sql (SQL both engines accept, or
       a .sqlite.sql/.postgres.sql pair), with a comment on each table and column
       whose meaning is not obvious.
    2. Bump SCHEMA_VERSION below and add a line to the log.
    3. Add the new files' hashes to tests/storage/test_schema_files.py.

A delta is never edited once it has been committed to main: databases out there
have run it and will not run it again. Fix a mistake with a new delta. (Editing
a snapshot is fine; the tests check each snapshot against the deltas.)

Domain tables (accounts, events, ...) arrive with the stores that use them; a
PostgreSQL sequence for a stream (see `homeserver.storage.streams`) is created
in the same delta as the stream's table, with the default CACHE 1.

SCHEMA_VERSION log:
    1: `schema_version`, the one-row table recording the version a database is at.
    2: `stream_positions`, how far each writer process has got on each stream.
    3: accounts: `users` (+ `user_id_counter`), `devices`, `access_tokens`,
       `refresh_tokens`, `login_tokens`, `ui_auth_sessions` (+ credentials),
       `profiles` and `profile_fields`.
    4: third-party identifiers and registration tokens: `user_threepids`,
       `threepid_validation_sessions`, `threepid_validation_tokens`,
       `registration_tokens`.
    5: events and state: `rooms`, `events` (+ sequence `events_stream_seq`),
       `event_edges`, `event_auth_edges`, `event_forward_extremities`,
       `event_backward_extremities`, `state_groups`, `state_group_deltas`,
       `event_to_state_groups`, `current_state_events`,
       `current_state_delta_stream`, `room_memberships`, `current_memberships`.
    6: server keys: `server_signing_keys` (other servers' verify keys) and
       `server_key_responses` (their signed key answers, re-served as a notary).
    7: `events.replaces_state`, and `event_txn_ids` (client transaction IDs of local events).
    8: `forgotten_rooms` (rooms a user has forgotten, keyed to the leave or ban
       that was current when they forgot).
    9: account data and filters: `account_data` (+ sequence
       `account_data_stream_seq`), `user_filters`.
   10: index `events_room_origin_ts` on events (room_id, origin_server_ts), for
       timestamp_to_event.
   11: room directory: `room_aliases`, `published_rooms`, `room_stats`
       (per-room directory summaries), `room_stats_position`.
   12: federation sender: `destinations` (backoff timings,
       last_successful_stream_ordering), `destination_rooms` (the newest event
       owed per destination and room), `federation_sender_positions`.
   13: `received_transactions` (answers to federation transactions, for
       retries) and `events.soft_failed`.
   14: `openid_tokens` (OpenID tokens for other services: user and expiry).
   15: `federation_relayed_events` (other servers' events accepted through
       send_join/send_leave/send_knock that the federation sender must send on).
"""

SCHEMA_VERSION = 15
"""The schema version this code creates and runs on. Bump it with each new delta (see above)."""
