-- One-time codes (emailed sign-in codes): one live code per (user, purpose); issuing a new
-- one replaces the row. Only the SHA-256 digest of the code is stored.
-- SQLite flavour (timestamps RFC 3339 TEXT, digests BLOB). Keep in step with ../postgres/0005_email_codes.sql.

CREATE TABLE one_time_codes (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL,
    digest      BLOB NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    consumed_at TEXT
);
CREATE UNIQUE INDEX one_time_codes_user_purpose_key ON one_time_codes (user_id, purpose);
