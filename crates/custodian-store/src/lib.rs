//! The storage port: one trait, [`Store`], that every backend implements and that the
//! shared [`conformance`] suite exercises.
//!
//! Two rules shape it:
//! - **Tenant scoping by construction.** Personal data is reached only through a
//!   [`DataTx`], which is opened for exactly one controller and whose methods take no
//!   controller argument: a query for another tenant cannot be written against it.
//! - **No audit record, no operation.** [`Store::transact`] runs the caller's unit of work
//!   and appends the audit entry it returns *in the same database transaction*. If the
//!   entry cannot be written, the whole transaction rolls back.
//!
//! The trait is synchronous: callers on an async runtime run it on blocking threads. That
//! keeps one query layer for SQLite (which is synchronous) and PostgreSQL.

pub mod conformance;
pub mod fieldset;
mod pending;
pub mod postgres;
mod rewrite;
pub mod rows;
pub mod sqlite;
mod subject_runs;
pub mod worker;

use custodian_core::audit::{AuditDraft, AuditEntry, ChainId};
use custodian_core::ids::{AccountId, ControllerId, RecordId, SubjectId, TokenId};
use custodian_core::lookup::LookupKind;
use custodian_core::policy::Denial;
use custodian_core::purpose::{Purpose, PurposeName};
pub use pending::{Append, Appending, PendingAudit, Settlement};
pub use rewrite::MetaChange;
use rows::*;
use std::sync::Arc;
use thiserror::Error;
use time::OffsetDateTime;

#[derive(Debug, Error)]
pub enum StoreError {
    /// The database refused or failed the operation. The message is for logs: it may name
    /// tables and constraints but never holds values (we bind every value as a parameter).
    #[error("database error: {0}")]
    Backend(String),
    /// A write conflicts with existing data (duplicate id or name).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// Stored data could not be decoded: corruption or tampering.
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    /// The storage is out of space or failing; retrying later may work.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Every chain with an entry, a head or a checkpoint, in order (both backends). The chains
/// with entries are found by one descent of `audit_entries`' key (chain, seq) per chain, each
/// to the first key past the last chain found: `SELECT DISTINCT chain` read every entry
/// instead, and the checkpoint task asks every 10 seconds (1,000,000 entries in four chains:
/// 108-166 ms -> 0.1-0.24 ms).
pub(crate) const AUDIT_CHAINS_SQL: &str = "WITH RECURSIVE c(chain) AS (
         SELECT MIN(chain) FROM audit_entries
         UNION ALL
         SELECT (SELECT MIN(chain) FROM audit_entries WHERE chain > c.chain) FROM c WHERE c.chain IS NOT NULL
     )
     SELECT chain FROM c WHERE chain IS NOT NULL
     UNION SELECT chain FROM audit_heads
     UNION SELECT chain FROM checkpoints
     ORDER BY 1";

/// Refuses a database that a newer custodian migrated past the last migration this one
/// knows (`migrations`, the backend's list): this one would read and write tables whose
/// shape it does not know. Nodes upgraded one at a time, or a backup restored under an
/// older binary, meet this before anything is written.
pub(crate) fn refuse_newer_schema(
    newest_applied: Option<i64>,
    migrations: &[(i64, &str)],
) -> Result<()> {
    let known = migrations.iter().map(|(v, _)| *v).max().unwrap_or(0);
    match newest_applied {
        Some(applied) if applied > known => Err(StoreError::Backend(format!(
            "the database's schema is at migration {applied}, newer than this custodian knows (up to \
             {known}): a newer custodian migrated it; run that version, or a later one, here too"
        ))),
        _ => Ok(()),
    }
}

/// One stored audit entry as `verify` reads it (see [`Store::scan_audit_raw`]).
#[derive(Debug)]
pub struct RawEntry<'a> {
    pub seq: u64,
    /// The chain the row says it belongs to.
    pub chain: &'a str,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
    /// The canonical bytes of the stored columns (`core::audit::StoredParts`).
    pub canonical: &'a [u8],
}

/// How a unit of work ended without committing.
#[derive(Debug, Error)]
pub enum TxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The work itself stopped (not found, refused, invalid); the transaction rolled back.
    #[error("denied: {0:?}")]
    Denied(Denial),
}

impl From<Denial> for TxError {
    fn from(d: Denial) -> Self {
        TxError::Denied(d)
    }
}

/// The result of a unit of work: the audit entry to append, or why it stopped.
pub type Work<'a> = &'a mut dyn FnMut(&mut dyn DataTx) -> std::result::Result<AuditDraft, TxError>;

/// [`DataTx::rewrite_record`] for each pair in turn; how many records were found. The
/// default `rewrite_records`, and a backend's for the sets it does not write at once.
pub(crate) fn rewrite_each<T: DataTx + ?Sized>(
    tx: &mut T,
    pairs: &[(&RecordRow, RecordRow)],
) -> Result<u64> {
    let mut found = 0;
    for (old, new) in pairs {
        found += u64::from(tx.rewrite_record(old, new)?);
    }
    Ok(found)
}

/// A transaction over one controller's data. Every method is implicitly scoped to that
/// controller.
pub trait DataTx {
    /// The instant this unit of work runs at: records expired then
    /// (`RecordHeader::has_expired`) are not counted, altered or found by lookup here.
    fn now(&self) -> OffsetDateTime;
    fn controller(&mut self) -> Result<ControllerRow>;
    fn purpose(&mut self, name: &PurposeName) -> Result<Option<Purpose>>;

    fn subject(&mut self, id: &SubjectId) -> Result<Option<SubjectRow>>;
    fn was_erased(&mut self, id: &SubjectId) -> Result<bool>;
    fn insert_subject(&mut self, row: &SubjectRow) -> Result<()>;
    fn set_restricted(&mut self, id: &SubjectId, restricted: bool) -> Result<()>;
    fn objections(&mut self, id: &SubjectId) -> Result<Vec<PurposeName>>;
    fn add_objection(
        &mut self,
        id: &SubjectId,
        purpose: &PurposeName,
        at: OffsetDateTime,
    ) -> Result<()>;
    fn remove_objection(&mut self, id: &SubjectId, purpose: &PurposeName) -> Result<bool>;
    /// Deletes the subject's key, records, fields and lookup entries, and notes the
    /// erasure in the ledger (pseudonymous id only).
    fn erase_subject(
        &mut self,
        id: &SubjectId,
        at: OffsetDateTime,
        reason: &str,
    ) -> Result<ErasedCounts>;

    fn records_of(&mut self, subject: &SubjectId) -> Result<Vec<RecordRow>>;
    fn record(&mut self, id: &RecordId) -> Result<Option<RecordRow>>;
    fn insert_record(&mut self, row: &RecordRow) -> Result<()>;
    fn delete_record(&mut self, id: &RecordId) -> Result<()>;
    /// Every record collected under `purpose`, with its fields, by subject: subjects in id
    /// order, each one's records oldest first (a bulk operation works subject by subject,
    /// and then finds each one's records as a run instead of building a map); shared with
    /// the rows a store keeps between reads (a bulk read copies none of them).
    fn records_of_purpose(&mut self, purpose: &PurposeName) -> Result<Arc<[RecordRow]>>;
    /// Whose records `purpose` holds, and how many each, counting only records not expired
    /// at [`Self::now`]: every subject once, in no particular order, with the smallest of
    /// its record ids (an operation naming its record when it touched exactly one). Reads
    /// no record's fields.
    fn record_counts_of_purpose(&mut self, purpose: &PurposeName) -> Result<Vec<RecordCount>>;
    /// The rows of the subjects among `ids` that exist (for operations over many records,
    /// whose subjects are known from the records already read), each once, in no particular
    /// order.
    fn subjects_by_id(&mut self, ids: &[SubjectId]) -> Result<Vec<SubjectRow>>;
    /// The subjects who objected to `purpose` (Art. 21).
    fn objectors(&mut self, purpose: &PurposeName) -> Result<Vec<SubjectId>>;
    /// Writes `new` over `old`, the record as this transaction read it: its subject (its
    /// lookup entries follow it), metadata, expiry, fields and update time, setting only
    /// the columns that differ. The record is found by `old`'s key; id, purpose and
    /// creation time are never rewritten. False when there is no such record.
    fn rewrite_record(&mut self, old: &RecordRow, new: &RecordRow) -> Result<bool>;
    /// [`Self::rewrite_record`] for many records of `purpose` (each `old` read in this
    /// transaction, each `new` its replacement); how many were found. A backend may write
    /// them all in one statement; this writes one at a time.
    fn rewrite_records(
        &mut self,
        purpose: &PurposeName,
        pairs: &[(&RecordRow, RecordRow)],
    ) -> Result<u64> {
        let _ = purpose;
        rewrite_each(self, pairs)
    }
    /// Sets one metadata item on every record of `purpose` not expired at `at` except the
    /// records of the subjects in `except`, with `at` as their update time, in one
    /// statement over the purpose's records: no record read or found by key one at a time.
    /// Returns how many records changed.
    fn alter_purpose_meta(
        &mut self,
        purpose: &PurposeName,
        change: &MetaChange<'_>,
        except: &[SubjectId],
        at: OffsetDateTime,
    ) -> Result<u64>;

    fn insert_lookup(&mut self, row: &LookupRow) -> Result<()>;
    fn delete_lookups(&mut self, record: &RecordId, field: &str) -> Result<()>;
    /// The subjects with a lookup entry of `kind` and `digest` on a record not expired at
    /// [`Self::now`], in id order.
    fn find_subjects(&mut self, kind: LookupKind, digest: &[u8; 32]) -> Result<Vec<SubjectId>>;

    /// Appends an extra audit entry to this controller's chain inside the transaction, for
    /// units of work that record several operations (retention erases many records).
    fn append_audit(&mut self, draft: AuditDraft) -> Result<AuditEntry>;
    /// Every subject of this controller (for exports), in id order.
    fn subject_ids(&mut self) -> Result<Vec<SubjectId>>;
    /// Changes the controller's lifecycle status (termination, legal hold, destruction).
    fn set_status(&mut self, status: custodian_core::controller::ControllerStatus) -> Result<()>;
    fn insert_hold(&mut self, hold: &LegalHoldRow) -> Result<()>;
    /// The hold in force, if any.
    fn active_hold(&mut self) -> Result<Option<LegalHoldRow>>;
    fn lift_hold(&mut self, placed_at: OffsetDateTime, at: OffsetDateTime) -> Result<()>;
    /// Deletes every row of personal data and every key of this controller, keeps its
    /// audit chain, and replaces its wrapped key with nothing: crypto-shredding.
    fn destroy_all(&mut self, certificate: &str, at: OffsetDateTime) -> Result<DestroyedCounts>;

    // ----- data-subject requests and the outbox -----
    fn insert_request(&mut self, row: &DsrRequestRow) -> Result<()>;
    fn request(&mut self, id: &custodian_core::ids::DsrId) -> Result<Option<DsrRequestRow>>;
    /// Rewrites a request's mutable columns (state, deadline, link, notes).
    fn update_request(&mut self, row: &DsrRequestRow) -> Result<()>;
    /// Requests ordered by due date; only open ones when `open_only`.
    fn requests(&mut self, open_only: bool) -> Result<Vec<DsrRequestRow>>;
    /// Queues a notification to this controller, committed with the transaction.
    fn enqueue(&mut self, topic: &str, payload: &str, at: OffsetDateTime) -> Result<()>;
}

/// The storage port.
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`, for logs and test output.
    fn backend(&self) -> &'static str;

    // ----- the processor's administration (system chain) -----
    fn insert_controller(
        &self,
        row: &ControllerRow,
        audit: AuditDraft,
        at: OffsetDateTime,
    ) -> Result<AuditEntry>;
    fn controller(&self, id: &ControllerId) -> Result<Option<ControllerRow>>;
    fn controllers(&self) -> Result<Vec<ControllerRow>>;

    fn insert_token(
        &self,
        row: &TokenRow,
        audit: AuditDraft,
        at: OffsetDateTime,
    ) -> Result<AuditEntry>;
    fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<TokenRow>>;
    /// Tokens of one controller, or the operator's when `controller` is `None`.
    fn tokens(&self, controller: Option<&ControllerId>) -> Result<Vec<TokenRow>>;
    /// Revokes a token of `controller` (or of the operator); false when there is none.
    fn revoke_token(
        &self,
        controller: Option<&ControllerId>,
        id: &TokenId,
        audit: AuditDraft,
        at: OffsetDateTime,
    ) -> Result<bool>;

    // ----- login accounts -----
    /// Stores a new account and its audit entry in one transaction. A login digest that is
    /// already taken is a `Conflict`, and then nothing is stored.
    fn insert_account(
        &self,
        row: &AccountRow,
        audit: AuditDraft,
        at: OffsetDateTime,
    ) -> Result<AuditEntry>;
    /// The account whose login name has this digest, disabled or not.
    fn account_by_login(&self, digest: &[u8; 32]) -> Result<Option<AccountRow>>;
    /// Disables an account of `controller` (or of the operator's staff when `None`), with its
    /// audit entry; false when there is no such enabled account there.
    fn disable_account(
        &self,
        controller: Option<&ControllerId>,
        id: &AccountId,
        audit: AuditDraft,
        at: OffsetDateTime,
    ) -> Result<bool>;

    fn upsert_purpose(
        &self,
        controller: &ControllerId,
        purpose: &Purpose,
        audit: AuditDraft,
        at: OffsetDateTime,
    ) -> Result<AuditEntry>;
    fn purposes(&self, controller: &ControllerId) -> Result<Vec<Purpose>>;

    // ----- personal data -----
    /// Runs `work` in one transaction over `controller`'s data and appends the audit entry
    /// it returns in that same transaction.
    fn transact(
        &self,
        controller: &ControllerId,
        at: OffsetDateTime,
        work: Work<'_>,
    ) -> Result<AuditEntry, TxError>;
    /// [`Store::transact`] for a unit that may change many rows (every record of a
    /// purpose). Backends that group units into shared commits run it first in its group,
    /// where a failure needs no savepoint to undo it alone (SQLite: see
    /// `sqlite::group::Containment::First`); the others, as `transact`.
    fn transact_many(
        &self,
        controller: &ControllerId,
        at: OffsetDateTime,
        work: Work<'_>,
    ) -> Result<AuditEntry, TxError> {
        self.transact(controller, at, work)
    }
    /// A unit of work that only reads: runs `work` on one consistent snapshot of
    /// `controller`'s data beside the writer (so reads do not queue behind writes), then
    /// appends the audit entry it returns, and returns only once that entry is durable.
    /// `work` must not write (SQLite runs it on a `query_only` connection; an attempt
    /// fails). The caller hands out what `work` read only after this returns `Ok`: no audit
    /// entry, no operation.
    fn consult(
        &self,
        controller: &ControllerId,
        at: OffsetDateTime,
        work: Work<'_>,
    ) -> Result<AuditEntry, TxError>;
    /// [`Store::consult`] that returns once `work` has read: the entry is appended (SQLite:
    /// as the caller waits, on its own thread when it blocks, by the store's appending
    /// thread when it awaits) and made durable through the [`PendingAudit`], and the caller
    /// hands out what `work` read only once that says the entry is durable. Backends
    /// without group commit return an entry that is already durable.
    fn consult_pending(
        &self,
        controller: &ControllerId,
        at: OffsetDateTime,
        work: Work<'_>,
    ) -> Result<PendingAudit, TxError> {
        self.consult(controller, at, work)
            .map(PendingAudit::durable)
    }

    /// Whether [`Store::consult_pending`] and [`Store::append_pending`] may run on an async
    /// runtime's own threads: they then do no network I/O, never wait for the writer or a
    /// commit (another thread appends and commits the entry), and block at most on reads
    /// of local files. Backends that answer `false` are called on a blocking pool.
    fn consults_in_place(&self) -> bool {
        false
    }

    /// Appends one entry the way [`Store::consult_pending`] appends a read's: the caller
    /// waits for its durability on the [`PendingAudit`]. For the refusals of reads.
    fn append_pending(&self, draft: AuditDraft, at: OffsetDateTime) -> Result<PendingAudit> {
        let mut entries = self.append_audit(vec![draft], at)?;
        let entry = entries
            .pop()
            .ok_or_else(|| StoreError::Backend("an append returned no entry".into()))?;
        Ok(PendingAudit::durable(entry))
    }

    /// Pushes content deleted by an erasure out of any log or journal where it could
    /// linger (SQLite: checkpoint the WAL and overwrite its frames). Best effort: failures are logged
    /// and retried by the next erasure; the erasure itself has already committed.
    fn purge_deleted(&self);

    /// Records whose retention ran out by `now`, at most `limit`: those of active
    /// controllers first (oldest first), then those of controllers that may not be
    /// processed (held or terminating), so that these never starve a bounded pass.
    fn expired_records(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<ExpiredRecord>>;
    /// What expires when: records per controller, purpose and day.
    fn expiry_schedule(&self, controller: Option<&ControllerId>) -> Result<Vec<ExpiryBucket>>;
    /// The erasure ledger, every controller (pseudonymous ids only).
    fn erasures(&self) -> Result<Vec<ErasureEntry>>;
    /// A destroyed controller's certificate of destruction.
    fn destruction_certificate(&self, controller: &ControllerId) -> Result<Option<String>>;

    /// The public status of a request, by its reference.
    fn request_status(&self, id: &custodian_core::ids::DsrId) -> Result<Option<DsrStatus>>;
    /// Undelivered notifications due at `now`, oldest first.
    fn outbox_due(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<OutboxRow>>;

    // ----- the audit trail -----
    /// Appends entries that record no change of data: refusals, audited reads of the trail.
    fn append_audit(&self, drafts: Vec<AuditDraft>, at: OffsetDateTime) -> Result<Vec<AuditEntry>>;
    fn audit_page(&self, chain: &ChainId, after_seq: u64, limit: u32) -> Result<Vec<AuditEntry>>;
    /// The entries of `chain` about `subject` after `after_seq`, oldest first: those naming
    /// it as their one subject and the bulk entries listing it.
    fn audit_of_subject(
        &self,
        chain: &ChainId,
        subject: &SubjectId,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>>;
    /// Calls `visit` on every entry of `chain` in sequence order, as stored (for `verify`).
    fn scan_audit(
        &self,
        chain: &ChainId,
        visit: &mut dyn FnMut(AuditEntry) -> Result<()>,
    ) -> Result<()> {
        self.scan_audit_range(chain, 0, None, visit)
    }
    /// [`Store::scan_audit`] over the entries with `after < seq <= until` (no upper bound
    /// when `until` is `None`), so that `verify` can check parts of a chain in parallel.
    fn scan_audit_range(
        &self,
        chain: &ChainId,
        after: u64,
        until: Option<u64>,
        visit: &mut dyn FnMut(AuditEntry) -> Result<()>,
    ) -> Result<()>;
    /// Calls `visit` on the entries with `after < seq <= until` in sequence order, each as
    /// its stored columns say, with the canonical bytes computed from those columns as they
    /// are (no decoding into an entry): what `verify` hashes.
    fn scan_audit_raw(
        &self,
        chain: &ChainId,
        after: u64,
        until: Option<u64>,
        visit: &mut dyn FnMut(&RawEntry<'_>) -> Result<()>,
    ) -> Result<()>;
    /// Every chain that has at least one entry.
    fn audit_chains(&self) -> Result<Vec<ChainId>>;
    /// Fails when the database does not answer, or when a newer custodian migrated it past
    /// the last migration this build knows (after this store was opened, by another node):
    /// one small query, for readiness probes.
    fn check_schema(&self) -> Result<()>;
    fn audit_head(&self, chain: &ChainId) -> Result<Option<(u64, [u8; 32])>>;
    fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<()>;
    fn checkpoints(&self, chain: &ChainId) -> Result<Vec<Checkpoint>>;
    /// The checkpoint of `chain` with the highest seq: what the checkpoint task compares the
    /// head with every few seconds, one row however many have accumulated.
    fn last_checkpoint(&self, chain: &ChainId) -> Result<Option<Checkpoint>>;
}
