-- PostgreSQL mirror of migrations/sqlite/0001_foundation.sql: same tables, columns, keys and
-- indexes. Types differ only where the engines do: BYTEA for BLOB, BIGINT for INTEGER,
-- BOOLEAN for the 0/1 flag. Times are BIGINT nanoseconds since the Unix epoch (UTC).

CREATE TABLE controllers (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    region              TEXT NOT NULL,
    agreement_effective TEXT NOT NULL,
    governing_law       TEXT NOT NULL,
    status              TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    wrapped_key         BYTEA NOT NULL
);

CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    secret_hash   BYTEA NOT NULL UNIQUE,
    role          TEXT NOT NULL,
    controller_id TEXT REFERENCES controllers(id),
    purposes      TEXT,
    operations    TEXT,
    label         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT
);
CREATE INDEX tokens_by_controller ON tokens(controller_id);

CREATE TABLE purposes (
    controller_id  TEXT NOT NULL REFERENCES controllers(id),
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    lawful_basis   TEXT NOT NULL,
    categories     TEXT NOT NULL,
    operations     TEXT NOT NULL,
    retention_days BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (controller_id, name)
);

CREATE TABLE subjects (
    controller_id TEXT NOT NULL REFERENCES controllers(id),
    id            TEXT NOT NULL,
    category      TEXT NOT NULL,
    restricted    BOOLEAN NOT NULL DEFAULT FALSE,
    wrapped_key   BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (controller_id, id)
);

-- The erasure ledger: pseudonymous ids only.
CREATE TABLE erasures (
    controller_id TEXT NOT NULL,
    subject_id    TEXT NOT NULL,
    erased_at     BIGINT NOT NULL,
    reason        TEXT NOT NULL,
    PRIMARY KEY (controller_id, subject_id)
);

CREATE TABLE objections (
    controller_id TEXT NOT NULL,
    subject_id    TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (controller_id, subject_id, purpose)
);

CREATE TABLE records (
    controller_id      TEXT NOT NULL,
    id                 TEXT NOT NULL,
    subject_id         TEXT NOT NULL,
    purpose            TEXT NOT NULL,
    source             TEXT,
    recipients         TEXT NOT NULL,
    automated_decision TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    PRIMARY KEY (controller_id, id),
    FOREIGN KEY (controller_id, subject_id) REFERENCES subjects(controller_id, id)
);
CREATE INDEX records_by_subject ON records(controller_id, subject_id);
CREATE INDEX records_by_expiry ON records(expires_at);

CREATE TABLE fields (
    controller_id TEXT NOT NULL,
    record_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    category      TEXT NOT NULL,
    sealed        BYTEA NOT NULL,
    PRIMARY KEY (controller_id, record_id, name),
    FOREIGN KEY (controller_id, record_id) REFERENCES records(controller_id, id)
);

CREATE TABLE lookups (
    controller_id TEXT NOT NULL,
    kind          TEXT NOT NULL,
    digest        BYTEA NOT NULL,
    subject_id    TEXT NOT NULL,
    record_id     TEXT NOT NULL,
    field         TEXT NOT NULL,
    PRIMARY KEY (controller_id, kind, digest, record_id, field)
);
CREATE INDEX lookups_by_record ON lookups(controller_id, record_id, field);

CREATE TABLE audit_entries (
    chain      TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    purpose    TEXT,
    subject_id TEXT,
    record_id  TEXT,
    fields     TEXT NOT NULL,
    refused    TEXT,
    request_id TEXT,
    prev_hash  BYTEA NOT NULL,
    hash       BYTEA NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX audit_by_subject ON audit_entries(chain, subject_id);

-- Append-only: history cannot be changed through SQL without first dropping these,
-- and `custodian verify` catches it when someone does. TRUNCATE bypasses row triggers,
-- so it gets its own statement trigger.
CREATE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit entries are append-only';
END;
$$;
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only();
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only();
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_append_only();

-- One row per chain. Appending locks the chain's row (SELECT ... FOR UPDATE) until commit:
-- this is what serialises appends to one chain across every API node.
CREATE TABLE audit_heads (
    chain TEXT PRIMARY KEY,
    seq   BIGINT NOT NULL,
    hash  BYTEA NOT NULL
);

CREATE TABLE checkpoints (
    chain     TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    hash      BYTEA NOT NULL,
    signed_at BIGINT NOT NULL,
    signature BYTEA NOT NULL,
    PRIMARY KEY (chain, seq)
);
