-- Interactive sign-in and the authorization-code flow, SQLite flavour. Keep in step with
-- ../postgres/0002_interactive.sql. Timestamps are RFC 3339 TEXT, JSON values TEXT,
-- digests (SHA-256) BLOB.

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY NOT NULL,
    handle_digest BLOB NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_time     TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL,
    expires_at    TEXT NOT NULL
);
CREATE UNIQUE INDEX sessions_handle_digest_key ON sessions (handle_digest);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

CREATE TABLE interactions (
    id         TEXT PRIMARY KEY NOT NULL,
    client_id  TEXT NOT NULL,
    request    TEXT NOT NULL,
    state      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- session_id has no foreign key: a grant (its refresh-token family) outlives the browser
-- session that created it, and sign-out revokes by session id.
CREATE TABLE grants (
    id         TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    resource   TEXT,
    account_id TEXT,
    role       TEXT,
    session_id TEXT,
    auth_time  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX grants_user_id_idx ON grants (user_id);
CREATE INDEX grants_session_id_idx ON grants (session_id);

CREATE TABLE authorization_codes (
    digest         BLOB PRIMARY KEY NOT NULL,
    grant_id       TEXT NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT,
    nonce          TEXT,
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    redeemed_at    TEXT
);
CREATE INDEX authorization_codes_grant_id_idx ON authorization_codes (grant_id);

CREATE TABLE refresh_tokens (
    digest     BLOB PRIMARY KEY NOT NULL,
    grant_id   TEXT NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);
CREATE INDEX refresh_tokens_grant_id_idx ON refresh_tokens (grant_id);

CREATE TABLE consents (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    resource   TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (user_id, client_id, resource)
);

CREATE TABLE sign_in_failures (
    id  INTEGER PRIMARY KEY NOT NULL,
    key TEXT NOT NULL,
    at  TEXT NOT NULL
);
CREATE INDEX sign_in_failures_key_idx ON sign_in_failures (key);
