-- OpenID tokens (POST /user/{userId}/openid/request_token): a third party
-- (an integration manager, a widget) hands one to GET
-- /_matrix/federation/v1/openid/userinfo to learn which user it stands for.
--   ts_valid_until_ms: when the token stops being accepted (ms since the
--     epoch, on the server's clock). Expired rows are deleted when new
--     tokens are issued.
CREATE TABLE openid_tokens (
    token TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    ts_valid_until_ms BIGINT NOT NULL
);

CREATE INDEX openid_tokens_expiry ON openid_tokens (ts_valid_until_ms);
