-- A record's fields move into the record's own row, as one column (`crate::fieldset`: each
-- field still sealed on its own): reading, writing or erasing a record becomes one row.
-- Existing fields are moved, and the old table dropped, by the code step of this migration
-- (`postgres::fields_into_records`), in the same transaction and under the same advisory
-- lock. The default is an empty set (version 1, no field); a constant default, so adding
-- the column rewrites no row.
ALTER TABLE records ADD COLUMN fields BYTEA NOT NULL DEFAULT '\x010000';
