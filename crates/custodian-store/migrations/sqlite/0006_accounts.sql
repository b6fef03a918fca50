-- Login accounts (password login, DPA §10(b)(c)): people who sign in for a short-lived
-- session token. The login name is an email address, personal data, so it is not stored in
-- clear: `login_digest` is its keyed blind index (HMAC-SHA256 under a key derived from the
-- root key; unique: one account per login name), `login_sealed` the name encrypted under
-- another derived key and bound to the account id. The password is an argon2id PHC string.
CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    login_digest  BLOB NOT NULL UNIQUE,
    login_sealed  BLOB NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    controller_id TEXT REFERENCES controllers(id),
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER,
    -- The processor's staff (operator accounts) belong to no controller; every other
    -- account to exactly one.
    CHECK ((role = 'operator_admin') = (controller_id IS NULL))
);
CREATE INDEX accounts_by_controller ON accounts(controller_id);
