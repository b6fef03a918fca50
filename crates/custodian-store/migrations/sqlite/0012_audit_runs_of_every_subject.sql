-- Entries about one subject are found through the runs too (`sqlite/subject_index.rs`), no
-- longer through audit_by_subject: that index took one row per audited operation at a
-- random place, a scattered page in the commit of nearly every entry. The runs of 0009
-- listed bulk entries only; they are emptied here and the code step of this migration
-- builds them again from every entry that names a subject, in this transaction. The
-- append-only triggers are lifted for the emptying only.
DROP TRIGGER audit_runs_no_delete;
DROP TRIGGER audit_run_subjects_no_delete;
DELETE FROM audit_run_subjects;
DELETE FROM audit_runs;
CREATE TRIGGER audit_runs_no_delete BEFORE DELETE ON audit_runs
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER audit_run_subjects_no_delete BEFORE DELETE ON audit_run_subjects
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;

DROP INDEX audit_by_subject;
