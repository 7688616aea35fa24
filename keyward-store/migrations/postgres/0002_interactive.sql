-- Interactive sign-in and the authorization-code flow, PostgreSQL flavour. Keep in step
-- with ../sqlite/0002_interactive.sql. Digests (SHA-256) are BYTEA.

CREATE TABLE sessions (
    id            TEXT COLLATE "C" PRIMARY KEY,
    handle_digest BYTEA NOT NULL,
    user_id       TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_time     TIMESTAMPTZ NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    last_seen_at  TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX sessions_handle_digest_key ON sessions (handle_digest);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

CREATE TABLE interactions (
    id         TEXT COLLATE "C" PRIMARY KEY,
    client_id  TEXT NOT NULL,
    request    JSONB NOT NULL,
    state      JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- session_id has no foreign key: a grant (its refresh-token family) outlives the browser
-- session that created it, and sign-out revokes by session id.
CREATE TABLE grants (
    id         TEXT COLLATE "C" PRIMARY KEY,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    scopes     JSONB NOT NULL,
    resource   TEXT,
    account_id TEXT COLLATE "C",
    role       TEXT,
    session_id TEXT COLLATE "C",
    auth_time  TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX grants_user_id_idx ON grants (user_id);
CREATE INDEX grants_session_id_idx ON grants (session_id);

CREATE TABLE authorization_codes (
    digest         BYTEA PRIMARY KEY,
    grant_id       TEXT COLLATE "C" NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT,
    nonce          TEXT,
    created_at     TIMESTAMPTZ NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    redeemed_at    TIMESTAMPTZ
);
CREATE INDEX authorization_codes_grant_id_idx ON authorization_codes (grant_id);

CREATE TABLE refresh_tokens (
    digest     BYTEA PRIMARY KEY,
    grant_id   TEXT COLLATE "C" NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_grant_id_idx ON refresh_tokens (grant_id);

CREATE TABLE consents (
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    resource   TEXT NOT NULL,
    scopes     JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, client_id, resource)
);

CREATE TABLE sign_in_failures (
    id  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key TEXT NOT NULL,
    at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX sign_in_failures_key_idx ON sign_in_failures (key);
