-- Tokens that change whenever a purpose's records (record_generations) or a controller's
-- subjects (subject_generations) are inserted, changed or deleted: the store's unit of
-- work (sqlite/data_tx.rs) gives a new token once per unit, in the unit's transaction,
-- before the first statement that changes them. Not triggers: a trigger runs for every row,
-- and cost a bulk alteration of 2,000 records about a fifth of its time (measured); once
-- per unit does the same for readers, who only see whole committed units. Every audited read commits its
-- audit entry, and SQLite empties every other connection's page cache (and unmaps its
-- memory map) when the database changed, so a reader otherwise walks and decodes cold pages
-- on every read although nothing it reads changed. The store keeps decoded rows in memory
-- (sqlite/kept.rs) and uses them only while the token is the one it read them under.
--
-- A token is random, not a counter: a value is never reused in practice (2^-64), even if
-- the database is replaced by a restored copy under a running process, so equality means
-- "unchanged" without any ordering assumption.
CREATE TABLE record_generations (
    controller_id TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    token         INTEGER NOT NULL,
    PRIMARY KEY (controller_id, purpose)
) WITHOUT ROWID;

CREATE TABLE subject_generations (
    controller_id TEXT NOT NULL PRIMARY KEY,
    token         INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO record_generations (controller_id, purpose, token)
    SELECT controller_id, purpose, random()
    FROM (SELECT DISTINCT controller_id, purpose FROM records);

INSERT INTO subject_generations (controller_id, token)
    SELECT controller_id, random() FROM (SELECT DISTINCT controller_id FROM subjects);
