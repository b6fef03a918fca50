//! The embedded default backend: one SQLite file in WAL mode.
//!
//! Durability: `synchronous = FULL`, so a commit is on stable storage before it is
//! acknowledged (in WAL mode NORMAL could lose the last commits on power loss).
//! `secure_delete = ON` overwrites deleted content, so an erased subject's wrapped key and
//! ciphertext do not linger in free pages.
//!
//! Concurrency: one writer connection behind a mutex (SQLite allows one writer at a time
//! anyway) and a small pool of reader connections that WAL lets run beside it.

mod appender;
mod checkpointer;
pub(crate) mod codec;
mod data_tx;
mod group;
mod kept;
mod page_scrub;
mod rewrites;
mod wal_purge;

pub use kept::KeptLimits;
mod subject_index;

pub use codec::AuditColumns;

use crate::rows::*;
use crate::{DataTx, PendingAudit, Result, Store, StoreError, TxError, Work};
use codec::*;
use custodian_core::audit::{AuditDraft, AuditEntry, ChainId, GENESIS};
use custodian_core::category::DataCategory;
use custodian_core::ids::{AccountId, ControllerId, SubjectId, TokenId};
use custodian_core::purpose::Purpose;
use custodian_core::record::FieldName;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// A storage failure that tests can inject into every write transaction (fault injection:
/// the disk filling up, the device failing). Off unless a test turns it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFault {
    /// `SQLITE_FULL`: database or disk is full.
    DiskFull,
    /// `SQLITE_IOERR`: disk I/O error.
    IoError,
}

/// The switch for [`WriteFault`]s of one store, shared with whoever holds a clone. When set,
/// every write transaction runs its statements and then fails where its `COMMIT` would
/// have been, with the error SQLite gives in that case, and is rolled back.
#[derive(Debug, Clone, Default)]
pub struct FaultSwitch(Arc<AtomicU8>);

impl FaultSwitch {
    pub fn set(&self, fault: Option<WriteFault>) {
        let v = match fault {
            None => 0,
            Some(WriteFault::DiskFull) => 1,
            Some(WriteFault::IoError) => 2,
        };
        self.0.store(v, Ordering::SeqCst);
    }

    fn error(&self) -> Option<rusqlite::Error> {
        let (code, message) = match self.0.load(Ordering::SeqCst) {
            1 => (rusqlite::ffi::SQLITE_FULL, "database or disk is full"),
            2 => (rusqlite::ffi::SQLITE_IOERR, "disk I/O error"),
            _ => return None,
        };
        Some(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            Some(format!("{message} (injected)")),
        ))
    }
}

const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../migrations/sqlite/0001_foundation.sql"),
    ),
    (2, include_str!("../../migrations/sqlite/0002_rights.sql")),
    (
        3,
        include_str!("../../migrations/sqlite/0003_lifecycle.sql"),
    ),
    (
        4,
        include_str!("../../migrations/sqlite/0004_purpose_index.sql"),
    ),
    (
        5,
        include_str!("../../migrations/sqlite/0005_lookups_by_subject.sql"),
    ),
    (6, include_str!("../../migrations/sqlite/0006_accounts.sql")),
    (
        7,
        include_str!("../../migrations/sqlite/0007_bulk_audit.sql"),
    ),
    (
        8,
        include_str!("../../migrations/sqlite/0008_fields_in_records.sql"),
    ),
    (
        9,
        include_str!("../../migrations/sqlite/0009_audit_subject_runs.sql"),
    ),
    (
        10,
        include_str!("../../migrations/sqlite/0010_records_by_purpose.sql"),
    ),
    (
        11,
        include_str!("../../migrations/sqlite/0011_subjects_without_rowid.sql"),
    ),
    (
        12,
        include_str!("../../migrations/sqlite/0012_audit_runs_of_every_subject.sql"),
    ),
    (
        13,
        include_str!("../../migrations/sqlite/0013_generations.sql"),
    ),
    (
        14,
        include_str!("../../migrations/sqlite/0014_audit_entries_without_rowid.sql"),
    ),
];

/// The fields stored in the records matching `filter` (an SQL condition on `records`, bound
/// to `params`), as the database holds them: for tests and inspection that look at the
/// file behind the store's back.
pub fn stored_fields(
    conn: &Connection,
    filter: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<FieldRow>> {
    let mut st = conn
        .prepare(&format!("SELECT fields FROM records WHERE {filter}"))
        .map_err(map_err)?;
    let mut rows = st.query(params).map_err(map_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(map_err)? {
        let set = r
            .get_ref(0)
            .and_then(|v| Ok(v.as_blob()?))
            .map_err(map_err)?;
        out.extend(crate::fieldset::decode(set).map_err(|e| corrupt("records", e))?);
    }
    Ok(out)
}

/// The part of a migration SQL cannot express, run after its SQL in its transaction.
fn migrate_code(version: i64, tx: &Connection) -> Result<()> {
    match version {
        8 => fields_into_records(tx),
        9 => audit_subjects_into_runs(tx),
        11 => records_keep_their_subjects(tx),
        12 => index_chains_in_runs(tx),
        _ => Ok(()),
    }
}

/// Migration 11: the rebuilt subjects table leaves no record without its subject. The
/// deferred foreign keys catch a record orphaned by the rebuild; this also refuses one that
/// was orphaned before (written with foreign keys off), rather than carry it on.
fn records_keep_their_subjects(tx: &Connection) -> Result<()> {
    let orphans = tx
        .prepare("PRAGMA foreign_key_check(records)")
        .map_err(map_err)?
        .query_map([], |_| Ok(()))
        .map_err(map_err)?
        .collect::<rusqlite::Result<Vec<()>>>()
        .map_err(map_err)?
        .len();
    if orphans > 0 {
        return Err(corrupt(
            "records",
            format!("{orphans} record(s) name a subject that does not exist"),
        ));
    }
    Ok(())
}

/// Migration 9: the runs of every chain's complete spans, then audit_subjects goes.
fn audit_subjects_into_runs(tx: &Connection) -> Result<()> {
    index_chains_in_runs(tx)?;
    tx.execute_batch("DROP TABLE audit_subjects")
        .map_err(map_err)?;
    Ok(())
}

/// Migrations 9 and 12: the runs of every chain's complete spans.
fn index_chains_in_runs(tx: &Connection) -> Result<()> {
    let heads: Vec<(String, i64)> = {
        let mut st = tx
            .prepare("SELECT chain, seq FROM audit_heads")
            .map_err(map_err)?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(map_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(map_err)?
    };
    for (chain, head) in heads {
        subject_index::build_runs(tx, &chain, crate::subject_runs::complete_upto(head as u64))?;
    }
    Ok(())
}

/// Migration 8: every record's rows of `fields` become its `fields` column; then the
/// table goes (with `secure_delete` on, its pages are zeroed).
fn fields_into_records(tx: &Connection) -> Result<()> {
    let mut sets: std::collections::BTreeMap<(String, String), Vec<FieldRow>> = Default::default();
    {
        let mut st = tx
            .prepare("SELECT controller_id, record_id, name, category, sealed FROM fields")
            .map_err(map_err)?;
        let mut rows = st.query([]).map_err(map_err)?;
        while let Some(r) = rows.next().map_err(map_err)? {
            let (c, rec, name, cat): (String, String, String, String) = (
                r.get(0).map_err(map_err)?,
                r.get(1).map_err(map_err)?,
                r.get(2).map_err(map_err)?,
                r.get(3).map_err(map_err)?,
            );
            let row = FieldRow {
                name: FieldName::parse(&name).map_err(|e| corrupt("fields", e))?,
                category: DataCategory::parse(&cat).map_err(|e| corrupt("fields", e))?,
                sealed: r.get(4).map_err(map_err)?,
            };
            sets.entry((c, rec)).or_default().push(row);
        }
    }
    let mut st = tx
        .prepare("UPDATE records SET fields = ?3 WHERE controller_id = ?1 AND id = ?2")
        .map_err(map_err)?;
    for ((c, rec), fields) in sets {
        st.execute(params![c, rec, crate::fieldset::encode(&fields)])
            .map_err(map_err)?;
    }
    tx.execute_batch("DROP TABLE fields").map_err(map_err)?;
    Ok(())
}

/// Reader connections kept open between reads. Under load as many reads run at once as
/// the server lets requests in, and a connection closed after each one had to be opened
/// again for the next (open, schema, pragmas: a quarter of a token check's time at 64
/// connections); an idle connection costs little (its statements; pages are mapped).
const MAX_IDLE_READERS: usize = 64;

pub struct SqliteStore {
    path: PathBuf,
    writer: Arc<group::GroupWriter>,
    /// Appends the audit entries of reads (see `appender`).
    appender: appender::Appender,
    purges: group::CheckpointGate,
    /// The pages written since the last erasure's purge, whose unused bytes it zeroes.
    written: Arc<page_scrub::Written>,
    wal_purge: wal_purge::WalPurge,
    readers: Mutex<Vec<Connection>>,
    kept: kept::Kept,
    /// What the writer's `custodian_rewritten` answers (see `rewrites`).
    rewrites: Arc<rewrites::Rewrites>,
    faults: FaultSwitch,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(map_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(map_err)?;
    // Temporary storage in memory, on every connection: otherwise SQLite spills what a
    // statement sorts or groups past its cache (a reader's GROUP BY over every record, a
    // savepoint's journal on the writer) to an unlinked temporary file, where rows of erased
    // records would outlive the WAL purge that erasure promises.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;
         PRAGMA trusted_schema = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA mmap_size = 1073741824;",
    )
    .map_err(map_err)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, KeptLimits::default())
    }

    /// [`Self::open`], keeping at most `kept` in memory between reads.
    pub fn open_with(path: impl AsRef<Path>, limits: KeptLimits) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut writer = open_connection(&path)?;
        // Every write (audited reads included) goes through this connection. Its page cache
        // holds the pages written since the last checkpoint (clean pages come from the
        // memory map) and is kept at 8 MiB, not larger: when a B-tree page splits, SQLite
        // briefly renumbers a page to the lock-byte page (page 262,145), and the COMMIT
        // after it then walks the cache's whole hash table to drop pages past the end of
        // the file. With a 64 MiB cache that walk was a fifth of an insert's CPU at
        // N = 50,000 (perf), and loading 60,000 GDPRbench records took 15 % longer on one
        // thread and 5-13 % longer on sixteen than with this cache.
        // Its temporary storage is in memory like every connection's (`open_connection`):
        // a group commit runs each unit of work in a savepoint, whose journal (a copy of
        // every page the unit changes) would otherwise also cost every unit a file's writes.
        // The WAL keeps its length between erasures (see `wal_purge`), up to 16 MiB: a
        // commit past that truncates it back after the next checkpoint.
        writer
            .execute_batch("PRAGMA cache_size = -8192; PRAGMA journal_size_limit = 16777216;")
            .map_err(map_err)?;
        // Before migrating: a build that cannot keep erasure's promise changes nothing.
        page_scrub::check_available(&writer)?;
        // After the pragmas: a migration that copies a table keeps the copy in memory.
        migrate(&mut writer)?;
        let rewrites = Arc::new(rewrites::Rewrites::default());
        rewrites::register(&writer, rewrites.clone())?;
        let wal_purge = wal_purge::WalPurge::new(&path, &writer);
        let written = Arc::new(page_scrub::Written::new(&path));
        let writer = Arc::new(group::GroupWriter::checkpointed(
            writer,
            path.clone(),
            written.clone(),
        ));
        let faults = FaultSwitch::default();
        Ok(Self {
            path,
            writer: writer.clone(),
            appender: appender::Appender::new(writer, faults.clone()),
            purges: group::CheckpointGate::default(),
            written,
            wal_purge,
            readers: Mutex::new(Vec::new()),
            kept: kept::Kept::new(limits),
            rewrites,
            faults,
        })
    }

    /// Drops the kept rows whose tokens are no longer current (see `kept`).
    fn keep_current(&self) -> Result<()> {
        let (records, subjects) = self.read(|c| {
            let t = "record_generations";
            let mut records = std::collections::HashMap::new();
            let mut st = c
                .prepare_cached("SELECT controller_id, purpose, token FROM record_generations")
                .map_err(map_err)?;
            let mut rows = st.query([]).map_err(map_err)?;
            while let Some(r) = rows.next().map_err(map_err)? {
                let controller = ControllerId::parse(col_text(r, 0)?).map_err(|e| corrupt(t, e))?;
                let purpose = custodian_core::purpose::PurposeName::parse(col_text(r, 1)?)
                    .map_err(|e| corrupt(t, e))?;
                records.insert((controller, purpose), r.get(2).map_err(map_err)?);
            }
            let t = "subject_generations";
            let mut subjects = std::collections::HashMap::new();
            let mut st = c
                .prepare_cached("SELECT controller_id, token FROM subject_generations")
                .map_err(map_err)?;
            let mut rows = st.query([]).map_err(map_err)?;
            while let Some(r) = rows.next().map_err(map_err)? {
                let controller = ControllerId::parse(col_text(r, 0)?).map_err(|e| corrupt(t, e))?;
                subjects.insert(controller, r.get(1).map_err(map_err)?);
            }
            Ok((records, subjects))
        })?;
        self.kept.keep_current(&records, &subjects);
        Ok(())
    }

    /// The switch that injects [`WriteFault`]s into this store's write transactions (tests).
    pub fn fault_switch(&self) -> FaultSwitch {
        self.faults.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = match self.readers.lock().expect("reader pool poisoned").pop() {
            Some(c) => c,
            None => {
                let c = open_connection(&self.path)?;
                // Readers never write: a unit of work that tried to would fail here
                // instead of writing outside the writer's transaction. And they read
                // without the memory map: SQLite unmaps a reader's whole map when a read
                // transaction starts after the file changed, and every audited read's
                // commit changes it, so each read paid an munmap and the page faults after
                // it, more as the file grew (`bench/http-load.sh 6 64 3`, two runs of each,
                // server CPU per audited read 117 / 101 / 98 / 124 / 131 / 108 µs mapped,
                // 101 / 84 / 89 / 76 / 85 / 107 µs not). What they read comes from the
                // kept rows or a few pages of the cache.
                c.execute_batch("PRAGMA query_only = ON; PRAGMA mmap_size = 0;")
                    .map_err(map_err)?;
                c
            }
        };
        let out = f(&conn);
        let mut pool = self.readers.lock().expect("reader pool poisoned");
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        out
    }

    /// One unit of work in a durable transaction, committed with any others that arrive
    /// meanwhile (group commit, see `group.rs`); returns once the commit holding it is done.
    fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Connection) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.writer
            .write(&|| self.faults.error(), group::Containment::Unit, f)
    }

    /// [`Self::write`] for a unit that changes many rows: it runs first in its group,
    /// without a savepoint (see [`group::Containment::First`]).
    fn write_first<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Connection) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.writer
            .write(&|| self.faults.error(), group::Containment::First, f)
    }

    /// [`Self::write`] for a unit that only appends audit entries: it fails only when the
    /// database does, and then fails its whole group (see [`group::Containment`]).
    fn append_only<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Connection) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.writer
            .write(&|| self.faults.error(), group::Containment::Group, f)
    }

    /// One unit of work over `controller`'s data and its audit entry, in the writer's
    /// open transaction.
    fn unit(
        &self,
        tx: &Connection,
        controller: &ControllerId,
        at: OffsetDateTime,
        work: Work<'_>,
    ) -> Result<AuditEntry, TxError> {
        let mut scoped = data_tx::SqliteTx::writing(tx, controller, at, &self.rewrites);
        let draft = work(&mut scoped as &mut dyn DataTx)?;
        let mut head = scoped.into_head();
        Ok(append_linked(tx, draft, at, &mut head, true)?)
    }

    /// Zeroes the unused bytes of the pages written since the last purge (see
    /// `page_scrub`), moves every WAL frame into the main file and overwrites the WAL's
    /// frames, so that content deleted by an erasure survives in neither file (see
    /// `wal_purge`).
    fn overwrite_wal(&self) -> Result<wal_purge::Purged> {
        let w = self.writer.exclusive(|| self.faults.error());
        let _alone = self.writer.no_background_checkpoint();
        // Should the scrub fail, the WAL's frames still go, and the next purge scrubs every
        // page (`Written` forgets what it knew).
        let scrubbed = page_scrub::scrub(&w.conn, &self.written);
        let purged = self.wal_purge.run(&w.conn);
        scrubbed.and(purged)
    }

    /// Copies the database to `dest` while the server keeps running (SQLite online backup).
    pub fn backup_to(&self, dest: &Path) -> Result<()> {
        let w = self.writer.exclusive(|| self.faults.error());
        w.conn
            .execute("VACUUM INTO ?1", params![dest.to_string_lossy()])
            .map_err(map_err)?;
        Ok(())
    }

    /// Runs SQLite's own consistency check; `Ok(())` when it answers "ok".
    pub fn integrity_check(&self) -> Result<()> {
        self.read(|c| {
            let r: String = c
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .map_err(map_err)?;
            if r == "ok" {
                Ok(())
            } else {
                Err(StoreError::Corrupt {
                    table: "(database)",
                    reason: r,
                })
            }
        })
    }

    /// Moves every WAL frame into the main file and truncates the WAL: the main file alone
    /// is then the whole database, to copy.
    pub fn checkpoint_wal(&self) -> Result<()> {
        let w = self.writer.exclusive(|| self.faults.error());
        let _alone = self.writer.no_background_checkpoint();
        checkpointer::checkpoint(&w.conn, checkpointer::Mode::Truncate).map(drop)
    }
}

fn col_text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r str> {
    r.get_ref(i)
        .and_then(|v| v.as_str().map_err(Into::into))
        .map_err(map_err)
}

fn col_opt<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> Result<Option<&'r str>> {
    r.get_ref(i)
        .and_then(|v| v.as_str_or_null().map_err(Into::into))
        .map_err(map_err)
}

fn col_blob<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r [u8]> {
    r.get_ref(i)
        .and_then(|v| v.as_blob().map_err(Into::into))
        .map_err(map_err)
}

/// See [`crate::refuse_newer_schema`].
fn schema_is_known(conn: &Connection) -> Result<()> {
    let newest: Option<i64> = conn
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .map_err(map_err)?;
    crate::refuse_newer_schema(newest, MIGRATIONS)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_upto(conn, i64::MAX)
}

fn migrate_upto(conn: &mut Connection, last: i64) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(map_err)?;
    schema_is_known(conn)?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= last) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let done: Option<i64> = tx
            .query_row(
                "SELECT version FROM schema_migrations WHERE version = ?1",
                [version],
                |r| r.get(0),
            )
            .optional()
            .map_err(map_err)?;
        if done.is_none() {
            tx.execute_batch(sql).map_err(map_err)?;
            migrate_code(*version, &tx)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version, nanos(OffsetDateTime::now_utc())],
            )
            .map_err(map_err)?;
        }
        tx.commit().map_err(map_err)?;
    }
    Ok(())
}

/// Appends `draft` to its chain inside `tx`: reads the head, links, inserts, moves the head.
/// The writer lock (and `BEGIN IMMEDIATE`) make this the only writer, so the chain cannot fork.
pub(crate) fn append_in_tx(
    tx: &Connection,
    draft: AuditDraft,
    at: OffsetDateTime,
) -> Result<AuditEntry> {
    append_linked(tx, draft, at, &mut None, true)
}

/// A chain's head as the current transaction has moved it: chain, seq, hash, and whether
/// `audit_heads` still has to be told.
pub(crate) type Head = (String, u64, [u8; 32], bool);

fn store_head(tx: &Connection, head: &Head) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO audit_heads (chain, seq, hash) VALUES (?1, ?2, ?3)
         ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    )
    .map_err(map_err)?
    .execute(params![head.0, head.1 as i64, &head.2[..]])
    .map_err(map_err)?;
    Ok(())
}

/// [`append_in_tx`] for a transaction that appends several entries: the head is read from
/// the database once and kept in `head`, and written back only when `write_head` is set
/// (the last append of the transaction) or another chain is appended to.
pub(crate) fn append_linked(
    tx: &Connection,
    draft: AuditDraft,
    at: OffsetDateTime,
    head: &mut Option<Head>,
    write_head: bool,
) -> Result<AuditEntry> {
    let chain = draft.chain.as_string();
    if head.as_ref().is_some_and(|h| h.0 != chain) {
        let other = head.take().expect("some");
        if other.3 {
            store_head(tx, &other)?;
        }
    }
    let (prev_seq, prev_hash) = match head.as_ref() {
        Some(h) => (h.1, h.2),
        None => {
            let stored: Option<(i64, Vec<u8>)> = tx
                .prepare_cached("SELECT seq, hash FROM audit_heads WHERE chain = ?1")
                .map_err(map_err)?
                .query_row([&chain], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(map_err)?;
            match stored {
                Some((s, h)) => (s as u64, to32(&h, "audit_heads")?),
                None => (0, GENESIS),
            }
        }
    };
    let unhashed = draft.seal(prev_seq + 1, at, prev_hash);
    let hash = custodian_crypto::hash::chain_link(&prev_hash, &unhashed.canonical_bytes());
    let entry = unhashed.with_hash(hash);
    insert_audit_row(tx, &entry)?;
    subject_index::after_append(tx, &chain, entry.seq)?;
    let moved = (chain, entry.seq, entry.hash, true);
    if write_head {
        store_head(tx, &moved)?;
        *head = Some((moved.0, moved.1, moved.2, false));
    } else {
        *head = Some(moved);
    }
    Ok(entry)
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn insert_controller(
        &self,
        row: &ControllerRow,
        audit: AuditDraft,
        at: OffsetDateTime,
    ) -> Result<AuditEntry> {
        self.write(|tx| {
            let c = &row.controller;
            tx.execute(
                "INSERT INTO controllers (id, name, region, agreement_effective, governing_law, status, created_at, wrapped_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    c.id.as_str(),
                    c.name.as_str(),
                    c.region.as_str(),
                    c.agreement_effective.to_string(),
                    c.governing_law.as_str(),
                    c.status.as_str(),
                    nanos(c.created_at),
                    row.wrapped_key
                ],
            )
            .map_err(map_err)?;
            append_in_tx(tx, audit, at)
        })
    }

    fn controller(&self, id: &ControllerId) -> Result<Option<ControllerRow>> {
        self.read(|c| {
            c.prepare_cached(concat!(
                "SELECT ",
                controller_cols!(),
                " FROM controllers WHERE id = ?1"
            ))
            .map_err(map_err)?
            .query_row([id.as_str()], controller_row)
            .optional()
            .map_err(map_err)?
            .transpose()
        })
    }

    fn controllers(&self) -> Result<Vec<ControllerRow>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(concat!(
                    "SELECT ",
                    controller_cols!(),
                    " FROM controllers ORDER BY created_at, id"
                ))
                .map_err(map_err)?;
            let rows = st.query_map([], controller_row).map_err(map_err)?;
            rows.map(|r| r.map_err(map_err)?).collect()
        })
    }

    fn insert_token(
        &self,
        row: &TokenRow,
        audit: AuditDraft,
        at: OffsetDateTime,
    ) -> Result<AuditEntry> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO tokens (id, secret_hash, role, controller_id, purposes, operations, label, created_at, expires_at, revoked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL)",
                params![
                    row.id.as_str(),
                    &row.hash[..],
                    row.role.as_str(),
                    row.controller.as_ref().map(|c| c.as_str()),
                    row.scope.purposes.as_ref().map(json),
                    row.scope.operations.as_ref().map(json),
                    row.label,
                    nanos(row.created_at),
                    row.expires_at.map(nanos),
                ],
            )
            .map_err(map_err)?;
            append_in_tx(tx, audit, at)
        })
    }

    fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<TokenRow>> {
        self.read(|c| {
            c.prepare_cached(concat!(
                "SELECT ",
                token_cols!(),
                " FROM tokens WHERE secret_hash = ?1"
            ))
            .map_err(map_err)?
            .query_row([&hash[..]], token_row)
            .optional()
            .map_err(map_err)?
            .transpose()
        })
    }

    fn tokens(&self, controller: Option<&ControllerId>) -> Result<Vec<TokenRow>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(concat!(
                    "SELECT ",
                    token_cols!(),
                    " FROM tokens WHERE controller_id IS ?1 ORDER BY created_at, id"
                ))
                .map_err(map_err)?;
            let rows = st
                .query_map([controller.map(|c| c.as_str())], token_row)
                .map_err(map_err)?;
            rows.map(|r| r.map_err(map_err)?).collect()
        })
    }

    fn revoke_token(
        &self,
        controller: Option<&ControllerId>,
        id: &TokenId,
        audit: AuditDraft,
        at: OffsetDateTime,
    ) -> Result<bool> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE tokens SET revoked_at = ?1 WHERE id = ?2 AND controller_id IS ?3 AND revoked_at IS NULL",
                    params![nanos(at), id.as_str(), controller.map(|c| c.as_str())],
                )
                .map_err(map_err)?;
            if n == 0 {
                return Ok(false);
            }
            append_in_tx(tx, audit, at)?;
            Ok(true)
        })
    }

    fn insert_account(
        &self,
        row: &AccountRow,
        audit: AuditDraft,
        at: OffsetDateTime,
    ) -> Result<AuditEntry> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO accounts (id, login_digest, login_sealed, password_hash, role, controller_id, created_at, disabled_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    row.id.as_str(),
                    &row.login_digest[..],
                    row.login_sealed,
                    row.password_hash,
                    row.role.as_str(),
                    row.controller.as_ref().map(|c| c.as_str()),
                    nanos(row.created_at),
                    row.disabled_at.map(nanos),
                ],
            )
            .map_err(map_err)?;
            append_in_tx(tx, audit, at)
        })
    }

    fn account_by_login(&self, digest: &[u8; 32]) -> Result<Option<AccountRow>> {
        self.read(|c| {
            c.prepare_cached(concat!(
                "SELECT ",
                account_cols!(),
                " FROM accounts WHERE login_digest = ?1"
            ))
            .map_err(map_err)?
            .query_row([&digest[..]], account_row)
            .optional()
            .map_err(map_err)?
            .transpose()
        })
    }

    fn disable_account(
        &self,
        controller: Option<&ControllerId>,
        id: &AccountId,
        audit: AuditDraft,
        at: OffsetDateTime,
    ) -> Result<bool> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE accounts SET disabled_at = ?1 WHERE id = ?2 AND controller_id IS ?3 AND disabled_at IS NULL",
                    params![nanos(at), id.as_str(), controller.map(|c| c.as_str())],
                )
                .map_err(map_err)?;
            if n == 0 {
                return Ok(false);
            }
            append_in_tx(tx, audit, at)?;
            Ok(true)
        })
    }

    fn upsert_purpose(
        &self,
        controller: &ControllerId,
        p: &Purpose,
        audit: AuditDraft,
        at: OffsetDateTime,
    ) -> Result<AuditEntry> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO purposes (controller_id, name, description, lawful_basis, categories, operations, retention_days, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (controller_id, name) DO UPDATE SET description = excluded.description,
                   lawful_basis = excluded.lawful_basis, categories = excluded.categories,
                   operations = excluded.operations, retention_days = excluded.retention_days,
                   updated_at = excluded.updated_at",
                params![
                    controller.as_str(),
                    p.name.as_str(),
                    p.description,
                    p.lawful_basis.as_str(),
                    json(&p.categories),
                    json(&p.operations),
                    p.retention_days,
                    nanos(at)
                ],
            )
            .map_err(map_err)?;
            append_in_tx(tx, audit, at)
        })
    }

    fn purposes(&self, controller: &ControllerId) -> Result<Vec<Purpose>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(concat!(
                    "SELECT ",
                    purpose_cols!(),
                    " FROM purposes WHERE controller_id = ?1 ORDER BY name"
                ))
                .map_err(map_err)?;
            let rows = st
                .query_map([controller.as_str()], purpose_row)
                .map_err(map_err)?;
            rows.map(|r| r.map_err(map_err)?).collect()
        })
    }

    fn transact(
        &self,
        controller: &ControllerId,
        at: OffsetDateTime,
        work: Work<'_>,
    ) -> Result<AuditEntry, TxError> {
        self.write(|tx| self.unit(tx, controller, at, work))
    }

    fn transact_many(
        &self,
        controller: &ControllerId,
        at: OffsetDateTime,
        work: Work<'_>,
    ) -> Result<AuditEntry, TxError> {
        self.write_first(|tx| self.unit(tx, controller, at, work))
    }

    fn consult(
        &self,
        controller: &ControllerId,
        at: OffsetDateTime,
        work: Work<'_>,
    ) -> Result<AuditEntry, TxError> {
        self.consult_pending(controller, at, work)?.wait()
    }

    fn consult_pending(
        &self,
        controller: &ControllerId,
        at: OffsetDateTime,
        work: Work<'_>,
    ) -> Result<PendingAudit, TxError> {
        let draft = self.read(|c| {
            // One snapshot for the whole unit: WAL readers see the database as of BEGIN.
            group::control(c, "BEGIN").map_err(map_err)?;
            let mut scoped = data_tx::SqliteTx::reading(c, controller, at, &self.kept);
            let out = work(&mut scoped as &mut dyn DataTx);
            group::control(c, "ROLLBACK").map_err(map_err)?;
            Ok(out)
        })??;
        Ok(self.appender.pending(draft, at))
    }

    fn consults_in_place(&self) -> bool {
        true
    }

    fn append_pending(&self, draft: AuditDraft, at: OffsetDateTime) -> Result<PendingAudit> {
        Ok(self.appender.pending(draft, at))
    }

    fn purge_deleted(&self) {
        // Kept rows of what was erased (ciphertexts, wrapped keys) go with the WAL.
        if let Err(e) = self.keep_current() {
            tracing::warn!(error = %e, "could not read the current tokens after an erasure; forgetting every kept row");
            self.kept.clear();
        }
        // Erasures that finish together share one purge (see `CheckpointGate`).
        if let Err(e) = self.purges.run(|| self.overwrite_wal().map(drop)) {
            tracing::warn!(error = %e, "could not overwrite the WAL after an erasure; the next one will retry");
        }
    }

    fn expired_records(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<ExpiredRecord>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    // Records of controllers that may be processed come first: the
                    // expired records of a controller under a legal hold (kept, sealed)
                    // must not fill every bounded pass and starve everyone else's.
                    "SELECT r.controller_id, r.id, r.subject_id, r.purpose, r.expires_at
                     FROM records r JOIN controllers c ON c.id = r.controller_id
                     WHERE r.expires_at <= ?1
                     ORDER BY c.status <> 'active', r.expires_at LIMIT ?2",
                )
                .map_err(map_err)?;
            let rows = st
                .query_map(params![nanos(now), limit], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })
                .map_err(map_err)?;
            rows.map(|r| {
                let (c, rec, sub, p, at) = r.map_err(map_err)?;
                let t = "records";
                Ok(ExpiredRecord {
                    controller: ControllerId::parse(&c).map_err(|e| corrupt(t, e))?,
                    record: custodian_core::ids::RecordId::parse(&rec)
                        .map_err(|e| corrupt(t, e))?,
                    subject: custodian_core::ids::SubjectId::parse(&sub)
                        .map_err(|e| corrupt(t, e))?,
                    purpose: custodian_core::purpose::PurposeName::parse(&p)
                        .map_err(|e| corrupt(t, e))?,
                    expires_at: from_nanos(at)?,
                })
            })
            .collect()
        })
    }

    fn expiry_schedule(&self, controller: Option<&ControllerId>) -> Result<Vec<ExpiryBucket>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT controller_id, purpose, expires_at / 86400000000000 AS day, COUNT(*) FROM records
                     WHERE ?1 IS NULL OR controller_id = ?1 GROUP BY 1, 2, 3 ORDER BY 3, 1, 2",
                )
                .map_err(map_err)?;
            let rows = st
                .query_map([controller.map(|c| c.as_str())], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
                })
                .map_err(map_err)?;
            rows.map(|r| {
                let (c, p, day, n) = r.map_err(map_err)?;
                let t = "records";
                Ok(ExpiryBucket {
                    controller: ControllerId::parse(&c).map_err(|e| corrupt(t, e))?,
                    purpose: custodian_core::purpose::PurposeName::parse(&p).map_err(|e| corrupt(t, e))?,
                    day: from_nanos(day * 86_400_000_000_000)?.date(),
                    records: n as u64,
                })
            })
            .collect()
        })
    }

    fn erasures(&self) -> Result<Vec<ErasureEntry>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached("SELECT controller_id, subject_id, erased_at FROM erasures ORDER BY erased_at, subject_id")
                .map_err(map_err)?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
                .map_err(map_err)?;
            rows.map(|r| {
                let (c, s, at) = r.map_err(map_err)?;
                Ok(ErasureEntry {
                    controller: ControllerId::parse(&c).map_err(|e| corrupt("erasures", e))?,
                    subject: custodian_core::ids::SubjectId::parse(&s).map_err(|e| corrupt("erasures", e))?,
                    erased_at: from_nanos(at)?,
                })
            })
            .collect()
        })
    }

    fn destruction_certificate(&self, controller: &ControllerId) -> Result<Option<String>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT certificate FROM destruction_certificates WHERE controller_id = ?1",
            )
            .map_err(map_err)?
            .query_row([controller.as_str()], |r| r.get(0))
            .optional()
            .map_err(map_err)
        })
    }

    fn request_status(&self, id: &custodian_core::ids::DsrId) -> Result<Option<DsrStatus>> {
        self.read(|c| {
            let row = c
                .prepare_cached(concat!(
                    "SELECT controller_id, ",
                    dsr_cols!(),
                    " FROM dsr_requests WHERE id = ?1"
                ))
                .map_err(map_err)?
                .query_row([id.as_str()], |r| {
                    let controller: String = r.get(0)?;
                    // The request columns start at index 1.
                    let shifted = dsr_row_at(r, 1)?;
                    Ok((controller, shifted))
                })
                .optional()
                .map_err(map_err)?;
            match row {
                None => Ok(None),
                Some((controller, req)) => {
                    let req = req?;
                    Ok(Some(DsrStatus {
                        controller: ControllerId::parse(&controller)
                            .map_err(|e| corrupt("dsr_requests", e))?,
                        right: req.right,
                        state: req.state,
                        received_at: req.received_at,
                        due_at: req.due_at,
                    }))
                }
            }
        })
    }

    fn outbox_due(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<OutboxRow>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT id, controller_id, topic, payload, created_at, attempts, next_attempt_at, delivered_at
                     FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= ?1 ORDER BY id LIMIT ?2",
                )
                .map_err(map_err)?;
            let rows = st.query_map(params![nanos(now), limit], outbox_row).map_err(map_err)?;
            rows.map(|r| r.map_err(map_err)?).collect()
        })
    }

    fn append_audit(&self, drafts: Vec<AuditDraft>, at: OffsetDateTime) -> Result<Vec<AuditEntry>> {
        self.append_only(|tx| {
            drafts
                .into_iter()
                .map(|d| append_in_tx(tx, d, at))
                .collect()
        })
    }

    fn audit_page(&self, chain: &ChainId, after_seq: u64, limit: u32) -> Result<Vec<AuditEntry>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(concat!(
                    "SELECT ",
                    audit_cols!(),
                    " FROM audit_entries WHERE chain = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
                ))
                .map_err(map_err)?;
            let rows = st
                .query_map(
                    params![chain.as_string(), after_seq as i64, limit],
                    audit_row,
                )
                .map_err(map_err)?;
            rows.map(|r| r.map_err(map_err)?).collect()
        })
    }

    fn scan_audit_range(
        &self,
        chain: &ChainId,
        after: u64,
        until: Option<u64>,
        visit: &mut dyn FnMut(AuditEntry) -> Result<()>,
    ) -> Result<()> {
        self.read(|c| {
            let mut st = c
                .prepare(concat!(
                    "SELECT ",
                    audit_cols!(),
                    " FROM audit_entries WHERE chain = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq"
                ))
                .map_err(map_err)?;
            let until = until.map_or(i64::MAX, |u| u.min(i64::MAX as u64) as i64);
            let mut rows = st
                .query(params![
                    chain.as_string(),
                    after.min(i64::MAX as u64) as i64,
                    until
                ])
                .map_err(map_err)?;
            while let Some(r) = rows.next().map_err(map_err)? {
                visit(audit_row(r).map_err(map_err)??)?;
            }
            Ok(())
        })
    }

    fn scan_audit_raw(
        &self,
        chain: &ChainId,
        after: u64,
        until: Option<u64>,
        visit: &mut dyn FnMut(&crate::RawEntry<'_>) -> Result<()>,
    ) -> Result<()> {
        self.read(|c| {
            let mut st = c
                .prepare(concat!(
                    "SELECT ",
                    audit_cols!(),
                    " FROM audit_entries WHERE chain = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq"
                ))
                .map_err(map_err)?;
            let until = until.map_or(i64::MAX, |u| u.min(i64::MAX as u64) as i64);
            let mut rows = st
                .query(params![
                    chain.as_string(),
                    after.min(i64::MAX as u64) as i64,
                    until
                ])
                .map_err(map_err)?;
            let mut buf = Vec::with_capacity(1024);
            while let Some(r) = rows.next().map_err(map_err)? {
                RawColumns {
                    chain: col_text(r, 0)?,
                    seq: r.get(1).map_err(map_err)?,
                    at: r.get(2).map_err(map_err)?,
                    actor: col_text(r, 3)?,
                    action: col_text(r, 4)?,
                    purpose: col_opt(r, 5)?,
                    subject: col_opt(r, 6)?,
                    record: col_opt(r, 7)?,
                    fields: col_text(r, 8)?,
                    refused: col_opt(r, 9)?,
                    request: col_opt(r, 10)?,
                    prev_hash: col_blob(r, 11)?,
                    hash: col_blob(r, 12)?,
                    subjects: col_text(r, 13)?,
                }
                .visit(&mut buf, visit)?;
            }
            Ok(())
        })
    }

    fn audit_of_subject(
        &self,
        chain: &ChainId,
        subject: &SubjectId,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let chain = chain.as_string();
        self.read(|c| {
            let seqs = subject_index::seqs_of(c, &chain, subject.as_str(), after_seq)?;
            let mut st = c
                .prepare_cached(concat!(
                    "SELECT ",
                    audit_cols!(),
                    " FROM audit_entries WHERE chain = ?1 AND seq = ?2"
                ))
                .map_err(map_err)?;
            seqs.into_iter()
                .take(limit as usize)
                .map(|seq| {
                    st.query_row(params![chain, seq as i64], audit_row)
                        .map_err(map_err)?
                })
                .collect()
        })
    }

    fn check_schema(&self) -> Result<()> {
        self.read(schema_is_known)
    }

    fn audit_chains(&self) -> Result<Vec<ChainId>> {
        self.read(|c| {
            let mut st = c.prepare(crate::AUDIT_CHAINS_SQL).map_err(map_err)?;
            let rows = st
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(map_err)?;
            rows.map(|r| {
                let s = r.map_err(map_err)?;
                ChainId::parse(&s).ok_or(StoreError::Corrupt {
                    table: "audit_entries",
                    reason: "unknown chain id".into(),
                })
            })
            .collect()
        })
    }

    fn audit_head(&self, chain: &ChainId) -> Result<Option<(u64, [u8; 32])>> {
        self.read(|c| {
            let row: Option<(i64, Vec<u8>)> = c
                .prepare_cached("SELECT seq, hash FROM audit_heads WHERE chain = ?1")
                .map_err(map_err)?
                .query_row([chain.as_string()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(map_err)?;
            row.map(|(s, h)| Ok((s as u64, to32(&h, "audit_heads")?)))
                .transpose()
        })
    }

    fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO checkpoints (chain, seq, hash, signed_at, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![cp.chain.as_string(), cp.seq as i64, &cp.hash[..], nanos(cp.signed_at), &cp.signature[..]],
            )
            .map_err(map_err)?;
            Ok(())
        })
    }

    fn checkpoints(&self, chain: &ChainId) -> Result<Vec<Checkpoint>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached("SELECT chain, seq, hash, signed_at, signature FROM checkpoints WHERE chain = ?1 ORDER BY seq")
                .map_err(map_err)?;
            let rows = st.query_map([chain.as_string()], checkpoint_row).map_err(map_err)?;
            rows.map(|r| r.map_err(map_err)?).collect()
        })
    }

    fn last_checkpoint(&self, chain: &ChainId) -> Result<Option<Checkpoint>> {
        self.read(|c| {
            c.prepare_cached("SELECT chain, seq, hash, signed_at, signature FROM checkpoints WHERE chain = ?1 ORDER BY seq DESC LIMIT 1")
                .map_err(map_err)?
                .query_row([chain.as_string()], checkpoint_row)
                .optional()
                .map_err(map_err)?
                .transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataTx;
    use custodian_core::audit::{Action, ChainId};
    use custodian_core::controller::{Controller, ControllerName, ControllerStatus};
    use custodian_core::ids::RecordId;
    use custodian_core::operation::Operation;
    use custodian_core::policy::Denial;
    use custodian_core::region::{MemberState, RegionId};

    fn controller(store: &SqliteStore, n: u8) -> ControllerId {
        let id = ControllerId::from_random([n; 16]);
        let row = ControllerRow {
            controller: Controller {
                id: id.clone(),
                name: ControllerName::parse("Acme SAS").unwrap(),
                region: RegionId::parse("osc-fr1").unwrap(),
                agreement_effective: time::macros::date!(2026 - 01 - 15),
                governing_law: MemberState::parse("FR").unwrap(),
                status: ControllerStatus::Active,
                created_at: OffsetDateTime::now_utc(),
            },
            wrapped_key: vec![1, 2, 3],
        };
        let draft = AuditDraft::new(
            ChainId::System,
            "operator",
            Action::Processing(Operation::Recording),
        );
        store
            .insert_controller(&row, draft, OffsetDateTime::now_utc())
            .unwrap();
        id
    }

    /// A subject row and a one-field record about it, for the tests that need rows only.
    fn subject_row(id: &SubjectId, now: OffsetDateTime) -> SubjectRow {
        SubjectRow {
            id: id.clone(),
            category: custodian_core::category::SubjectCategory::Customer,
            restricted: false,
            wrapped_key: vec![9; 60],
            created_at: now,
        }
    }

    fn record_row(
        id: RecordId,
        subject: &SubjectId,
        purpose: &custodian_core::purpose::PurposeName,
        meta: custodian_core::record::RecordMeta,
        created_at: OffsetDateTime,
        sealed: u8,
    ) -> RecordRow {
        RecordRow {
            id,
            subject: subject.clone(),
            header: custodian_core::record::RecordHeader {
                purpose: purpose.clone(),
                meta: meta.into(),
                created_at,
                updated_at: created_at,
                expires_at: created_at + time::Duration::days(1),
            },
            fields: vec![FieldRow {
                name: custodian_core::record::FieldName::parse("email").unwrap(),
                category: custodian_core::category::DataCategory::parse("user.contact.email")
                    .unwrap(),
                sealed: vec![sealed; 40],
            }],
        }
    }

    /// The commit that fills the WAL does not wait for its checkpoint: it returns with the
    /// main file untouched, and the store's own thread checkpoints afterwards.
    #[test]
    fn the_wal_is_checkpointed_after_the_commit_that_filled_it_not_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        let store = SqliteStore::open(&db).unwrap();
        let size = || std::fs::metadata(&db).unwrap().len();
        let before = size();
        let frames = checkpointer::CHECKPOINT_FROM_FRAMES as usize;
        {
            // The background checkpoint cannot start before this guard goes.
            let _held = store.writer.no_background_checkpoint();
            store
                .writer
                .write(&|| None, group::Containment::Unit, |c| {
                    c.execute_batch("CREATE TABLE filler (x BLOB)")
                        .map_err(map_err)?;
                    let mut st = c
                        .prepare("INSERT INTO filler VALUES (zeroblob(3000))")
                        .map_err(map_err)?;
                    for _ in 0..frames + 200 {
                        st.execute([]).map_err(map_err)?;
                    }
                    Ok::<_, StoreError>(())
                })
                .unwrap();
            assert_eq!(
                size(),
                before,
                "the commit returned with its pages copied into the main file"
            );
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        // The file grows as the checkpoint copies; the count once it is done.
        while size() < before + (frames as u64) * 3000 || store.writer.background_checkpoints() == 0
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no background checkpoint copied the WAL into the main file within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// A sort or a grouping too large for the cache spills to temporary storage; on disk it
    /// would keep rows of erased records in a file the WAL purge never sees.
    #[test]
    fn every_connection_keeps_temporary_storage_in_memory() {
        const MEMORY: i64 = 2;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("t.db")).unwrap();
        let temp_store = |c: &Connection| -> Result<i64> {
            c.query_row("PRAGMA temp_store", [], |r| r.get(0))
                .map_err(map_err)
        };
        assert_eq!(store.read(temp_store).unwrap(), MEMORY, "a reader");
        let writer = store.writer.exclusive(|| None);
        assert_eq!(temp_store(&writer.conn).unwrap(), MEMORY, "the writer");
    }

    /// The rows a consult keeps (`kept`) answer only while their token is unchanged, and
    /// the token changes whichever process writes: here a second store on the same file, as
    /// the CLI beside a running server would be.
    #[test]
    fn kept_rows_follow_changes_made_by_another_process() {
        use custodian_core::purpose::PurposeName;
        use custodian_core::record::RecordMeta;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        let store = SqliteStore::open(&path).unwrap();
        let other = SqliteStore::open(&path).unwrap();
        let c = controller(&store, 3);
        let purpose = PurposeName::parse("service").unwrap();
        let subject = SubjectId::from_random([4; 16]);
        let now = OffsetDateTime::now_utc();
        let draft = || consultation(&c, "test");
        store
            .transact(&c, now, &mut |tx| {
                tx.insert_subject(&subject_row(&subject, now))?;
                for n in 0..3u8 {
                    let id = RecordId::from_random([10 + n; 16]);
                    let meta = RecordMeta::default();
                    tx.insert_record(&record_row(id, &subject, &purpose, meta, now, n))?;
                }
                Ok(draft())
            })
            .unwrap();
        assert_eq!(store.kept.records.bytes(), 0, "writers never fill it");
        let consulted = || {
            let mut got = Vec::new();
            store
                .consult(&c, now, &mut |tx| {
                    got = tx.records_of_purpose(&purpose)?.to_vec();
                    Ok(draft())
                })
                .unwrap();
            got
        };
        let first = consulted();
        assert_eq!(first.len(), 3);
        assert!(
            store.kept.records.bytes() > 0,
            "a consult keeps what it read"
        );
        assert_eq!(consulted(), first, "and answers from it, unchanged");
        // The other process changes a record's recipients and deletes another.
        let mut changed = first[0].clone();
        std::sync::Arc::make_mut(&mut changed.header.meta).recipients = vec!["auditors".into()];
        other
            .transact(&c, now, &mut |tx| {
                assert!(tx.rewrite_record(&first[0], &changed)?);
                Ok(draft())
            })
            .unwrap();
        let after = consulted();
        assert_eq!(after.len(), 3);
        assert_eq!(after[0].header.meta.recipients, vec!["auditors".to_owned()]);
        other
            .transact(&c, now, &mut |tx| {
                tx.delete_record(&first[1].id)?;
                Ok(draft())
            })
            .unwrap();
        let after = consulted();
        assert_eq!(
            after.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            vec![first[0].id.clone(), first[2].id.clone()]
        );
        // The subject's row likewise: kept by the first read, changed by the other process.
        let restricted = || {
            let mut row = None;
            store
                .consult(&c, now, &mut |tx| {
                    row = tx.subject(&subject)?;
                    Ok(draft())
                })
                .unwrap();
            row.expect("the subject exists").restricted
        };
        assert!(!restricted());
        assert!(
            store.kept.subjects.rows() > 0,
            "a consult keeps the subjects it read"
        );
        assert!(!restricted());
        other
            .transact(&c, now, &mut |tx| {
                tx.set_restricted(&subject, true)?;
                Ok(draft())
            })
            .unwrap();
        assert!(restricted());
        // Limits of zero keep nothing, and reads answer all the same.
        let none = KeptLimits {
            record_bytes: 0,
            subject_rows: 0,
        };
        let bare = SqliteStore::open_with(&path, none).unwrap();
        for _ in 0..2 {
            let mut got = None;
            bare.consult(&c, now, &mut |tx| {
                got = Some((
                    tx.records_of_purpose(&purpose)?.len(),
                    tx.subjects_by_id(std::slice::from_ref(&subject))?.len(),
                ));
                Ok(draft())
            })
            .unwrap();
            assert_eq!(got, Some((2, 1)));
        }
        assert_eq!(
            (bare.kept.records.bytes(), bare.kept.subjects.rows()),
            (0, 0)
        );
        // After an erasure (purge_deleted) only what was read under current tokens stays:
        // with nothing erased, everything (all of it read again since the last change).
        assert_eq!(consulted(), after);
        let bytes = store.kept.records.bytes();
        store.purge_deleted();
        assert_eq!(store.kept.records.bytes(), bytes);
        other
            .transact(&c, now, &mut |tx| {
                tx.erase_subject(&subject, now, "test")?;
                Ok(draft())
            })
            .unwrap();
        store.purge_deleted();
        assert_eq!(
            store.kept.records.bytes(),
            0,
            "the erased subject's records went"
        );
        assert_eq!(store.kept.subjects.rows(), 0);
        assert!(consulted().is_empty());
    }

    /// Records read together share one `RecordMeta` per distinct metadata, and hold the
    /// same values as ever, also when a query meets more distinct ones than it remembers.
    #[test]
    fn records_read_together_share_their_metadata() {
        use custodian_core::purpose::PurposeName;
        use custodian_core::record::RecordMeta;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("m.db")).unwrap();
        let c = controller(&store, 7);
        let now = OffsetDateTime::now_utc();
        let draft = || consultation(&c, "test");
        // Metadata number k: None where Some("") or an empty list would be another value.
        let meta = |k: u8| RecordMeta {
            source: (k != 0).then(|| format!("source {k}")),
            recipients: (0..k % 3).map(|i| format!("r{i}")).collect(),
            automated_decision: (k == 5).then(|| "scoring".to_owned()),
        };
        // `few` cycles through 4 values, `many` through 12 (more than a query remembers).
        let (few, many) = (
            PurposeName::parse("few").unwrap(),
            PurposeName::parse("many").unwrap(),
        );
        let kinds = [(&few, 4u8), (&many, 12u8)];
        let subject = SubjectId::from_random([8; 16]);
        store
            .transact(&c, now, &mut |tx| {
                tx.insert_subject(&subject_row(&subject, now))?;
                for (p, (purpose, cycle)) in kinds.iter().enumerate() {
                    for n in 0..48u8 {
                        let mut id = [0; 16];
                        id[..2].copy_from_slice(&[n + 1, p as u8 + 1]);
                        let at = now + time::Duration::seconds(n.into());
                        let row = record_row(
                            RecordId::from_random(id),
                            &subject,
                            purpose,
                            meta(n % cycle),
                            at,
                            n,
                        );
                        tx.insert_record(&row)?;
                    }
                }
                Ok(draft())
            })
            .unwrap();
        let distinct = |rows: &[RecordRow]| {
            rows.iter()
                .map(|r| Arc::as_ptr(&r.header.meta))
                .collect::<std::collections::HashSet<_>>()
                .len()
        };
        for (purpose, cycle) in kinds {
            let mut rows = Vec::new();
            store
                .consult(&c, now, &mut |tx| {
                    rows = tx.records_of_purpose(purpose)?.to_vec();
                    Ok(draft())
                })
                .unwrap();
            assert_eq!(rows.len(), 48);
            for (n, r) in rows.iter().enumerate() {
                assert_eq!(
                    *r.header.meta,
                    meta(n as u8 % cycle),
                    "{purpose} record {n}"
                );
            }
            // Four values: one each. Twelve cycling through the eight remembered: each
            // value was pushed out by the time it came back.
            let want = if cycle == 4 { 4 } else { 48 };
            assert_eq!(distinct(&rows), want, "{purpose}");
        }
        // A subject's records (both purposes, 96): the same values, shared as they recur.
        let mut rows = Vec::new();
        store
            .consult(&c, now, &mut |tx| {
                rows = tx.records_of(&subject)?;
                Ok(draft())
            })
            .unwrap();
        assert_eq!(rows.len(), 96);
        for r in &rows {
            let cycle = if r.header.purpose == few { 4 } else { 12 };
            let n = (r.header.created_at - now).whole_seconds() as u8;
            assert_eq!(*r.header.meta, meta(n % cycle));
        }
        assert!(distinct(&rows) < 96);
    }

    /// Group commit: many threads at once, some units failing; every successful unit is
    /// stored with its audit entry, no failed one is, and the chain has no gap.
    #[test]
    fn concurrent_units_commit_in_groups_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("g.db")).unwrap());
        let c = controller(&store, 7);
        let chain = ChainId::Controller(c.clone());
        let ok = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..12u64 {
                let (store, c, chain, ok) = (&store, &c, &chain, &ok);
                s.spawn(move || {
                    for i in 0..40u64 {
                        let fail = (t + i) % 5 == 0;
                        let r = store.transact(
                            c,
                            OffsetDateTime::now_utc(),
                            &mut |tx: &mut dyn DataTx| {
                                tx.enqueue("test", &format!("{t}-{i}"), OffsetDateTime::now_utc())?;
                                if fail {
                                    return Err(crate::TxError::Denied(Denial::NotFound));
                                }
                                Ok(AuditDraft::new(
                                    chain.clone(),
                                    "app",
                                    Action::Processing(Operation::Recording),
                                )
                                .fields([format!("{t}-{i}")]))
                            },
                        );
                        match (fail, r) {
                            (false, Ok(_)) => {
                                ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            (true, Err(crate::TxError::Denied(Denial::NotFound))) => {}
                            (f, r) => panic!("unit {t}-{i} (fail={f}): {r:?}"),
                        }
                    }
                });
            }
        });
        let ok = ok.into_inner();
        let entries = store.audit_page(&chain, 0, 1000).unwrap();
        assert_eq!(entries.len() as u64, ok);
        assert!(
            entries
                .iter()
                .enumerate()
                .all(|(i, e)| e.seq == i as u64 + 1)
        );
        let queued = store
            .outbox_due(OffsetDateTime::now_utc() + time::Duration::hours(1), 1000)
            .unwrap();
        assert_eq!(
            queued.len() as u64,
            ok,
            "the failed units' rows rolled back with them"
        );
        let mut audited: Vec<String> = entries.iter().map(|e| e.draft.fields[0].clone()).collect();
        let mut stored: Vec<String> = queued.iter().map(|q| q.payload.clone()).collect();
        audited.sort();
        stored.sort();
        assert_eq!(audited, stored);
    }

    /// A failing commit fails every unit of its group, and stores none of them.
    #[test]
    fn a_failed_commit_fails_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("f.db")).unwrap());
        let c = controller(&store, 8);
        let chain = ChainId::Controller(c.clone());
        store.fault_switch().set(Some(WriteFault::DiskFull));
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let (store, c, chain) = (&store, &c, &chain);
                s.spawn(move || {
                    for i in 0..10u64 {
                        let r = store.transact(
                            c,
                            OffsetDateTime::now_utc(),
                            &mut |tx: &mut dyn DataTx| {
                                tx.enqueue("test", &format!("{t}-{i}"), OffsetDateTime::now_utc())?;
                                Ok(AuditDraft::new(
                                    chain.clone(),
                                    "app",
                                    Action::Processing(Operation::Recording),
                                ))
                            },
                        );
                        assert!(
                            matches!(r, Err(crate::TxError::Store(StoreError::Unavailable(_)))),
                            "{r:?}"
                        );
                    }
                });
            }
        });
        store.fault_switch().set(None);
        assert!(store.audit_page(&chain, 0, 100).unwrap().is_empty());
        assert!(
            store
                .outbox_due(OffsetDateTime::now_utc() + time::Duration::hours(1), 100)
                .unwrap()
                .is_empty()
        );
        // And the store works again afterwards.
        store
            .transact(&c, OffsetDateTime::now_utc(), &mut |tx: &mut dyn DataTx| {
                tx.enqueue("test", "after", OffsetDateTime::now_utc())?;
                Ok(AuditDraft::new(
                    chain.clone(),
                    "app",
                    Action::Processing(Operation::Recording),
                ))
            })
            .unwrap();
        assert_eq!(store.audit_page(&chain, 0, 100).unwrap().len(), 1);
    }

    fn consulted(store: &SqliteStore, c: &ControllerId) -> PendingAudit {
        store
            .consult_pending(c, OffsetDateTime::now_utc(), &mut |_tx: &mut dyn DataTx| {
                Ok(consultation(c, "app"))
            })
            .unwrap()
    }

    /// The entry of a consultation of `c`'s data by `actor`.
    fn consultation(c: &ControllerId, actor: &str) -> AuditDraft {
        AuditDraft::new(
            ChainId::Controller(c.clone()),
            actor,
            Action::Processing(Operation::Consultation),
        )
    }

    /// Reads whose entries the appending thread took together share their commit's
    /// outcome: when it fails, every one of them gets the error (and none may hand out
    /// what it read), nothing of theirs is stored, and the next reads work.
    #[test]
    fn a_failed_commit_fails_every_queued_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("q.db")).unwrap();
        let c = controller(&store, 9);
        let chain = ChainId::Controller(c.clone());
        store.fault_switch().set(Some(WriteFault::IoError));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..10 {
                        let r = queued_then_waited(consulted(&store, &c));
                        assert!(
                            matches!(r, Err(crate::TxError::Store(StoreError::Unavailable(_)))),
                            "{r:?}"
                        );
                    }
                });
            }
        });
        store.fault_switch().set(None);
        assert!(store.audit_page(&chain, 0, 100).unwrap().is_empty());
        let entry = consulted(&store, &c).wait().unwrap();
        assert_eq!(entry.seq, 1);
    }

    /// A pending audit polled once, as an async caller's first await does: queued for the
    /// appending thread, and answered at once when that thread already appended and
    /// committed it (rarely; the future has then handed out its entry and must not be
    /// asked again).
    enum Polled {
        Ready(Result<AuditEntry, TxError>),
        Pending(PendingAudit),
    }

    impl Polled {
        fn once(mut pending: PendingAudit) -> Self {
            use std::future::Future;
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            match std::pin::Pin::new(&mut pending).poll(&mut cx) {
                std::task::Poll::Ready(answer) => Self::Ready(answer),
                std::task::Poll::Pending => Self::Pending(pending),
            }
        }

        /// The answer, blocking until the entry is durable if it was not yet.
        fn wait(self) -> Result<AuditEntry, TxError> {
            match self {
                Self::Ready(answer) => answer,
                Self::Pending(pending) => pending.wait(),
            }
        }
    }

    fn queued_then_waited(pending: PendingAudit) -> Result<AuditEntry, TxError> {
        Polled::once(pending).wait()
    }

    /// Many readers at once, each queueing its entry and waiting for it, many times over
    /// (so that the appending thread takes batches, and waits to gather more after a
    /// large one): every read gets its own durable entry, and the chain has each once, in
    /// sequence, each linked to the one before.
    #[test]
    fn concurrent_queued_reads_each_get_one_entry_of_an_unbroken_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("c.db")).unwrap();
        let c = controller(&store, 12);
        let mut seqs: Vec<u64> = std::thread::scope(|s| {
            let readers: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..25)
                            .map(|_| queued_then_waited(consulted(&store, &c)).unwrap().seq)
                            .collect::<Vec<u64>>()
                    })
                })
                .collect();
            readers
                .into_iter()
                .flat_map(|r| r.join().unwrap())
                .collect()
        });
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());
        let stored = store.audit_page(&ChainId::Controller(c), 0, 500).unwrap();
        assert_eq!(stored.len(), 200);
        let mut prev = GENESIS;
        for (i, e) in stored.iter().enumerate() {
            assert_eq!(e.seq, i as u64 + 1);
            assert_eq!(e.prev_hash, prev);
            prev = e.hash;
        }
    }

    /// Reads awaited as futures are appended by the appending thread; dropping the store
    /// appends and commits every one queued before: none of their callers is left
    /// waiting, and the entries are there when the file is opened again.
    #[test]
    fn reads_queued_before_the_store_is_dropped_are_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let store = SqliteStore::open(&path).unwrap();
        let c = controller(&store, 10);
        let pending: Vec<Polled> = (0..50)
            .map(|_| Polled::once(consulted(&store, &c)))
            .collect();
        drop(store);
        let chain = ChainId::Controller(c);
        // Appended before the drop returned: a connection of its own sees all of them.
        let other = SqliteStore::open(&path).unwrap();
        assert_eq!(other.audit_page(&chain, 0, 100).unwrap().len(), 50);
        let seqs: Vec<u64> = pending.into_iter().map(|p| p.wait().unwrap().seq).collect();
        assert_eq!(seqs, (1..=50).collect::<Vec<u64>>());
        // Waiting appended nothing more: each was appended once, by the thread.
        assert_eq!(other.audit_page(&chain, 0, 100).unwrap().len(), 50);
    }

    /// A read that blocks for its entry appends it on its own thread (no appending thread
    /// is started for it), and one dropped without being waited for is still appended:
    /// the read ran, though its answer was never handed out.
    #[test]
    fn a_blocking_read_appends_its_own_entry_and_an_unwaited_one_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let store = SqliteStore::open(&path).unwrap();
        let c = controller(&store, 11);
        let chain = ChainId::Controller(c.clone());
        assert_eq!(consulted(&store, &c).wait().unwrap().seq, 1);
        assert!(
            !store.appender.started(),
            "no appending thread for a blocking caller"
        );
        drop(consulted(&store, &c));
        assert!(store.appender.started());
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        let seqs: Vec<u64> = reopened
            .audit_page(&chain, 0, 10)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [1, 2]);
    }

    /// A database written before migration 8 (a row per field) reads back the same records
    /// after it, and the old table is gone.
    #[test]
    fn migration_8_moves_fields_into_their_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let c = ControllerId::from_random([1; 16]);
        let s = SubjectId::from_random([2; 16]);
        let (r1, r2, r3) = (
            RecordId::from_random([3; 16]),
            RecordId::from_random([4; 16]),
            RecordId::from_random([5; 16]),
        );
        {
            let mut conn = open_connection(&path).unwrap();
            migrate_upto(&mut conn, 7).unwrap();
            conn.execute_batch(&format!(
                "INSERT INTO controllers VALUES ('{c}', 'Acme', 'osc-fr1', '2026-01-15', 'FR', 'active', 0, x'01');
                 INSERT INTO subjects VALUES ('{c}', '{s}', 'customer', 0, x'02', 0);
                 INSERT INTO records VALUES ('{c}', '{r1}', '{s}', 'billing', NULL, '[]', NULL, 0, 0, 1);
                 INSERT INTO records VALUES ('{c}', '{r2}', '{s}', 'billing', 'form', '[\"bank\"]', NULL, 0, 0, 1);
                 INSERT INTO records VALUES ('{c}', '{r3}', '{s}', 'billing', NULL, '[]', NULL, 0, 0, 1);
                 INSERT INTO fields VALUES ('{c}', '{r1}', 'phone', 'user.contact.phone_number', x'0a0b');
                 INSERT INTO fields VALUES ('{c}', '{r1}', 'email', 'user.contact.email', x'0c');
                 INSERT INTO fields VALUES ('{c}', '{r2}', 'name', 'user.name', x'0d0e0f');",
                c = c.as_str(),
                s = s.as_str(),
                r1 = r1.as_str(),
                r2 = r2.as_str(),
                r3 = r3.as_str(),
            ))
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let seen = crate::conformance::stored_records(&store, &c, &s);
        assert_eq!(seen.len(), 3);
        crate::conformance::check_migration_8_sample(&seen, [&r1, &r2, &r3]);
        let conn = open_connection(&path).unwrap();
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'fields'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "the table of one row per field is dropped");
        // Migration 13 gave the one purpose that holds records its token.
        let tokens: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM record_generations WHERE purpose = 'billing'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tokens, 1);
    }

    /// A chain written before migration 9 (bulk entries indexed by 0007's audit_subjects)
    /// is indexed in runs by it: a subject's history is the same before and after.
    #[test]
    fn migration_9_indexes_existing_chains_in_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let c = ControllerId::from_random([1; 16]);
        let chain = ChainId::Controller(c.clone());
        let (s1, s2) = (
            SubjectId::from_random([2; 16]),
            SubjectId::from_random([3; 16]),
        );
        let head = 1030i64;
        let mut want1 = Vec::new();
        {
            let mut conn = open_connection(&path).unwrap();
            migrate_upto(&mut conn, 8).unwrap();
            let tx = conn.transaction().unwrap();
            for seq in 1..=head {
                let subjects = if seq % 3 == 0 {
                    want1.push(seq as u64);
                    format!("[\"{}\",\"{}\"]", s1.as_str(), s2.as_str())
                } else {
                    "[]".to_owned()
                };
                tx.execute(
                    "INSERT INTO audit_entries (chain, seq, at, actor, action, fields, prev_hash, hash, subjects)
                     VALUES (?1, ?2, 0, 'controller_app:test', 'consultation', '[]', ?3, ?3, ?4)",
                    params![chain.as_string(), seq, [0u8; 32].to_vec(), subjects],
                )
                .unwrap();
            }
            tx.execute(
                "INSERT INTO audit_heads (chain, seq, hash) VALUES (?1, ?2, ?3)",
                params![chain.as_string(), head, [0u8; 32].to_vec()],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let seqs = crate::conformance::history_seqs(&store, &chain, &s1, 0, 10_000);
        assert_eq!(seqs, want1);
        let conn = open_connection(&path).unwrap();
        let runs: i64 = conn
            .query_row("SELECT COUNT(*) FROM audit_runs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            runs, 2,
            "two complete spans of 512 entries, the rest a tail"
        );
        let old: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'audit_subjects'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old, 0);
    }

    /// Migration 12 indexes the entries about one subject in runs too, rebuilding the runs
    /// 0009 built of bulk entries only, and drops audit_by_subject: a subject's history is
    /// the same before and after.
    #[test]
    fn migration_12_indexes_every_entry_naming_a_subject_in_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let chain = ChainId::Controller(ControllerId::from_random([1; 16]));
        let (s1, s2) = (
            SubjectId::from_random([2; 16]),
            SubjectId::from_random([3; 16]),
        );
        let head = 1030u64;
        // Every third entry names both subjects (bulk); every seventh other is about s1.
        let bulk = |q: u64| q.is_multiple_of(3);
        let single = |q: u64| !bulk(q) && q.is_multiple_of(7);
        let want1: Vec<u64> = (1..=head).filter(|&q| bulk(q) || single(q)).collect();
        let want2: Vec<u64> = (1..=head).filter(|&q| bulk(q)).collect();
        {
            let mut conn = open_connection(&path).unwrap();
            migrate_upto(&mut conn, 11).unwrap();
            let tx = conn.transaction().unwrap();
            let both = format!("[\"{}\",\"{}\"]", s1.as_str(), s2.as_str());
            for q in 1..=head {
                tx.execute(
                    "INSERT INTO audit_entries (chain, seq, at, actor, action, subject_id, fields, prev_hash, hash, subjects)
                     VALUES (?1, ?2, 0, 'controller_app:test', 'consultation', ?3, '[]', ?4, ?4, ?5)",
                    params![
                        chain.as_string(),
                        q as i64,
                        single(q).then(|| s1.as_str()),
                        [0u8; 32].to_vec(),
                        if bulk(q) { both.as_str() } else { "[]" }
                    ],
                )
                .unwrap();
            }
            tx.execute(
                "INSERT INTO audit_heads (chain, seq, hash) VALUES (?1, ?2, ?3)",
                params![chain.as_string(), head as i64, [0u8; 32].to_vec()],
            )
            .unwrap();
            // The first span's run as 0009 built it: bulk entries only.
            let mut run = crate::subject_runs::Run::default();
            for q in (1..=512).filter(|&q| bulk(q)) {
                run.add(q, [s1.as_str().to_owned(), s2.as_str().to_owned()]);
            }
            for (subject, seqs) in run.rows() {
                tx.execute(
                    "INSERT INTO audit_run_subjects (chain, first_seq, subject_id, seqs) VALUES (?1, 1, ?2, ?3)",
                    params![chain.as_string(), subject, seqs],
                )
                .unwrap();
            }
            tx.execute(
                "INSERT INTO audit_runs (chain, first_seq, last_seq) VALUES (?1, 1, 512)",
                params![chain.as_string()],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let history = |s| crate::conformance::history_seqs(&store, &chain, s, 0, 10_000);
        assert_eq!(history(&s1), want1);
        assert_eq!(history(&s2), want2);
        let conn = open_connection(&path).unwrap();
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(count("SELECT COUNT(*) FROM audit_runs"), 2);
        assert_eq!(
            count("SELECT COUNT(*) FROM sqlite_master WHERE name = 'audit_by_subject'"),
            0
        );
        assert!(
            conn.execute("DELETE FROM audit_runs", []).is_err(),
            "runs are append-only again"
        );
    }

    /// A record of `subject`, without fields, in a database at migration 10 or later.
    fn insert_record(
        conn: &Connection,
        c: &ControllerId,
        record: [u8; 16],
        subject: &SubjectId,
    ) -> rusqlite::Result<usize> {
        conn.execute(
            "INSERT INTO records (controller_id, id, subject_id, purpose, recipients, created_at, updated_at, expires_at)
             VALUES (?1, ?2, ?3, 'billing', '[]', 0, 0, 1)",
            params![
                c.as_str(),
                RecordId::from_random(record).as_str(),
                subject.as_str()
            ],
        )
    }

    /// Writes a controller, two subjects and records naming them into a database at
    /// migration 10, the last before subjects lost their rowid.
    fn database_at_10(path: &Path, c: &ControllerId, subjects: &[&SubjectId]) {
        let mut conn = open_connection(path).unwrap();
        migrate_upto(&mut conn, 10).unwrap();
        conn.execute(
            "INSERT INTO controllers VALUES (?1, 'Acme', 'osc-fr1', '2026-01-15', 'FR', 'active', 0, x'01')",
            [c.as_str()],
        )
        .unwrap();
        for (i, s) in subjects.iter().enumerate() {
            conn.execute(
                "INSERT INTO subjects VALUES (?1, ?2, 'customer', ?3, ?4, ?5)",
                params![
                    c.as_str(),
                    s.as_str(),
                    i as i64 % 2,
                    vec![i as u8; 40],
                    i as i64
                ],
            )
            .unwrap();
            insert_record(&conn, c, [10 + i as u8; 16], s).unwrap();
        }
    }

    fn subjects_table_sql(conn: &Connection) -> String {
        conn.query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'subjects'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// Migration 14 keys audit entries by (chain, seq) without a rowid: every entry of every
    /// chain reads back as it was, the table has no second B-tree, and it is still append-only.
    #[test]
    fn migration_14_keys_audit_entries_by_chain_and_seq() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let chains = [
            ChainId::Controller(ControllerId::from_random([1; 16])),
            ChainId::Controller(ControllerId::from_random([2; 16])),
        ];
        let subject = SubjectId::from_random([3; 16]);
        let all = |conn: &Connection| -> Vec<Vec<rusqlite::types::Value>> {
            let mut st = conn
                .prepare(&format!(
                    "SELECT {AUDIT_COLS} FROM audit_entries ORDER BY chain, seq"
                ))
                .unwrap();
            let n = st.column_count();
            st.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        let before = {
            let mut conn = open_connection(&path).unwrap();
            migrate_upto(&mut conn, 13).unwrap();
            let tx = conn.transaction().unwrap();
            // Interleaved chains, inserted out of key order, with every optional column set
            // on some entries.
            for q in (1..=300i64).rev() {
                for (i, chain) in chains.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO audit_entries (chain, seq, at, actor, action, purpose, subject_id, record_id,
                                                    fields, refused, request_id, prev_hash, hash, subjects)
                         VALUES (?1, ?2, ?3, 'controller_app:test', 'consultation', ?4, ?5, NULL,
                                 '[\"email\"]', ?6, ?7, ?8, ?9, ?10)",
                        params![
                            chain.as_string(),
                            q,
                            q * 1_000 + i as i64,
                            (q % 2 == 0).then_some("billing"),
                            (q % 3 == 0).then(|| subject.as_str()),
                            (q % 5 == 0).then_some("purpose_not_granted"),
                            (q % 7 == 0).then(|| format!("req-{q}")),
                            [q as u8; 32].to_vec(),
                            [i as u8; 32].to_vec(),
                            if q % 11 == 0 { format!("[\"{}\"]", subject.as_str()) } else { "[]".to_owned() },
                        ],
                    )
                    .unwrap();
                }
            }
            tx.commit().unwrap();
            all(&conn)
        };
        assert_eq!(before.len(), 600);
        drop(SqliteStore::open(&path).unwrap());
        let conn = open_connection(&path).unwrap();
        assert_eq!(all(&conn), before, "every entry reads back as it was");
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'audit_entries'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(sql.contains("WITHOUT ROWID"), "{sql}");
        let indexes: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_entries'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 0, "the key is the table: no second B-tree");
        for sql in [
            "UPDATE audit_entries SET actor = 'someone else'",
            "DELETE FROM audit_entries WHERE seq = 1",
        ] {
            let err = conn.execute(sql, []).unwrap_err().to_string();
            assert!(err.contains("append-only"), "{sql}: {err}");
        }
    }

    /// Migration 11 rebuilds subjects without a rowid: every row kept as it was, records
    /// still bound to them by their foreign key.
    /// `verify` and the checkpoint task find chains by their entries too, not only by their
    /// heads: a chain whose head row went (tampering) is still listed, and each chain once,
    /// however many entries it holds.
    #[test]
    fn chains_are_found_by_their_entries_without_their_heads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let store = SqliteStore::open(&path).unwrap();
        let controllers: Vec<ControllerId> = (1..=3).map(|n| controller(&store, n)).collect();
        for (n, c) in controllers.iter().enumerate() {
            let drafts = (0..=n * 3).map(|_| consultation(c, "test")).collect();
            store
                .append_audit(drafts, OffsetDateTime::now_utc())
                .unwrap();
        }
        let before = store.audit_chains().unwrap();
        Connection::open(&path)
            .unwrap()
            .execute_batch("DELETE FROM audit_heads")
            .unwrap();
        assert_eq!(store.audit_chains().unwrap(), before);
        for c in controllers {
            assert!(before.contains(&ChainId::Controller(c)), "{before:?}");
        }
    }

    /// A database a newer custodian migrated is refused before anything is written to it.
    #[test]
    fn a_database_migrated_by_a_newer_custodian_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.db");
        let running = SqliteStore::open(&path).unwrap();
        running.check_schema().unwrap();
        let newer = MIGRATIONS.last().unwrap().0 + 1;
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)",
            [newer],
        )
        .unwrap();
        drop(conn);
        // A store opened before: its readiness check says so.
        let e = running.check_schema().expect_err("a newer schema");
        assert!(e.to_string().contains("newer custodian"), "{e}");
        drop(running);
        let e = SqliteStore::open(&path).expect_err("refused");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("migration {newer}")) && msg.contains("newer custodian"),
            "{msg}"
        );
    }

    #[test]
    fn migration_11_keys_subjects_by_their_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let c = ControllerId::from_random([1; 16]);
        let (s1, s2) = (
            SubjectId::from_random([2; 16]),
            SubjectId::from_random([3; 16]),
        );
        database_at_10(&path, &c, &[&s1, &s2]);
        let rows = |conn: &Connection| -> Vec<(String, String, i64, Vec<u8>, i64)> {
            conn.prepare("SELECT controller_id, id, restricted, wrapped_key, created_at FROM subjects ORDER BY id")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        let before = rows(&open_connection(&path).unwrap());
        assert!(!subjects_table_sql(&open_connection(&path).unwrap()).contains("WITHOUT ROWID"));

        SqliteStore::open(&path).unwrap();
        let conn = open_connection(&path).unwrap();
        assert!(subjects_table_sql(&conn).contains("WITHOUT ROWID"));
        assert_eq!(rows(&conn), before);
        let orphan = insert_record(&conn, &c, [9; 16], &SubjectId::from_random([9; 16]));
        assert!(orphan.is_err(), "records still need their subject");
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT category FROM subjects WHERE controller_id = ?1 AND id = ?2",
                params![c.as_str(), s1.as_str()],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("PRIMARY KEY"), "one descent by key: {plan}");
    }

    /// A record left without its subject (written with foreign keys off, behind the
    /// store's back) makes migration 11 fail as a whole: nothing of it is applied.
    #[test]
    fn migration_11_refuses_orphaned_records_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let c = ControllerId::from_random([1; 16]);
        let s = SubjectId::from_random([2; 16]);
        database_at_10(&path, &c, &[&s]);
        {
            let conn = open_connection(&path).unwrap();
            conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
            insert_record(&conn, &c, [9; 16], &SubjectId::from_random([9; 16])).unwrap();
        }
        let Err(err) = SqliteStore::open(&path) else {
            panic!("the migration fails");
        };
        assert!(
            err.to_string()
                .contains("1 record(s) name a subject that does not exist"),
            "{err}"
        );
        let conn = open_connection(&path).unwrap();
        assert!(!subjects_table_sql(&conn).contains("WITHOUT ROWID"));
        let version: i64 = conn
            .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(version, 10);
        let subjects: i64 = conn
            .query_row("SELECT COUNT(*) FROM subjects", [], |r| r.get(0))
            .unwrap();
        assert_eq!(subjects, 1);
    }

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = 0;
        crate::conformance::run_all(&mut || {
            n += 1;
            Box::new(super::SqliteStore::open(dir.path().join(format!("c{n}.db"))).unwrap())
        });
    }
}
