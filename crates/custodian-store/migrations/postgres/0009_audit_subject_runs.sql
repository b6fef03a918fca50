-- Bulk audit entries are found by subject through runs (`postgres/subject_index.rs`, as
-- `sqlite/subject_index.rs`) instead of a row per subject keyed by subject (0007's
-- audit_subjects, one insert per subject named in every bulk entry's transaction). Every
-- 512 entries of a chain, the bulk entries among them become one row per subject named,
-- listing their seqs, keyed by the run's first seq, written in one statement. The code
-- step of this migration (`postgres::audit_subjects_into_runs`) builds the runs of
-- existing chains, then drops audit_subjects, in the same transaction and under the same
-- advisory lock.
CREATE TABLE audit_runs (
    chain     TEXT NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq  BIGINT NOT NULL,
    PRIMARY KEY (chain, first_seq)
);

CREATE TABLE audit_run_subjects (
    chain      TEXT NOT NULL,
    first_seq  BIGINT NOT NULL,
    subject_id TEXT NOT NULL,
    seqs       TEXT NOT NULL,
    PRIMARY KEY (chain, first_seq, subject_id)
);

CREATE TRIGGER audit_runs_no_update BEFORE UPDATE ON audit_runs
    FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only();
CREATE TRIGGER audit_runs_no_delete BEFORE DELETE ON audit_runs
    FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only();
CREATE TRIGGER audit_runs_no_truncate BEFORE TRUNCATE ON audit_runs
    FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_append_only();
CREATE TRIGGER audit_run_subjects_no_update BEFORE UPDATE ON audit_run_subjects
    FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only();
CREATE TRIGGER audit_run_subjects_no_delete BEFORE DELETE ON audit_run_subjects
    FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only();
CREATE TRIGGER audit_run_subjects_no_truncate BEFORE TRUNCATE ON audit_run_subjects
    FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_append_only();
