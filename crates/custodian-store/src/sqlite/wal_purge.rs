//! How an erasure's pages leave the write-ahead log.
//!
//! When an erasure commits, older WAL frames still hold the pages as they were before it.
//! Truncating the WAL drops them, but then the file grows again from nothing, and a commit
//! that grows it syncs its new size as well as its frames (on ext4, a journal commit per
//! `fdatasync`): writes after each erasure cost more. Measured on the GDPRbench customer
//! workload (N = 30,000, one thread), an update took 414-498 µs at p50 after truncations
//! and 302-324 µs with the WAL kept at its length.
//!
//! So the WAL is checkpointed in RESTART mode (every frame is copied into the main file
//! and no reader uses the WAL any more, so the next writer starts over at its beginning)
//! and then every frame it held is overwritten with zeros, in place, and synced.
//!
//! Zeros cost their bytes, though: a delete right after a bulk change of 4,000 records
//! (GDPRbench controller, N = 100,000) took 5.9-6.7 ms at p50 zeroing against 2.1-2.5 ms
//! truncating, while the workload's throughput was the same either way. Past 8 MiB of
//! frames the purge truncates, so that none holds the writer longer than that takes.
//!
//! That reaches every frame only if none lies past the last committed one, and three
//! things leave some there: a transaction that spilled pages into the WAL and then rolled
//! back; SQLite's own checkpoints, after which the next writer starts the WAL over (a new
//! generation, numbered in the file's header) and may write fewer frames than the
//! generation before; and a crash. So the rest of the file is read too, and whatever is
//! not zero is zeroed, unless the last purge zeroed everything and since then there was no
//! rollback and at most the one generation that purge began.
//!
//! The zeros are written behind SQLite's back, so under its write lock: another process
//! on the same file (the CLI beside a running server) could otherwise start the WAL over
//! between the checkpoint and the zeros, and lose its commit to them. After the checkpoint
//! the purge takes the lock (`BEGIN IMMEDIATE`, writing nothing), and if another connection
//! committed since the purge began (`PRAGMA data_version` moved) it writes no zeros and
//! fails, so that the next purge starts over.

use super::checkpointer::{Mode, checkpoint};
use super::codec::map_err;
use crate::{Result, StoreError};
use rusqlite::Connection;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The WAL file's header: magic number, format, page size, checkpoint sequence number (the
/// generation, at byte 12, big-endian), salts and checksums.
const WAL_HEADER: u64 = 32;
/// Each frame's header before its page: page number, database size, salts, checksums.
const FRAME_HEADER: u64 = 24;
/// Zeros are written, and the tail is read, this much at a time.
const CHUNK: usize = 64 * 1024;
/// The most a purge overwrites; past it, it truncates.
const MOST_ZEROS: u64 = 8 << 20;

pub(crate) struct WalPurge {
    wal: PathBuf,
    /// Set by every whole-transaction rollback on the writer.
    rolled_back: Arc<AtomicBool>,
    /// The generation the last purge zeroed, when it left nothing but zeros past the WAL's
    /// header; `None` (at first, and after a failure): look at the whole file.
    zeroed: Mutex<Option<u32>>,
}

/// What one purge did, for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Purged {
    /// Bytes of committed frames overwritten.
    pub frames: u64,
    /// Bytes past them that were read because they could hold older frames.
    pub tail_read: u64,
    /// Whether the WAL was truncated instead.
    pub truncated: bool,
}

impl Purged {
    const NOTHING: Self = Self {
        frames: 0,
        tail_read: 0,
        truncated: false,
    };
}

impl WalPurge {
    /// Watches `writer` (the only connection that writes) for rollbacks.
    pub(crate) fn new(db: &Path, writer: &Connection) -> Self {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let rolled_back = Arc::new(AtomicBool::new(false));
        let flag = rolled_back.clone();
        // Called for whole-transaction rollbacks, explicit or forced by an error; not for
        // ROLLBACK TO, whose spilled frames are inside the transaction that then commits.
        writer.rollback_hook(Some(move || flag.store(true, Ordering::SeqCst)));
        Self {
            wal: PathBuf::from(wal),
            rolled_back,
            zeroed: Mutex::new(None),
        }
    }

    /// Runs on the writer connection while no write is in progress.
    pub(crate) fn run(&self, conn: &Connection) -> Result<Purged> {
        self.run_with(conn, || {})
    }

    /// [`Self::run`], calling `between` right after the checkpoint (tests: another writer).
    fn run_with(&self, conn: &Connection, between: impl FnOnce()) -> Result<Purged> {
        let mut zeroed = self.zeroed.lock().unwrap_or_else(|p| p.into_inner());
        let rolled_back = self.rolled_back.swap(false, Ordering::SeqCst);
        let known = zeroed.take().filter(|_| !rolled_back);
        // On failure `zeroed` stays `None`: a frame may be left anywhere.
        let (purged, generation) = self.purge(conn, known, between)?;
        *zeroed = generation;
        Ok(purged)
    }

    fn purge(
        &self,
        conn: &Connection,
        zeroed: Option<u32>,
        between: impl FnOnce(),
    ) -> Result<(Purged, Option<u32>)> {
        let version = data_version(conn)?;
        let restarted = checkpoint(conn, Mode::Restart)?;
        if !restarted.complete() {
            return Err(busy_reader());
        }
        let log = restarted.log;
        between();
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(map_err)?;
        let frames = u64::try_from(log).unwrap_or(0)
            * (u64::try_from(page_size).unwrap_or(0) + FRAME_HEADER);
        if frames > MOST_ZEROS {
            // Every frame is in the main file already: this empties the WAL, under SQLite's
            // own locks. The generation after the file's is the next one.
            let generation = self.generation_now()?;
            if checkpoint(conn, Mode::Truncate)?.busy {
                return Err(busy_reader());
            }
            let purged = Purged {
                truncated: true,
                ..Purged::NOTHING
            };
            return Ok((purged, generation));
        }
        super::group::control(conn, "BEGIN IMMEDIATE").map_err(map_err)?;
        let outcome = match data_version(conn) {
            Ok(now) if now == version => self.overwrite(zeroed, frames),
            Ok(_) => Err(StoreError::Unavailable(
                "another connection wrote to the database during the WAL purge".into(),
            )),
            Err(e) => Err(e),
        };
        // The transaction wrote nothing, and its commit writes nothing either; the writer
        // must be left outside any transaction whatever happens.
        if let Err(e) = super::group::control(conn, "COMMIT") {
            if !conn.is_autocommit() {
                let _ = super::group::control(conn, "ROLLBACK");
            }
            return Err(map_err(e));
        }
        outcome
    }

    /// The generation in the WAL file's header, if there is one.
    fn generation_now(&self) -> Result<Option<u32>> {
        match File::open(&self.wal) {
            Ok(mut f) => {
                let len = f.metadata().map_err(io)?.len();
                generation(&mut f, len)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    /// Zeroes the first `frames` bytes of frames and, unless only the generation after
    /// `zeroed` can have written to the file, whatever is not zero past them.
    fn overwrite(&self, zeroed: Option<u32>, frames: u64) -> Result<(Purged, Option<u32>)> {
        let mut file = match OpenOptions::new().read(true).write(true).open(&self.wal) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok((Purged::NOTHING, None)),
            Err(e) => return Err(io(e)),
        };
        let len = file.metadata().map_err(io)?.len();
        let Some(generation) = generation(&mut file, len)? else {
            // No header, so no frame: nothing to overwrite, and the next generation's
            // number is not known yet.
            return Ok((Purged::NOTHING, None));
        };
        let only_this_generation =
            zeroed.is_some_and(|z| generation == z || generation == z.wrapping_add(1));
        let end = (WAL_HEADER + frames).min(len);
        let mut wrote = zero(&mut file, WAL_HEADER, end)?;
        let tail_read = if only_this_generation {
            0
        } else {
            wrote |= zero_nonzero(&mut file, end, len)?;
            len - end
        };
        if wrote {
            file.sync_data().map_err(io)?;
        }
        let purged = Purged {
            frames: end - WAL_HEADER,
            tail_read,
            truncated: false,
        };
        Ok((purged, Some(generation)))
    }
}

/// Moves whenever another connection commits (SQLite's `PRAGMA data_version`).
fn data_version(conn: &Connection) -> Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .map_err(map_err)
}

fn busy_reader() -> StoreError {
    StoreError::Unavailable("a reader kept the WAL in use past the busy timeout".into())
}

/// The generation in the WAL's header, if the file has one.
fn generation(file: &mut File, len: u64) -> Result<Option<u32>> {
    if len < WAL_HEADER {
        return Ok(None);
    }
    let mut header = [0u8; WAL_HEADER as usize];
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.read_exact(&mut header).map_err(io)?;
    Ok(Some(u32::from_be_bytes([
        header[12], header[13], header[14], header[15],
    ])))
}

/// Overwrites `from..to` with zeros; whether anything was written.
fn zero(file: &mut File, from: u64, to: u64) -> Result<bool> {
    if to <= from {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(from)).map_err(io)?;
    let zeros = [0u8; CHUNK];
    let mut left = to - from;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        file.write_all(&zeros[..n]).map_err(io)?;
        left -= n as u64;
    }
    Ok(true)
}

/// Reads `from..to` and zeroes each chunk of it that is not all zeros already.
fn zero_nonzero(file: &mut File, from: u64, to: u64) -> Result<bool> {
    let mut buf = vec![0u8; CHUNK];
    let mut at = from;
    let mut wrote = false;
    while at < to {
        let n = (to - at).min(CHUNK as u64) as usize;
        file.seek(SeekFrom::Start(at)).map_err(io)?;
        file.read_exact(&mut buf[..n]).map_err(io)?;
        if buf[..n].iter().any(|&b| b != 0) {
            wrote |= zero(file, at, at + n as u64)?;
        }
        at += n as u64;
    }
    Ok(wrote)
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("could not overwrite the WAL: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &[u8] = b"Zyxqanary-erased-bytes";

    struct Db {
        _dir: tempfile::TempDir,
        path: PathBuf,
        conn: Connection,
    }

    fn db() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = super::super::open_connection(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL);")
            .unwrap();
        Db {
            _dir: dir,
            path,
            conn,
        }
    }

    impl Db {
        fn wal(&self) -> Vec<u8> {
            let mut p = self.path.as_os_str().to_owned();
            p.push("-wal");
            std::fs::read(PathBuf::from(p)).unwrap_or_default()
        }

        fn holds_canary(&self) -> bool {
            [std::fs::read(&self.path).unwrap(), self.wal()]
                .iter()
                .any(|f| f.windows(CANARY.len()).any(|w| w == CANARY))
        }

        /// `n` rows of about a page each, every one holding the canary.
        fn insert(&self, n: i64) {
            let mut v = CANARY.to_vec();
            v.resize(3000, b'.');
            for i in 0..n {
                self.conn
                    .execute(
                        "INSERT INTO t (id, v) VALUES (?1, ?2)",
                        rusqlite::params![i, v],
                    )
                    .unwrap();
            }
        }
    }

    #[test]
    fn an_erasure_leaves_no_frame_and_the_wal_keeps_its_length() {
        let d = db();
        let purge = WalPurge::new(&d.path, &d.conn);
        d.conn
            .execute_batch("INSERT INTO t VALUES (-1, x'00')")
            .unwrap();
        purge.run(&d.conn).unwrap();

        d.insert(20);
        assert!(
            d.holds_canary(),
            "the scan sees the canary while it is stored"
        );
        d.conn.execute_batch("DELETE FROM t WHERE id >= 0").unwrap();
        assert!(
            d.holds_canary(),
            "deleted, the canary is still in old frames"
        );
        let before = d.wal().len();
        let purged = purge.run(&d.conn).unwrap();
        assert!(!d.holds_canary(), "the purge left the canary on disk");
        assert_eq!(d.wal().len(), before, "the WAL keeps its length");
        assert!(purged.frames > 20 * 4096, "{purged:?}");
        assert_eq!(purged.tail_read, 0, "no rollback: nothing past the frames");

        // The WAL works on: a commit after the purge, then a reopened connection sees it.
        d.conn
            .execute_batch("INSERT INTO t VALUES (7, x'07')")
            .unwrap();
        let again = super::super::open_connection(&d.path).unwrap();
        let n: i64 = again
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn a_wal_holding_more_than_the_most_zeros_is_truncated_and_the_next_one_zeroed() {
        let d = db();
        let purge = WalPurge::new(&d.path, &d.conn);
        purge.run(&d.conn).unwrap();
        d.conn
            .execute_batch("PRAGMA wal_autocheckpoint = 0; BEGIN")
            .unwrap();
        d.insert(2500);
        d.conn.execute_batch("COMMIT").unwrap();
        d.conn.execute_batch("DELETE FROM t WHERE id >= 0").unwrap();
        assert!(d.holds_canary());
        let purged = purge.run(&d.conn).unwrap();
        assert!(purged.truncated, "more than 8 MiB of frames: {purged:?}");
        assert!(!d.holds_canary());
        assert_eq!(d.wal().len(), 0);
        // Small commits after it: zeroed, and nothing past them to read.
        d.insert(3);
        d.conn.execute_batch("DELETE FROM t").unwrap();
        let purged = purge.run(&d.conn).unwrap();
        assert!(!purged.truncated, "{purged:?}");
        assert_eq!(purged.tail_read, 0, "{purged:?}");
        assert!(!d.holds_canary());
        assert!(!d.wal().is_empty());
    }

    #[test]
    fn frames_a_rolled_back_transaction_left_past_the_log_are_zeroed() {
        let d = db();
        let purge = WalPurge::new(&d.path, &d.conn);
        purge.run(&d.conn).unwrap();
        // A cache of a few pages makes the transaction spill its pages into the WAL before
        // it rolls back: they lie past the last committed frame.
        d.conn
            .execute_batch("PRAGMA cache_size = 5; BEGIN")
            .unwrap();
        d.insert(50);
        d.conn.execute_batch("ROLLBACK").unwrap();
        assert!(
            d.holds_canary(),
            "the rolled-back transaction spilled frames"
        );
        d.conn
            .execute_batch("INSERT INTO t VALUES (1, x'01')")
            .unwrap();
        let purged = purge.run(&d.conn).unwrap();
        assert!(!d.holds_canary(), "a spilled frame survived the purge");
        assert!(purged.tail_read > 0, "{purged:?}");
        // Read once: the next purge trusts the log again.
        assert_eq!(purge.run(&d.conn).unwrap().tail_read, 0);
    }

    /// SQLite's own checkpoints let the next writer start the WAL over, so frames of an
    /// earlier generation can lie past the current one's: they are no less erased data.
    #[test]
    fn frames_of_generations_the_wal_started_over_from_are_zeroed() {
        let d = db();
        let purge = WalPurge::new(&d.path, &d.conn);
        purge.run(&d.conn).unwrap();
        d.conn
            .execute_batch("PRAGMA wal_autocheckpoint = 10")
            .unwrap();
        // One commit of many pages, the canary's the last of them; SQLite checkpoints
        // after it, and the commits that follow start the WAL over, shorter.
        let filler = vec![b'.'; 3000];
        let mut canary = CANARY.to_vec();
        canary.resize(3000, b'.');
        d.conn.execute_batch("BEGIN").unwrap();
        for i in 0..30 {
            d.conn
                .execute(
                    "INSERT INTO t VALUES (?1, ?2)",
                    rusqlite::params![i, filler],
                )
                .unwrap();
        }
        d.conn
            .execute("INSERT INTO t VALUES (30, ?1)", [&canary])
            .unwrap();
        d.conn.execute_batch("COMMIT").unwrap();
        for i in 100..103 {
            d.conn
                .execute("INSERT INTO t VALUES (?1, x'01')", [i])
                .unwrap();
        }
        d.conn.execute_batch("DELETE FROM t WHERE id = 30").unwrap();
        assert!(d.holds_canary(), "old frames hold the canary");
        let purged = purge.run(&d.conn).unwrap();
        assert!(
            !d.holds_canary(),
            "a frame of an earlier generation survived"
        );
        assert!(purged.tail_read > 0, "{purged:?}");
    }

    /// Another process on the same file commits between the checkpoint and the zeros: its
    /// commit survives (the purge writes no zeros and fails), and the next purge succeeds.
    #[test]
    fn a_commit_by_another_connection_during_the_purge_is_never_overwritten() {
        let d = db();
        let purge = WalPurge::new(&d.path, &d.conn);
        purge.run(&d.conn).unwrap();
        d.insert(5);
        d.conn.execute_batch("DELETE FROM t").unwrap();
        let other = super::super::open_connection(&d.path).unwrap();
        let outcome = purge.run_with(&d.conn, || {
            other
                .execute_batch("INSERT INTO t VALUES (77, x'77')")
                .unwrap();
        });
        assert!(outcome.is_err(), "{outcome:?}");
        drop(other);
        let reopened = super::super::open_connection(&d.path).unwrap();
        let kept: i64 = reopened
            .query_row("SELECT COUNT(*) FROM t WHERE id = 77", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 1, "the other connection's commit was lost");
        drop(reopened);
        let purged = purge.run(&d.conn).unwrap();
        assert!(!d.holds_canary(), "{purged:?}");
        let n: i64 = d
            .conn
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn what_a_crash_left_past_the_frames_is_zeroed_by_the_first_purge() {
        let d = db();
        WalPurge::new(&d.path, &d.conn).run(&d.conn).unwrap();
        d.conn
            .execute_batch("INSERT INTO t VALUES (1, x'01')")
            .unwrap();
        // Leftovers of a process that died mid-write, past the committed frames.
        let mut p = d.path.as_os_str().to_owned();
        p.push("-wal");
        let mut f = OpenOptions::new()
            .append(true)
            .open(PathBuf::from(p))
            .unwrap();
        f.write_all(&[&[7u8; 20_000], CANARY].concat()).unwrap();
        drop(f);
        assert!(d.holds_canary());
        let reopened = WalPurge::new(&d.path, &d.conn);
        d.conn
            .execute_batch("INSERT INTO t VALUES (2, x'02')")
            .unwrap();
        let purged = reopened.run(&d.conn).unwrap();
        assert!(!d.holds_canary(), "{purged:?}");
        assert!(!purged.truncated && purged.tail_read > 0, "{purged:?}");
    }
}
