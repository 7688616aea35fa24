-- Keyward schema, PostgreSQL flavour. Keep in step with ../sqlite/0001_init.sql.
-- Ids use the "C" collation so that ordering by id is byte order (ids are time-ordered
-- ULIDs) whatever the database's locale.

CREATE TABLE accounts (
    id                TEXT COLLATE "C" PRIMARY KEY,
    name              TEXT NOT NULL,
    parent_account_id TEXT COLLATE "C" REFERENCES accounts (id),
    custom_data       JSONB NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX accounts_parent_account_id_idx ON accounts (parent_account_id);

CREATE TABLE applications (
    id                        TEXT COLLATE "C" PRIMARY KEY,
    client_id                 TEXT NOT NULL,
    name                      TEXT NOT NULL,
    description               TEXT,
    kind                      TEXT NOT NULL,
    redirect_uris             JSONB NOT NULL,
    post_logout_redirect_uris JSONB NOT NULL,
    grant_types               JSONB NOT NULL,
    grants                    JSONB NOT NULL,
    first_party               BOOLEAN NOT NULL,
    partner                   BOOLEAN NOT NULL,
    account_id                TEXT COLLATE "C" REFERENCES accounts (id) ON DELETE SET NULL,
    access_token_ttl_secs     BIGINT,
    created_at                TIMESTAMPTZ NOT NULL,
    updated_at                TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX applications_client_id_key ON applications (client_id);
CREATE INDEX applications_account_id_idx ON applications (account_id);

CREATE TABLE application_secrets (
    id             TEXT COLLATE "C" PRIMARY KEY,
    application_id TEXT COLLATE "C" NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    digest         BYTEA NOT NULL,
    hint           TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    expires_at     TIMESTAMPTZ
);
CREATE INDEX application_secrets_application_id_idx ON application_secrets (application_id);

CREATE TABLE users (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    username           TEXT,
    primary_email      TEXT,
    primary_phone      TEXT,
    name               TEXT,
    avatar             TEXT,
    profile            JSONB NOT NULL,
    custom_data        JSONB NOT NULL,
    identities         JSONB NOT NULL,
    status             TEXT NOT NULL,
    application_id     TEXT COLLATE "C" REFERENCES applications (id) ON DELETE SET NULL,
    external_id        TEXT,
    password_digest    TEXT,
    password_algorithm TEXT,
    last_sign_in_at    TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(primary_email));
CREATE UNIQUE INDEX users_phone_key ON users (primary_phone);
CREATE UNIQUE INDEX users_external_id_key ON users (external_id) WHERE external_id IS NOT NULL;
CREATE INDEX users_application_id_idx ON users (application_id);

CREATE TABLE memberships (
    id         TEXT COLLATE "C" PRIMARY KEY,
    account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX memberships_account_user_key ON memberships (account_id, user_id);
CREATE INDEX memberships_user_id_idx ON memberships (user_id);

CREATE TABLE api_resources (
    id                    TEXT COLLATE "C" PRIMARY KEY,
    identifier            TEXT NOT NULL,
    name                  TEXT NOT NULL,
    scopes                JSONB NOT NULL,
    access_token_ttl_secs BIGINT NOT NULL,
    management            BOOLEAN NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX api_resources_identifier_key ON api_resources (identifier);

CREATE TABLE signing_keys (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    algorithm          TEXT NOT NULL,
    sealed_private_key BYTEA NOT NULL,
    public_jwk         JSONB NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    activates_at       TIMESTAMPTZ NOT NULL,
    retires_at         TIMESTAMPTZ
);

CREATE TABLE audit_events (
    id          TEXT COLLATE "C" PRIMARY KEY,
    occurred_at TIMESTAMPTZ NOT NULL,
    actor_type  TEXT NOT NULL,
    actor_id    TEXT,
    action      TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT,
    outcome     TEXT NOT NULL,
    reason      TEXT,
    request_id  TEXT,
    details     JSONB NOT NULL
);
-- (column, id) so that filtered, id-ordered pages are index scans.
CREATE INDEX audit_events_target_id_idx ON audit_events (target_id, id);
CREATE INDEX audit_events_actor_id_idx ON audit_events (actor_id, id);
CREATE INDEX audit_events_action_idx ON audit_events (action, id);
