-- PostgreSQL mirror of migrations/sqlite/0003_lifecycle.sql.
-- Legal holds (DPA §14): while one is in force the controller's data is sealed (not
-- processed) and cannot be destroyed. Holds are never deleted: lifting one sets lifted_at.
CREATE TABLE legal_holds (
    controller_id   TEXT NOT NULL REFERENCES controllers(id),
    placed_at       BIGINT NOT NULL,
    basis           TEXT NOT NULL,
    previous_status TEXT NOT NULL,
    lifted_at       BIGINT,
    PRIMARY KEY (controller_id, placed_at)
);

-- Certificates of destruction, kept with the evidence after the data is gone.
CREATE TABLE destruction_certificates (
    controller_id TEXT PRIMARY KEY,
    issued_at     BIGINT NOT NULL,
    certificate   TEXT NOT NULL
);
