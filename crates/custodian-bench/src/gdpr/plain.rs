//! Baseline (a): the same engine without Custodian's protections. SQLite with the same
//! durability (WAL, synchronous=FULL), one table holding the ten fields in clear, B-tree
//! indexes on PUR and USR (and on the expiry, for the sweeper), and one plain audit row
//! inserted in the same transaction for every operation, reads included. One writer
//! connection, as Custodian's store has: every operation is a write transaction.

use super::keys::{MetaField, Values};
use super::target::{Loaded, Res, Target};
use rusqlite::{Connection, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

pub struct PlainTarget {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// How far this target's clock is behind the system's, in nanoseconds.
    behind_ns: i64,
}

fn e(x: rusqlite::Error) -> String {
    x.to_string()
}

fn now_ns() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64
}

pub(crate) fn key(k: u64) -> String {
    format!("key{k}")
}

/// The columns of a row, all read, as a client would.
fn row_width(r: &rusqlite::Row<'_>) -> rusqlite::Result<usize> {
    let mut n = 0;
    for i in 0..10 {
        let v: rusqlite::types::Value = r.get(i)?;
        if !matches!(v, rusqlite::types::Value::Null) {
            n += 1;
        }
    }
    Ok(n)
}

const COLS: &str = "pur, ttl, usr, obj, dec, acl, shr, src, cat, data";

/// The connection's settings, on a new database and on a copy alike.
fn connect(path: &Path) -> Res<Connection> {
    let conn = Connection::open(path).map_err(e)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA cache_size = -65536;",
    )
    .map_err(e)?;
    Ok(conn)
}

/// A loaded database file, checkpointed: each run works on a copy of it.
struct PlainLoaded {
    path: PathBuf,
}

impl Loaded for PlainLoaded {
    fn copy(&self, dir: &Path, _tag: &str, loaded_at: Instant) -> Res<Box<dyn Target>> {
        let path = dir.join("plain.db");
        std::fs::create_dir_all(dir).map_err(|x| x.to_string())?;
        std::fs::copy(&self.path, &path).map_err(|x| x.to_string())?;
        Ok(Box::new(PlainTarget {
            conn: Mutex::new(connect(&path)?),
            path,
            behind_ns: loaded_at.elapsed().as_nanos() as i64,
        }))
    }
}

impl PlainTarget {
    pub fn open(dir: &Path) -> Res<Self> {
        let path = dir.join("plain.db");
        let conn = connect(&path)?;
        conn.execute_batch(
            "CREATE TABLE usertable (
                 key TEXT PRIMARY KEY, pur TEXT NOT NULL, ttl INTEGER NOT NULL, usr TEXT NOT NULL,
                 obj TEXT, dec TEXT, acl TEXT, shr TEXT, src TEXT, cat TEXT, data TEXT,
                 expires_at INTEGER NOT NULL);
             CREATE INDEX usertable_pur ON usertable(pur);
             CREATE INDEX usertable_usr ON usertable(usr);
             CREATE INDEX usertable_expiry ON usertable(expires_at);
             CREATE TABLE audit (
                 id INTEGER PRIMARY KEY, at INTEGER NOT NULL, op TEXT NOT NULL,
                 target TEXT NOT NULL, rows INTEGER NOT NULL);",
        )
        .map_err(e)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path,
            behind_ns: 0,
        })
    }

    fn now(&self) -> i64 {
        now_ns() - self.behind_ns
    }

    /// One durable transaction: the statement(s), then the audit row.
    fn tx<T>(
        &self,
        op: &str,
        target: &str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<(T, usize)>,
    ) -> Res<T> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let (out, rows) = f(&tx).map_err(e)?;
        tx.prepare_cached("INSERT INTO audit (at, op, target, rows) VALUES (?1, ?2, ?3, ?4)")
            .map_err(e)?
            .execute(params![self.now(), op, target, rows as i64])
            .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(out)
    }

    fn select(&self, op: &str, col: &str, val: &str) -> Res<usize> {
        self.tx(op, val, |tx| {
            let mut st =
                tx.prepare_cached(&format!("SELECT {COLS} FROM usertable WHERE {col} = ?1"))?;
            let n = st
                .query_map([val], row_width)?
                .collect::<rusqlite::Result<Vec<_>>>()?
                .len();
            Ok((n, n))
        })
    }

    fn update_meta(
        &self,
        op: &str,
        col: &str,
        val: &str,
        v: &Values,
        field: MetaField,
    ) -> Res<usize> {
        let set = match field {
            MetaField::Ttl => "ttl = ?2, expires_at = ?3".to_owned(),
            f => format!("{} = ?2", f.column()),
        };
        let sql = format!("UPDATE usertable SET {set} WHERE {col} = ?1");
        self.tx(op, val, |tx| {
            let mut st = tx.prepare_cached(&sql)?;
            let n = match field {
                MetaField::Ttl => st.execute(params![
                    val,
                    v.ttl as i64,
                    self.now() + v.ttl as i64 * 1_000_000_000
                ])?,
                f => st.execute(params![val, f.text(v)])?,
            };
            Ok((n, n))
        })
    }

    fn delete_where(&self, op: &str, col: &str, val: &str) -> Res<usize> {
        self.tx(op, val, |tx| {
            let n = tx
                .prepare_cached(&format!("DELETE FROM usertable WHERE {col} = ?1"))?
                .execute([val])?;
            Ok((n, n))
        })
    }
}

impl Target for PlainTarget {
    fn name(&self) -> &'static str {
        "plain-sqlite"
    }

    fn describe(&self) -> String {
        "plain-sqlite: one table, ten fields in clear, B-tree indexes on PUR and USR, an audit row per \
         operation in the same transaction; WAL, synchronous=FULL"
            .into()
    }

    fn insert(&self, k: u64, v: &Values) -> Res<()> {
        let key = key(k);
        self.tx("insert", &key, |tx| {
            tx.prepare_cached(&format!(
                "INSERT INTO usertable (key, {COLS}, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))?
            .execute(params![
                key,
                v.purpose(),
                v.ttl as i64,
                v.user(),
                v.obj,
                v.dec,
                v.acl,
                v.shr,
                v.src,
                v.category(),
                v.data,
                self.now() + v.ttl as i64 * 1_000_000_000
            ])?;
            Ok(((), 1))
        })
    }

    fn read(&self, k: u64) -> Res<usize> {
        self.select("read", "key", &key(k))
            .map(|n| if n > 0 { 10 } else { 0 })
    }

    fn read_meta_purpose(&self, v: &Values) -> Res<usize> {
        self.select("read-meta-purpose", "pur", &v.purpose())
    }

    fn read_meta_user(&self, v: &Values) -> Res<usize> {
        self.select("read-meta-user", "usr", &v.user())
    }

    fn update(&self, k: u64, v: &Values) -> Res<bool> {
        let key = key(k);
        self.tx("update", &key, |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE usertable SET data = ?2, obj = ?3, acl = ?4, cat = ?5 WHERE key = ?1",
                )?
                .execute(params![key, v.data, v.obj, v.acl, v.category()])?;
            Ok((n > 0, n))
        })
    }

    fn update_meta_purpose(&self, v: &Values, field: MetaField) -> Res<usize> {
        self.update_meta("update-meta-purpose", "pur", &v.purpose(), v, field)
    }

    fn update_meta_user(&self, v: &Values, field: MetaField) -> Res<usize> {
        self.update_meta("update-meta-user", "usr", &v.user(), v, field)
    }

    fn delete(&self, k: u64) -> Res<bool> {
        self.delete_where("delete", "key", &key(k)).map(|n| n > 0)
    }

    fn delete_meta_purpose(&self, v: &Values) -> Res<usize> {
        self.delete_where("delete-meta-purpose", "pur", &v.purpose())
    }

    fn delete_meta_user(&self, v: &Values) -> Res<usize> {
        self.delete_where("delete-meta-user", "usr", &v.user())
    }

    fn count(&self) -> Res<u64> {
        let c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        c.query_row("SELECT COUNT(*) FROM usertable", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(e)
    }

    fn read_log(&self, l: u32) -> Res<usize> {
        let c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = c
            .prepare_cached("SELECT id, at, op, target, rows FROM audit ORDER BY id DESC LIMIT ?1")
            .map_err(e)?;
        let rows = st
            .query_map([l], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(e)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(e)?;
        Ok(rows.len())
    }

    fn sweep(&self) -> Res<u64> {
        self.tx("ttl-sweep", "expired", |tx| {
            let n = tx
                .prepare_cached("DELETE FROM usertable WHERE expires_at <= ?1")?
                .execute([self.now()])?;
            Ok((n as u64, n))
        })
    }

    fn freeze(&self) -> Res<Box<dyn Loaded>> {
        let c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let busy: i64 = c
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(e)?;
        if busy != 0 {
            return Err("plain-sqlite: the WAL checkpoint could not complete".into());
        }
        Ok(Box::new(PlainLoaded {
            path: self.path.clone(),
        }))
    }
}
