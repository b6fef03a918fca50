-- Bulk audit entries are found by subject through runs (`sqlite/subject_index.rs`) instead of
-- a row per subject keyed by subject (0007's audit_subjects), whose inserts dirtied one
-- scattered page per subject named in every bulk entry's commit. Every 512 entries of a
-- chain, the bulk entries among them become one row per subject named, listing their seqs,
-- keyed by the run's first seq: one sequential append. The code step of this migration
-- builds the runs of existing chains, then drops audit_subjects.
CREATE TABLE audit_runs (
    chain     TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL,
    PRIMARY KEY (chain, first_seq)
) WITHOUT ROWID;

CREATE TABLE audit_run_subjects (
    chain      TEXT NOT NULL,
    first_seq  INTEGER NOT NULL,
    subject_id TEXT NOT NULL,
    seqs       TEXT NOT NULL,
    PRIMARY KEY (chain, first_seq, subject_id)
) WITHOUT ROWID;

CREATE TRIGGER audit_runs_no_update BEFORE UPDATE ON audit_runs
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER audit_runs_no_delete BEFORE DELETE ON audit_runs
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER audit_run_subjects_no_update BEFORE UPDATE ON audit_run_subjects
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER audit_run_subjects_no_delete BEFORE DELETE ON audit_run_subjects
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
