-- Uploaded filters; see 02_user_filters.postgres.sql for the meaning of the
-- columns. SQLite: `INTEGER PRIMARY KEY` numbers new rows.
CREATE TABLE user_filters (
    filter_id INTEGER NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    filter_json TEXT NOT NULL
);
CREATE INDEX user_filters_user ON user_filters (user_id);
