//! The erasure ledger outside the database. Every erasure (a subject, or one record) is
//! appended here as pseudonymous ids, next to the signed checkpoints, on storage that a
//! database restore does not roll back. `custodian restore` re-applies it, so restoring a
//! backup taken before an erasure does not bring the erased data back.

use crate::{Vault, VaultError};
use custodian_core::audit::{Action, AuditDraft, ChainId};
use custodian_core::ids::{ControllerId, RecordId, SubjectId};
use custodian_core::operation::Operation;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

pub const LEDGER_FILE: &str = "erasures.jsonl";

/// The actor the audit trail names for erasures re-applied after a restore.
pub const RESTORE_ACTOR: &str = "system:restore";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub controller: ControllerId,
    pub subject: SubjectId,
    /// Set when one record was erased; absent when the whole subject was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordId>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
}

/// Appends one entry and syncs it to disk before returning.
pub fn append(dir: &Path, entry: &LedgerEntry) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(dir.join(LEDGER_FILE))?;
    let mut line = serde_json::to_vec(entry).expect("serialisable");
    line.push(b'\n');
    f.write_all(&line)?;
    f.sync_data()
}

/// Every entry of the ledger in `dir` (none when it does not exist yet). A torn last line
/// (a crash mid-append) is skipped: its erasure is also in the database's own ledger.
pub fn read(dir: &Path) -> std::io::Result<Vec<LedgerEntry>> {
    let path = dir.join(LEDGER_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

impl Vault {
    pub(crate) fn note_erasure(
        &self,
        controller: &ControllerId,
        subject: &SubjectId,
        record: Option<&RecordId>,
    ) {
        if let Some(dir) = &self.checkpoint_dir {
            let entry = LedgerEntry {
                controller: controller.clone(),
                subject: subject.clone(),
                record: record.cloned(),
                at: self.clock.now(),
            };
            if let Err(e) = append(dir, &entry) {
                // The erasure is committed and in the database's ledger; losing the
                // outside copy only matters for a later restore, so say so loudly.
                tracing::error!(error = %e, "could not append to the erasure ledger outside the database");
            }
        }
    }

    /// After a restore: erases again what the ledger says was erased. Returns how many
    /// subjects and records were erased again (those already absent are skipped).
    pub fn reapply_erasures(&self, entries: &[LedgerEntry]) -> Result<(u64, u64), VaultError> {
        let mut subjects = 0;
        let mut records = 0;
        let now = self.clock.now();
        for e in entries {
            if self.store.controller(&e.controller)?.is_none() {
                continue;
            }
            let chain = ChainId::Controller(e.controller.clone());
            let mut did = false;
            let result = self.store.transact(&e.controller, now, &mut |tx| {
                did = false;
                match &e.record {
                    None => {
                        if tx.subject(&e.subject)?.is_some() {
                            tx.erase_subject(&e.subject, e.at, "re-applied after restore")?;
                            did = true;
                        }
                    }
                    Some(r) => {
                        if tx.record(r)?.is_some() {
                            tx.delete_record(r)?;
                            did = true;
                        }
                    }
                }
                let mut d = AuditDraft::new(
                    chain.clone(),
                    RESTORE_ACTOR,
                    Action::Processing(Operation::Erasure),
                )
                .subject(&e.subject)
                .fields(["re-applied from the erasure ledger after a restore"]);
                d.record = e.record.clone();
                if did {
                    Ok(d)
                } else {
                    Err(custodian_core::policy::Denial::NotFound.into())
                }
            });
            match result {
                Ok(_) if e.record.is_some() => records += 1,
                Ok(_) => subjects += 1,
                Err(custodian_store::TxError::Denied(_)) => {}
                Err(err) => return Err(err.into()),
            }
        }
        if subjects + records > 0 {
            self.store.purge_deleted();
        }
        Ok((subjects, records))
    }
}

impl Vault {
    /// Appends to every chain that the database was restored from a backup: the entries
    /// after the backup's heads are gone, and the trail says so.
    pub fn note_restore(
        &self,
        backup_id: &str,
        taken: time::OffsetDateTime,
    ) -> Result<(), VaultError> {
        let drafts = self
            .store
            .audit_chains()?
            .into_iter()
            .map(|chain| {
                AuditDraft::new(
                    chain,
                    RESTORE_ACTOR,
                    Action::Admin(custodian_core::audit::AdminAction::Restored),
                )
                .fields([
                    format!("backup:{backup_id}"),
                    format!("taken:{}", taken.unix_timestamp()),
                ])
            })
            .collect();
        self.store.append_audit(drafts, self.clock.now())?;
        self.store.purge_deleted();
        Ok(())
    }
}
