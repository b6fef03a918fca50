//! The ceiling for durable writes on this disk: plain SQLite inserts (WAL,
//! synchronous=FULL), `rows_per_commit` rows per transaction, for a fixed time. The HTTP
//! load script prints Custodian's durable write endpoint against this rate.

use rusqlite::{Connection, params};
use std::time::{Duration, Instant};

pub fn run(rows_per_commit: usize, seconds: f64) {
    let dir = tempfile::tempdir_in(".").expect("tempdir on the working directory's disk");
    let conn = Connection::open(dir.path().join("raw.db")).expect("open");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         CREATE TABLE t (id INTEGER PRIMARY KEY, subject TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL);",
    )
    .expect("schema");
    let limit = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut rows = 0u64;
    let mut commits = 0u64;
    while start.elapsed() < limit {
        let tx = conn.unchecked_transaction().expect("begin");
        {
            let mut st = tx
                .prepare_cached("INSERT INTO t (subject, name, value) VALUES (?1, ?2, ?3)")
                .expect("prepare");
            for _ in 0..rows_per_commit {
                st.execute(params![
                    format!("sub_{rows:016x}"),
                    "note",
                    "a durable row of about the size of a small record, 100 bytes or so of text in clear"
                ])
                .expect("insert");
                rows += 1;
            }
        }
        tx.commit().expect("commit");
        commits += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "raw-sqlite: {rows_per_commit} rows per commit, {commits} commits in {secs:.1} s: {:.0} rows/s ({:.0} commits/s)",
        rows as f64 / secs,
        commits as f64 / secs
    );
}
