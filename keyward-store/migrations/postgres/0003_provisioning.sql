-- Partner provisioning: projects, their real PostgreSQL databases and login roles.
-- Keep in step with ../sqlite/0003_provisioning.sql.

ALTER TABLE applications ADD COLUMN claim_uri TEXT;

-- account_id has no foreign key on purpose: a row here must never vanish by a cascade
-- before the real databases it names are dropped. The store refuses to delete an account
-- that still owns projects (conflict `account_has_projects`).
CREATE TABLE projects (
    id              TEXT COLLATE "C" PRIMARY KEY,
    name            TEXT NOT NULL,
    account_id      TEXT COLLATE "C" NOT NULL,
    application_id  TEXT COLLATE "C",
    region          TEXT NOT NULL,
    status          TEXT NOT NULL,
    claim_digest    BYTEA,
    expires_at      TIMESTAMPTZ,
    claimed_at      TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    -- The reaper's schedule, in Unix seconds so both databases compare it in SQL: due when
    -- reap_at <= now and no node holds an unexpired lease.
    reap_at         BIGINT,
    reap_lease_until BIGINT,
    reap_attempts   INTEGER NOT NULL DEFAULT 0,
    reap_last_error TEXT
);
CREATE INDEX projects_account_id_idx ON projects (account_id, id);
CREATE UNIQUE INDEX projects_claim_digest_key ON projects (claim_digest);
CREATE INDEX projects_reap_at_idx ON projects (reap_at) WHERE reap_at IS NOT NULL;

CREATE TABLE project_databases (
    id            TEXT COLLATE "C" PRIMARY KEY,
    project_id    TEXT COLLATE "C" NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    region        TEXT NOT NULL,
    database_name TEXT NOT NULL,
    owner_role    TEXT NOT NULL,
    status        TEXT NOT NULL,
    is_default    BOOLEAN NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX project_databases_project_id_idx ON project_databases (project_id, id);

CREATE TABLE database_connections (
    id          TEXT COLLATE "C" PRIMARY KEY,
    database_id TEXT COLLATE "C" NOT NULL REFERENCES project_databases (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    role_name   TEXT NOT NULL,
    is_owner    BOOLEAN NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    rotated_at  TIMESTAMPTZ
);
CREATE INDEX database_connections_database_id_idx ON database_connections (database_id, id);
