-- Local users' profiles: one row per user, created at registration.
CREATE TABLE profiles (
    user_id TEXT NOT NULL PRIMARY KEY,
    -- NULL: not set.
    displayname TEXT,
    avatar_url TEXT
);

-- Profile fields other than displayname and avatar_url (m.tz and custom
-- namespaced keys, spec v1.16), one row per field.
CREATE TABLE profile_fields (
    user_id TEXT NOT NULL,
    field_name TEXT NOT NULL,
    -- JSON: the field's value.
    value TEXT NOT NULL,
    PRIMARY KEY (user_id, field_name)
);
