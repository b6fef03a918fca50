//! Baseline (b): PostgreSQL configured for GDPR as the paper did, made fair: one table with
//! a key column and the ten fields, B-tree indexes on purpose and user (and on the expiry,
//! for the sweeper), an audit table written by a row trigger in the same transaction for
//! every write, an audit insert in the same statement for every read, a TTL sweeper, and
//! `synchronous_commit = on`. Works in a database of its own, dropped afterwards (the load's
//! is the template each run's copy is made from). One connection per client thread (and one
//! for the sweeper).

use super::keys::{MetaField, Values};
use super::plain::key;
use super::target::{Loaded, Res, Target};
use postgres::{Client, Config, NoTls, Statement};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub struct PgTarget {
    /// The server, as given (its own database is where databases are created and dropped).
    server: String,
    /// This target's database.
    db: String,
    config: Config,
    pool: Mutex<Vec<Conn>>,
    settings: String,
    /// "now" on this target's clock, in SQL (behind the server's for a run on a copy).
    now: String,
    /// Set once the database is the template of the runs' copies: it outlives the target.
    keep: AtomicBool,
}

/// A connection and its prepared statements (as the store's PostgreSQL backend keeps them).
struct Conn {
    c: Client,
    cache: HashMap<String, Statement>,
}

impl Conn {
    fn prepare_cached(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(st) = self.cache.get(sql) {
            return Ok(st.clone());
        }
        let st = self.c.prepare(sql)?;
        self.cache.insert(sql.to_owned(), st.clone());
        Ok(st)
    }
}

fn e(x: postgres::Error) -> String {
    match x.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => x.to_string(),
    }
}

const COLS: &str = "pur, ttl, usr, obj, dec, acl, shr, src, cat, data";

fn connect_server(server: &str) -> Res<Client> {
    Client::connect(server, NoTls).map_err(|x| format!("cannot connect to PostgreSQL: {x}"))
}

/// Drops a database, closing whatever is still connected to it.
fn drop_database(server: &str, db: &str) {
    if let Ok(mut c) = connect_server(server) {
        let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    }
}

/// A loaded database: each run works on a copy made with `CREATE DATABASE ... TEMPLATE`.
struct PgLoaded {
    server: String,
    db: String,
}

impl Drop for PgLoaded {
    fn drop(&mut self) {
        drop_database(&self.server, &self.db);
    }
}

impl Loaded for PgLoaded {
    fn copy(&self, _dir: &Path, tag: &str, loaded_at: Instant) -> Res<Box<dyn Target>> {
        let db = format!("gdprbench_{}_run{tag}", std::process::id());
        let mut admin = connect_server(&self.server)?;
        // The template's last connections may still be closing.
        let mut tries = 0;
        loop {
            match admin.batch_execute(&format!("CREATE DATABASE {db} TEMPLATE {}", self.db)) {
                Ok(()) => break,
                Err(x)
                    if tries < 100
                        && x.code() == Some(&postgres::error::SqlState::OBJECT_IN_USE) =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(x) => {
                    return Err(format!(
                        "cannot copy the loaded database (CREATE DATABASE ... TEMPLATE needs the CREATEDB privilege): {}",
                        e(x)
                    ));
                }
            }
        }
        Ok(Box::new(PgTarget::attach(
            &self.server,
            &db,
            loaded_at.elapsed(),
        )?))
    }
}

impl PgTarget {
    /// A new database on `server` with the baseline's tables.
    pub fn open(server: &str, tag: &str) -> Res<Self> {
        let db = format!(
            "gdprbench_{}_{tag}_{}",
            std::process::id(),
            time::OffsetDateTime::now_utc().unix_timestamp_nanos() % 1_000_000_000
        );
        connect_server(server)?
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .map_err(|x| {
                format!(
                    "cannot create a database for the baseline (needs the CREATEDB privilege): {}",
                    e(x)
                )
            })?;
        let t = Self::attach(server, &db, Duration::ZERO)?;
        t.with(|c| {
            c.c.batch_execute(
                "CREATE TABLE usertable (
                     key TEXT PRIMARY KEY, pur TEXT NOT NULL, ttl INTEGER NOT NULL, usr TEXT NOT NULL,
                     obj TEXT, dec TEXT, acl TEXT, shr TEXT, src TEXT, cat TEXT, data TEXT,
                     expires_at TIMESTAMPTZ NOT NULL);
                 CREATE INDEX usertable_pur ON usertable(pur);
                 CREATE INDEX usertable_usr ON usertable(usr);
                 CREATE INDEX usertable_expiry ON usertable(expires_at);
                 CREATE TABLE audit_log (
                     id BIGSERIAL PRIMARY KEY,
                     at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
                     who TEXT NOT NULL DEFAULT current_user,
                     op TEXT NOT NULL,
                     key TEXT,
                     detail TEXT);
                 CREATE FUNCTION audit_write() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                     INSERT INTO audit_log (op, key, detail)
                     VALUES (TG_OP, COALESCE(NEW.key, OLD.key), TG_TABLE_NAME);
                     RETURN NULL;
                 END $$;
                 CREATE TRIGGER usertable_audit AFTER INSERT OR UPDATE OR DELETE ON usertable
                     FOR EACH ROW EXECUTE FUNCTION audit_write();",
            )
        })?;
        Ok(t)
    }

    /// A target on the existing database `db`, its clock `behind` the server's.
    fn attach(server: &str, db: &str, behind: Duration) -> Res<Self> {
        let mut config: Config = server
            .parse()
            .map_err(|x| format!("not a PostgreSQL URL: {x}"))?;
        config.dbname(db);
        let mut admin = connect_server(server)?;
        let show = |c: &mut Client, n: &str| {
            c.query_one(&format!("SHOW {n}"), &[])
                .map(|r| r.get::<_, String>(0))
                .unwrap_or_else(|_| "?".into())
        };
        let settings = format!(
            "PostgreSQL {}: fsync={} synchronous_commit={} full_page_writes={}",
            show(&mut admin, "server_version"),
            show(&mut admin, "fsync"),
            show(&mut admin, "synchronous_commit"),
            show(&mut admin, "full_page_writes")
        );
        let now = if behind.is_zero() {
            "now()".to_owned()
        } else {
            format!("(now() - interval '{} microseconds')", behind.as_micros())
        };
        Ok(Self {
            server: server.to_owned(),
            db: db.to_owned(),
            config,
            pool: Mutex::new(Vec::new()),
            settings,
            now,
            keep: AtomicBool::new(false),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T, postgres::Error>) -> Res<T> {
        let popped = self.pool.lock().expect("pool").pop();
        let mut c = match popped {
            Some(c) => c,
            None => Conn {
                c: self.config.connect(NoTls).map_err(e)?,
                cache: HashMap::new(),
            },
        };
        let out = f(&mut c).map_err(e);
        self.pool.lock().expect("pool").push(c);
        out
    }

    /// A read and its audit row, in one statement (one transaction, one round trip).
    fn select(&self, op: &str, col: &str, val: &str) -> Res<usize> {
        let sql = format!(
            "WITH a AS (INSERT INTO audit_log (op, key, detail) VALUES ($2, $1, 'read'))
             SELECT {COLS} FROM usertable WHERE {col} = $1"
        );
        self.with(|c| {
            let st = c.prepare_cached(&sql)?;
            let rows = c.c.query(&st, &[&val, &op])?;
            let mut n = 0;
            for r in &rows {
                for i in 0..10 {
                    if i == 1 {
                        let _: i32 = r.try_get(i)?;
                    } else {
                        let _: Option<&str> = r.try_get(i)?;
                    }
                }
                n += 1;
            }
            Ok(n)
        })
    }

    /// One statement (its audit rows written by the trigger in the same transaction).
    /// Concurrent multi-row updates can deadlock; PostgreSQL aborts one of them, and the
    /// application retries it, as any application on this setup would.
    fn exec(&self, sql: &str, p: &[&(dyn postgres::types::ToSql + Sync)]) -> Res<u64> {
        let mut tries = 0;
        loop {
            let r = self.with(|c| {
                let st = c.prepare_cached(sql)?;
                c.c.execute(&st, p)
            });
            match r {
                Err(e) if tries < 20 && (e.starts_with("40P01") || e.starts_with("40001")) => {
                    tries += 1
                }
                r => return r,
            }
        }
    }

    fn update_meta(&self, col: &str, val: &str, v: &Values, field: MetaField) -> Res<usize> {
        let n = match field {
            MetaField::Ttl => self.exec(
                &format!(
                    "UPDATE usertable SET ttl = $2, expires_at = {} + $2::integer * interval '1 second' WHERE {col} = $1",
                    self.now
                ),
                &[&val, &(v.ttl as i32)],
            )?,
            f => self.exec(
                &format!("UPDATE usertable SET {} = $2 WHERE {col} = $1", f.column()),
                &[&val, &f.text(v)],
            )?,
        };
        Ok(n as usize)
    }

    fn delete_where(&self, col: &str, val: &str) -> Res<usize> {
        self.exec(&format!("DELETE FROM usertable WHERE {col} = $1"), &[&val])
            .map(|n| n as usize)
    }
}

impl Drop for PgTarget {
    fn drop(&mut self) {
        self.pool.lock().expect("pool").clear();
        if !self.keep.load(Ordering::Acquire) {
            drop_database(&self.server, &self.db);
        }
    }
}

impl Target for PgTarget {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn works_in_this_process(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!(
            "postgres: one table, B-tree indexes on PUR and USR, audit row per written row (trigger) and per read \
             (same statement), TTL sweeper; {}",
            self.settings
        )
    }

    fn insert(&self, k: u64, v: &Values) -> Res<()> {
        self.exec(
            &format!(
                "INSERT INTO usertable (key, {COLS}, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, {} + $3::integer * interval '1 second')",
                self.now
            ),
            &[
                &key(k),
                &v.purpose(),
                &(v.ttl as i32),
                &v.user(),
                &v.obj,
                &v.dec,
                &v.acl,
                &v.shr,
                &v.src,
                &v.category(),
                &v.data,
            ],
        )
        .map(|_| ())
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
        self.exec(
            "UPDATE usertable SET data = $2, obj = $3, acl = $4, cat = $5 WHERE key = $1",
            &[&key(k), &v.data, &v.obj, &v.acl, &v.category()],
        )
        .map(|n| n > 0)
    }

    fn update_meta_purpose(&self, v: &Values, field: MetaField) -> Res<usize> {
        self.update_meta("pur", &v.purpose(), v, field)
    }

    fn update_meta_user(&self, v: &Values, field: MetaField) -> Res<usize> {
        self.update_meta("usr", &v.user(), v, field)
    }

    fn delete(&self, k: u64) -> Res<bool> {
        self.delete_where("key", &key(k)).map(|n| n > 0)
    }

    fn delete_meta_purpose(&self, v: &Values) -> Res<usize> {
        self.delete_where("pur", &v.purpose())
    }

    fn delete_meta_user(&self, v: &Values) -> Res<usize> {
        self.delete_where("usr", &v.user())
    }

    fn count(&self) -> Res<u64> {
        self.with(|c| c.c.query_one("SELECT COUNT(*) FROM usertable", &[]))
            .map(|r| r.get::<_, i64>(0) as u64)
    }

    fn read_log(&self, l: u32) -> Res<usize> {
        self.with(|c| {
            c.c.query(
                "SELECT id, at, who, op, key, detail FROM audit_log ORDER BY id DESC LIMIT $1",
                &[&i64::from(l)],
            )
        })
        .map(|r| r.len())
    }

    fn sweep(&self) -> Res<u64> {
        self.exec(
            &format!("DELETE FROM usertable WHERE expires_at <= {}", self.now),
            &[],
        )
    }

    fn freeze(&self) -> Res<Box<dyn Loaded>> {
        // Its connections closed, the database can serve as a template.
        self.pool.lock().expect("pool").clear();
        self.keep.store(true, Ordering::Release);
        Ok(Box::new(PgLoaded {
            server: self.server.clone(),
            db: self.db.clone(),
        }))
    }
}
