-- Audit entries are found by their key, (chain, seq), and nothing else (a subject's entries
-- through the runs of 0009/0012). In a rowid table that key is a second B-tree beside the
-- table, so every append wrote two leaf pages besides the chain's head: an audited read's
-- commit was three WAL frames, a record's insert eight. Keyed by (chain, seq) itself
-- (WITHOUT ROWID) an append is one B-tree insert, at the end of the chain's run of keys.
--
-- Nothing references audit_entries, so the copy is a new table filled in key order; the
-- append-only triggers go with the old table and are made again on the new one.
CREATE TABLE audit_entries_keyed (
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
    subjects   TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (chain, seq)
) WITHOUT ROWID;

INSERT INTO audit_entries_keyed (chain, seq, at, actor, action, purpose, subject_id, record_id,
                                 fields, refused, request_id, prev_hash, hash, subjects)
SELECT chain, seq, at, actor, action, purpose, subject_id, record_id,
       fields, refused, request_id, prev_hash, hash, subjects
FROM audit_entries ORDER BY chain, seq;

DROP TABLE audit_entries;
ALTER TABLE audit_entries_keyed RENAME TO audit_entries;

-- Append-only: history cannot be changed through SQL without first dropping these,
-- and `custodian verify` catches it when someone does.
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
