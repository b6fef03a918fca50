-- A bulk operation (every record of a purpose, say) is one audit entry naming every
-- subject it touched, instead of one entry per subject: `subjects` holds that list (a
-- JSON array, empty for entries about at most one subject), and `audit_subjects` finds
-- the entries by subject, so that a subject's history stays one indexed query.
ALTER TABLE audit_entries ADD COLUMN subjects TEXT NOT NULL DEFAULT '[]';

CREATE TABLE audit_subjects (
    chain      TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    PRIMARY KEY (chain, subject_id, seq)
);

CREATE TRIGGER audit_subjects_no_update BEFORE UPDATE ON audit_subjects
    FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only();
CREATE TRIGGER audit_subjects_no_delete BEFORE DELETE ON audit_subjects
    FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only();
CREATE TRIGGER audit_subjects_no_truncate BEFORE TRUNCATE ON audit_subjects
    FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_append_only();
