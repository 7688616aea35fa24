-- External applications: Keyward as an OAuth 2.0 client of other servers. An account's
-- applications, each user's connection (sealed tokens, one per application and user), the
-- authorizations in progress, and per-member permissions.
-- SQLite flavour (timestamps RFC 3339 TEXT, JSON TEXT, sealed values BLOB). Keep in step
-- with ../postgres/0006_external_applications.sql.

CREATE TABLE external_applications (
    id                      TEXT PRIMARY KEY NOT NULL,
    account_id              TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name                    TEXT NOT NULL,
    -- `name` lowercased by the store (Rust's Unicode `to_lowercase`), so the uniqueness
    -- rule is the same on both databases (SQLite's lower() folds ASCII only).
    name_folded             TEXT NOT NULL,
    description             TEXT,
    approval_prompt         TEXT NOT NULL,
    client_id               TEXT NOT NULL,
    client_secret_sealed    BLOB NOT NULL,
    client_secret_key_id    TEXT NOT NULL,
    -- JSON array of strings.
    scopes                  TEXT NOT NULL,
    default_expires_in_secs BIGINT,
    use_pkce                BOOLEAN NOT NULL,
    issuer                  TEXT,
    authorization_url       TEXT NOT NULL,
    -- JSON array of strings.
    egress_hosts            TEXT NOT NULL,
    -- JSON of keyward_core::external::ExternalProtocol (tagged by "mode").
    protocol                TEXT NOT NULL,
    enabled                 BOOLEAN NOT NULL,
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL
);
-- Names are unique per account, case-insensitively (conflict external_application_name_taken).
CREATE UNIQUE INDEX external_applications_account_name_key
    ON external_applications (account_id, name_folded);
CREATE INDEX external_applications_account_id_idx ON external_applications (account_id, id);
CREATE INDEX external_applications_key_id_idx ON external_applications (client_secret_key_id);

CREATE TABLE external_connections (
    id                      TEXT PRIMARY KEY NOT NULL,
    external_application_id TEXT NOT NULL REFERENCES external_applications (id) ON DELETE CASCADE,
    user_id                 TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    state                   TEXT NOT NULL,
    tokens_sealed           BLOB NOT NULL,
    key_id                  TEXT NOT NULL,
    scope                   TEXT,
    expires_at              TEXT,
    -- The refresh lease: who holds it and until when, in Unix milliseconds so both
    -- databases compare it in SQL (free when NULL or <= now).
    refresh_lease_holder    TEXT,
    refresh_lease_until     BIGINT,
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL,
    last_refreshed_at       TEXT
);
CREATE UNIQUE INDEX external_connections_application_user_key
    ON external_connections (external_application_id, user_id);
CREATE INDEX external_connections_user_id_idx ON external_connections (user_id);
CREATE INDEX external_connections_key_id_idx ON external_connections (key_id);

-- Single use: taking one deletes it. Keyed by the SHA-256 digest of `state`.
CREATE TABLE external_authorizations (
    state_digest            BLOB PRIMARY KEY NOT NULL,
    external_application_id TEXT NOT NULL REFERENCES external_applications (id) ON DELETE CASCADE,
    user_id                 TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id              TEXT NOT NULL,
    code_verifier_sealed    BLOB,
    return_to               TEXT,
    created_at              TEXT NOT NULL,
    expires_at              TEXT NOT NULL
);
CREATE INDEX external_authorizations_application_idx ON external_authorizations (external_application_id);
CREATE INDEX external_authorizations_user_id_idx ON external_authorizations (user_id);

-- Per-member permissions below the role (e.g. manage_external_applications). The foreign
-- key is the membership itself: granting to a non-member fails, and removing a membership
-- (directly, or with its user or account) removes its permissions in the same statement.
CREATE TABLE account_permissions (
    account_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    permission  TEXT NOT NULL,
    -- Informational only (the trait passes no time): set by the database.
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (account_id, user_id, permission),
    FOREIGN KEY (account_id, user_id) REFERENCES memberships (account_id, user_id) ON DELETE CASCADE
);
