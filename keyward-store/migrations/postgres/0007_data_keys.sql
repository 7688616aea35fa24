-- The token vault's data-encryption keys, each sealed under the master key (associated
-- data: the key id). The newest key that is not retired seals; all of them open, so a
-- rotation never strands a row. Keep in step with the other dialect's 0007_data_keys.sql.

CREATE TABLE data_keys (
    id          TEXT PRIMARY KEY NOT NULL,
    sealed_key  BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    retired_at  TIMESTAMPTZ
);
