-- A subject is found by its key, (controller, id), and nothing else: a consultation of a
-- purpose looks up every subject its records name (400 for 4,000 records), and in a rowid
-- table each lookup descended two B-trees (the key's index, then the table by rowid). Keyed
-- by its primary key (WITHOUT ROWID), a subject is one descent, and a new subject one
-- B-tree insert instead of two.
--
-- Records reference subjects, so the table cannot simply be dropped and replaced: with
-- foreign keys deferred for this transaction, dropping it counts every record as orphaned,
-- and inserting the subjects again clears that count, row by row; the commit fails if any
-- record were left without its subject. The copy lives in temporary storage, which the
-- store keeps in memory.
PRAGMA defer_foreign_keys = ON;

CREATE TEMP TABLE subjects_copy AS SELECT
    controller_id, id, category, restricted, wrapped_key, created_at FROM main.subjects;

DROP TABLE main.subjects;

CREATE TABLE main.subjects (
    controller_id TEXT NOT NULL REFERENCES controllers(id),
    id            TEXT NOT NULL,
    category      TEXT NOT NULL,
    restricted    INTEGER NOT NULL DEFAULT 0,
    wrapped_key   BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (controller_id, id)
) WITHOUT ROWID;

INSERT INTO main.subjects (controller_id, id, category, restricted, wrapped_key, created_at)
SELECT controller_id, id, category, restricted, wrapped_key, created_at FROM temp.subjects_copy
ORDER BY controller_id, id;

DROP TABLE temp.subjects_copy;
