-- Records are stored in purpose order. Everything done to personal data is done under a
-- purpose, and the operations over many records (consult, alter or erase every record of a
-- purpose; retention) walk one purpose at a time: clustered by (controller, purpose,
-- created_at, id), a purpose's records are neighbours on a run of pages instead of one
-- record per page across the whole table, so reading them is a range scan (already in the
-- order they are answered in) and changing them dirties a few dozen pages instead of one
-- per record; a new record lands at the end of its purpose's range rather than at a random
-- place in it. Ids stay unique per controller (records_by_id), which is also how one
-- record is found.
CREATE TABLE records_clustered (
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
    fields             BLOB NOT NULL DEFAULT x'010000',
    PRIMARY KEY (controller_id, purpose, created_at, id),
    FOREIGN KEY (controller_id, subject_id) REFERENCES subjects(controller_id, id)
) WITHOUT ROWID;

INSERT INTO records_clustered (controller_id, id, subject_id, purpose, source, recipients,
    automated_decision, created_at, updated_at, expires_at, fields)
SELECT controller_id, id, subject_id, purpose, source, recipients,
    automated_decision, created_at, updated_at, expires_at, fields FROM records;

DROP TABLE records;
ALTER TABLE records_clustered RENAME TO records;

CREATE UNIQUE INDEX records_by_id ON records(controller_id, id);
CREATE INDEX records_by_subject ON records(controller_id, subject_id);
CREATE INDEX records_by_expiry ON records(expires_at);
