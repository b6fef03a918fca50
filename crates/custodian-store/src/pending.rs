//! An audited read's entry between the read and its entry's durable commit.
//!
//! With group commit, the entry of a read often joins a transaction that a later unit will
//! commit. Blocking the reading thread until then cost a sleep and a wake-up per read
//! (an async server then waits on that thread as well); a [`PendingAudit`] lets the caller
//! wait where it suits it: blocking ([`PendingAudit::wait`]) or as a future, and the way it
//! waits may choose who appends the entry ([`PendingAudit::unappended`]). Either way the
//! entry comes out only once the commit holding it has succeeded, so whatever the read
//! found can still be handed out only after its audit entry is durable.

use crate::{StoreError, TxError};
use custodian_core::audit::{AuditDraft, AuditEntry};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use time::OffsetDateTime;

/// The outcome of a commit that has not necessarily happened yet.
pub trait Settlement: Send + Sync {
    /// Blocks until the commit has succeeded or failed.
    fn wait(&self) -> Result<(), StoreError>;
    /// The outcome if there is one; otherwise `cx`'s waker is woken once there is.
    fn poll_settled(&self, cx: &mut Context<'_>) -> Poll<Result<(), StoreError>>;
}

/// What appends an entry that a caller waits for (see [`PendingAudit::unappended`]).
pub trait Append: Send + Sync {
    /// Appends `draft` on this thread and returns once its commit has succeeded or failed.
    fn append_here(&self, draft: AuditDraft, at: OffsetDateTime) -> Result<AuditEntry, StoreError>;
    /// Queues `draft` for another thread to append and commit.
    fn queue(&self, draft: AuditDraft, at: OffsetDateTime) -> Arc<dyn Appending>;
}

/// An entry queued to be appended by another thread: first appended, then committed.
pub trait Appending: Send + Sync {
    /// Blocks until the entry is appended and its commit has succeeded or failed.
    fn wait(&self) -> Result<AuditEntry, StoreError>;
    /// The durable entry or the error, if there is one yet; otherwise `cx`'s waker is woken
    /// once there is.
    fn poll_appended(&self, cx: &mut Context<'_>) -> Poll<Result<AuditEntry, StoreError>>;
}

/// An audit entry, durable once its commit succeeds (see the module).
#[must_use = "what the read found may be handed out only once its audit entry is durable"]
pub struct PendingAudit {
    state: State,
}

enum State {
    /// Not appended yet: appended as the caller waits for it.
    Unappended {
        draft: Option<(AuditDraft, OffsetDateTime)>,
        by: Arc<dyn Append>,
    },
    /// Appended; durable once `commit` (if any) succeeds.
    Appended {
        entry: Option<AuditEntry>,
        commit: Option<Arc<dyn Settlement>>,
    },
    /// Queued for another thread to append and commit.
    Queued(Arc<dyn Appending>),
}

impl PendingAudit {
    /// An entry whose commit has already succeeded.
    pub fn durable(entry: AuditEntry) -> Self {
        Self {
            state: State::Appended {
                entry: Some(entry),
                commit: None,
            },
        }
    }

    /// An entry that is durable once `commit` succeeds.
    pub fn pending(entry: AuditEntry, commit: Arc<dyn Settlement>) -> Self {
        Self {
            state: State::Appended {
                entry: Some(entry),
                commit: Some(commit),
            },
        }
    }

    /// An entry appended by `by` as the caller waits for it: on the caller's own thread
    /// when it blocks ([`PendingAudit::wait`]: no other thread to wake and wait for), queued
    /// for another thread when it is awaited as a future (no async thread ever waits for
    /// the writer or a commit). Dropped unwaited (a client that went away), it is queued
    /// all the same: the read ran, so it is recorded, though its answer is never handed out.
    pub fn unappended(draft: AuditDraft, at: OffsetDateTime, by: Arc<dyn Append>) -> Self {
        Self {
            state: State::Unappended {
                draft: Some((draft, at)),
                by,
            },
        }
    }

    /// The entry, once durable; the commit's error if it failed (nothing of the read may
    /// then be handed out).
    pub fn wait(mut self) -> Result<AuditEntry, TxError> {
        match &mut self.state {
            State::Appended { entry, commit } => {
                if let Some(commit) = commit {
                    commit.wait()?;
                }
                Ok(entry.take().expect("an entry"))
            }
            State::Queued(queued) => Ok(queued.wait()?),
            State::Unappended { draft, by } => {
                let (draft, at) = draft.take().expect("a draft");
                Ok(by.append_here(draft, at)?)
            }
        }
    }
}

impl Future for PendingAudit {
    type Output = Result<AuditEntry, TxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Appended { entry, commit } => {
                if let Some(commit) = commit {
                    match commit.poll_settled(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                        Poll::Ready(Ok(())) => {}
                    }
                }
                Poll::Ready(Ok(entry.take().expect("polled after it was ready")))
            }
            State::Queued(queued) => queued.poll_appended(cx).map_err(TxError::from),
            State::Unappended { draft, by } => {
                let (draft, at) = draft.take().expect("polled after it was ready");
                let queued = by.queue(draft, at);
                let polled = queued.poll_appended(cx).map_err(TxError::from);
                self.state = State::Queued(queued);
                polled
            }
        }
    }
}

impl Drop for PendingAudit {
    fn drop(&mut self) {
        if let State::Unappended { draft, by } = &mut self.state
            && let Some((draft, at)) = draft.take()
        {
            drop(by.queue(draft, at));
        }
    }
}

impl std::fmt::Debug for PendingAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let settled = matches!(self.state, State::Appended { commit: None, .. });
        f.debug_struct("PendingAudit")
            .field("settled", &settled)
            .finish_non_exhaustive()
    }
}
