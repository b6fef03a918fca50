-- Entries about one subject are found through the runs too (`postgres/subject_index.rs`, as
-- SQLite's migration 0012), no longer through audit_by_subject, which took one row per
-- audited operation at a random place in the index. The runs of 0009 listed bulk entries
-- only; they are emptied here and the code step of this migration builds them again from
-- every entry that names a subject, in this transaction and under the migration's lock.
-- The append-only triggers are lifted for the emptying only.
DROP TRIGGER audit_runs_no_delete ON audit_runs;
DROP TRIGGER audit_run_subjects_no_delete ON audit_run_subjects;
DELETE FROM audit_run_subjects;
DELETE FROM audit_runs;
CREATE TRIGGER audit_runs_no_delete BEFORE DELETE ON audit_runs
    FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only();
CREATE TRIGGER audit_run_subjects_no_delete BEFORE DELETE ON audit_run_subjects
    FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only();

DROP INDEX audit_by_subject;
