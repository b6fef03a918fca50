-- A record's fields move into the record's own row, as one column (`crate::fieldset`: each
-- field still sealed on its own): reading, writing or erasing a record becomes one row of
-- one B-tree. Existing fields are moved, and the old table dropped, by the code step of
-- this migration (`sqlite::fields_into_records`), in the same transaction. The default is
-- an empty set (version 1, no field).
ALTER TABLE records ADD COLUMN fields BLOB NOT NULL DEFAULT x'010000';
