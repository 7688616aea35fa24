-- External applications: Keyward as an OAuth 2.0 client of other servers. An account's
-- applications, each user's connection (sealed tokens, one per application and user), the
-- authorizations in progress, and per-member permissions.
-- PostgreSQL flavour. Keep in step with ../sqlite/0006_external_applications.sql.

CREATE TABLE external_applications (
    id                      TEXT COLLATE "C" PRIMARY KEY,
    account_id              TEXT COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name                    TEXT NOT NULL,
    -- `name` lowercased by the store (Rust's Unicode `to_lowercase`), so the uniqueness
    -- rule is the same on both databases (SQLite's lower() folds ASCII only).
    name_folded             TEXT NOT NULL,
    description             TEXT,
    approval_prompt         TEXT NOT NULL,
    client_id               TEXT NOT NULL,
    client_secret_sealed    BYTEA NOT NULL,
    client_secret_key_id    TEXT NOT NULL,
    -- JSON array of strings.
    scopes                  JSONB NOT NULL,
    default_expires_in_secs BIGINT,
    use_pkce                BOOLEAN NOT NULL,
    issuer                  TEXT,
    authorization_url       TEXT NOT NULL,
    -- JSON array of strings.
    egress_hosts            JSONB NOT NULL,
    -- JSON of keyward_core::external::ExternalProtocol (tagged by "mode").
    protocol                JSONB NOT NULL,
    enabled                 BOOLEAN NOT NULL,
    created_at              TIMESTAMPTZ NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL
);
-- Names are unique per account, case-insensitively (conflict external_application_name_taken).
CREATE UNIQUE INDEX external_applications_account_name_key
    ON external_applications (account_id, name_folded);
CREATE INDEX external_applications_account_id_idx ON external_applications (account_id, id);
CREATE INDEX external_applications_key_id_idx ON external_applications (client_secret_key_id);

CREATE TABLE external_connections (
    id                      TEXT COLLATE "C" PRIMARY KEY,
    external_application_id TEXT COLLATE "C" NOT NULL
                            REFERENCES external_applications (id) ON DELETE CASCADE,
    user_id                 TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    state                   TEXT NOT NULL,
    tokens_sealed           BYTEA NOT NULL,
    key_id                  TEXT NOT NULL,
    scope                   TEXT,
    expires_at              TIMESTAMPTZ,
    -- The refresh lease: who holds it and until when, in Unix milliseconds so both
    -- databases compare it in SQL (free when NULL or <= now).
    refresh_lease_holder    TEXT,
    refresh_lease_until     BIGINT,
    created_at              TIMESTAMPTZ NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL,
    last_refreshed_at       TIMESTAMPTZ
);
CREATE UNIQUE INDEX external_connections_application_user_key
    ON external_connections (external_application_id, user_id);
CREATE INDEX external_connections_user_id_idx ON external_connections (user_id);
CREATE INDEX external_connections_key_id_idx ON external_connections (key_id);

-- Single use: taking one deletes it. Keyed by the SHA-256 digest of `state`.
CREATE TABLE external_authorizations (
    state_digest            BYTEA PRIMARY KEY,
    external_application_id TEXT COLLATE "C" NOT NULL
                            REFERENCES external_applications (id) ON DELETE CASCADE,
    user_id                 TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id              TEXT COLLATE "C" NOT NULL,
    code_verifier_sealed    BYTEA,
    return_to               TEXT,
    created_at              TIMESTAMPTZ NOT NULL,
    expires_at              TIMESTAMPTZ NOT NULL
);
CREATE INDEX external_authorizations_application_idx ON external_authorizations (external_application_id);
CREATE INDEX external_authorizations_user_id_idx ON external_authorizations (user_id);

-- Per-member permissions below the role (e.g. manage_external_applications). The foreign
-- key is the membership itself: granting to a non-member fails, and removing a membership
-- (directly, or with its user or account) removes its permissions in the same statement.
CREATE TABLE account_permissions (
    account_id  TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    permission  TEXT COLLATE "C" NOT NULL,
    -- Informational only (the trait passes no time): set by the database.
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, user_id, permission),
    FOREIGN KEY (account_id, user_id) REFERENCES memberships (account_id, user_id) ON DELETE CASCADE
);
