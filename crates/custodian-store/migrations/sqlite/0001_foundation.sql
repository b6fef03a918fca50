-- Every table that holds a controller's data has controller_id in its primary key.
-- Times are integers: nanoseconds since the Unix epoch (UTC).

CREATE TABLE controllers (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    region              TEXT NOT NULL,
    agreement_effective TEXT NOT NULL,
    governing_law       TEXT NOT NULL,
    status              TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    wrapped_key         BLOB NOT NULL
);

CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    secret_hash   BLOB NOT NULL UNIQUE,
    role          TEXT NOT NULL,
    controller_id TEXT REFERENCES controllers(id),
    purposes      TEXT,
    operations    TEXT,
    label         TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    revoked_at    INTEGER
);
CREATE INDEX tokens_by_controller ON tokens(controller_id);

CREATE TABLE purposes (
    controller_id  TEXT NOT NULL REFERENCES controllers(id),
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    lawful_basis   TEXT NOT NULL,
    categories     TEXT NOT NULL,
    operations     TEXT NOT NULL,
    retention_days INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (controller_id, name)
);

CREATE TABLE subjects (
    controller_id TEXT NOT NULL REFERENCES controllers(id),
    id            TEXT NOT NULL,
    category      TEXT NOT NULL,
    restricted    INTEGER NOT NULL DEFAULT 0,
    wrapped_key   BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (controller_id, id)
);

-- The erasure ledger: pseudonymous ids only. Lets a read of an erased subject answer 410,
-- and lets a restore re-apply erasures made after the backup was taken.
CREATE TABLE erasures (
    controller_id TEXT NOT NULL,
    subject_id    TEXT NOT NULL,
    erased_at     INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    PRIMARY KEY (controller_id, subject_id)
);

CREATE TABLE objections (
    controller_id TEXT NOT NULL,
    subject_id    TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
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
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
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
    sealed        BLOB NOT NULL,
    PRIMARY KEY (controller_id, record_id, name),
    FOREIGN KEY (controller_id, record_id) REFERENCES records(controller_id, id)
);

CREATE TABLE lookups (
    controller_id TEXT NOT NULL,
    kind          TEXT NOT NULL,
    digest        BLOB NOT NULL,
    subject_id    TEXT NOT NULL,
    record_id     TEXT NOT NULL,
    field         TEXT NOT NULL,
    PRIMARY KEY (controller_id, kind, digest, record_id, field)
);
CREATE INDEX lookups_by_record ON lookups(controller_id, record_id, field);

CREATE TABLE audit_entries (
    chain      TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    purpose    TEXT,
    subject_id TEXT,
    record_id  TEXT,
    fields     TEXT NOT NULL,
    refused    TEXT,
    request_id TEXT,
    prev_hash  BLOB NOT NULL,
    hash       BLOB NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX audit_by_subject ON audit_entries(chain, subject_id);

-- Append-only: history cannot be changed through SQL without first dropping these,
-- and `custodian verify` catches it when someone does.
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;

CREATE TABLE audit_heads (
    chain TEXT PRIMARY KEY,
    seq   INTEGER NOT NULL,
    hash  BLOB NOT NULL
);

CREATE TABLE checkpoints (
    chain     TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    hash      BLOB NOT NULL,
    signed_at INTEGER NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (chain, seq)
);
