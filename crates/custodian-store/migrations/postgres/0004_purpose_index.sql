-- "Every record collected under a purpose" (bulk consultation, alteration and erasure by
-- purpose) reads through this index instead of scanning the controller's records.
CREATE INDEX records_by_purpose ON records(controller_id, purpose);
