//! Group commit for the single writer connection: units of work that arrive while another
//! one runs share its transaction and its one durable `COMMIT`, so N concurrent callers pay
//! for one fsync instead of N. Durability is unchanged: no caller returns success before the
//! `COMMIT` holding its unit (and its audit entry) has returned under `synchronous = FULL`.
//!
//! How: the writer lock's holder opens `BEGIN IMMEDIATE` if no transaction is open, runs its
//! unit inside `SAVEPOINT unit` (so a unit that fails rolls back alone; a unit that only
//! appends audit entries runs without one, and its failure fails the group), and then either
//! commits — when nobody is waiting for the lock, or the group is full — or leaves the
//! transaction open for the next waiter and waits until some later member commits the
//! group: asleep (`write`), or, for an audited read served by the async server, without a
//! thread (`run` hands back the group, whose outcome the caller polls as a future). Every
//! member of a group gets the group's outcome: if the `COMMIT` fails (disk full, I/O
//! error, an injected fault), all of them fail and nothing of theirs is stored. A single
//! caller therefore commits at once, exactly as without grouping.

use super::checkpointer::Checkpointer;
use super::codec::map_err;
use super::page_scrub::Written;
use crate::{Settlement, StoreError};
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// At most this many units share one commit, which bounds how long the first one waits.
pub(crate) const MAX_GROUP: usize = 64;

/// The group size limit: [`MAX_GROUP`], or `STORE_SQLITE_MAX_GROUP` (1 to 64) when set (not a
/// `CUSTODIAN_*` variable: those are configuration, and this is no setting to tune),
/// so that the benchmarks can measure the same build with grouping off (1: every unit
/// commits alone, as before group commit). Durability is the same either way.
fn max_group() -> usize {
    std::env::var("STORE_SQLITE_MAX_GROUP")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(MAX_GROUP, |n| n.clamp(1, MAX_GROUP))
}

/// Runs one transaction-control statement (`BEGIN`, `COMMIT`, `SAVEPOINT unit`, ...)
/// from the connection's statement cache: every unit of work runs several, and parsing
/// them again each time (`execute_batch`) was a few percent of an audited read's CPU.
pub(crate) fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// What a unit's failure undoes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Containment {
    /// The unit alone: it runs in a savepoint (unless it is its group's first).
    Unit,
    /// Its whole group, as a failed `COMMIT` does. For units that only append audit
    /// entries, which fail only when the database itself does: they save the savepoint,
    /// whose journal copies every page the unit touches (a fifth of appending an audited
    /// read's entry at 64 connections).
    Group,
    /// The unit alone, without a savepoint: the open group is committed first, and the
    /// unit opens the next one. For units that change many rows (every record of a
    /// purpose): in a savepoint, each statement that keeps its own journal (a record
    /// moved to another subject, for its foreign-key check) copies its page after the
    /// unit's whole in-memory journal and, when it ends, truncates that journal by
    /// walking it from its start, so the unit's cost grew with the square of its size (a
    /// fifth of the controller workload's CPU at 16 threads, perf). Costs the group one
    /// early commit.
    First,
}

pub(crate) struct Writer {
    pub(crate) conn: Connection,
    /// The group whose transaction is open, if one is.
    open: Option<Arc<Group>>,
    /// Successful units in the open group that are waiting for (or will run) its commit.
    members: usize,
}

/// A value set once and waited for, by threads (blocking) or by futures (a waker each): a
/// group's commit outcome, a queued read's appended entry (`appender::Slot`).
pub(crate) struct Outcome<T> {
    state: Mutex<OutcomeState<T>>,
    set: Condvar,
}

struct OutcomeState<T> {
    value: Option<T>,
    wakers: Vec<Waker>,
}

impl<T> Default for Outcome<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(OutcomeState {
                value: None,
                wakers: Vec::new(),
            }),
            set: Condvar::new(),
        }
    }
}

impl<T> Outcome<T> {
    fn state(&self) -> MutexGuard<'_, OutcomeState<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the value and wakes every thread and future waiting for it.
    pub(crate) fn set(&self, value: T) {
        let wakers = {
            let mut state = self.state();
            state.value = Some(value);
            std::mem::take(&mut state.wakers)
        };
        self.set.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    /// Blocks until the value is set, then gives `read` what it needs of it.
    pub(crate) fn wait<R>(&self, read: impl FnOnce(&mut T) -> R) -> R {
        let mut state = self.state();
        loop {
            if let Some(value) = state.value.as_mut() {
                return read(value);
            }
            state = self.set.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// `read` of the value if it is set; otherwise `cx`'s waker is woken once it is.
    pub(crate) fn poll<R>(&self, cx: &mut Context<'_>, read: impl FnOnce(&mut T) -> R) -> Poll<R> {
        let mut state = self.state();
        match state.value.as_mut() {
            Some(value) => Poll::Ready(read(value)),
            None => {
                if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    state.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// Where a group's members wait for its outcome. Each group has its own lock and condition
/// variable: members woken by a commit take this small lock, not the writer's, so they do
/// not queue against the units of the next group (at 64 connections, waking on the
/// writer's lock was a fifth of the time spent around the writer). Members that wait as
/// futures leave a waker instead of a sleeping thread.
#[derive(Default)]
pub(crate) struct Group(Outcome<Result<(), StoreError>>);

impl Group {
    fn settle(&self, outcome: Result<(), StoreError>) {
        self.0.set(outcome);
    }

    fn copy(outcome: &mut Result<(), StoreError>) -> Result<(), StoreError> {
        outcome.as_ref().map(|_| ()).map_err(clone_err)
    }
}

impl Settlement for Group {
    /// A copy of the outcome, once there is one.
    fn wait(&self) -> Result<(), StoreError> {
        self.0.wait(Self::copy)
    }

    fn poll_settled(&self, cx: &mut Context<'_>) -> Poll<Result<(), StoreError>> {
        self.0.poll(cx, Self::copy)
    }
}

/// What became of a unit that succeeded.
pub(crate) enum Unit<T> {
    /// Its group is committed: the unit is durable.
    Durable(T),
    /// It joined a group that a unit queued behind it will commit; durable once `Group`
    /// settles successfully.
    Joined(T, Arc<Group>),
}

pub(crate) struct GroupWriter {
    writer: Mutex<Writer>,
    /// Checkpoints the WAL off the commits' path, when there is one (see `checkpointer`);
    /// otherwise SQLite checkpoints inside the commit that fills the WAL.
    checkpointer: Option<Checkpointer>,
    /// Told the pages each commit wrote, when the WAL is watched (see `page_scrub`).
    written: Option<Arc<Written>>,
    /// Callers blocked on the writer lock: when there are some, the lock holder leaves the
    /// transaction open for them instead of committing.
    waiting: AtomicUsize,
    max_group: usize,
}

pub(crate) fn clone_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Backend(s) => StoreError::Backend(s.clone()),
        StoreError::Conflict(s) => StoreError::Conflict(s),
        StoreError::Corrupt { table, reason } => StoreError::Corrupt {
            table,
            reason: reason.clone(),
        },
        StoreError::Unavailable(s) => StoreError::Unavailable(s.clone()),
    }
}

impl GroupWriter {
    /// A writer whose commits checkpoint as SQLite does by default (tests).
    #[cfg(test)]
    pub(crate) fn new(conn: Connection) -> Self {
        Self::with(conn, None, None)
    }

    /// [`Self::new`], with the WAL of the database at `path` checkpointed in the background.
    /// Each commit tells `written` which pages it wrote.
    pub(crate) fn checkpointed(conn: Connection, path: PathBuf, written: Arc<Written>) -> Self {
        let checkpointer = Checkpointer::new(path, &conn);
        Self::with(conn, Some(checkpointer), Some(written))
    }

    fn with(
        conn: Connection,
        checkpointer: Option<Checkpointer>,
        written: Option<Arc<Written>>,
    ) -> Self {
        Self {
            writer: Mutex::new(Writer {
                conn,
                open: None,
                members: 0,
            }),
            checkpointer,
            written,
            waiting: AtomicUsize::new(0),
            max_group: max_group(),
        }
    }

    /// Held by whoever checkpoints the database through the writer: no background
    /// checkpoint runs meanwhile (SQLite would answer the second one BUSY).
    pub(crate) fn no_background_checkpoint(&self) -> Option<MutexGuard<'_, ()>> {
        self.checkpointer.as_ref().map(Checkpointer::exclusive)
    }

    #[cfg(test)]
    pub(crate) fn background_checkpoints(&self) -> u64 {
        self.checkpointer.as_ref().map_or(0, Checkpointer::ran)
    }

    /// The writer, with no transaction open: whatever group was open is committed first
    /// (its members get the outcome). For work that cannot run inside a transaction
    /// (checkpoints, `VACUUM INTO`).
    pub(crate) fn exclusive(
        &self,
        fault: impl Fn() -> Option<rusqlite::Error>,
    ) -> MutexGuard<'_, Writer> {
        let mut w = self.lock();
        if w.open.is_some() {
            let _ = self.commit(&mut w, &fault, 0);
        }
        w
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        match self.writer.lock() {
            Ok(w) => w,
            Err(poisoned) => {
                // A unit panicked while holding the lock: its savepoint may be dangling, so
                // the whole open group is abandoned, and its members are told.
                let mut w = poisoned.into_inner();
                self.writer.clear_poison();
                if w.open.is_some() {
                    let members = w.members;
                    self.fail(
                        &mut w,
                        StoreError::Backend(
                            "a unit of work panicked; its group was rolled back".into(),
                        ),
                        members,
                    );
                }
                w
            }
        }
    }

    /// Rolls the open group back and gives every waiting member `e`.
    fn fail(&self, w: &mut Writer, e: StoreError, waiting_members: usize) {
        if !w.conn.is_autocommit() {
            let _ = control(&w.conn, "ROLLBACK");
        }
        self.settle(w, Err(e), waiting_members);
    }

    fn settle(&self, w: &mut Writer, outcome: Result<(), StoreError>, waiting_members: usize) {
        let group = w.open.take().expect("an open group");
        if waiting_members > 0 {
            group.settle(outcome);
        }
        w.members = 0;
    }

    /// Commits the open group. `me` is 1 when the caller is itself a member (it gets the
    /// outcome as the return value), 0 otherwise.
    fn commit(
        &self,
        w: &mut Writer,
        fault: &dyn Fn() -> Option<rusqlite::Error>,
        me: usize,
    ) -> Result<(), StoreError> {
        let waiting_members = w.members - me;
        let outcome = match fault() {
            // As when COMMIT itself fails: the transaction is rolled back.
            Some(e) => {
                let _ = control(&w.conn, "ROLLBACK");
                Err(map_err(e))
            }
            None => match control(&w.conn, "COMMIT") {
                Ok(()) => Ok(()),
                Err(e) => {
                    if !w.conn.is_autocommit() {
                        let _ = control(&w.conn, "ROLLBACK");
                    }
                    Err(map_err(e))
                }
            },
        };
        let mine = outcome.as_ref().map(|_| ()).map_err(clone_err);
        self.settle(w, outcome, waiting_members);
        let frames = super::checkpointer::take_wal_frames();
        if let Some(written) = &self.written {
            written.note(frames);
        }
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.after_commit(&w.conn, frames);
        }
        mine
    }

    /// Runs `f` as one unit of work and returns once it is durable (or has failed).
    pub(crate) fn write<T, E: From<StoreError>>(
        &self,
        fault: &dyn Fn() -> Option<rusqlite::Error>,
        containment: Containment,
        f: impl FnOnce(&Connection) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        match self.run(fault, containment, f)? {
            Unit::Durable(out) => Ok(out),
            Unit::Joined(out, group) => group.wait().map(|()| out).map_err(E::from),
        }
    }

    /// Runs `f` as one unit of work and returns once it has run: its group may still be
    /// open, and the unit is durable only once that group settles successfully.
    pub(crate) fn run<T, E: From<StoreError>>(
        &self,
        fault: &dyn Fn() -> Option<rusqlite::Error>,
        containment: Containment,
        f: impl FnOnce(&Connection) -> std::result::Result<T, E>,
    ) -> std::result::Result<Unit<T>, E> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut w = self.lock();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        if containment == Containment::First && w.open.is_some() {
            // Its members get the outcome; this unit does not depend on it.
            let _ = self.commit(&mut w, fault, 0);
        }
        if w.open.is_none() {
            control(&w.conn, "BEGIN IMMEDIATE").map_err(|e| E::from(map_err(e)))?;
            w.open = Some(Arc::default());
        }
        let group = w.open.clone().expect("open");
        // The first unit of a group needs no savepoint: if it fails, the transaction holds
        // nothing else and is rolled back whole. Later units run in one, so that a failure
        // undoes only their own writes (at the price of SQLite copying each page they
        // touch first into the savepoint's journal).
        let alone = w.members == 0;
        let savepoint = !alone && containment == Containment::Unit;
        if savepoint && let Err(e) = control(&w.conn, "SAVEPOINT unit") {
            let members = w.members;
            self.fail(&mut w, map_err(e), members);
            return Err(E::from(StoreError::Backend(
                "could not start a unit of work".into(),
            )));
        }
        let out = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&w.conn))) {
            Ok(out) => out,
            Err(panic) => {
                // The unit's savepoint is dangling: abandon the whole group, tell its
                // members, and let the panic go on.
                let members = w.members;
                self.fail(
                    &mut w,
                    StoreError::Backend(
                        "a unit of work panicked; its group was rolled back".into(),
                    ),
                    members,
                );
                drop(w);
                std::panic::resume_unwind(panic);
            }
        };
        let out = match out {
            Ok(v) if !savepoint => {
                w.members += 1;
                Ok(v)
            }
            Ok(v) => match control(&w.conn, "RELEASE unit") {
                Ok(()) => {
                    w.members += 1;
                    Ok(v)
                }
                Err(e) => Err(E::from(map_err(e))),
            },
            Err(e) => Err(e),
        };
        let out = match out {
            Ok(v) => v,
            Err(e) => {
                if w.conn.is_autocommit() {
                    // SQLite rolled the whole transaction back (I/O error, disk full): the
                    // group is lost, and its waiting members fail with this unit.
                    let members = w.members;
                    w.open = Some(group);
                    self.fail(
                        &mut w,
                        StoreError::Unavailable("the database rolled back the transaction".into()),
                        members,
                    );
                    return Err(e);
                }
                if alone {
                    // Nothing else in the transaction: undo it whole.
                    let _ = control(&w.conn, "ROLLBACK");
                    self.settle(&mut w, Ok(()), 0);
                    return Err(e);
                }
                if !savepoint {
                    // Contained by the group: its units are undone with this one.
                    let members = w.members;
                    self.fail(
                        &mut w,
                        StoreError::Backend(
                            "an audit append failed; its group was rolled back".into(),
                        ),
                        members,
                    );
                    return Err(e);
                }
                if control(&w.conn, "ROLLBACK TO unit")
                    .and_then(|()| control(&w.conn, "RELEASE unit"))
                    .is_err()
                {
                    let members = w.members;
                    self.fail(
                        &mut w,
                        StoreError::Backend("could not undo a failed unit of work".into()),
                        members,
                    );
                    return Err(e);
                }
                // This unit is undone; the group still needs someone to commit it.
                if self.waiting.load(Ordering::SeqCst) == 0 || w.members >= self.max_group {
                    if w.members == 0 {
                        let _ = control(&w.conn, "ROLLBACK");
                        self.settle(&mut w, Ok(()), 0);
                    } else {
                        let _ = self.commit(&mut w, fault, 0);
                    }
                }
                return Err(e);
            }
        };
        if self.waiting.load(Ordering::SeqCst) == 0 || w.members >= self.max_group {
            return self
                .commit(&mut w, fault, 1)
                .map(|()| Unit::Durable(out))
                .map_err(E::from);
        }
        // Others are queued for the lock: let them join; one of them commits the group.
        Ok(Unit::Joined(out, group))
    }
}

/// Shares WAL purges between erasures: each caller returns once a checkpoint that
/// *started after it asked* has completed (so it covers the caller's committed erasure),
/// but callers that ask while one runs are served together by the next one, instead of
/// each paying for its own.
#[derive(Default)]
pub(crate) struct CheckpointGate {
    state: Mutex<GateState>,
    done: Condvar,
}

#[derive(Default)]
struct GateState {
    requested: u64,
    completed: u64,
    running: bool,
}

impl CheckpointGate {
    pub(crate) fn run(
        &self,
        checkpoint: impl Fn() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let lock = || self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mine = {
            let mut s = lock();
            s.requested += 1;
            s.requested
        };
        let mut s = lock();
        loop {
            if s.completed >= mine {
                return Ok(());
            }
            if !s.running {
                s.running = true;
                let upto = s.requested;
                drop(s);
                let r = checkpoint();
                let mut s = lock();
                s.running = false;
                if r.is_ok() {
                    s.completed = s.completed.max(upto);
                }
                self.done.notify_all();
                return r;
            }
            s = self.done.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(conn: &Connection) -> Vec<i64> {
        let mut st = conn.prepare("SELECT x FROM t ORDER BY x").unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    /// Unit `first` runs and, before returning, waits until a second caller queues for the
    /// writer, so that both would share one group; the second runs `second` (given the
    /// database's path) under `containment`. Returns both outcomes and the rows stored
    /// afterwards.
    fn group_of_two<T: Send>(
        containment: Containment,
        second: impl FnOnce(&Connection, &std::path::Path) -> Result<T, StoreError> + Send,
    ) -> (Result<(), StoreError>, Result<T, StoreError>, Vec<i64>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let conn = super::super::open_connection(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER NOT NULL)")
            .unwrap();
        let writer = GroupWriter::new(conn);
        let no_fault = || None;
        let queued = std::sync::Barrier::new(2);
        let (first, second) = std::thread::scope(|s| {
            let first = s.spawn(|| {
                writer.write(&no_fault, Containment::Unit, |c| {
                    c.execute("INSERT INTO t VALUES (1)", []).map_err(map_err)?;
                    queued.wait();
                    while writer.waiting.load(Ordering::SeqCst) == 0 {
                        std::thread::yield_now();
                    }
                    Ok::<_, StoreError>(())
                })
            });
            let second = s.spawn(|| {
                queued.wait();
                writer.write(&no_fault, containment, |c| second(c, &path))
            });
            (first.join().unwrap(), second.join().unwrap())
        });
        let stored = rows(&writer.lock().conn);
        (first, second, stored)
    }

    /// [`group_of_two`] whose second unit writes, then fails.
    fn group_of_two_whose_second_fails(
        containment: Containment,
    ) -> (Result<(), StoreError>, Result<(), StoreError>, Vec<i64>) {
        group_of_two(containment, |c, _| {
            c.execute("INSERT INTO t VALUES (2)", []).map_err(map_err)?;
            Err::<(), _>(StoreError::Backend("the append failed".into()))
        })
    }

    /// Unit 1 joins a group (a second caller is queued behind it) and returns at once;
    /// the second unit holds its group open until the test has polled the first's outcome,
    /// then commits, with `commit_fault` injected. Returns the first unit's outcome as the
    /// poll saw it before the commit, the number of wake-ups, its outcome after, and the
    /// rows stored.
    fn joined_unit_then_commit(
        commit_fault: bool,
    ) -> (bool, usize, Result<(), StoreError>, Vec<i64>) {
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open_connection(&dir.path().join("g.db")).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER NOT NULL)")
            .unwrap();
        let writer = GroupWriter::new(conn);
        let no_fault = || None;
        let fault = || commit_fault.then(|| rusqlite::Error::InvalidQuery);
        let queued = std::sync::Barrier::new(2);
        let polled = std::sync::Barrier::new(2);
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        std::thread::scope(|s| {
            let second = s.spawn(|| {
                queued.wait();
                writer.write(&fault, Containment::Group, |c| {
                    c.execute("INSERT INTO t VALUES (2)", []).map_err(map_err)?;
                    polled.wait();
                    Ok::<_, StoreError>(())
                })
            });
            let first = writer
                .run(&no_fault, Containment::Unit, |c| {
                    c.execute("INSERT INTO t VALUES (1)", []).map_err(map_err)?;
                    queued.wait();
                    while writer.waiting.load(Ordering::SeqCst) == 0 {
                        std::thread::yield_now();
                    }
                    Ok::<_, StoreError>(())
                })
                .unwrap();
            let Unit::Joined((), group) = first else {
                panic!("the first unit joined a group left open for the second")
            };
            let before = group
                .poll_settled(&mut Context::from_waker(&waker))
                .is_pending();
            polled.wait();
            let second = second.join().unwrap();
            assert_eq!(second.is_ok(), !commit_fault, "{second:?}");
            let after = match group.poll_settled(&mut Context::from_waker(&waker)) {
                Poll::Ready(outcome) => outcome,
                Poll::Pending => panic!("settled once the group committed"),
            };
            assert_eq!(group.wait().is_ok(), after.is_ok(), "wait agrees with poll");
            let stored = rows(&writer.lock().conn);
            (before, woken.0.load(Ordering::SeqCst), after, stored)
        })
    }

    #[test]
    fn a_joined_unit_is_durable_once_a_later_unit_commits_its_group() {
        let (pending_before, wakes, after, stored) = joined_unit_then_commit(false);
        assert!(pending_before, "not settled before the commit");
        assert_eq!(wakes, 1, "the waiting future is woken once");
        assert!(after.is_ok(), "{after:?}");
        assert_eq!(stored, [1, 2]);
    }

    #[test]
    fn a_joined_unit_fails_when_its_group_commit_fails() {
        let (pending_before, wakes, after, stored) = joined_unit_then_commit(true);
        assert!(pending_before);
        assert_eq!(wakes, 1);
        assert!(after.is_err(), "the group's failure is the unit's");
        assert!(
            stored.is_empty(),
            "nothing of the group is stored: {stored:?}"
        );
    }

    #[test]
    fn a_failing_unit_in_a_savepoint_fails_alone() {
        let (first, second, stored) = group_of_two_whose_second_fails(Containment::Unit);
        assert!(first.is_ok(), "{first:?}");
        assert!(second.is_err());
        assert_eq!(stored, [1]);
    }

    #[test]
    fn a_failing_unit_that_runs_first_fails_alone() {
        let (first, second, stored) = group_of_two_whose_second_fails(Containment::First);
        assert!(first.is_ok(), "{first:?}");
        assert!(second.is_err());
        assert_eq!(stored, [1]);
    }

    /// A unit that must run first commits the group it finds open before it runs: another
    /// connection already sees that group's row while the unit works.
    #[test]
    fn a_unit_that_runs_first_commits_the_open_group_before_it() {
        let (first, second, stored) = group_of_two(Containment::First, |c, path| {
            let seen = rows(&super::super::open_connection(path).unwrap());
            c.execute("INSERT INTO t VALUES (2)", []).map_err(map_err)?;
            Ok(seen)
        });
        assert!(first.is_ok(), "{first:?}");
        assert_eq!(
            second.ok(),
            Some(vec![1]),
            "the first group was committed before"
        );
        assert_eq!(stored, [1, 2]);
    }

    #[test]
    fn a_failing_append_only_unit_fails_its_whole_group() {
        let (first, second, stored) = group_of_two_whose_second_fails(Containment::Group);
        assert!(
            matches!(&first, Err(StoreError::Backend(m)) if m.contains("group was rolled back")),
            "{first:?}"
        );
        assert!(matches!(&second, Err(StoreError::Backend(m)) if m == "the append failed"));
        assert!(
            stored.is_empty(),
            "nothing of the group is stored: {stored:?}"
        );
    }
}
