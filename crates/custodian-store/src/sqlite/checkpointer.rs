//! Checkpoints in the background, off the path of the commit that filled the WAL.
//!
//! By default SQLite checkpoints inside the `COMMIT` that takes the WAL past 1,000 frames:
//! that commit's caller, and every member of its group, waits for every page copied into
//! the main file and the main file's fsync (a bulk alteration of a purpose's 4,000 records
//! at N = 100,000: a fifth of its time, measured with the checkpoint moved out). Here the
//! writer's WAL hook (which replaces SQLite's automatic checkpoint) only notes how many
//! frames the WAL holds after each commit, and past the same 1,000 a thread of the store's
//! own runs the same `PASSIVE` checkpoint on a connection of its own while the writer goes
//! on, as PostgreSQL's checkpointer does. Durability does not change: a commit is durable in
//! the WAL (`synchronous = FULL`) before it returns, checkpointed or not.
//!
//! SQLite runs one checkpoint at a time and answers `SQLITE_BUSY` to a second one without
//! waiting, so whoever else checkpoints this store's database (the WAL purge after an
//! erasure, `checkpoint_wal`) holds [`Checkpointer::exclusive`] while it does.

use super::codec::map_err;
use crate::Result;
use crate::worker::Worker;
use rusqlite::Connection;
use std::cell::Cell;
use std::os::raw::c_int;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Past this many frames in the WAL, a checkpoint runs (SQLite's own default).
pub(crate) const CHECKPOINT_FROM_FRAMES: c_int = 1000;

thread_local! {
    /// Frames in the WAL after the last commit of a hooked writer on this thread.
    static WAL_FRAMES: Cell<c_int> = const { Cell::new(0) };
}

/// The writer's WAL hook: SQLite calls it inside each `COMMIT` that wrote frames, on the
/// committing thread, with the WAL's frame count. It checkpoints nothing.
pub(crate) fn note_frames(_: &rusqlite::hooks::Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|c| c.set(frames));
    Ok(())
}

/// The frames in the WAL after the last commit on this thread of a hooked writer, once (0:
/// that commit wrote none, or it was taken already).
pub(crate) fn take_wal_frames() -> c_int {
    WAL_FRAMES.with(|c| c.replace(0))
}

pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    state: Mutex<State>,
    wake: Condvar,
    /// Held while any checkpoint of this store runs.
    running: Mutex<()>,
}

#[derive(Default)]
struct State {
    requested: bool,
    /// The WAL's frames when it passed the threshold and the thread was asked to checkpoint
    /// it; until the WAL starts over, the writer finishes the job (see `after_commit`).
    handed_off: Option<c_int>,
    closed: bool,
    /// Could it not be started, commits checkpoint themselves.
    thread: Worker,
    /// Checkpoints the thread ran (tests).
    ran: u64,
}

impl Checkpointer {
    /// Replaces `writer`'s automatic checkpoint with this store's thread.
    pub(crate) fn new(path: PathBuf, writer: &Connection) -> Self {
        writer.wal_hook(Some(note_frames));
        Self {
            shared: Arc::new(Shared {
                path,
                state: Mutex::default(),
                wake: Condvar::new(),
                running: Mutex::new(()),
            }),
        }
    }

    /// Called right after a commit of the writer that left `frames` in the WAL, on the thread
    /// that committed (which holds the writer): past [`CHECKPOINT_FROM_FRAMES`], hands the
    /// checkpoint to the thread; as many frames later, the WAL still not started over,
    /// checkpoints here.
    ///
    /// Why the second step: SQLite starts the WAL over only when a write begins with every
    /// frame copied, and a checkpoint beside the writer copies only the frames committed
    /// before it began. Under a steady stream of commits (audited reads) it never catches up,
    /// the WAL grows, and every commit would ask for another checkpoint and its two fsyncs
    /// (16 threads of audited reads: 6-13 % more CPU per operation, measured). Here the
    /// writer copies what is left, as SQLite's own checkpoint would have, then the next write
    /// starts the WAL over: each frame is still copied once.
    pub(crate) fn after_commit(&self, writer: &Connection, frames: c_int) {
        let mut state = self.shared.state();
        if state.closed {
            return;
        }
        if frames >= CHECKPOINT_FROM_FRAMES && state.thread.not_started() {
            state.thread = self.shared.start();
        }
        let running = state.thread.running();
        match decide(state.handed_off, frames, running) {
            Step::Nothing => {}
            Step::StartedOver => state.handed_off = None,
            Step::HandOff => {
                state.handed_off = Some(frames);
                state.requested = true;
                drop(state);
                self.shared.wake.notify_one();
            }
            Step::Here => {
                drop(state);
                let _alone = self.exclusive();
                let _ = passive(writer);
            }
        }
    }

    /// No checkpoint of this store runs while the guard is held.
    pub(crate) fn exclusive(&self) -> MutexGuard<'_, ()> {
        self.shared
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    pub(crate) fn ran(&self) -> u64 {
        self.shared.state().ran
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let thread = {
            let mut state = self.shared.state();
            state.closed = true;
            std::mem::take(&mut state.thread)
        };
        self.shared.wake.notify_one();
        thread.join();
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(self: &Arc<Self>) -> Worker {
        let shared = self.clone();
        Worker::start(
            "custodian-checkpoint",
            "commits checkpoint the WAL themselves",
            move || shared.serve(),
        )
    }

    fn serve(&self) {
        let mut conn: Option<Connection> = None;
        loop {
            {
                let mut state = self.state();
                while !state.requested && !state.closed {
                    state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                // Closing: the last connection to close checkpoints the WAL anyway.
                if state.closed {
                    return;
                }
                state.requested = false;
            }
            let outcome = {
                let _guard = self.running.lock().unwrap_or_else(|p| p.into_inner());
                if conn.is_none() {
                    conn = super::open_connection(&self.path).ok();
                }
                conn.as_ref().map_or(Outcome::Failed, |c| match passive(c) {
                    Ok(true) => Outcome::Done,
                    Ok(false) => Outcome::Partial,
                    Err(_) => Outcome::Failed,
                })
            };
            metrics::counter!("custodian_wal_checkpoints_total", "outcome" => outcome.label())
                .increment(1);
            self.state().ran += 1;
        }
    }
}

enum Outcome {
    Done,
    /// Readers still used frames it could not copy; a later checkpoint will.
    Partial,
    Failed,
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Partial => "partial",
            Self::Failed => "failed",
        }
    }
}

/// What a commit that left `frames` in the WAL does (see [`Checkpointer::after_commit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Nothing,
    /// The WAL is under the threshold again: it started over.
    StartedOver,
    /// Asks the thread to checkpoint.
    HandOff,
    /// Checkpoints on the writer, at once.
    Here,
}

fn decide(handed_off: Option<c_int>, frames: c_int, thread_running: bool) -> Step {
    if frames < CHECKPOINT_FROM_FRAMES {
        return if handed_off.is_some() {
            Step::StartedOver
        } else {
            Step::Nothing
        };
    }
    if !thread_running {
        return Step::Here;
    }
    match handed_off {
        // Within a threshold's worth of frames of the handoff: still the thread's.
        Some(at) if (at..at + CHECKPOINT_FROM_FRAMES).contains(&frames) => Step::Nothing,
        Some(at) if frames >= at => Step::Here,
        // First past the threshold, or past it again in one commit since the WAL started
        // over (fewer frames than at the handoff).
        _ => Step::HandOff,
    }
}

/// A `PASSIVE` checkpoint: copies what no reader still needs, waits for nobody. Whether it
/// copied every frame.
fn passive(conn: &Connection) -> Result<bool> {
    checkpoint(conn, Mode::Passive).map(|c| c.complete())
}

/// SQLite's checkpoint modes this store uses.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// Copies what no reader still needs; waits for nobody.
    Passive,
    /// Copies every frame, then waits until no reader uses the WAL: the next writer starts
    /// it over.
    Restart,
    /// [`Self::Restart`], then empties the WAL file.
    Truncate,
}

/// What `PRAGMA wal_checkpoint` answered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checkpointed {
    /// It could not finish: a reader or another checkpoint held it back.
    pub(crate) busy: bool,
    /// Frames in the WAL.
    pub(crate) log: i64,
    /// Frames copied into the main file.
    pub(crate) copied: i64,
}

impl Checkpointed {
    /// Every frame is in the main file.
    pub(crate) fn complete(&self) -> bool {
        !self.busy && self.copied == self.log
    }
}

pub(crate) fn checkpoint(conn: &Connection, mode: Mode) -> Result<Checkpointed> {
    let sql = match mode {
        Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
        Mode::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
    };
    conn.query_row(sql, [], |r| {
        Ok(Checkpointed {
            busy: r.get::<_, i64>(0)? != 0,
            log: r.get(1)?,
            copied: r.get(2)?,
        })
    })
    .map_err(map_err)
}

#[cfg(test)]
mod tests {
    use super::{CHECKPOINT_FROM_FRAMES as T, Step, decide};

    #[test]
    fn the_thread_takes_the_first_threshold_and_the_writer_the_next() {
        let cases = [
            // (handed off at, frames after the commit, thread running) -> step
            (None, 10, true, Step::Nothing),
            (None, T - 1, true, Step::Nothing),
            (None, T, true, Step::HandOff),
            (None, 5 * T, true, Step::HandOff),
            (Some(T + 5), T + 5, true, Step::Nothing),
            (Some(T + 5), 2 * T + 4, true, Step::Nothing),
            (Some(T + 5), 2 * T + 5, true, Step::Here),
            (Some(T + 5), 9 * T, true, Step::Here),
            // Started over since, and one commit past the threshold again: the thread's.
            (Some(3 * T), T + 1, true, Step::HandOff),
            (Some(T), 3, true, Step::StartedOver),
            // No thread: every checkpoint on the writer, as SQLite's own.
            (None, T, false, Step::Here),
            (None, T - 1, false, Step::Nothing),
        ];
        for (handed_off, frames, running, step) in cases {
            assert_eq!(
                decide(handed_off, frames, running),
                step,
                "handed off at {handed_off:?}, {frames} frames, thread running: {running}"
            );
        }
    }
}
