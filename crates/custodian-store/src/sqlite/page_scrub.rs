//! Zeroes the bytes that B-tree pages hold outside their cells, before an erasure's purge.
//!
//! `secure_delete` zeroes what a delete frees, but not everything a page stops using. When
//! SQLite rebalances a B-tree it may rebuild a page from scratch (`rebuildPage`): the cells
//! it keeps are written packed at the page's end, and the bytes of the cells it moved to a
//! sibling stay where they were, in the page's unallocated area, long after those cells are
//! deleted from wherever they went. A deleted record's ciphertext could so survive in a live
//! page (in a generic test, 11 of 3,000 deleted values did). Nothing in the file format
//! needs those bytes: a page's content is its header, its cell pointers and its cells; the
//! rest (the area between the pointers and the cells, and the free blocks among the cells)
//! is unused.
//!
//! So before the purge's checkpoint, every B-tree page written since the last purge is read
//! through SQLite's `sqlite_dbpage` table and, when its unused bytes are not all zeros,
//! written back with them zeroed, in one transaction. Keeping "no live page holds unused
//! bytes that are not zeros" after each purge needs every page written in between, and a
//! page rebuilt long before the erasure counts: [`Written`] reads the page numbers of the
//! frames each commit of the writer adds to the WAL, across the WAL's generations. When it
//! cannot vouch for the set (at first, after another connection committed, after a failure)
//! the next scrub reads every page of the database once.
//!
//! What is left: up to three bytes at a time between cells (SQLite's fragments), which
//! cannot be found without parsing every cell, and which only ever held a free block's
//! four-byte header (offsets, not data) since `secure_delete` zeroed the rest.
//!
//! Which pages are B-tree pages: a B-tree page starts (after the file header on page 1)
//! with its type, 2, 5, 10 or 13. An overflow page and a freelist trunk page start with a
//! page number, whose first byte is 0 in a database of fewer than 2^24 pages. A freelist
//! leaf page's content is unused (zeros, under `secure_delete`), so reading it as a B-tree
//! page can change nothing that matters. Past 2^24 pages, the B-tree pages are listed by
//! walking every B-tree (`dbstat`). Pointer-map pages would be ambiguous; they exist only
//! with `auto_vacuum`, which the store never turns on and which the scrub refuses.

use super::codec::map_err;
use super::group::control;
use super::wal_purge::{
    FRAME_HEADER, Header, WAL_HEADER, beside, data_version, header, starts_over_from,
};
use crate::{Result, StoreError};
use rusqlite::{Connection, OptionalExtension, params};
use std::fs::File;
use std::ops::Range;
use std::os::raw::c_int;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Below this many pages, a page number's first byte is 0, never a B-tree page's type.
const TYPED_BY_FIRST_BYTE: u32 = 1 << 24;

/// A set of page numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PageSet {
    words: Vec<u64>,
}

impl PageSet {
    pub(crate) fn insert(&mut self, page: u32) {
        let (word, bit) = (page as usize / 64, page % 64);
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << bit;
    }

    pub(crate) fn contains(&self, page: u32) -> bool {
        self.words
            .get(page as usize / 64)
            .is_some_and(|w| w & (1 << (page % 64)) != 0)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            (0..64u32)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| i as u32 * 64 + b)
        })
    }
}

/// The pages the writer wrote since the last scrub, read from the WAL after each commit.
///
/// A commit's page numbers are read from the WAL index (the `-shm` file SQLite maps to find
/// frames: an array of page numbers, one per frame), one read for the whole commit, and
/// checked against the first and the last new frame's own header in the WAL. Reading every
/// frame's header instead cost 6-13 % more CPU per operation on GDPRbench's reading
/// workloads at 16 threads, whose bulk reads commit hundreds of frames of audit index.
pub(crate) struct Written {
    wal: PathBuf,
    shm: PathBuf,
    state: Mutex<Option<Known>>,
}

/// What [`Written`] can vouch for; `None` in its place: any page may have been written.
#[derive(Debug)]
struct Known {
    /// The salts of the WAL generation whose frames were read; `None` when the WAL had no
    /// header (every frame before was checkpointed and dropped): the next one is new.
    generation: Option<[u8; 8]>,
    /// Frames of that generation read so far.
    read: u64,
    /// The writer's `PRAGMA data_version` when the account began: it moves when another
    /// connection commits, whose frames this account may not have read.
    version: i64,
    pages: PageSet,
    /// The WAL and its index, open: they stay the same files while the writer is open.
    files: Option<(File, File)>,
}

/// The WAL index is made of 32 KiB blocks; each begins with the page numbers of 4,096
/// frames (native byte order), except the first, whose 136-byte header takes the place of 34.
const INDEX_BLOCK: u64 = 32 * 1024;
const INDEX_HEADER: u64 = 136;
const FRAMES_PER_BLOCK: u64 = 4096;
const FRAMES_IN_FIRST: u64 = FRAMES_PER_BLOCK - INDEX_HEADER / 4;

/// Where the WAL index holds the page number of frame `at` (0 for the first frame).
fn index_offset(at: u64) -> u64 {
    if at < FRAMES_IN_FIRST {
        INDEX_HEADER + at * 4
    } else {
        let rest = at - FRAMES_IN_FIRST;
        (1 + rest / FRAMES_PER_BLOCK) * INDEX_BLOCK + (rest % FRAMES_PER_BLOCK) * 4
    }
}

impl Written {
    pub(crate) fn new(db: &Path) -> Self {
        Self {
            wal: beside(db, "-wal"),
            shm: beside(db, "-shm"),
            state: Mutex::new(None),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Option<Known>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called on the writer right after a commit that left `frames` frames in the WAL (0:
    /// the commit wrote none), before anything else can write: reads the page numbers of
    /// the frames since the last call. Anything it cannot account for makes the next scrub
    /// read every page.
    pub(crate) fn note(&self, frames: c_int) {
        let Ok(frames) = u64::try_from(frames) else {
            return;
        };
        if frames == 0 {
            return;
        }
        let mut state = self.state();
        if let Some(known) = state.as_mut()
            && self.read_new(known, frames).is_err()
        {
            *state = None;
        }
    }

    fn read_new(&self, known: &mut Known, frames: u64) -> Result<()> {
        let (wal, shm) = match &known.files {
            Some(files) => files,
            None => known.files.insert((
                File::open(&self.wal).map_err(io)?,
                File::open(&self.shm).map_err(io)?,
            )),
        };
        let header = wal_header(wal)?
            .ok_or_else(|| StoreError::Backend("a commit left the WAL without a header".into()))?;
        let from = match known.generation {
            Some(salts) if salts == header.salts => known.read,
            Some(salts) if starts_over_from(salts, header.salts) => 0,
            None => 0,
            Some(_) => {
                return Err(StoreError::Backend(
                    "the WAL started over more than once between two commits".into(),
                ));
            }
        };
        if from >= frames {
            return Err(StoreError::Backend(
                "a commit left no frame past those already read".into(),
            ));
        }
        let frame = u64::from(header.page_size) + FRAME_HEADER;
        let mut pages =
            Vec::with_capacity(usize::try_from(frames.saturating_sub(from)).unwrap_or(0));
        let mut at = from;
        while at < frames {
            // The frames of one index block are contiguous there.
            let in_block = if at < FRAMES_IN_FIRST {
                FRAMES_IN_FIRST - at
            } else {
                FRAMES_PER_BLOCK - (at - FRAMES_IN_FIRST) % FRAMES_PER_BLOCK
            };
            let n = in_block.min(frames - at);
            let mut bytes = vec![0u8; usize::try_from(n * 4).unwrap_or(0)];
            shm.read_exact_at(&mut bytes, index_offset(at))
                .map_err(io)?;
            pages.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
            );
            at += n;
        }
        // The index must say what the frames themselves say.
        for (i, at) in [
            (0, from),
            (pages.len().saturating_sub(1), frames.saturating_sub(1)),
        ] {
            if at < from {
                continue;
            }
            let mut h = [0u8; 16];
            wal.read_exact_at(&mut h, WAL_HEADER + at * frame)
                .map_err(io)?;
            let page = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
            if h[8..16] != header.salts || pages.get(i) != Some(&page) {
                return Err(StoreError::Backend(
                    "the WAL index does not agree with the WAL's frames".into(),
                ));
            }
        }
        for page in pages {
            known.pages.insert(page);
        }
        known.generation = Some(header.salts);
        known.read = frames;
        Ok(())
    }

    /// The pages to scrub (`None`: every page, also when another connection committed
    /// since the account began); until [`Self::restart`], any page may have been written.
    fn take(&self, writer: &Connection) -> Result<Option<PageSet>> {
        let known = self.state().take();
        let version = data_version(writer)?;
        Ok(known.filter(|k| k.version == version).map(|k| k.pages))
    }

    /// Right after a scrub, on the writer, with nothing written since: from here on, the
    /// pages written are those of the WAL frames after the current ones.
    fn restart(&self, writer: &Connection, frames_now: c_int) -> Result<()> {
        let version = data_version(writer)?;
        let generation = match File::open(&self.wal) {
            Ok(file) => wal_header(&file)?.map(|h| h.salts),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(e)),
        };
        // The scrub's own commit tells how many frames the WAL holds; when it wrote none,
        // the frames of this generation are read again from the start, which only adds
        // pages already scrubbed.
        let read = if generation.is_some() {
            u64::try_from(frames_now).unwrap_or(0)
        } else {
            0
        };
        *self.state() = Some(Known {
            generation,
            read,
            version,
            pages: PageSet::default(),
            files: None,
        });
        Ok(())
    }
}

/// The WAL's header, if the file has one.
fn wal_header(file: &File) -> Result<Option<Header>> {
    header(file, file.metadata().map_err(io)?.len())
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("could not read the WAL or its index: {e}"))
}

/// What one scrub did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Scrubbed {
    /// Whether it read every page of the database.
    pub whole: bool,
    /// Pages read.
    pub read: u64,
    /// Pages written back with their unused bytes zeroed.
    pub zeroed: u64,
    /// B-tree pages whose header or free blocks did not add up, left as they were.
    pub malformed: u64,
}

/// Fails unless this build's SQLite has the `sqlite_dbpage` table the scrub writes through.
pub(crate) fn check_available(conn: &Connection) -> Result<()> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_dbpage WHERE pgno = 1",
        [],
        |_| Ok(()),
    )
    .map_err(|_| {
        StoreError::Backend(
            "this build's SQLite lacks the sqlite_dbpage table that erasure needs to scrub \
                 pages; build Custodian from its repository, whose .cargo/config.toml sets \
                 LIBSQLITE3_FLAGS=-DSQLITE_ENABLE_DBPAGE_VTAB"
                .into(),
        )
    })
}

/// Scrubs the pages `written` lists (every page, if it cannot vouch for them), on the
/// writer, outside any transaction.
pub(crate) fn scrub(writer: &Connection, written: &Written) -> Result<Scrubbed> {
    scrub_with(writer, written, TYPED_BY_FIRST_BYTE)
}

fn scrub_with(writer: &Connection, written: &Written, typed_below: u32) -> Result<Scrubbed> {
    let pages = written.take(writer)?;
    // The commit need not sync the WAL: the purge's checkpoint right after syncs it before
    // copying a page, and a crash before then leaves the erasure's old frames unpurged
    // anyway (the next purge, after opening, scrubs every page).
    control(writer, "PRAGMA synchronous = NORMAL").map_err(map_err)?;
    let outcome = control(writer, "BEGIN IMMEDIATE")
        .map_err(map_err)
        .and_then(|()| scrub_in_transaction(writer, pages.as_ref(), typed_below))
        .and_then(|s| control(writer, "COMMIT").map_err(map_err).map(|()| s));
    if outcome.is_err() && !writer.is_autocommit() {
        let _ = control(writer, "ROLLBACK");
    }
    // Whatever happened, every later commit is durable again.
    control(writer, "PRAGMA synchronous = FULL").map_err(map_err)?;
    let scrubbed = outcome?;
    written.restart(writer, super::checkpointer::take_wal_frames())?;
    Ok(scrubbed)
}

/// Below `typed_below` pages, a page's first byte says whether it is a B-tree page.
fn scrub_in_transaction(
    conn: &Connection,
    pages: Option<&PageSet>,
    typed_below: u32,
) -> Result<Scrubbed> {
    let pragma = |name: &str| -> Result<i64> {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .map_err(map_err)
    };
    if pragma("auto_vacuum")? != 0 {
        return Err(StoreError::Backend(
            "pages cannot be scrubbed with auto_vacuum on: its pointer-map pages look like \
             B-tree pages"
                .into(),
        ));
    }
    let page_size = u32::try_from(pragma("page_size")?)
        .ok()
        .filter(|&n| n >= 512)
        .ok_or_else(|| StoreError::Backend("SQLite reported no page size".into()))?;
    let page_count = u32::try_from(pragma("page_count")?).unwrap_or(0);
    if page_count == 0 {
        return Ok(Scrubbed::default());
    }
    // SQLite never reads or writes the page holding the lock bytes.
    let lock_byte_page = (1u32 << 30) / page_size + 1;
    let btree_pages = if page_count >= typed_below {
        Some(btree_pages_by_walk(conn)?)
    } else {
        None
    };
    let mut read = conn
        .prepare_cached("SELECT data FROM sqlite_dbpage WHERE pgno = ?1")
        .map_err(map_err)?;
    let mut write = conn
        .prepare_cached("UPDATE sqlite_dbpage SET data = ?2 WHERE pgno = ?1")
        .map_err(map_err)?;
    let usable = usable_size(conn, page_size)?;
    let mut scrubbed = Scrubbed {
        whole: pages.is_none(),
        ..Scrubbed::default()
    };
    let all = 1..=page_count;
    let listed: Box<dyn Iterator<Item = u32>> = match pages {
        Some(set) => Box::new(set.iter().filter(|p| all.contains(p))),
        None => Box::new(all.clone()),
    };
    for page in listed {
        if page == lock_byte_page || btree_pages.as_ref().is_some_and(|b| !b.contains(page)) {
            continue;
        }
        // Read in place: most pages are clean, and only a page to write back is copied.
        let found = read
            .query_row([page], |r| {
                Ok(scrubbed_copy(r.get_ref(0)?.as_blob()?, page, usable))
            })
            .optional()
            .map_err(map_err)?;
        let Some((found, scrubbed_page)) = found else {
            continue;
        };
        scrubbed.read += 1;
        if let Some(data) = scrubbed_page {
            write.execute(params![page, data]).map_err(map_err)?;
        }
        match found {
            PageScrub::Zeroed => scrubbed.zeroed += 1,
            PageScrub::Malformed => {
                tracing::warn!(
                    page,
                    "a B-tree page's free space did not add up; left as it was"
                );
                scrubbed.malformed += 1;
            }
            PageScrub::NotBtree | PageScrub::Clean => {}
        }
    }
    Ok(scrubbed)
}

/// The page size less the bytes reserved at each page's end (byte 20 of the file header).
fn usable_size(conn: &Connection, page_size: u32) -> Result<usize> {
    let first: Vec<u8> = conn
        .query_row("SELECT data FROM sqlite_dbpage WHERE pgno = 1", [], |r| {
            r.get(0)
        })
        .map_err(map_err)?;
    let reserved = first.get(20).copied().unwrap_or(0);
    Ok(page_size as usize - usize::from(reserved))
}

/// Every interior and leaf page of every B-tree, by walking them all.
fn btree_pages_by_walk(conn: &Connection) -> Result<PageSet> {
    let mut st = conn
        .prepare("SELECT pageno FROM dbstat WHERE pagetype IN ('internal', 'leaf')")
        .map_err(map_err)?;
    let mut rows = st.query([]).map_err(map_err)?;
    let mut set = PageSet::default();
    while let Some(r) = rows.next().map_err(map_err)? {
        set.insert(r.get(0).map_err(map_err)?);
    }
    Ok(set)
}

/// What scrubbing one page found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PageScrub {
    /// Not a B-tree page: left alone.
    NotBtree,
    /// A B-tree page whose unused bytes are zeros already.
    Clean,
    /// A B-tree page whose unused bytes were zeroed.
    Zeroed,
    /// Its header or free blocks point outside the page or overlap: left alone.
    Malformed,
}

/// What B-tree page `page` (number `pgno`, `usable` bytes used) holds outside its header,
/// cell pointers and cells (see [`unused`]): when it is not all zeros, a copy of the page
/// with those bytes zeroed.
fn scrubbed_copy(page: &[u8], pgno: u32, usable: usize) -> (PageScrub, Option<Vec<u8>>) {
    match unused(page, pgno, usable) {
        Err(found) => (found, None),
        Ok(ranges) if ranges.iter().all(|r| all_zeros(&page[r.clone()])) => {
            (PageScrub::Clean, None)
        }
        Ok(ranges) => {
            let mut copy = page.to_vec();
            for r in ranges {
                copy[r].fill(0);
            }
            (PageScrub::Zeroed, Some(copy))
        }
    }
}

/// [`scrubbed_copy`], in place.
#[cfg(test)]
fn scrub_page(page: &mut [u8], pgno: u32, usable: usize) -> PageScrub {
    let (found, copy) = scrubbed_copy(page, pgno, usable);
    if let Some(copy) = copy {
        page.copy_from_slice(&copy);
    }
    found
}

fn all_zeros(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// The ranges of B-tree page `page` (number `pgno`, `usable` bytes used) outside its
/// header, cell pointers and cells: the unallocated area and the free blocks' bodies (each
/// free block's first four bytes, the next block's offset and its size, stay). `Err` when it
/// is not a B-tree page, or its header or free blocks do not add up.
fn unused(
    page: &[u8],
    pgno: u32,
    usable: usize,
) -> std::result::Result<Vec<Range<usize>>, PageScrub> {
    let header = if pgno == 1 { 100 } else { 0 };
    if page.len() < usable || usable < header + 12 {
        return Err(PageScrub::Malformed);
    }
    let header_len = match page[header] {
        2 | 5 => 12,
        10 | 13 => 8,
        _ => return Err(PageScrub::NotBtree),
    };
    let be16 = |at: usize| usize::from(u16::from_be_bytes([page[at], page[at + 1]]));
    let cells = be16(header + 3);
    let pointers_end = header + header_len + 2 * cells;
    let content = match be16(header + 5) {
        0 => 65536,
        n => n,
    };
    if pointers_end > content || content > usable {
        return Err(PageScrub::Malformed);
    }
    let mut unused = Vec::with_capacity(4);
    unused.push(pointers_end..content);
    // Free blocks lie among the cells, in ascending order, apart.
    let mut next = be16(header + 1);
    let mut after = content;
    while next != 0 {
        if next < after || next + 4 > usable {
            return Err(PageScrub::Malformed);
        }
        let size = be16(next + 2);
        if size < 4 || next + size > usable {
            return Err(PageScrub::Malformed);
        }
        unused.push(next + 4..next + size);
        after = next + size;
        next = be16(next);
    }
    Ok(unused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::checkpointer::{note_frames, take_wal_frames};
    use crate::sqlite::wal_purge::WalPurge;

    /// A leaf page of 512 usable bytes after `h` bytes of file header (7s): two cells at
    /// 400 and 460, a free block at 430 (16 bytes, pointing at none), junk in the
    /// unallocated area and in the free block's body.
    fn leaf_after(h: usize) -> Vec<u8> {
        let mut p = vec![7u8; h];
        p.resize(h + 512, 0);
        let mut put = |at: usize, v: usize| {
            p[h + at..h + at + 2].copy_from_slice(&u16::try_from(h + v).unwrap().to_be_bytes())
        };
        put(1, 430);
        put(5, 400);
        put(8, 400);
        put(10, 460);
        p[h] = 13;
        p[h + 3..h + 5].copy_from_slice(&2u16.to_be_bytes());
        p[h + 400..h + 430].fill(b'A');
        p[h + 460..h + 512].fill(b'B');
        p[h + 430..h + 432].copy_from_slice(&0u16.to_be_bytes());
        p[h + 432..h + 434].copy_from_slice(&16u16.to_be_bytes());
        p[h + 434..h + 446].fill(b'x');
        p[h + 12..h + 400].fill(b'x');
        p
    }

    fn leaf() -> Vec<u8> {
        leaf_after(0)
    }

    #[test]
    fn only_the_unallocated_area_and_free_block_bodies_are_zeroed() {
        for (h, page) in [(0, 2), (100, 1)] {
            let mut p = leaf_after(h);
            assert_eq!(
                scrub_page(&mut p, page, h + 512),
                PageScrub::Zeroed,
                "page {page}"
            );
            let mut expected = leaf_after(h);
            expected[h + 12..h + 400].fill(0);
            expected[h + 434..h + 446].fill(0);
            assert_eq!(p, expected, "page {page}");
            assert_eq!(scrub_page(&mut p, page, h + 512), PageScrub::Clean);
            assert_eq!(p, expected, "a clean page is left as it is");
        }
    }

    #[test]
    fn pages_that_are_not_b_tree_pages_or_do_not_add_up_are_left_alone() {
        type Mend = fn(&mut Vec<u8>);
        let cases: [(&str, Mend, PageScrub); 6] = [
            ("overflow page", |p| p[0] = 0, PageScrub::NotBtree),
            (
                "pointers past the content",
                |p| p[3..5].copy_from_slice(&200u16.to_be_bytes()),
                PageScrub::Malformed,
            ),
            (
                "content past the page",
                |p| p[5..7].copy_from_slice(&600u16.to_be_bytes()),
                PageScrub::Malformed,
            ),
            (
                "free block before the content",
                |p| p[1..3].copy_from_slice(&300u16.to_be_bytes()),
                PageScrub::Malformed,
            ),
            (
                "free block past the page",
                |p| p[432..434].copy_from_slice(&100u16.to_be_bytes()),
                PageScrub::Malformed,
            ),
            (
                "free blocks in a loop",
                |p| p[430..432].copy_from_slice(&430u16.to_be_bytes()),
                PageScrub::Malformed,
            ),
        ];
        for (what, mend, expected) in cases {
            let mut p = leaf();
            mend(&mut p);
            let before = p.clone();
            assert_eq!(scrub_page(&mut p, 2, 512), expected, "{what}");
            assert_eq!(p, before, "{what}: changed");
        }
    }

    struct Db {
        _dir: tempfile::TempDir,
        path: PathBuf,
        conn: Connection,
        written: Written,
        purge: WalPurge,
    }

    fn db() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = super::super::open_connection(&path).unwrap();
        conn.execute_batch(
            "PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;",
        )
        .unwrap();
        conn.wal_hook(Some(note_frames));
        let written = Written::new(&path);
        let purge = WalPurge::new(&path, &conn);
        Db {
            _dir: dir,
            path,
            conn,
            written,
            purge,
        }
    }

    impl Db {
        /// Runs `sql` (a whole transaction) and tells `written`, as the group writer does.
        fn commit(&self, work: impl FnOnce(&Connection)) {
            self.conn.execute_batch("BEGIN").unwrap();
            work(&self.conn);
            self.conn.execute_batch("COMMIT").unwrap();
            self.written.note(take_wal_frames());
        }

        /// What an erasure's purge does, with or without the scrub.
        fn purge(&self, scrub: bool) -> Option<Scrubbed> {
            let scrubbed = scrub.then(|| super::scrub(&self.conn, &self.written).unwrap());
            self.purge.run(&self.conn).unwrap();
            scrubbed
        }
    }

    /// The database file and its WAL.
    fn files(db: &Path) -> Vec<Vec<u8>> {
        [
            std::fs::read(db).unwrap(),
            std::fs::read(beside(db, "-wal")).unwrap_or_default(),
        ]
        .into()
    }

    const MARK: &[u8] = b"Scrub-canary-";

    /// Values `MARK` + an 8-digit number + filler, 50 to 400 bytes long.
    fn value(n: u64, len: u64) -> Vec<u8> {
        let mut v = [MARK, format!("{n:08}").as_bytes()].concat();
        v.resize(50 + len as usize % 350, b'.');
        v
    }

    /// Every canary number the database's files hold.
    fn present(db: &Path) -> std::collections::BTreeSet<u64> {
        let mut found = std::collections::BTreeSet::new();
        for f in files(db) {
            for at in
                (0..f.len().saturating_sub(MARK.len() + 8)).filter(|&at| f[at..].starts_with(MARK))
            {
                let digits = &f[at + MARK.len()..at + MARK.len() + 8];
                if let Some(n) = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|s| s.parse().ok())
                {
                    found.insert(n);
                }
            }
        }
        found
    }

    /// Deletes every other row of `t` in key order; the canary numbers it deleted.
    fn delete_every_other(c: &Connection) -> Vec<u64> {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = c
            .prepare("SELECT k, v FROM t ORDER BY k")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut deleted = Vec::new();
        for (k, v) in rows.iter().step_by(2) {
            c.execute("DELETE FROM t WHERE k = ?1", [k]).unwrap();
            let digits = std::str::from_utf8(&v[MARK.len()..MARK.len() + 8]).unwrap();
            deleted.push(digits.parse().unwrap());
        }
        deleted
    }

    /// Rows `ns` into `t`, each with a random key and a value of random size from `next`.
    fn insert_random(c: &Connection, next: &mut impl FnMut() -> u64, ns: Range<u64>) {
        for n in ns {
            c.execute(
                "INSERT INTO t VALUES (?1, ?2)",
                params![next().to_be_bytes(), value(n, next())],
            )
            .unwrap();
        }
    }

    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// Rows with random keys and sizes, inserted in transactions between which the WAL
    /// starts over (checkpoints from another connection), then every other one deleted:
    /// B-tree balances rebuild pages along the way. Returns the deleted values still in
    /// either file after the purge, and what the scrub did.
    fn deleted_values_left(scrub: bool) -> (Vec<u64>, Option<Scrubbed>) {
        let d = db();
        let beside = super::super::open_connection(&d.path).unwrap();
        // The first purge reads every page; the rest of the test is about those after it.
        assert!(d.purge(scrub).is_none_or(|s| s.whole));
        let mut next = xorshift(0x2545_F491_4F6C_DD1D);
        for batch in 0..60u64 {
            d.commit(|c| insert_random(c, &mut next, batch * 100..(batch + 1) * 100));
            if batch % 7 == 6 {
                beside
                    .query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
                    .unwrap();
            }
        }
        let mut deleted = Vec::new();
        d.commit(|c| deleted = delete_every_other(c));
        let scrubbed = d.purge(scrub);
        let there = present(&d.path);
        let live: u64 = d
            .conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            there.len() as u64 - deleted.iter().filter(|n| there.contains(n)).count() as u64,
            live,
            "every live value is still there"
        );
        let ok: String = d
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        (
            deleted.into_iter().filter(|n| there.contains(n)).collect(),
            scrubbed,
        )
    }

    #[test]
    fn no_deleted_value_survives_in_the_unused_bytes_of_live_pages() {
        // Without the scrub, B-tree balances leave some deleted values behind: the case
        // is real, so the scrub's zero below means something.
        let (without, _) = deleted_values_left(false);
        assert!(
            !without.is_empty(),
            "no value was left even without the scrub"
        );
        let (with, scrubbed) = deleted_values_left(true);
        eprintln!(
            "DEBUG without {} with {} {scrubbed:?}",
            without.len(),
            with.len()
        );
        assert_eq!(
            with,
            Vec::<u64>::new(),
            "{} of them: {scrubbed:?}",
            with.len()
        );
        let scrubbed = scrubbed.unwrap();
        assert!(
            !scrubbed.whole,
            "the pages written since the first purge were known"
        );
        assert!(
            scrubbed.zeroed > 0 && scrubbed.malformed == 0,
            "{scrubbed:?}"
        );
    }

    fn insert(c: &Connection, k: u8) {
        c.execute("INSERT INTO t VALUES (?1, zeroblob(3000))", [[k]])
            .unwrap();
    }

    fn listed(d: &Db) -> PageSet {
        d.written
            .state()
            .as_ref()
            .expect("an account")
            .pages
            .clone()
    }

    #[test]
    fn pages_written_before_the_wal_started_over_are_still_listed() {
        let d = db();
        d.purge(true);
        d.commit(|c| (1..4).for_each(|k| insert(c, k)));
        let before = listed(&d);
        assert!(!before.iter().collect::<Vec<_>>().is_empty());
        // Every frame copied, the next commit starts the WAL over at its first frame.
        let beside = super::super::open_connection(&d.path).unwrap();
        beside
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .unwrap();
        d.commit(|c| c.execute_batch("CREATE TABLE u (x)").unwrap());
        let after = listed(&d);
        assert!(
            before.iter().all(|p| after.contains(p)),
            "{before:?} {after:?}"
        );
        assert_ne!(before, after, "the new table's page is listed too");
        let s = d.purge(true).unwrap();
        assert!(!s.whole && s.read > 0, "{s:?}");
    }

    /// The pages the frames of the WAL's current generation name, from their headers.
    fn pages_in_frame_headers(d: &Db) -> PageSet {
        let wal = File::open(&d.written.wal).unwrap();
        let header = wal_header(&wal).unwrap().unwrap();
        let frame = u64::from(header.page_size) + FRAME_HEADER;
        let mut pages = PageSet::default();
        let mut at = 0;
        let mut h = [0u8; 16];
        while wal.read_exact_at(&mut h, WAL_HEADER + at * frame).is_ok() && h[8..16] == header.salts
        {
            pages.insert(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
            at += 1;
        }
        assert!(at > FRAMES_IN_FIRST + FRAMES_PER_BLOCK, "{at} frames");
        pages
    }

    #[test]
    fn a_commit_of_more_frames_than_one_index_block_holds_is_read_whole() {
        let d = db();
        d.purge(true);
        d.commit(|c| {
            for k in 0..9000u32 {
                c.execute(
                    "INSERT INTO t VALUES (?1, zeroblob(2000))",
                    [k.to_be_bytes()],
                )
                .unwrap();
            }
        });
        assert_eq!(listed(&d), pages_in_frame_headers(&d));
    }

    #[test]
    fn a_commit_by_another_connection_makes_the_next_scrub_read_every_page() {
        let d = db();
        d.purge(true);
        d.commit(|c| insert(c, 1));
        // Its first commit is in the writer's generation; then it copies every frame and
        // its second commit starts the WAL over: the writer's next commit finds the next
        // generation, as after its own commits, but the first commit's frames are gone.
        let beside = super::super::open_connection(&d.path).unwrap();
        insert(&beside, 2);
        beside
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .unwrap();
        insert(&beside, 3);
        d.commit(|c| insert(c, 4));
        assert!(d.purge(true).unwrap().whole);
    }

    #[test]
    fn a_scrub_leaves_every_commit_durable_whether_it_succeeds_or_not() {
        let synchronous = |c: &Connection| -> i64 {
            c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap()
        };
        let d = db();
        d.commit(|c| insert(c, 1));
        assert!(d.purge(true).is_some());
        assert_eq!(synchronous(&d.conn), 2, "FULL");

        // With auto_vacuum on, pointer-map pages would look like B-tree pages: refused.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA auto_vacuum = FULL; CREATE TABLE t (v);
             PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;",
        )
        .unwrap();
        let e = scrub(&conn, &Written::new(&path)).unwrap_err().to_string();
        assert!(e.contains("auto_vacuum"), "{e}");
        assert_eq!(synchronous(&conn), 2, "FULL");
        assert!(conn.is_autocommit(), "no transaction left open");
    }

    #[test]
    fn the_first_purge_of_a_store_scrubs_what_an_earlier_process_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let mut next = xorshift(0x005E_ED0F_CAFE);
        let deleted = {
            // A process that deleted rows and stopped (or crashed) before any purge.
            let conn = super::super::open_connection(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID; BEGIN",
            )
            .unwrap();
            insert_random(&conn, &mut next, 0..6000);
            let deleted = delete_every_other(&conn);
            conn.execute_batch("COMMIT").unwrap();
            deleted
        };
        let there = present(&path);
        assert!(
            deleted.iter().any(|n| there.contains(n)),
            "the earlier process left deleted values in pages' unused bytes"
        );

        let store = super::super::SqliteStore::open(&path).unwrap();
        crate::Store::purge_deleted(&store);
        let there = present(&path);
        let left: Vec<_> = deleted.iter().filter(|n| there.contains(n)).collect();
        assert!(left.is_empty(), "{} deleted values left", left.len());
        assert_eq!(there.len(), 3000, "every live value is still there");
    }

    /// A database with B-tree pages of both kinds, overflow pages and free pages.
    fn mixed() -> Db {
        let d = db();
        let mut next = xorshift(7);
        d.commit(|c| {
            c.execute_batch("CREATE TABLE o (v BLOB); INSERT INTO o VALUES (zeroblob(20000))")
                .unwrap();
            insert_random(c, &mut next, 0..3000);
        });
        d.commit(|c| {
            c.execute("DELETE FROM t WHERE k < x'60'", []).unwrap();
        });
        d
    }

    #[test]
    fn the_walk_of_every_b_tree_finds_the_pages_the_first_byte_does() {
        let d = mixed();
        let walked = btree_pages_by_walk(&d.conn).unwrap();
        let count: u32 = d
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        let free: u32 = d
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .unwrap();
        let overflow: u32 = d
            .conn
            .query_row(
                "SELECT count(*) FROM dbstat WHERE pagetype = 'overflow'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            free > 0 && overflow > 0,
            "{free} free, {overflow} overflow pages"
        );
        let mut read = d
            .conn
            .prepare("SELECT data FROM sqlite_dbpage WHERE pgno = ?1")
            .unwrap();
        let mut typed = PageSet::default();
        for page in 1..=count {
            let mut data: Vec<u8> = read.query_row([page], |r| r.get(0)).unwrap();
            if scrub_page(&mut data, page, 4096) != PageScrub::NotBtree {
                typed.insert(page);
            }
        }
        assert_eq!(typed, walked);

        // A scrub that walks leaves the same pages as one that reads first bytes.
        let e = mixed();
        let by_byte = scrub_with(&d.conn, &d.written, TYPED_BY_FIRST_BYTE).unwrap();
        let by_walk = scrub_with(&e.conn, &e.written, 0).unwrap();
        assert!(by_byte.zeroed > 0);
        assert_eq!(
            (by_byte.zeroed, by_byte.malformed),
            (by_walk.zeroed, by_walk.malformed)
        );
        let pages = |d: &Db| -> Vec<Vec<u8>> {
            let mut st = d
                .conn
                .prepare("SELECT data FROM sqlite_dbpage ORDER BY pgno")
                .unwrap();
            st.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert!(pages(&d) == pages(&e));
    }
}
