-- Erasing a subject deletes its lookup entries: without this index that delete scans
-- every lookup entry of the controller, so erasure cost grew with the controller's data.
CREATE INDEX lookups_by_subject ON lookups(controller_id, subject_id);
