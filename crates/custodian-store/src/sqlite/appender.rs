//! The audit entries of reads awaited by async callers, appended by one thread of their own.
//!
//! An audited read runs its query on a reader connection and then appends its entry through
//! the writer, and the last one in takes the `COMMIT` (and its fsync) as well. A thread that
//! blocks until the entry is durable still does exactly that ([`PendingAudit::wait`]: no
//! other thread to wake). But an async server would have to run every read on its blocking
//! pool only so that it may wait there for the writer lock and the commit (at 64
//! connections, a sixth of the server's CPU went to handing reads to that pool and back,
//! perf). A read that is awaited instead queues its entry's draft here and its future
//! waits; this thread takes every draft queued meanwhile, appends them as one unit of the
//! group commit (`group.rs`), and commits, while the next reads queue. Durability is
//! unchanged: the read's answer still waits on its [`PendingAudit`] until the commit
//! holding its entry has succeeded, and gets that commit's error if it failed.
//!
//! When many reads run at once (the last batch held [`GATHER_AFTER`] or more), the thread
//! waits up to [`GATHER_FOR`] for as many drafts as last time before it takes them: each
//! commit's page writes and fsync are then shared by more reads, for a little more latency
//! (at 64 connections: 6-8 reads per fsync -> 10-12, less CPU per read, lower p50 and p99).
//!
//! The thread starts with the first queued draft and is joined when the store is dropped,
//! after it has appended every draft queued before; a draft queued after that, or when no
//! thread could be started, is appended on the caller's thread.

use super::group::{Containment, Group, GroupWriter, Outcome, Unit, clone_err};
use super::{FaultSwitch, append_in_tx, append_linked};
use crate::worker::Worker;
use crate::{Append, Appending, PendingAudit, Settlement, StoreError};
use custodian_core::audit::{AuditDraft, AuditEntry};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use time::OffsetDateTime;

/// A batch at least this large says many reads run at once: the next one may wait for
/// more (see `Shared::gather`).
const GATHER_AFTER: usize = 4;
/// How long a batch waits at most for more drafts.
const GATHER_FOR: std::time::Duration = std::time::Duration::from_micros(200);

pub(crate) struct Appender {
    handle: Arc<Handle>,
}

/// What a [`PendingAudit`] appends its draft through (see `Append`).
struct Handle(Arc<Shared>);

struct Shared {
    writer: Arc<GroupWriter>,
    faults: FaultSwitch,
    queue: Mutex<Queue>,
    arrived: Condvar,
}

#[derive(Default)]
struct Queue {
    drafts: Vec<Queued>,
    /// The thread waits for more drafts before it takes them (see `Shared::gather`).
    gathering: bool,
    /// Could it not be started, every draft is appended by its caller.
    thread: Worker,
    closed: bool,
}

struct Queued {
    draft: AuditDraft,
    at: OffsetDateTime,
    slot: Arc<Slot>,
}

impl Appender {
    pub(crate) fn new(writer: Arc<GroupWriter>, faults: FaultSwitch) -> Self {
        Self {
            handle: Arc::new(Handle(Arc::new(Shared {
                writer,
                faults,
                queue: Mutex::default(),
                arrived: Condvar::new(),
            }))),
        }
    }

    /// `draft`, to be appended as its caller waits for it: on the caller's thread when it
    /// blocks ([`PendingAudit::wait`]), by the appending thread when it is awaited.
    pub(crate) fn pending(&self, draft: AuditDraft, at: OffsetDateTime) -> PendingAudit {
        PendingAudit::unappended(draft, at, self.handle.clone())
    }

    #[cfg(test)]
    pub(crate) fn started(&self) -> bool {
        !self.handle.0.queue().thread.not_started()
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        let thread = {
            let mut queue = self.handle.0.queue();
            queue.closed = true;
            std::mem::take(&mut queue.thread)
        };
        self.handle.0.arrived.notify_one();
        thread.join();
    }
}

impl Append for Handle {
    fn append_here(&self, draft: AuditDraft, at: OffsetDateTime) -> Result<AuditEntry, StoreError> {
        let shared = &self.0;
        shared
            .writer
            .write(&|| shared.faults.error(), Containment::Group, |tx| {
                append_in_tx(tx, draft, at)
            })
    }

    fn queue(&self, draft: AuditDraft, at: OffsetDateTime) -> Arc<dyn Appending> {
        let shared = &self.0;
        let slot = Arc::new(Slot::default());
        let queued = Queued {
            draft,
            at,
            slot: slot.clone(),
        };
        let mut queue = shared.queue();
        if !queue.closed {
            if queue.thread.not_started() {
                queue.thread = shared.start();
            }
            if queue.thread.running() {
                queue.drafts.push(queued);
                // The thread is asleep only when the queue was empty, or gathering.
                if queue.drafts.len() == 1 || queue.gathering {
                    shared.arrived.notify_one();
                }
                return slot;
            }
        }
        // No thread (the store is closing, or none could be started): append it here.
        drop(queue);
        shared.append_batch(vec![queued]);
        slot
    }
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(self: &Arc<Self>) -> Worker {
        let shared = self.clone();
        Worker::start(
            "custodian-audit-appender",
            "reads append their entries themselves",
            move || shared.run(),
        )
    }

    fn run(&self) {
        let mut last = 0;
        loop {
            let batch = {
                let mut queue = self.queue();
                while queue.drafts.is_empty() && !queue.closed {
                    queue = self.arrived.wait(queue).unwrap_or_else(|p| p.into_inner());
                }
                if queue.drafts.is_empty() {
                    return;
                }
                if last >= GATHER_AFTER && !queue.closed {
                    queue = self.gather(queue, last);
                }
                std::mem::take(&mut queue.drafts)
            };
            last = batch.len();
            self.append_batch(batch);
        }
    }

    /// Waits up to [`GATHER_FOR`] for the queue to hold as many drafts as the last batch:
    /// when many reads run at once, each commit then carries more of them (its page writes
    /// and fsync shared more widely) for a little more latency. Alone or nearly so, a read
    /// is never held back: the wait follows only a batch of [`GATHER_AFTER`] or more.
    fn gather<'q>(&self, mut queue: MutexGuard<'q, Queue>, last: usize) -> MutexGuard<'q, Queue> {
        let until = std::time::Instant::now() + GATHER_FOR;
        queue.gathering = true;
        while queue.drafts.len() < last && !queue.closed {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            queue = self
                .arrived
                .wait_timeout(queue, left)
                .map(|(q, _)| q)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        queue.gathering = false;
        queue
    }

    /// Appends `batch` as one unit of the group commit and gives each draft's slot the
    /// outcome. Never panics past this point: a slot left unfilled would hold its read's
    /// answer forever.
    fn append_batch(&self, batch: Vec<Queued>) {
        let (work, slots): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|q| ((q.draft, q.at), q.slot)).unzip();
        let last = work.len().saturating_sub(1);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.writer.run(
                &|| self.faults.error(),
                Containment::Group,
                |tx| -> Result<Vec<AuditEntry>, StoreError> {
                    let mut head = None;
                    work.into_iter()
                        .enumerate()
                        .map(|(i, (draft, at))| append_linked(tx, draft, at, &mut head, i == last))
                        .collect()
                },
            )
        }))
        .unwrap_or_else(|_| {
            Err(StoreError::Backend(
                "appending audit entries panicked".into(),
            ))
        });
        match outcome {
            Ok(Unit::Durable(entries)) => {
                for (slot, entry) in slots.iter().zip(entries) {
                    slot.fill(Ok((entry, None)));
                }
            }
            Ok(Unit::Joined(entries, commit)) => {
                for (slot, entry) in slots.iter().zip(entries) {
                    slot.fill(Ok((entry, Some(commit.clone()))));
                }
            }
            Err(e) => {
                for slot in &slots {
                    slot.fill(Err(clone_err(&e)));
                }
            }
        }
    }
}

/// One queued draft's outcome: its entry once appended, with the group whose commit makes
/// it durable if that commit is still to come.
#[derive(Default)]
pub(crate) struct Slot(Outcome<Appended>);

type Appended = Result<(AuditEntry, Option<Arc<Group>>), StoreError>;

impl Slot {
    fn fill(&self, outcome: Appended) {
        self.0.set(outcome);
    }

    /// The group still to commit, if any; the append's error if it failed.
    fn commit(appended: &mut Appended) -> Result<Option<Arc<Group>>, StoreError> {
        match appended {
            Ok((_, commit)) => Ok(commit.clone()),
            Err(e) => Err(clone_err(e)),
        }
    }

    /// The entry, once appended and durable (the slot is read by its one `PendingAudit`).
    fn take_entry(&self) -> Result<AuditEntry, StoreError> {
        let taken = || Err(StoreError::Backend("an audit entry was taken twice".into()));
        self.0
            .wait(|appended| match std::mem::replace(appended, taken()) {
                Ok((entry, _)) => Ok(entry),
                Err(e) => Err(e),
            })
    }
}

impl Appending for Slot {
    fn wait(&self) -> Result<AuditEntry, StoreError> {
        if let Some(commit) = self.0.wait(Self::commit)? {
            Settlement::wait(&*commit)?;
        }
        self.take_entry()
    }

    fn poll_appended(&self, cx: &mut Context<'_>) -> Poll<Result<AuditEntry, StoreError>> {
        let commit = match self.0.poll(cx, Self::commit) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(commit) => commit?,
        };
        if let Some(commit) = commit {
            match Settlement::poll_settled(&*commit, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
        }
        Poll::Ready(self.take_entry())
    }
}
