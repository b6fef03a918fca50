//! The PostgreSQL backend, for processors that outgrow one machine: several stateless API
//! nodes share one database (managed PostgreSQL, or a PostgreSQL-compatible distributed SQL
//! engine). It stores exactly what the SQLite backend stores, in the same tables
//! (`migrations/postgres` mirrors `migrations/sqlite`), and passes the same conformance suite.
//!
//! The SQL is SQLite's with `$n` placeholders; the few statements that differ do so because
//! the engines do: `ON CONFLICT DO NOTHING` for `INSERT OR IGNORE`, `IS NOT DISTINCT FROM`
//! for `IS`, the chain lock below, and `subject_index.rs`, which sends a run's rows, and the
//! point lookups of a subject's history, as one statement each instead of one per row (a
//! round trip to the server costs what a call into SQLite does not).
//!
//! Durability is the server's: a commit is acknowledged only once PostgreSQL has flushed
//! its WAL, which holds with the defaults `fsync = on`, `synchronous_commit = on` and
//! `full_page_writes = on` (ARCHITECTURE.md). Do not turn them off for a Custodian database.
//!
//! Concurrency: a small pool of connections (r2d2), each with its own prepared-statement
//! cache, and transactions at PostgreSQL's default READ COMMITTED isolation. Appends to
//! one audit chain are serialised **in the database**, not in process memory, so any number
//! of nodes can append to the same chain: the chain's `audit_heads` row is created if
//! missing (`INSERT ... ON CONFLICT DO NOTHING`) and locked (`SELECT ... FOR UPDATE`) until
//! the transaction commits. A controller's unit of work ([`Store::transact`]) takes that
//! lock *before* running, so one controller's transactions are serialised across nodes
//! exactly as SQLite's single writer serialises them, while different controllers proceed in
//! parallel.
//!
//! One difference callers may notice: after a failed statement PostgreSQL refuses every
//! further statement of that transaction, where SQLite would go on. Units of work already
//! stop at the first store error (the `?` in every `Work`), so this only matters to code
//! that would catch a store error and keep using the same `DataTx`: it must not.

mod codec;
mod data_tx;
mod subject_index;
#[cfg(test)]
mod tests;

use crate::rows::*;
use crate::sqlite::codec::{
    ACCOUNT_COLS, AUDIT_COLS, CONTROLLER_COLS, DSR_COLS, PURPOSE_COLS, TOKEN_COLS, corrupt,
    from_nanos, json, nanos, to32,
};
use crate::{DataTx, Result, Store, StoreError, TxError, Work};
use codec::*;
use custodian_core::audit::{AuditDraft, AuditEntry, ChainId, GENESIS, Outcome};
use custodian_core::ids::{AccountId, ControllerId, RecordId, SubjectId, TokenId};
use custodian_core::purpose::{Purpose, PurposeName};
use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row, Statement, Transaction};
use std::collections::HashMap;
use std::time::Duration;
use time::OffsetDateTime;

const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../migrations/postgres/0001_foundation.sql"),
    ),
    (2, include_str!("../../migrations/postgres/0002_rights.sql")),
    (
        3,
        include_str!("../../migrations/postgres/0003_lifecycle.sql"),
    ),
    (
        4,
        include_str!("../../migrations/postgres/0004_purpose_index.sql"),
    ),
    (
        5,
        include_str!("../../migrations/postgres/0005_lookups_by_subject.sql"),
    ),
    (
        6,
        include_str!("../../migrations/postgres/0006_accounts.sql"),
    ),
    (
        7,
        include_str!("../../migrations/postgres/0007_bulk_audit.sql"),
    ),
    (
        8,
        include_str!("../../migrations/postgres/0008_fields_in_records.sql"),
    ),
    (
        9,
        include_str!("../../migrations/postgres/0009_audit_subject_runs.sql"),
    ),
    (
        10,
        include_str!("../../migrations/postgres/0010_audit_runs_of_every_subject.sql"),
    ),
];

/// Rows of the old `fields` table read per round trip by migration 8's code step.
const MIGRATION_BATCH: i32 = 10_000;

/// Brings the schema seen by `client` up to migration `last`, under the advisory lock, in
/// one transaction: nodes starting together queue on the lock, and the first one migrates.
fn migrate_upto(client: &mut Client, last: i64) -> Result<()> {
    let mut tx = client.transaction().map_err(map_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(map_err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .map_err(map_err)?;
    schema_is_known(&mut tx)?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= last) {
        let done = tx
            .query_opt(
                "SELECT version FROM schema_migrations WHERE version = $1",
                &[version],
            )
            .map_err(map_err)?;
        if done.is_none() {
            tx.batch_execute(sql).map_err(map_err)?;
            migrate_code(*version, &mut tx)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[version, &nanos(OffsetDateTime::now_utc())],
            )
            .map_err(map_err)?;
        }
    }
    tx.commit().map_err(map_err)
}

/// See [`crate::refuse_newer_schema`].
fn schema_is_known(client: &mut impl GenericClient) -> Result<()> {
    let newest: Option<i64> = client
        .query_one("SELECT MAX(version) FROM schema_migrations", &[])
        .map_err(map_err)?
        .get(0);
    crate::refuse_newer_schema(newest, MIGRATIONS)
}

/// The part of a migration SQL cannot express, run after its SQL in its transaction (so
/// under the same advisory lock), as `sqlite::migrate_code`.
fn migrate_code(version: i64, tx: &mut Transaction<'_>) -> Result<()> {
    match version {
        8 => fields_into_records(tx),
        9 => audit_subjects_into_runs(tx),
        10 => index_chains_in_runs(tx),
        _ => Ok(()),
    }
}

/// Migration 9: the runs of every chain's complete spans (from the entries' own subject
/// lists, as `sqlite::audit_subjects_into_runs`), then audit_subjects goes.
fn audit_subjects_into_runs(tx: &mut Transaction<'_>) -> Result<()> {
    index_chains_in_runs(tx)?;
    tx.batch_execute("DROP TABLE audit_subjects")
        .map_err(map_err)?;
    Ok(())
}

/// Migrations 9 and 10: the runs of every chain's complete spans.
fn index_chains_in_runs(tx: &mut Transaction<'_>) -> Result<()> {
    let heads: Vec<(String, i64)> = tx
        .query("SELECT chain, seq FROM audit_heads ORDER BY chain", &[])
        .map_err(map_err)?
        .iter()
        .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
        .collect::<Result<_>>()?;
    {
        let mut stmts = HashMap::new();
        let mut q = Q::new(tx, &mut stmts);
        for (chain, head) in heads {
            subject_index::index_existing(&mut q, &chain, head.max(0) as u64)?;
        }
    }
    Ok(())
}

/// Migration 8: every record's rows of `fields` become its `fields` column
/// (`crate::fieldset`), then the table goes. The rows are read in batches, a record's rows
/// next to each other, so that memory holds one batch and not the whole table.
fn fields_into_records(tx: &mut Transaction<'_>) -> Result<()> {
    use custodian_core::category::DataCategory;
    use custodian_core::record::FieldName;

    let select = tx
        .prepare(
            "SELECT controller_id, record_id, name, category, sealed FROM fields
             ORDER BY controller_id, record_id",
        )
        .map_err(map_err)?;
    let update = tx
        .prepare("UPDATE records SET fields = $3 WHERE controller_id = $1 AND id = $2")
        .map_err(map_err)?;
    let portal = tx.bind(&select, &[]).map_err(map_err)?;
    let mut current: Option<(String, String)> = None;
    let mut set: Vec<FieldRow> = Vec::new();
    loop {
        let rows = tx.query_portal(&portal, MIGRATION_BATCH).map_err(map_err)?;
        for r in &rows {
            let key: (String, String) = (get(r, 0)?, get(r, 1)?);
            let name: String = get(r, 2)?;
            let category: String = get(r, 3)?;
            let row = FieldRow {
                name: FieldName::parse(&name).map_err(|e| corrupt("fields", e))?,
                category: DataCategory::parse(&category).map_err(|e| corrupt("fields", e))?,
                sealed: get(r, 4)?,
            };
            if current.as_ref() != Some(&key) {
                if let Some((c, rec)) = current.take() {
                    let bytes = crate::fieldset::encode(&set);
                    tx.execute(&update, &[&c, &rec, &bytes]).map_err(map_err)?;
                    set.clear();
                }
                current = Some(key);
            }
            set.push(row);
        }
        if rows.len() < MIGRATION_BATCH as usize {
            break;
        }
    }
    if let Some((c, rec)) = current {
        let bytes = crate::fieldset::encode(&set);
        tx.execute(&update, &[&c, &rec, &bytes]).map_err(map_err)?;
    }
    // An open portal on the table would keep it from being dropped.
    drop(portal);
    tx.batch_execute("DROP TABLE fields").map_err(map_err)?;
    Ok(())
}

/// Held (transaction-scoped) while migrating, so that nodes starting together do not race.
const MIGRATION_LOCK: i64 = 0x6375_7374_6f64_6961; // "custodia"

/// Connections per node unless told otherwise. Two nodes at this size stay well inside
/// PostgreSQL's default `max_connections = 100`.
pub const DEFAULT_POOL_SIZE: u32 = 16;

/// Rows per round trip when `scan_audit` walks a chain.
const SCAN_PAGE: i64 = 2000;

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// One pooled connection and the statements prepared on it.
pub(crate) struct PgConn {
    client: Client,
    stmts: HashMap<String, Statement>,
}

#[derive(Debug)]
struct Manager {
    config: postgres::Config,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> std::result::Result<PgConn, postgres::Error> {
        Ok(PgConn {
            client: self.config.connect(NoTls)?,
            stmts: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> std::result::Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

#[derive(Debug)]
struct LogErrors;

impl r2d2::HandleError<postgres::Error> for LogErrors {
    fn handle_error(&self, error: postgres::Error) {
        tracing::warn!(error = %error, "postgres connection error");
    }
}

/// Runs statements on a client or a transaction, preparing each SQL text once per
/// connection.
pub(crate) struct Q<'a, C: GenericClient> {
    c: &'a mut C,
    stmts: &'a mut HashMap<String, Statement>,
}

impl<'a, C: GenericClient> Q<'a, C> {
    pub(crate) fn new(c: &'a mut C, stmts: &'a mut HashMap<String, Statement>) -> Self {
        Self { c, stmts }
    }

    fn prep(&mut self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let s = self.c.prepare(sql).map_err(map_err)?;
        self.stmts.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    pub(crate) fn exec(&mut self, sql: &str, p: Params<'_>) -> Result<u64> {
        let st = self.prep(sql)?;
        self.c.execute(&st, p).map_err(map_err)
    }

    pub(crate) fn rows(&mut self, sql: &str, p: Params<'_>) -> Result<Vec<Row>> {
        let st = self.prep(sql)?;
        self.c.query(&st, p).map_err(map_err)
    }

    pub(crate) fn opt(&mut self, sql: &str, p: Params<'_>) -> Result<Option<Row>> {
        let st = self.prep(sql)?;
        self.c.query_opt(&st, p).map_err(map_err)
    }

    pub(crate) fn one(&mut self, sql: &str, p: Params<'_>) -> Result<Row> {
        let st = self.prep(sql)?;
        self.c.query_one(&st, p).map_err(map_err)
    }

    /// Every row of a query, decoded.
    pub(crate) fn all<T>(
        &mut self,
        sql: &str,
        p: Params<'_>,
        decode: impl Fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.rows(sql, p)?.iter().map(decode).collect()
    }

    /// At most one row, decoded.
    pub(crate) fn maybe<T>(
        &mut self,
        sql: &str,
        p: Params<'_>,
        decode: impl Fn(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        self.opt(sql, p)?.as_ref().map(decode).transpose()
    }
}

pub struct PostgresStore {
    /// The URL without its password, for messages.
    display: String,
    /// Always `Some` until dropped.
    pool: Option<r2d2::Pool<Manager>>,
}

impl Drop for PostgresStore {
    /// Each blocking `postgres::Client` owns a small Tokio runtime, and Tokio panics when a
    /// runtime is dropped on an async worker thread (as happens when a server's last handle
    /// on the store goes away inside its runtime). The connections are closed on a plain
    /// thread instead.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &self.display)
            .finish()
    }
}

/// `postgres://user:secret@host/db` → `postgres://user@host/db`: a URL fit for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    // A password may also come as a parameter.
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|kv| !kv.starts_with("password="))
                .collect();
            if kept.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// True when `database` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`, any parameter
    /// libpq-style URLs take, such as `options=-c search_path=...`) and brings its schema up
    /// to date.
    pub fn open(url: &str) -> Result<Self> {
        Self::open_with_pool(url, DEFAULT_POOL_SIZE)
    }

    /// As [`PostgresStore::open`], with at most `max_connections` connections.
    pub fn open_with_pool(url: &str, max_connections: u32) -> Result<Self> {
        let display = redact_url(url);
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("bad database URL {display}: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("custodian");
        }
        let pool = r2d2::Pool::builder()
            .max_size(max_connections.max(1))
            .min_idle(Some(1))
            // A broken connection is noticed when it fails (and then dropped): no extra
            // round trip on every checkout.
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(30))
            .error_handler(Box::new(LogErrors))
            .build_unchecked(Manager { config });
        let store = Self {
            display,
            pool: Some(pool),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The URL without its password.
    pub fn url(&self) -> &str {
        &self.display
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<Manager>> {
        self.pool
            .as_ref()
            .expect("the pool lives as long as the store")
            .get()
            .map_err(pool_err)
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.conn()?;
        migrate_upto(&mut conn.client, i64::MAX)
    }

    fn read<T>(&self, f: impl FnOnce(&mut Q<'_, Client>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn()?;
        let PgConn { client, stmts } = &mut *conn;
        f(&mut Q::new(client, stmts))
    }

    fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Q<'_, Transaction<'_>>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let mut conn = self.conn()?;
        let PgConn { client, stmts } = &mut *conn;
        let mut tx = client.transaction().map_err(map_err)?;
        // On an error the transaction is dropped, which rolls it back.
        let out = f(&mut Q::new(&mut tx, stmts))?;
        tx.commit().map_err(map_err)?;
        Ok(out)
    }
}

/// Creates the chain's head row if it has none (seq 0, the genesis hash: never committed
/// as such, since the transaction that creates it also appends) and locks it until the
/// transaction ends. Every node appending to `chain` queues here, in the database.
fn lock_chain(q: &mut Q<'_, Transaction<'_>>, chain: &str) -> Result<(u64, [u8; 32])> {
    q.exec(
        "INSERT INTO audit_heads (chain, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (chain) DO NOTHING",
        &[&chain, &&GENESIS[..]],
    )?;
    let row = q.one(
        "SELECT seq, hash FROM audit_heads WHERE chain = $1 FOR UPDATE",
        &[&chain],
    )?;
    let seq: i64 = get(&row, 0)?;
    let hash: Vec<u8> = get(&row, 1)?;
    Ok((seq as u64, to32(&hash, "audit_heads")?))
}

/// Appends `draft` to its chain inside the transaction: locks the head, links, inserts,
/// moves the head. `locked` is the head already locked by this transaction, if any.
pub(crate) fn append_in_tx(
    q: &mut Q<'_, Transaction<'_>>,
    draft: AuditDraft,
    at: OffsetDateTime,
    locked: Option<(&str, (u64, [u8; 32]))>,
) -> Result<AuditEntry> {
    let chain = draft.chain.as_string();
    let (prev_seq, prev_hash) = match locked {
        Some((c, head)) if c == chain => head,
        _ => lock_chain(q, &chain)?,
    };
    let unhashed = draft.seal(prev_seq + 1, at, prev_hash);
    let hash = custodian_crypto::hash::chain_link(&prev_hash, &unhashed.canonical_bytes());
    let entry = unhashed.with_hash(hash);
    insert_audit_row(q, &entry)?;
    subject_index::after_append(q, &chain, entry.seq)?;
    q.exec(
        "UPDATE audit_heads SET seq = $2, hash = $3 WHERE chain = $1",
        &[&chain, &(entry.seq as i64), &&entry.hash[..]],
    )?;
    Ok(entry)
}

fn insert_audit_row(q: &mut Q<'_, Transaction<'_>>, e: &AuditEntry) -> Result<()> {
    let d = &e.draft;
    let refused = match &d.outcome {
        Outcome::Allowed => None,
        Outcome::Refused { reason } => Some(reason.as_str()),
    };
    q.exec(
        &format!(
            "INSERT INTO audit_entries ({AUDIT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ),
        &[
            &d.chain.as_string(),
            &(e.seq as i64),
            &nanos(e.at),
            &d.actor,
            &d.action.as_string(),
            &d.purpose.as_ref().map(|p| p.as_str()),
            &d.subject.as_ref().map(|s| s.as_str()),
            &d.record.as_ref().map(|r| r.as_str()),
            &json(&d.fields),
            &refused,
            &d.request.as_ref().map(|r| r.as_str()),
            &&e.prev_hash[..],
            &&e.hash[..],
            &json(&d.subjects),
        ],
    )?;
    Ok(())
}

impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn insert_controller(
        &self,
        row: &ControllerRow,
        audit: AuditDraft,
        at: OffsetDateTime,
    ) -> Result<AuditEntry> {
        self.write(|q| {
            let c = &row.controller;
            q.exec(
                "INSERT INTO controllers (id, name, region, agreement_effective, governing_law, status, created_at, wrapped_key)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &c.id.as_str(),
                    &c.name.as_str(),
                    &c.region.as_str(),
                    &c.agreement_effective.to_string(),
                    &c.governing_law.as_str(),
                    &c.status.as_str(),
                    &nanos(c.created_at),
                    &row.wrapped_key,
                ],
            )?;
            append_in_tx(q, audit, at, None)
        })
    }

    fn controller(&self, id: &ControllerId) -> Result<Option<ControllerRow>> {
        self.read(|q| {
            q.maybe(
                &format!("SELECT {CONTROLLER_COLS} FROM controllers WHERE id = $1"),
                &[&id.as_str()],
                controller_row,
            )
        })
    }

    fn controllers(&self) -> Result<Vec<ControllerRow>> {
        self.read(|q| {
            q.all(
                &format!("SELECT {CONTROLLER_COLS} FROM controllers ORDER BY created_at, id"),
                &[],
                controller_row,
            )
        })
    }

    fn insert_token(
        &self,
        row: &TokenRow,
        audit: AuditDraft,
        at: OffsetDateTime,
    ) -> Result<AuditEntry> {
        self.write(|q| {
            q.exec(
                "INSERT INTO tokens (id, secret_hash, role, controller_id, purposes, operations, label, created_at, expires_at, revoked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL)",
                &[
                    &row.id.as_str(),
                    &&row.hash[..],
                    &row.role.as_str(),
                    &row.controller.as_ref().map(|c| c.as_str()),
                    &row.scope.purposes.as_ref().map(json),
                    &row.scope.operations.as_ref().map(json),
                    &row.label,
                    &nanos(row.created_at),
                    &row.expires_at.map(nanos),
                ],
            )?;
            append_in_tx(q, audit, at, None)
        })
    }

    fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<TokenRow>> {
        self.read(|q| {
            q.maybe(
                &format!("SELECT {TOKEN_COLS} FROM tokens WHERE secret_hash = $1"),
                &[&&hash[..]],
                token_row,
            )
        })
    }

    fn tokens(&self, controller: Option<&ControllerId>) -> Result<Vec<TokenRow>> {
        self.read(|q| {
            q.all(
                &format!(
                    "SELECT {TOKEN_COLS} FROM tokens WHERE controller_id IS NOT DISTINCT FROM $1 ORDER BY created_at, id"
                ),
                &[&controller.map(|c| c.as_str())],
                token_row,
            )
        })
    }

    fn revoke_token(
        &self,
        controller: Option<&ControllerId>,
        id: &TokenId,
        audit: AuditDraft,
        at: OffsetDateTime,
    ) -> Result<bool> {
        self.write(|q| {
            let n = q.exec(
                "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND controller_id IS NOT DISTINCT FROM $3 AND revoked_at IS NULL",
                &[&nanos(at), &id.as_str(), &controller.map(|c| c.as_str())],
            )?;
            if n == 0 {
                return Ok(false);
            }
            append_in_tx(q, audit, at, None)?;
            Ok(true)
        })
    }

    fn insert_account(
        &self,
        row: &AccountRow,
        audit: AuditDraft,
        at: OffsetDateTime,
    ) -> Result<AuditEntry> {
        self.write(|q| {
            q.exec(
                "INSERT INTO accounts (id, login_digest, login_sealed, password_hash, role, controller_id, created_at, disabled_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &row.id.as_str(),
                    &&row.login_digest[..],
                    &row.login_sealed,
                    &row.password_hash,
                    &row.role.as_str(),
                    &row.controller.as_ref().map(|c| c.as_str()),
                    &nanos(row.created_at),
                    &row.disabled_at.map(nanos),
                ],
            )?;
            append_in_tx(q, audit, at, None)
        })
    }

    fn account_by_login(&self, digest: &[u8; 32]) -> Result<Option<AccountRow>> {
        self.read(|q| {
            q.maybe(
                &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE login_digest = $1"),
                &[&&digest[..]],
                account_row,
            )
        })
    }

    fn disable_account(
        &self,
        controller: Option<&ControllerId>,
        id: &AccountId,
        audit: AuditDraft,
        at: OffsetDateTime,
    ) -> Result<bool> {
        self.write(|q| {
            let n = q.exec(
                "UPDATE accounts SET disabled_at = $1 WHERE id = $2 AND controller_id IS NOT DISTINCT FROM $3 AND disabled_at IS NULL",
                &[&nanos(at), &id.as_str(), &controller.map(|c| c.as_str())],
            )?;
            if n == 0 {
                return Ok(false);
            }
            append_in_tx(q, audit, at, None)?;
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
        self.write(|q| {
            q.exec(
                "INSERT INTO purposes (controller_id, name, description, lawful_basis, categories, operations, retention_days, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (controller_id, name) DO UPDATE SET description = excluded.description,
                   lawful_basis = excluded.lawful_basis, categories = excluded.categories,
                   operations = excluded.operations, retention_days = excluded.retention_days,
                   updated_at = excluded.updated_at",
                &[
                    &controller.as_str(),
                    &p.name.as_str(),
                    &p.description,
                    &p.lawful_basis.as_str(),
                    &json(&p.categories),
                    &json(&p.operations),
                    &i64::from(p.retention_days),
                    &nanos(at),
                ],
            )?;
            append_in_tx(q, audit, at, None)
        })
    }

    fn purposes(&self, controller: &ControllerId) -> Result<Vec<Purpose>> {
        self.read(|q| {
            q.all(
                &format!(
                    "SELECT {PURPOSE_COLS} FROM purposes WHERE controller_id = $1 ORDER BY name"
                ),
                &[&controller.as_str()],
                purpose_row,
            )
        })
    }

    fn transact(
        &self,
        controller: &ControllerId,
        at: OffsetDateTime,
        work: Work<'_>,
    ) -> Result<AuditEntry, TxError> {
        self.write(|q| {
            // Lock the controller's chain first: its units of work run one at a time across
            // every node, as they do under SQLite's single writer.
            let chain = ChainId::Controller(controller.clone()).as_string();
            let head = lock_chain(q, &chain)?;
            let (draft, appended) = {
                let mut scoped = data_tx::PgTx::new(q, controller, at);
                let draft = work(&mut scoped as &mut dyn DataTx)?;
                (draft, scoped.appended())
            };
            // The head read above is still current unless the work appended entries itself.
            let locked = (!appended).then_some((chain.as_str(), head));
            Ok(append_in_tx(q, draft, at, locked)?)
        })
    }

    fn consult(
        &self,
        controller: &ControllerId,
        at: OffsetDateTime,
        work: Work<'_>,
    ) -> Result<AuditEntry, TxError> {
        // The reading runs without the chain lock, on one read-only snapshot; only the
        // audit append queues on the chain, as a short transaction of its own.
        let draft = self.write(|q| {
            q.exec(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                &[],
            )?;
            let mut scoped = data_tx::PgTx::new(q, controller, at);
            work(&mut scoped as &mut dyn DataTx)
        })?;
        let mut entries = self.append_audit(vec![draft], at)?;
        Ok(entries.pop().expect("one draft, one entry"))
    }

    /// Nothing to do, by design. PostgreSQL keeps the old versions of deleted rows (dead
    /// tuples) until VACUUM (autovacuum, by default) reclaims their space for reuse, and its
    /// WAL keeps them until the segment is recycled; neither can be forced from here
    /// cheaply or completely (VACUUM cannot run inside a transaction, VACUUM FULL locks
    /// the table, and neither zeroes the WAL). The old row versions include the key rows:
    /// an erased subject's key wrapped under the live controller key, a destroyed
    /// controller's wrapped under the root key. With the files and the root key, erased
    /// data stays decryptable until its bytes are overwritten: erasure reaches the disk on
    /// SQLite only, as README.md and ARCHITECTURE.md say.
    fn purge_deleted(&self) {}

    fn expired_records(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<ExpiredRecord>> {
        self.read(|q| {
            q.all(
                // As SQLite: records of controllers that may be processed first, so that a
                // held controller's expired (kept, sealed) records never starve the others.
                "SELECT r.controller_id, r.id, r.subject_id, r.purpose, r.expires_at
                 FROM records r JOIN controllers c ON c.id = r.controller_id
                 WHERE r.expires_at <= $1
                 ORDER BY c.status <> 'active', r.expires_at LIMIT $2",
                &[&nanos(now), &i64::from(limit)],
                |r| {
                    let t = "records";
                    Ok(ExpiredRecord {
                        controller: ControllerId::parse(&get::<String>(r, 0)?)
                            .map_err(|e| corrupt(t, e))?,
                        record: RecordId::parse(&get::<String>(r, 1)?)
                            .map_err(|e| corrupt(t, e))?,
                        subject: SubjectId::parse(&get::<String>(r, 2)?)
                            .map_err(|e| corrupt(t, e))?,
                        purpose: PurposeName::parse(&get::<String>(r, 3)?)
                            .map_err(|e| corrupt(t, e))?,
                        expires_at: from_nanos(get(r, 4)?)?,
                    })
                },
            )
        })
    }

    fn expiry_schedule(&self, controller: Option<&ControllerId>) -> Result<Vec<ExpiryBucket>> {
        self.read(|q| {
            q.all(
                "SELECT controller_id, purpose, expires_at / 86400000000000 AS day, COUNT(*) FROM records
                 WHERE $1::text IS NULL OR controller_id = $1 GROUP BY 1, 2, 3 ORDER BY 3, 1, 2",
                &[&controller.map(|c| c.as_str())],
                |r| {
                    let t = "records";
                    let day: i64 = get(r, 2)?;
                    let n: i64 = get(r, 3)?;
                    Ok(ExpiryBucket {
                        controller: ControllerId::parse(&get::<String>(r, 0)?)
                            .map_err(|e| corrupt(t, e))?,
                        purpose: PurposeName::parse(&get::<String>(r, 1)?)
                            .map_err(|e| corrupt(t, e))?,
                        day: from_nanos(day * 86_400_000_000_000)?.date(),
                        records: n as u64,
                    })
                },
            )
        })
    }

    fn erasures(&self) -> Result<Vec<ErasureEntry>> {
        self.read(|q| {
            q.all(
                "SELECT controller_id, subject_id, erased_at FROM erasures ORDER BY erased_at, subject_id",
                &[],
                |r| {
                    let t = "erasures";
                    Ok(ErasureEntry {
                        controller: ControllerId::parse(&get::<String>(r, 0)?)
                            .map_err(|e| corrupt(t, e))?,
                        subject: SubjectId::parse(&get::<String>(r, 1)?)
                            .map_err(|e| corrupt(t, e))?,
                        erased_at: from_nanos(get(r, 2)?)?,
                    })
                },
            )
        })
    }

    fn destruction_certificate(&self, controller: &ControllerId) -> Result<Option<String>> {
        self.read(|q| {
            q.maybe(
                "SELECT certificate FROM destruction_certificates WHERE controller_id = $1",
                &[&controller.as_str()],
                |r| get(r, 0),
            )
        })
    }

    fn request_status(&self, id: &custodian_core::ids::DsrId) -> Result<Option<DsrStatus>> {
        self.read(|q| {
            q.maybe(
                &format!("SELECT controller_id, {DSR_COLS} FROM dsr_requests WHERE id = $1"),
                &[&id.as_str()],
                |r| {
                    let controller: String = get(r, 0)?;
                    // The request columns start at index 1.
                    let req = dsr_row_at(r, 1)?;
                    Ok(DsrStatus {
                        controller: ControllerId::parse(&controller)
                            .map_err(|e| corrupt("dsr_requests", e))?,
                        right: req.right,
                        state: req.state,
                        received_at: req.received_at,
                        due_at: req.due_at,
                    })
                },
            )
        })
    }

    fn outbox_due(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<OutboxRow>> {
        self.read(|q| {
            q.all(
                "SELECT id, controller_id, topic, payload, created_at, attempts, next_attempt_at, delivered_at
                 FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= $1 ORDER BY id LIMIT $2",
                &[&nanos(now), &i64::from(limit)],
                outbox_row,
            )
        })
    }

    fn append_audit(&self, drafts: Vec<AuditDraft>, at: OffsetDateTime) -> Result<Vec<AuditEntry>> {
        self.write(|q| {
            // Lock every chain involved in one order, so that two batches naming the same
            // chains in different orders cannot deadlock.
            let mut chains: Vec<String> = drafts.iter().map(|d| d.chain.as_string()).collect();
            chains.sort();
            chains.dedup();
            for c in &chains {
                lock_chain(q, c)?;
            }
            drafts
                .into_iter()
                .map(|d| append_in_tx(q, d, at, None))
                .collect()
        })
    }

    fn audit_page(&self, chain: &ChainId, after_seq: u64, limit: u32) -> Result<Vec<AuditEntry>> {
        self.read(|q| {
            q.all(
                &format!(
                    "SELECT {AUDIT_COLS} FROM audit_entries WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3"
                ),
                &[&chain.as_string(), &(after_seq as i64), &i64::from(limit)],
                audit_row,
            )
        })
    }

    fn scan_audit_raw(
        &self,
        chain: &ChainId,
        after: u64,
        until: Option<u64>,
        visit: &mut dyn FnMut(&crate::RawEntry<'_>) -> Result<()>,
    ) -> Result<()> {
        // Paged by sequence number, as `scan_audit_range`.
        let name = chain.as_string();
        let sql = format!(
            "SELECT {AUDIT_COLS} FROM audit_entries WHERE chain = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4"
        );
        let until = until.map_or(i64::MAX, |u| u.min(i64::MAX as u64) as i64);
        let mut after = after.min(i64::MAX as u64) as i64;
        let mut buf = Vec::with_capacity(1024);
        loop {
            let rows = self.read(|q| q.rows(&sql, &[&name, &after, &until, &SCAN_PAGE]))?;
            let n = rows.len();
            for r in &rows {
                after = get(r, 1)?;
                crate::sqlite::codec::RawColumns {
                    chain: get(r, 0)?,
                    seq: after,
                    at: get(r, 2)?,
                    actor: get(r, 3)?,
                    action: get(r, 4)?,
                    purpose: get(r, 5)?,
                    subject: get(r, 6)?,
                    record: get(r, 7)?,
                    fields: get(r, 8)?,
                    refused: get(r, 9)?,
                    request: get(r, 10)?,
                    prev_hash: get(r, 11)?,
                    hash: get(r, 12)?,
                    subjects: get(r, 13)?,
                }
                .visit(&mut buf, visit)?;
            }
            if (n as i64) < SCAN_PAGE {
                return Ok(());
            }
        }
    }

    fn audit_of_subject(
        &self,
        chain: &ChainId,
        subject: &SubjectId,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let chain = chain.as_string();
        self.read(|q| {
            let seqs = subject_index::seqs_of(q, &chain, subject.as_str(), after_seq)?;
            let page: Vec<i64> = seqs
                .into_iter()
                .take(limit as usize)
                .map(|s| s as i64)
                .collect();
            if page.is_empty() {
                return Ok(Vec::new());
            }
            // The page's entries in one statement, each a point lookup on the primary key.
            q.all(
                &format!(
                    "SELECT {AUDIT_COLS} FROM audit_entries WHERE chain = $1 AND seq = ANY($2::bigint[])
                     ORDER BY seq"
                ),
                &[&chain, &page],
                audit_row,
            )
        })
    }

    fn scan_audit_range(
        &self,
        chain: &ChainId,
        after: u64,
        until: Option<u64>,
        visit: &mut dyn FnMut(AuditEntry) -> Result<()>,
    ) -> Result<()> {
        // Page by sequence number: entries commit in sequence order (the chain lock is held
        // until commit), so paging never skips one.
        let name = chain.as_string();
        let sql = format!(
            "SELECT {AUDIT_COLS} FROM audit_entries WHERE chain = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4"
        );
        let until = until.map_or(i64::MAX, |u| u.min(i64::MAX as u64) as i64);
        let mut after: i64 = if after == 0 {
            -1
        } else {
            after.min(i64::MAX as u64) as i64
        };
        loop {
            let rows = self.read(|q| q.rows(&sql, &[&name, &after, &until, &SCAN_PAGE]))?;
            let n = rows.len();
            for r in &rows {
                after = get(r, 1)?;
                visit(audit_row(r)?)?;
            }
            if (n as i64) < SCAN_PAGE {
                return Ok(());
            }
        }
    }

    fn check_schema(&self) -> Result<()> {
        schema_is_known(&mut self.conn()?.client)
    }

    fn audit_chains(&self) -> Result<Vec<ChainId>> {
        self.read(|q| {
            q.all(crate::AUDIT_CHAINS_SQL, &[], |r| {
                let s: String = get(r, 0)?;
                ChainId::parse(&s).ok_or(StoreError::Corrupt {
                    table: "audit_entries",
                    reason: "unknown chain id".into(),
                })
            })
        })
    }

    fn audit_head(&self, chain: &ChainId) -> Result<Option<(u64, [u8; 32])>> {
        self.read(|q| {
            q.maybe(
                "SELECT seq, hash FROM audit_heads WHERE chain = $1",
                &[&chain.as_string()],
                |r| {
                    let seq: i64 = get(r, 0)?;
                    let hash: Vec<u8> = get(r, 1)?;
                    Ok((seq as u64, to32(&hash, "audit_heads")?))
                },
            )
        })
    }

    fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<()> {
        self.write(|q| {
            q.exec(
                "INSERT INTO checkpoints (chain, seq, hash, signed_at, signature) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT DO NOTHING",
                &[
                    &cp.chain.as_string(),
                    &(cp.seq as i64),
                    &&cp.hash[..],
                    &nanos(cp.signed_at),
                    &&cp.signature[..],
                ],
            )?;
            Ok(())
        })
    }

    fn checkpoints(&self, chain: &ChainId) -> Result<Vec<Checkpoint>> {
        self.read(|q| {
            q.all(
                "SELECT chain, seq, hash, signed_at, signature FROM checkpoints WHERE chain = $1 ORDER BY seq",
                &[&chain.as_string()],
                checkpoint_row,
            )
        })
    }

    fn last_checkpoint(&self, chain: &ChainId) -> Result<Option<Checkpoint>> {
        self.read(|q| {
            q.opt(
                "SELECT chain, seq, hash, signed_at, signature FROM checkpoints WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
                &[&chain.as_string()],
            )?
            .map(|r| checkpoint_row(&r))
            .transpose()
        })
    }
}
