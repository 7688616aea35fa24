-- User migration: external ids per source, an index of social identities, import jobs.
-- PostgreSQL flavour. Keep in step with ../sqlite/0004_import.sql.

-- An external id is unique within its source system, not across all of them.
ALTER TABLE users ADD COLUMN external_source TEXT;
-- SHA-256 (hex) of the digest the last import brought in: a re-sync replaces the password
-- only when the source's digest changed, never a digest upgraded at sign-in since.
ALTER TABLE users ADD COLUMN source_digest_sha256 TEXT;
DROP INDEX users_external_id_key;
CREATE UNIQUE INDEX users_external_id_key ON users (COALESCE(external_source, ''), external_id)
    WHERE external_id IS NOT NULL;

-- (provider, provider user id) → user, for social sign-in. users.identities keeps the
-- details; this table is its index and is written in the same transaction.
CREATE TABLE user_identities (
    provider         TEXT NOT NULL,
    provider_user_id TEXT NOT NULL,
    user_id          TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (provider, provider_user_id)
);
CREATE INDEX user_identities_user_id_idx ON user_identities (user_id);
INSERT INTO user_identities (provider, provider_user_id, user_id)
    SELECT j.key, j.value ->> 'user_id', u.id
    FROM users u, jsonb_each(u.identities) j
    WHERE j.value ->> 'user_id' IS NOT NULL
    ON CONFLICT DO NOTHING;

CREATE TABLE import_jobs (
    id             TEXT COLLATE "C" PRIMARY KEY,
    status         TEXT NOT NULL,
    mode           TEXT NOT NULL,
    dry_run        BOOLEAN NOT NULL,
    format         TEXT NOT NULL,
    source         TEXT NOT NULL,
    actor          TEXT,
    -- The last source row whose outcome is committed: the resume point.
    rows_processed BIGINT NOT NULL DEFAULT 0,
    created        BIGINT NOT NULL DEFAULT 0,
    updated        BIGINT NOT NULL DEFAULT 0,
    unchanged      BIGINT NOT NULL DEFAULT 0,
    skipped        BIGINT NOT NULL DEFAULT 0,
    failed         BIGINT NOT NULL DEFAULT 0,
    message        TEXT,
    -- Unix seconds; a running job whose worker stopped beating is failed on the next look.
    heartbeat_at   BIGINT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    finished_at    TIMESTAMPTZ
);

CREATE TABLE import_job_errors (
    job_id      TEXT COLLATE "C" NOT NULL REFERENCES import_jobs (id) ON DELETE CASCADE,
    row_number  BIGINT NOT NULL,
    code        TEXT NOT NULL,
    field       TEXT,
    message     TEXT NOT NULL,
    external_id TEXT,
    PRIMARY KEY (job_id, row_number)
);
