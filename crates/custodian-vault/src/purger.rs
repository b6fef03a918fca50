//! What an erasure leaves in the database's files goes shortly after the erasure, by a
//! thread of its own, not before the erasure answers.
//!
//! An erasure commits in one transaction with its audit entry: from then on nothing reads
//! what it erased, and a subject's key is gone from the database and from memory. What the
//! deleted rows leave in the files (on SQLite the WAL's old frames and the unused bytes of
//! rewritten pages) is taken off by `Store::purge_deleted`, which checkpoints the WAL and
//! syncs the database. After every erasure, on its caller's thread, that was a third of the
//! run time of GDPRbench's deleting workloads at one thread (controller 3.0 s of 9.3 s,
//! customer 1.6 s of 5.2 s at N = 100,000), and at sixteen threads each purge held the one
//! writer that every other write waits for.
//!
//! So an erasure asks this thread for a purge ([`Purger::request`]), which runs at most
//! `delay` after the first erasure not yet purged, and covers every erasure committed before
//! it starts: the erased data is in the files for at most `delay` plus one purge. A zero
//! delay purges on the erasure's own thread before it returns, as before. A vault dropped
//! with a purge pending runs it before it is gone; a process that dies first leaves it to
//! the next `custodian serve`, which purges before it listens.

use custodian_store::worker::Worker;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long erased data may stay in the files by default: long enough that the erasures of
/// a busy second share one purge, short against "without undue delay" (GDPR Art. 17(1)).
pub const DEFAULT_DELAY: Duration = Duration::from_secs(1);

pub(crate) struct Purger {
    shared: Arc<Shared>,
}

/// What a purge does: `Store::purge_deleted` of the vault's store.
pub(crate) type Purge = Box<dyn Fn() + Send + Sync>;

struct Shared {
    purge: Purge,
    delay: Duration,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Purges asked for, and how many of those a purge that ran has covered.
    requested: u64,
    covered: u64,
    /// When the oldest request not yet covered must be purged by.
    due: Option<Instant>,
    /// Could it not be started, each erasure purges on its own thread.
    thread: Worker,
    closed: bool,
}

impl Purger {
    pub(crate) fn new(purge: Purge, delay: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                purge,
                delay,
                state: Mutex::default(),
                changed: Condvar::new(),
            }),
        }
    }

    pub(crate) fn delay(&self) -> Duration {
        self.shared.delay
    }

    /// A purge of what the erasures committed so far left, within the delay.
    pub(crate) fn request(&self) {
        let shared = &self.shared;
        if shared.delay.is_zero() {
            return (shared.purge)();
        }
        let mut s = shared.lock();
        if !s.closed && s.thread.not_started() {
            s.thread = shared.start();
        }
        if s.closed || !s.thread.running() {
            drop(s);
            return (shared.purge)();
        }
        s.requested += 1;
        if s.due.is_none() {
            s.due = Some(Instant::now() + shared.delay);
            shared.changed.notify_all();
        }
    }

    /// Runs the pending purge now, if any, and returns once it has run: what every erasure
    /// committed before this call left is then off the files (as far as a purge reaches).
    pub(crate) fn purge_pending_now(&self) {
        let shared = &self.shared;
        let mut s = shared.lock();
        let mine = s.requested;
        if s.covered >= mine {
            return;
        }
        s.due = Some(Instant::now());
        shared.changed.notify_all();
        while s.covered < mine {
            s = shared.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for Purger {
    fn drop(&mut self) {
        let thread = {
            let mut s = self.shared.lock();
            s.closed = true;
            std::mem::take(&mut s.thread)
        };
        self.shared.changed.notify_all();
        // It runs the pending purge, if any, before it ends.
        thread.join();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(self: &Arc<Self>) -> Worker {
        let shared = self.clone();
        Worker::start(
            "custodian-purger",
            "each erasure purges before it answers",
            move || shared.run(),
        )
    }

    fn run(&self) {
        let mut s = self.lock();
        loop {
            if s.covered < s.requested {
                let due = s.due.unwrap_or_else(Instant::now);
                let now = Instant::now();
                if !s.closed && now < due {
                    s = self
                        .changed
                        .wait_timeout(s, due - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    continue;
                }
                // Every request made before the purge starts is covered by it; one made
                // while it runs starts the clock again.
                let upto = s.requested;
                s.due = None;
                drop(s);
                (self.purge)();
                s = self.lock();
                s.covered = upto;
                self.changed.notify_all();
                continue;
            }
            if s.closed {
                return;
            }
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A purge that only counts.
    fn counting() -> (Purge, Arc<AtomicU64>) {
        let purges = Arc::new(AtomicU64::new(0));
        let counted = purges.clone();
        let purge: Purge = Box::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        (purge, purges)
    }

    #[test]
    fn requests_within_the_delay_share_one_purge_and_none_runs_before_it() {
        let (purge, purges) = counting();
        let p = Purger::new(purge, Duration::from_secs(3600));
        for _ in 0..5 {
            p.request();
        }
        assert_eq!(purges.load(Ordering::SeqCst), 0, "an hour is not up");
        p.purge_pending_now();
        assert_eq!(purges.load(Ordering::SeqCst), 1, "five requests, one purge");
        p.purge_pending_now();
        assert_eq!(
            purges.load(Ordering::SeqCst),
            1,
            "nothing pending, nothing run"
        );
    }

    #[test]
    fn a_pending_purge_runs_by_itself_once_the_delay_is_up() {
        let (purge, purges) = counting();
        let p = Purger::new(purge, Duration::from_millis(20));
        p.request();
        // A deadline for the test, not a measurement: the purge is due after 20 ms.
        let give_up = Instant::now() + Duration::from_secs(60);
        while purges.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < give_up, "the due purge never ran");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(purges.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_purger_dropped_with_a_purge_pending_runs_it_first() {
        let (purge, purges) = counting();
        let p = Purger::new(purge, Duration::from_secs(3600));
        p.request();
        drop(p);
        assert_eq!(purges.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn with_no_delay_the_request_purges_before_it_returns() {
        let (purge, purges) = counting();
        let p = Purger::new(purge, Duration::ZERO);
        p.request();
        assert_eq!(purges.load(Ordering::SeqCst), 1);
        drop(p);
        assert_eq!(
            purges.load(Ordering::SeqCst),
            1,
            "nothing left for the drop"
        );
    }
}
