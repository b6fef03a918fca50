-- PostgreSQL mirror of migrations/sqlite/0006_accounts.sql: login accounts. The login name
-- is kept only as a keyed blind index (unique) and sealed; the password as an argon2id PHC
-- string. Times are BIGINT nanoseconds since the Unix epoch (UTC).
CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    login_digest  BYTEA NOT NULL UNIQUE,
    login_sealed  BYTEA NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    controller_id TEXT REFERENCES controllers(id),
    created_at    BIGINT NOT NULL,
    disabled_at   BIGINT,
    -- The processor's staff (operator accounts) belong to no controller; every other
    -- account to exactly one.
    CHECK ((role = 'operator_admin') = (controller_id IS NULL))
);
CREATE INDEX accounts_by_controller ON accounts(controller_id);
