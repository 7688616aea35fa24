-- Bulk import speed, with the same rules.
--
-- user_identities → users: set-based checks instead of a row-by-row foreign key.
-- PostgreSQL only; SQLite keeps its foreign key (its check is a cheap index probe).
--
-- The foreign key checked every identity row on its own (an SPI query that also locks the
-- user row FOR KEY SHARE): a quarter of the database's time in a bulk import, where every
-- user arrives with an identity. These statement-level triggers keep both of its rules
-- with one query per statement over the transition table:
--   * an identity must name an existing user (insert or update), else foreign_key_violation;
--   * deleting users deletes their identities (was ON DELETE CASCADE).
-- Without the key-share lock, an identity written for a user that another transaction is
-- deleting could survive it; Keyward never writes identities without writing the user's
-- row in the same transaction (users.identities is the source, this table its index), and
-- that write locks the row against the delete. users.id is never updated.

ALTER TABLE user_identities DROP CONSTRAINT user_identities_user_id_fkey;

CREATE FUNCTION user_identities_name_users() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM written w
        WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = w.user_id)
    ) THEN
        RAISE foreign_key_violation USING
            MESSAGE = 'user_identities.user_id names no user',
            CONSTRAINT = 'user_identities_user_id_fkey';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER user_identities_insert_names_users
    AFTER INSERT ON user_identities
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION user_identities_name_users();

CREATE TRIGGER user_identities_update_names_users
    AFTER UPDATE ON user_identities
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION user_identities_name_users();

CREATE FUNCTION users_delete_their_identities() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM user_identities i USING deleted d WHERE i.user_id = d.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER users_delete_identities
    AFTER DELETE ON users
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION users_delete_their_identities();

-- Opaque identifiers compare byte by byte ("C"), as they do on SQLite: the unique indexes
-- on them then skip the locale's collation routines (a sixth of the database's time in a
-- bulk import). Equality, and so uniqueness, is the same under both collations; nothing
-- sorts by these columns. Usernames and emails keep the default collation, because
-- lower() on them must fold case beyond ASCII.
ALTER TABLE users
    ALTER COLUMN primary_phone TYPE TEXT COLLATE "C",
    ALTER COLUMN external_id TYPE TEXT COLLATE "C",
    ALTER COLUMN external_source TYPE TEXT COLLATE "C";
ALTER TABLE user_identities
    ALTER COLUMN provider TYPE TEXT COLLATE "C",
    ALTER COLUMN provider_user_id TYPE TEXT COLLATE "C";

-- Only users created by an application carry one (imported users do not): index those
-- alone. Lookups by application (`application_id = $1`) imply IS NOT NULL and use it.
DROP INDEX users_application_id_idx;
CREATE INDEX users_application_id_idx ON users (application_id) WHERE application_id IS NOT NULL;
