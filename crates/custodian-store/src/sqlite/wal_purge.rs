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
//! and then the frames that may hold what the database no longer does are overwritten with
//! zeros, in place, and synced. Those are the frames a later frame of the same page
//! supersedes, and frames of pages past the database's end. The last frame of each page is
//! the page as the checkpoint just wrote it into the main file, where `secure_delete` has
//! zeroed whatever was erased: it holds nothing the database does not, so it stays while
//! the main file's page stays the same. The purge remembers where it kept which page, and
//! the next one zeroes each such frame whose page was written again (below), unless the
//! WAL's next generation overwrote it already. Zeroing every
//! frame instead wrote four to seven times as many bytes (GDPRbench customer, N = 100,000:
//! 54,749 of 63,974 frames were the last of their page), and a delete waited for them.
//!
//! The first frame goes too, whatever it holds: after a crash, SQLite rebuilds its index of
//! the WAL from the file, reading frames while their checksums chain, and a valid prefix
//! ending in an earlier commit would give the database the size it had then. With the first
//! frame gone, it finds no frame and reads the main file, which holds everything.
//!
//! Past 8 MiB of frames the purge truncates, so that none holds the writer longer than
//! that takes.
//!
//! That reaches every frame only if none lies past the last committed one, and three
//! things leave some there: a transaction that spilled pages into the WAL and then rolled
//! back; SQLite's own checkpoints, after which the next writer starts the WAL over (a new
//! generation, numbered in the file's header) and may write fewer frames than the
//! generation before; and a crash. So the rest of the file is read too, and whatever is
//! not zero is zeroed, unless the last purge knew what it left and since then there was no
//! rollback and at most the one generation that purge began (whose frames then say which
//! pages were written since): then nothing is read. A generation is known by the WAL
//! header's salts: each time the WAL starts over SQLite adds one to the first salt, which
//! every connection reads from the shared index. (The checkpoint sequence number beside
//! them is each connection's own count, so it cannot tell generations apart. A connection
//! that writes the first frame of an empty WAL before it ever restarted one draws both
//! salts at random, `walWriteFrames` in sqlite3.c: the next purge then reads the whole
//! file, as when it knows nothing.)
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
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The WAL file's header: magic number, format, page size, checkpoint sequence number,
/// salts (bytes 16 to 24, which name the generation) and checksums.
pub(super) const WAL_HEADER: u64 = 32;
/// Each frame's header before its page: page number, database size in pages after the
/// commit (0 in frames that end no commit), the WAL header's salts, checksums; big-endian.
pub(super) const FRAME_HEADER: u64 = 24;
/// Zeros are written, and the tail is read, this much at a time.
const CHUNK: usize = 64 * 1024;
/// The most a purge overwrites; past it, it truncates.
const MOST_ZEROS: u64 = 8 << 20;

pub(crate) struct WalPurge {
    wal: PathBuf,
    /// Set by every whole-transaction rollback on the writer.
    rolled_back: Arc<AtomicBool>,
    /// What the last purge left; `None` (at first, and after a failure): look at the whole
    /// file.
    left: Mutex<Option<Left>>,
}

/// What a purge left in the WAL file.
#[derive(Debug, Clone)]
struct Left {
    /// The salts in the file's header then: its generation.
    generation: [u8; 8],
    /// The writer's `PRAGMA data_version` then.
    version: i64,
    /// What each frame's place in the file held; past the last, nothing but zeros.
    slots: Vec<Slot>,
}

/// What a frame's place in the WAL file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Nothing but zeros.
    Zeros,
    /// A frame that may hold what the database no longer does: to be zeroed.
    Stale,
    /// The last frame of this page, which holds what the main file does.
    Latest(u32),
}

/// What one purge did, for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Purged {
    /// Bytes of committed frames overwritten.
    pub frames: u64,
    /// Bytes of frames left in the file, each the last of its page.
    pub kept: u64,
    /// Bytes past them that were read because they could hold older frames.
    pub tail_read: u64,
    /// Whether the WAL was truncated instead.
    pub truncated: bool,
}

impl Purged {
    const NOTHING: Self = Self {
        frames: 0,
        kept: 0,
        tail_read: 0,
        truncated: false,
    };
}

impl WalPurge {
    /// Watches `writer` (the only connection that writes) for rollbacks.
    pub(crate) fn new(db: &Path, writer: &Connection) -> Self {
        let rolled_back = Arc::new(AtomicBool::new(false));
        let flag = rolled_back.clone();
        // Called for whole-transaction rollbacks, explicit or forced by an error; not for
        // ROLLBACK TO, whose spilled frames are inside the transaction that then commits.
        writer.rollback_hook(Some(move || flag.store(true, Ordering::SeqCst)));
        Self {
            wal: beside(db, "-wal"),
            rolled_back,
            left: Mutex::new(None),
        }
    }

    /// Runs on the writer connection while no write is in progress.
    pub(crate) fn run(&self, conn: &Connection) -> Result<Purged> {
        self.run_with(conn, || {})
    }

    /// [`Self::run`], calling `between` right after the checkpoint (tests: another writer).
    fn run_with(&self, conn: &Connection, between: impl FnOnce()) -> Result<Purged> {
        let mut left = self.left.lock().unwrap_or_else(|p| p.into_inner());
        let rolled_back = self.rolled_back.swap(false, Ordering::SeqCst);
        let known = left.take().filter(|_| !rolled_back);
        // On failure `left` stays `None`: a frame may be left anywhere.
        let (purged, now) = self.purge(conn, known, between)?;
        *left = now;
        Ok(purged)
    }

    fn purge(
        &self,
        conn: &Connection,
        left: Option<Left>,
        between: impl FnOnce(),
    ) -> Result<(Purged, Option<Left>)> {
        let version = data_version(conn)?;
        // Another connection's commits since the last purge (the CLI beside a server) may
        // have begun generations of their own, or purged the WAL: the last purge's account
        // of the file is not to be trusted.
        let left = left.filter(|l| l.version == version);
        let restarted = checkpoint(conn, Mode::Restart)?;
        if !restarted.complete() {
            return Err(busy_reader());
        }
        let log = restarted.log;
        between();
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(map_err)?;
        let log = u64::try_from(log).unwrap_or(0);
        let frame = u64::try_from(page_size).unwrap_or(0) + FRAME_HEADER;
        if log * frame > MOST_ZEROS {
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
            let left = generation.map(|generation| Left {
                generation,
                version,
                slots: Vec::new(),
            });
            return Ok((purged, left));
        }
        super::group::control(conn, "BEGIN IMMEDIATE").map_err(map_err)?;
        let outcome = match data_version(conn) {
            Ok(now) if now == version => self.overwrite(left, log, frame, version),
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

    /// The salts in the WAL file's header, if there is one.
    fn generation_now(&self) -> Result<Option<[u8; 8]>> {
        match File::open(&self.wal) {
            Ok(f) => {
                let len = f.metadata().map_err(io)?.len();
                Ok(header(&f, len)?.map(|h| h.salts))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    /// Zeroes the stale frames among the first `log` (each `frame` bytes long) and past
    /// them: unless only the generation after the one `left` describes can have written to
    /// the file, whatever is not zero; else the frames `left` kept whose page that
    /// generation wrote again.
    fn overwrite(
        &self,
        left: Option<Left>,
        log: u64,
        frame: u64,
        version: i64,
    ) -> Result<(Purged, Option<Left>)> {
        let mut file = match OpenOptions::new().read(true).write(true).open(&self.wal) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok((Purged::NOTHING, None)),
            Err(e) => return Err(io(e)),
        };
        let len = file.metadata().map_err(io)?.len();
        let Some(header) = header(&file, len)? else {
            // No header, so no frame: nothing to overwrite, and the next generation's
            // number is not known yet.
            return Ok((Purged::NOTHING, None));
        };
        let generation = header.salts;
        let in_file = (len - WAL_HEADER) / frame;
        // A file that does not end with a whole frame was cut short by a crash.
        let known = left.filter(|l| {
            (generation == l.generation || starts_over_from(l.generation, generation))
                && (len - WAL_HEADER).is_multiple_of(frame)
        });
        let whole = in_file.min(log);
        let end = WAL_HEADER + whole * frame;
        let mut survey = survey(&file, &header, whole, frame)?;
        let mut slots = std::mem::take(&mut survey.slots);
        let mut wrote = false;
        let tail_read = match known {
            Some(l) => {
                // Past the log, the file holds what the last purge left there.
                let past = l.slots.iter().take(in_file as usize).skip(slots.len());
                slots.extend(past.map(|slot| match *slot {
                    Slot::Latest(page) if survey.still_latest(page) => Slot::Latest(page),
                    Slot::Zeros => Slot::Zeros,
                    _ => Slot::Stale,
                }));
                0
            }
            None => {
                wrote |= zero_nonzero(&mut file, end, len)?;
                len - end
            }
        };
        let mut zeroed = 0;
        for run in stale_runs(&slots) {
            let (from, to) = (WAL_HEADER + run.start * frame, WAL_HEADER + run.end * frame);
            wrote |= zero(&mut file, from, to)?;
            zeroed += to - from;
        }
        if wrote {
            file.sync_data().map_err(io)?;
        }
        for slot in &mut slots {
            if *slot == Slot::Stale {
                *slot = Slot::Zeros;
            }
        }
        while slots.last() == Some(&Slot::Zeros) {
            slots.pop();
        }
        let latest = slots.iter().filter(|s| matches!(s, Slot::Latest(_)));
        let purged = Purged {
            frames: zeroed,
            kept: latest.count() as u64 * frame,
            tail_read,
            truncated: false,
        };
        let left = Left {
            generation,
            version,
            slots,
        };
        Ok((purged, Some(left)))
    }
}

/// The file SQLite keeps beside database `db`: `-wal`, `-shm`.
pub(super) fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Moves whenever another connection commits (SQLite's `PRAGMA data_version`).
pub(super) fn data_version(conn: &Connection) -> Result<i64> {
    conn.prepare_cached("PRAGMA data_version")
        .and_then(|mut st| st.query_row([], |r| r.get(0)))
        .map_err(map_err)
}

fn busy_reader() -> StoreError {
    StoreError::Unavailable("a reader kept the WAL in use past the busy timeout".into())
}

/// What the purge and the page scrub need of the WAL file's header.
pub(super) struct Header {
    pub(super) page_size: u32,
    pub(super) salts: [u8; 8],
}

/// Whether the WAL generation with salts `new` is the one right after `old`'s: each time
/// the WAL starts over, SQLite adds one to the first salt (a big-endian number) and draws
/// the second.
pub(super) fn starts_over_from(old: [u8; 8], new: [u8; 8]) -> bool {
    let first = |s: [u8; 8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
    first(new) == first(old).wrapping_add(1)
}

/// The WAL's header, if the file has one.
pub(super) fn header(file: &File, len: u64) -> Result<Option<Header>> {
    if len < WAL_HEADER {
        return Ok(None);
    }
    let mut h = [0u8; WAL_HEADER as usize];
    file.read_exact_at(&mut h, 0).map_err(io)?;
    let be32 = |at: usize| u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let mut salts = [0u8; 8];
    salts.copy_from_slice(&h[16..24]);
    Ok(Some(Header {
        page_size: be32(8),
        salts,
    }))
}

/// The frames of the WAL's current generation, as a purge finds them.
struct Survey {
    slots: Vec<Slot>,
    /// Every page they write.
    written: HashSet<u32>,
    /// The database's size in pages, which the last frame (a commit's) gives.
    database_pages: Option<u32>,
}

impl Survey {
    /// Whether a frame of `page` kept by an earlier purge still holds what the main file
    /// does: this generation did not write the page again, nor cut it off.
    fn still_latest(&self, page: u32) -> bool {
        !self.written.contains(&page) && self.database_pages.is_none_or(|n| page <= n)
    }
}

/// Reads the headers of the first `count` frames (each `frame` bytes long, all committed and
/// copied into the main file). Stale are every one but the last of each page within the
/// database's size, and the first one always. A frame that is not of this generation (its
/// salts differ) is not vouched for either; one whose header is all zeros was zeroed by an
/// earlier purge, whole.
fn survey(file: &File, header: &Header, count: u64, frame: u64) -> Result<Survey> {
    let mut survey = Survey {
        slots: vec![Slot::Zeros; usize::try_from(count).unwrap_or(0)],
        written: HashSet::new(),
        database_pages: None,
    };
    for (at, slot) in survey.slots.iter_mut().enumerate().rev() {
        let mut h = [0u8; 16];
        file.read_exact_at(&mut h, WAL_HEADER + at as u64 * frame)
            .map_err(io)?;
        if h == [0; 16] {
            continue;
        }
        let page = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let size = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        *slot = Slot::Stale;
        if h[8..16] != header.salts || page == 0 {
            continue;
        }
        let pages = *survey.database_pages.get_or_insert(size);
        if survey.written.insert(page) && page <= pages && at > 0 {
            *slot = Slot::Latest(page);
        }
    }
    Ok(survey)
}

/// The runs of consecutive stale slots, as ranges of their places.
fn stale_runs(slots: &[Slot]) -> Vec<std::ops::Range<u64>> {
    let mut runs: Vec<std::ops::Range<u64>> = Vec::new();
    for (at, _) in slots.iter().enumerate().filter(|(_, s)| **s == Slot::Stale) {
        let at = at as u64;
        match runs.last_mut() {
            Some(run) if run.end == at => run.end = at + 1,
            _ => runs.push(at..at + 1),
        }
    }
    runs
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
        fn wal_path(&self) -> PathBuf {
            beside(&self.path, "-wal")
        }

        fn wal(&self) -> Vec<u8> {
            std::fs::read(self.wal_path()).unwrap_or_default()
        }

        fn holds_canary(&self) -> bool {
            [std::fs::read(&self.path).unwrap(), self.wal()]
                .iter()
                .any(|f| f.windows(CANARY.len()).any(|w| w == CANARY))
        }

        /// Rows `ids` of about a page each, none holding the canary.
        fn fill(&self, ids: std::ops::Range<i64>) {
            let filler = vec![b'.'; 3000];
            for i in ids {
                self.conn
                    .execute(
                        "INSERT INTO t (id, v) VALUES (?1, ?2)",
                        rusqlite::params![i, filler],
                    )
                    .unwrap();
            }
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
    fn the_generation_after_another_has_its_first_salt_one_higher() {
        let salts = |first: u32, second: u32| {
            let mut s = [0u8; 8];
            s[..4].copy_from_slice(&first.to_be_bytes());
            s[4..].copy_from_slice(&second.to_be_bytes());
            s
        };
        let cases = [
            (salts(7, 1), salts(8, 99), true),
            (salts(u32::MAX, 1), salts(0, 2), true),
            (salts(7, 1), salts(7, 2), false),
            (salts(7, 1), salts(9, 2), false),
            (salts(8, 1), salts(7, 2), false),
        ];
        for (old, new, follows) in cases {
            assert_eq!(starts_over_from(old, new), follows, "{old:?} -> {new:?}");
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

    /// A page written by several commits keeps only its last frame, which holds what the
    /// main file does: the frames before it, holding a value since replaced, are zeroed.
    #[test]
    fn only_frames_a_later_one_of_their_page_supersedes_are_zeroed() {
        let d = db();
        let purge = WalPurge::new(&d.path, &d.conn);
        purge.run(&d.conn).unwrap();
        d.insert(10);
        let mut live = b"Qwvlive-kept-bytes".to_vec();
        live.resize(3000, b'.');
        d.conn.execute("UPDATE t SET v = ?1", [&live]).unwrap();
        assert!(d.holds_canary(), "the replaced values are in older frames");
        let purged = purge.run(&d.conn).unwrap();
        assert!(!d.holds_canary(), "a superseded frame survived: {purged:?}");
        assert!(purged.frames >= 10 * 4096, "{purged:?}");
        assert!(
            purged.kept >= 9 * 4096,
            "the last frames of the pages stay: {purged:?}"
        );
        assert!(
            d.wal().windows(18).any(|w| w == &live[..18]),
            "the kept frames hold the live rows"
        );
        assert_eq!(
            d.wal().len() as u64,
            WAL_HEADER + purged.frames + purged.kept
        );
    }

    /// Frames a purge kept lie past the next generation's when it is shorter. The next
    /// purge zeroes those whose page that generation wrote again, for what they held may be
    /// erased since, and keeps the others, without reading the file.
    #[test]
    fn frames_a_purge_kept_go_once_their_page_is_written_again() {
        let d = db();
        let purge = WalPurge::new(&d.path, &d.conn);
        purge.run(&d.conn).unwrap();
        // One generation: filler first, the canary's rows last, all kept by the purge.
        d.conn.execute_batch("BEGIN").unwrap();
        d.fill(1000..1060);
        d.conn.execute_batch("COMMIT").unwrap();
        d.insert(10);
        let purged = purge.run(&d.conn).unwrap();
        assert!(purged.kept > 60 * 4096, "{purged:?}");
        assert!(d.holds_canary(), "live rows, in the main file and the WAL");
        // The next generation, shorter than the frames kept, writes the canary's pages.
        d.conn
            .execute_batch("DELETE FROM t WHERE id < 1000")
            .unwrap();
        let purged = purge.run(&d.conn).unwrap();
        assert!(!d.holds_canary(), "a kept frame survived: {purged:?}");
        assert_eq!(purged.tail_read, 0, "nothing was read: {purged:?}");
        assert!(
            purged.kept > 40 * 4096,
            "the filler's frames, not written again, stay: {purged:?}"
        );
    }

    /// A database that shrinks (`VACUUM`, which this store does not run on its live file)
    /// writes no last frame for the pages it cut off: their earlier frames are not the
    /// database's any more, and go.
    #[test]
    fn frames_of_pages_past_the_database_end_are_zeroed() {
        let d = db();
        let purge = WalPurge::new(&d.path, &d.conn);
        purge.run(&d.conn).unwrap();
        d.fill(1000..1020);
        d.insert(5);
        d.conn
            .execute_batch("DELETE FROM t WHERE id >= 1000")
            .unwrap();
        // The canary's rows move to the pages the filler freed; their old pages are cut off.
        d.conn.execute_batch("VACUUM").unwrap();
        d.conn.execute_batch("DELETE FROM t").unwrap();
        assert!(
            d.holds_canary(),
            "frames of the cut-off pages hold the canary"
        );
        let purged = purge.run(&d.conn).unwrap();
        assert!(!d.holds_canary(), "{purged:?}");
    }

    /// After a crash, SQLite rebuilds its index of the WAL from the file: a purge must leave
    /// no valid run of frames whose last commit gives the database an older, smaller size.
    #[test]
    fn a_crash_right_after_a_purge_recovers_the_whole_database() {
        let d = db();
        d.conn
            .execute_batch("CREATE TABLE u (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
            .unwrap();
        let purge = WalPurge::new(&d.path, &d.conn);
        purge.run(&d.conn).unwrap();
        // The first frame: a page no later commit writes, so the last of its page.
        d.conn
            .execute_batch("INSERT INTO u VALUES (1, x'01')")
            .unwrap();
        // A small commit whose page the next one writes again, growing the database.
        d.conn
            .execute_batch("INSERT INTO t VALUES (-1, x'00')")
            .unwrap();
        d.conn.execute_batch("BEGIN").unwrap();
        d.insert(30);
        d.conn.execute_batch("COMMIT").unwrap();
        let purged = purge.run(&d.conn).unwrap();
        assert!(purged.kept > 0 && purged.frames > 0, "{purged:?}");
        // The files as a crash would leave them: no shared-memory index.
        let crashed = tempfile::tempdir().unwrap();
        let copy = crashed.path().join("t.db");
        std::fs::copy(&d.path, &copy).unwrap();
        std::fs::copy(d.wal_path(), crashed.path().join("t.db-wal")).unwrap();
        let conn = super::super::open_connection(&copy).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let count = |table: &str| -> i64 {
            conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!((count("t"), count("u")), (31, 1));
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
        let mut canary = CANARY.to_vec();
        canary.resize(3000, b'.');
        d.conn.execute_batch("BEGIN").unwrap();
        d.fill(0..30);
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

    /// Another connection's commit between two purges (it may have purged the WAL itself,
    /// or begun generations of its own) makes the next purge read the whole file again.
    #[test]
    fn a_commit_by_another_connection_between_purges_makes_the_next_read_everything() {
        let d = db();
        let purge = WalPurge::new(&d.path, &d.conn);
        purge.run(&d.conn).unwrap();
        d.insert(3);
        assert_eq!(purge.run(&d.conn).unwrap().tail_read, 0);
        let other = super::super::open_connection(&d.path).unwrap();
        other
            .execute_batch("INSERT INTO t VALUES (77, x'77')")
            .unwrap();
        d.conn
            .execute_batch("INSERT INTO t VALUES (78, x'78')")
            .unwrap();
        let purged = purge.run(&d.conn).unwrap();
        assert!(purged.tail_read > 0, "{purged:?}");
    }

    /// The rows `live` says (id, canary number) are what the database answers, and what a
    /// copy of its files without the shared-memory index (a crash) recovers.
    fn rows_survive_a_crash(
        d: &Db,
        live: &std::collections::BTreeMap<i64, u64>,
        value: &dyn Fn(u64) -> Vec<u8>,
        purge: usize,
    ) {
        let crashed = tempfile::tempdir().unwrap();
        let copy = crashed.path().join("t.db");
        std::fs::copy(&d.path, &copy).unwrap();
        std::fs::copy(d.wal_path(), crashed.path().join("t.db-wal")).unwrap();
        let expected: Vec<(i64, Vec<u8>)> = live.iter().map(|(&i, &n)| (i, value(n))).collect();
        for conn in [&d.conn, &super::super::open_connection(&copy).unwrap()] {
            let mut st = conn.prepare("SELECT id, v FROM t ORDER BY id").unwrap();
            let rows: Vec<(i64, Vec<u8>)> = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            assert!(
                rows == expected,
                "purge {purge}: {} rows read, {} expected",
                rows.len(),
                expected.len()
            );
        }
    }

    /// Rows written, rewritten, deleted and rolled back in a seeded random order, with
    /// checkpoints beside the writer (the WAL starting over between purges) and purges after
    /// each delete: after every purge no value that the database no longer holds is left in
    /// either file, every value it holds is still there, and a crash right then recovers
    /// the same rows.
    #[test]
    fn no_value_the_database_dropped_survives_a_purge_whatever_came_before() {
        const MARK: &[u8] = b"Erased-canary-";
        let value = |n: u64| {
            let mut v = [MARK, format!("{n:08}").as_bytes()].concat();
            v.resize(1500, b'.');
            v
        };
        // Every canary number either file holds, in one pass per file.
        let present = |d: &Db| -> std::collections::BTreeSet<u64> {
            let mut found = std::collections::BTreeSet::new();
            for f in [std::fs::read(&d.path).unwrap(), d.wal()] {
                for (at, _) in f
                    .windows(MARK.len())
                    .enumerate()
                    .filter(|(_, w)| *w == MARK)
                {
                    let digits = &f[at + MARK.len()..(at + MARK.len() + 8).min(f.len())];
                    if let Some(n) = std::str::from_utf8(digits)
                        .ok()
                        .and_then(|s| s.parse().ok())
                    {
                        found.insert(n);
                    }
                }
            }
            found
        };
        let d = db();
        let purge = WalPurge::new(&d.path, &d.conn);
        let beside = super::super::open_connection(&d.path).unwrap();
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        let mut live: std::collections::BTreeMap<i64, u64> = Default::default();
        let mut dropped: Vec<u64> = Vec::new();
        let (mut id, mut canary, mut purges) = (0i64, 0u64, 0);
        for _ in 0..400 {
            match next(10) {
                0..=2 => {
                    d.conn.execute_batch("BEGIN").unwrap();
                    for _ in 0..1 + next(6) {
                        id += 1;
                        canary += 1;
                        d.conn
                            .execute(
                                "INSERT INTO t VALUES (?1, ?2)",
                                rusqlite::params![id, value(canary)],
                            )
                            .unwrap();
                        live.insert(id, canary);
                    }
                    d.conn.execute_batch("COMMIT").unwrap();
                }
                3 | 4 if !live.is_empty() => {
                    let (&row, &old) = live.iter().nth(next(live.len() as u64) as usize).unwrap();
                    canary += 1;
                    d.conn
                        .execute(
                            "UPDATE t SET v = ?2 WHERE id = ?1",
                            rusqlite::params![row, value(canary)],
                        )
                        .unwrap();
                    live.insert(row, canary);
                    dropped.push(old);
                }
                5 => {
                    let _ = beside.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
                6 => {
                    // Rolled back, sometimes after spilling its pages into the WAL.
                    let cache = if next(2) == 0 { 5 } else { 2000 };
                    d.conn
                        .execute_batch(&format!("PRAGMA cache_size = {cache}; BEGIN"))
                        .unwrap();
                    for k in 0..1 + next(30) as i64 {
                        canary += 1;
                        d.conn
                            .execute(
                                "INSERT INTO t VALUES (?1, ?2)",
                                rusqlite::params![-1 - k, value(canary)],
                            )
                            .unwrap();
                        dropped.push(canary);
                    }
                    d.conn
                        .execute_batch("ROLLBACK; PRAGMA cache_size = 2000")
                        .unwrap();
                }
                _ if !live.is_empty() => {
                    let (&row, &old) = live.iter().nth(next(live.len() as u64) as usize).unwrap();
                    d.conn
                        .execute("DELETE FROM t WHERE id = ?1", [row])
                        .unwrap();
                    live.remove(&row);
                    dropped.push(old);
                    let purged = purge.run(&d.conn).unwrap();
                    purges += 1;
                    let there = present(&d);
                    let survived: Vec<_> = dropped.iter().filter(|n| there.contains(n)).collect();
                    assert!(
                        survived.is_empty(),
                        "purge {purges}: {survived:?} survived ({purged:?})"
                    );
                    assert!(live.values().all(|n| there.contains(n)), "purge {purges}");
                    rows_survive_a_crash(&d, &live, &value, purges);
                }
                _ => {}
            }
        }
        assert!(purges > 20, "{purges} purges");
    }

    #[test]
    fn what_a_crash_left_past_the_frames_is_zeroed_by_the_first_purge() {
        let d = db();
        WalPurge::new(&d.path, &d.conn).run(&d.conn).unwrap();
        d.conn
            .execute_batch("INSERT INTO t VALUES (1, x'01')")
            .unwrap();
        // Leftovers of a process that died mid-write, past the committed frames.
        let mut f = OpenOptions::new().append(true).open(d.wal_path()).unwrap();
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
