//! What an audited read found, held until its audit entry is durable.
//!
//! A read's entry may join a group commit that a later operation commits. [`Pending`] holds
//! the answer meanwhile and gives it up only once that commit has succeeded: blocking
//! ([`Pending::wait`]) on a thread that may block, or awaited ([`Pending::settled`]) by an
//! async caller, which then needs no thread sleeping for it. If the commit fails, the answer
//! is dropped and the caller gets the error: no audit entry, no operation. A refusal waits
//! the same way for the entry that records it, and is then the caller's error.

use crate::VaultError;
use custodian_core::audit::AuditEntry;
use custodian_store::{PendingAudit, TxError};

#[must_use = "the answer may be handed out only once its audit entry is durable"]
pub struct Pending<T> {
    value: Result<T, VaultError>,
    audit: PendingAudit,
}

impl<T> Pending<T> {
    pub(crate) fn new(value: T, audit: PendingAudit) -> Self {
        Self {
            value: Ok(value),
            audit,
        }
    }

    /// A refusal, given to the caller once `audit` (the entry recording it) is settled.
    pub(crate) fn refused(e: VaultError, audit: PendingAudit) -> Self {
        Self {
            value: Err(e),
            audit,
        }
    }

    /// The same pending answer, reshaped once it is given out (its audit entry unchanged).
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Pending<U> {
        Pending {
            value: self.value.map(f),
            audit: self.audit,
        }
    }

    /// The answer and the sequence number of its audit entry, once the entry is durable.
    pub(crate) fn wait_seq(self) -> Result<(T, u64), VaultError> {
        let entry = self.audit.wait();
        Self::settle(self.value, entry)
    }

    /// The answer, once its audit entry is durable (blocks the calling thread until then).
    pub fn wait(self) -> Result<T, VaultError> {
        self.wait_seq().map(|(value, _)| value)
    }

    /// The answer, once its audit entry is durable, without blocking a thread.
    pub async fn settled(self) -> Result<T, VaultError> {
        let entry = self.audit.await;
        Self::settle(self.value, entry).map(|(value, _)| value)
    }

    fn settle(
        value: Result<T, VaultError>,
        entry: Result<AuditEntry, TxError>,
    ) -> Result<(T, u64), VaultError> {
        match value {
            Ok(value) => Ok((value, entry?.seq)),
            Err(refusal) => {
                // The refusal stands whether or not it could be recorded.
                if let Err(e) = entry {
                    crate::refusal_not_recorded(&e);
                }
                Err(refusal)
            }
        }
    }
}

impl<T> std::fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the value: it is personal data.
        f.debug_struct("Pending")
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}
