-- PostgreSQL mirror of migrations/sqlite/0002_rights.sql.
-- Data-subject requests reaching the processor (DPA §5(d)). The requester's contact and
-- message are personal data: they are kept only sealed under the controller key.
CREATE TABLE dsr_requests (
    controller_id          TEXT NOT NULL REFERENCES controllers(id),
    id                     TEXT NOT NULL,
    right_kind             TEXT NOT NULL,
    state                  TEXT NOT NULL,
    sealed_details         BYTEA NOT NULL,
    received_at            BIGINT NOT NULL,
    due_at                 BIGINT NOT NULL,
    extended_months        BIGINT NOT NULL DEFAULT 0,
    extension_reason       TEXT,
    subject_id             TEXT,
    identity_confirmed_at  BIGINT,
    closed_at              BIGINT,
    note                   TEXT,
    PRIMARY KEY (controller_id, id)
);
CREATE UNIQUE INDEX dsr_requests_by_id ON dsr_requests(id);
CREATE INDEX dsr_requests_open ON dsr_requests(controller_id, state, due_at);

-- The durable outbox: notifications to controllers, written in the transaction of the
-- event they announce, delivered (with retries) by a worker. Payloads hold no personal data.
CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    controller_id   TEXT NOT NULL,
    topic           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at    BIGINT,
    last_error      TEXT
);
CREATE INDEX outbox_pending ON outbox(delivered_at, next_attempt_at);
