//! An audited read's entry between its append and its durable commit.
//!
//! With group commit, the entry of a read often joins a transaction that a later unit will
//! commit. Blocking the reading thread until then cost a sleep and a wake-up per read
//! (an async server then waits on that thread as well); a [`PendingAudit`] lets the caller
//! wait where it suits it: blocking ([`PendingAudit::wait`]) or as a future. Either way the
//! entry comes out only once the commit holding it has succeeded, so whatever the read
//! found can still be handed out only after its audit entry is durable.

use crate::{StoreError, TxError};
use custodian_core::audit::AuditEntry;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The outcome of a commit that has not necessarily happened yet.
pub trait Settlement: Send + Sync {
    /// Blocks until the commit has succeeded or failed.
    fn wait(&self) -> Result<(), StoreError>;
    /// The outcome if there is one; otherwise `cx`'s waker is woken once there is.
    fn poll_settled(&self, cx: &mut Context<'_>) -> Poll<Result<(), StoreError>>;
}

/// An appended audit entry, durable once its commit succeeds (see the module).
#[must_use = "what the read found may be handed out only once its audit entry is durable"]
pub struct PendingAudit {
    entry: Option<AuditEntry>,
    commit: Option<Arc<dyn Settlement>>,
}

impl PendingAudit {
    /// An entry whose commit has already succeeded.
    pub fn durable(entry: AuditEntry) -> Self {
        Self {
            entry: Some(entry),
            commit: None,
        }
    }

    /// An entry that is durable once `commit` succeeds.
    pub fn pending(entry: AuditEntry, commit: Arc<dyn Settlement>) -> Self {
        Self {
            entry: Some(entry),
            commit: Some(commit),
        }
    }

    /// The entry, once durable; the commit's error if it failed (nothing of the read may
    /// then be handed out).
    pub fn wait(mut self) -> Result<AuditEntry, TxError> {
        if let Some(commit) = &self.commit {
            commit.wait()?;
        }
        Ok(self.entry.take().expect("an entry"))
    }
}

impl Future for PendingAudit {
    type Output = Result<AuditEntry, TxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(commit) = &self.commit {
            match commit.poll_settled(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Ready(Ok(())) => {}
            }
        }
        Poll::Ready(Ok(self.entry.take().expect("polled after it was ready")))
    }
}

impl std::fmt::Debug for PendingAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAudit")
            .field("settled", &self.commit.is_none())
            .finish_non_exhaustive()
    }
}
