-- One-time codes (emailed sign-in codes): one live code per (user, purpose); issuing a new
-- one replaces the row. Only the SHA-256 digest of the code is stored.
-- PostgreSQL flavour. Keep in step with ../sqlite/0005_email_codes.sql.

CREATE TABLE one_time_codes (
    id          TEXT COLLATE "C" PRIMARY KEY,
    user_id     TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL,
    digest      BYTEA NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    consumed_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX one_time_codes_user_purpose_key ON one_time_codes (user_id, purpose);
