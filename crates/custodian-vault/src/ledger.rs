//! The erasure ledger outside the database. Every erasure (a subject, or one record) is
//! appended here as pseudonymous ids, next to the signed checkpoints, on storage that a
//! database restore does not roll back. `custodian restore` re-applies it, so restoring a
//! backup taken before an erasure does not bring the erased data back. Certificates of
//! destruction are kept the same way (`destructions.jsonl`), so a destroyed controller is
//! destroyed again by a restore of a backup taken before its destruction.

use crate::lifecycle::Certificate;
use crate::{Vault, VaultError};
use custodian_core::audit::{Action, AuditDraft, ChainId};
use custodian_core::controller::ControllerStatus;
use custodian_core::ids::{ControllerId, RecordId, SubjectId};
use custodian_core::operation::Operation;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

pub const LEDGER_FILE: &str = "erasures.jsonl";

/// Certificates of destruction (one JSON object a line), kept beside the erasure ledger so
/// that a restore of a backup taken before a destruction destroys that controller again.
pub const DESTRUCTIONS_FILE: &str = "destructions.jsonl";

/// The actor the audit trail names for erasures re-applied after a restore.
pub const RESTORE_ACTOR: &str = "system:restore";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub controller: ControllerId,
    pub subject: SubjectId,
    /// Set when one record was erased; absent when the whole subject was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordId>,
    #[serde(with = "custodian_core::rfc3339")]
    pub at: time::OffsetDateTime,
}

/// Appends one entry and syncs it to disk before returning.
pub fn append(dir: &Path, entry: &LedgerEntry) -> std::io::Result<()> {
    append_all(dir, std::slice::from_ref(entry))
}

/// Appends entries with one write and one sync (a bulk erasure is one disk flush, not one
/// per record).
pub fn append_all(dir: &Path, entries: &[LedgerEntry]) -> std::io::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut lines = Vec::with_capacity(entries.len() * 160);
    for e in entries {
        serde_json::to_writer(&mut lines, e).expect("serialisable");
        lines.push(b'\n');
    }
    append_synced(dir, LEDGER_FILE, &lines)
}

/// Appends a certificate of destruction and syncs it to disk before returning.
pub fn append_destruction(dir: &Path, cert: &Certificate) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(cert).expect("serialisable");
    line.push(b'\n');
    append_synced(dir, DESTRUCTIONS_FILE, &line)
}

/// Appends `bytes` to `dir/name` and syncs them. The append that creates the file also
/// syncs the directory: until then the file's name is not on the disk, and a crash
/// would lose the file with the erasure it holds.
fn append_synced(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let existed = path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    if !existed {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Every certificate of destruction recorded in `dir` (a torn last line is skipped).
pub fn read_destructions(dir: &Path) -> std::io::Result<Vec<Certificate>> {
    let path = dir.join(DESTRUCTIONS_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
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
    /// What follows a committed erasure: a note in the ledger outside the database (when
    /// `controller` is given) and, when `purge`, a request for the purge that takes the
    /// erased data off the disk within the purge delay ([`crate::purger`]). With no delay,
    /// two files, two syncs: they run at once, neither waits for the other (one after the
    /// other, each delete waited for both in turn).
    pub(crate) fn after_erasure(
        &self,
        controller: Option<&ControllerId>,
        erased: &[(SubjectId, Option<RecordId>)],
        purge: bool,
    ) {
        if let Some(c) = controller {
            // A subject erased whole: its key leaves memory too.
            self.keys.evict_subjects(
                c,
                erased
                    .iter()
                    .filter(|(_, record)| record.is_none())
                    .map(|(s, _)| s),
            );
        }
        match (controller.filter(|_| self.checkpoint_dir.is_some()), purge) {
            // A purge on this thread (no delay) and the ledger's sync run at once.
            (Some(c), true) if self.purger.delay().is_zero() => std::thread::scope(|s| {
                s.spawn(|| self.note_erasures(c, erased));
                self.purger.request();
            }),
            (Some(c), true) => {
                self.note_erasures(c, erased);
                self.purger.request();
            }
            (Some(c), false) => self.note_erasures(c, erased),
            (None, true) => self.purger.request(),
            (None, false) => {}
        }
    }

    /// Notes erasures in the ledger outside the database: one append, one sync.
    pub(crate) fn note_erasures(
        &self,
        controller: &ControllerId,
        erased: &[(SubjectId, Option<RecordId>)],
    ) {
        if let Some(dir) = &self.checkpoint_dir {
            let at = self.clock.now();
            let entries: Vec<LedgerEntry> = erased
                .iter()
                .map(|(subject, record)| LedgerEntry {
                    controller: controller.clone(),
                    subject: subject.clone(),
                    record: record.clone(),
                    at,
                })
                .collect();
            if let Err(e) = append_all(dir, &entries) {
                // The erasure is committed and in the database's ledger; losing the
                // outside copy only matters for a later restore, so say so loudly.
                tracing::error!(error = %e, "could not append to the erasure ledger outside the database");
            }
        }
    }

    pub(crate) fn note_destruction(&self, cert: &Certificate) {
        if let Some(dir) = &self.checkpoint_dir
            && let Err(e) = append_destruction(dir, cert)
        {
            tracing::error!(error = %e, "could not append to the ledger of destructions outside the database");
        }
    }

    /// After a restore: destroys again every controller that `certificates` say was
    /// destroyed and that the restored database still holds. Each certificate must carry
    /// this deployment's signature. Returns how many controllers were destroyed again.
    pub fn reapply_destructions(&self, certificates: &[Certificate]) -> Result<u64, VaultError> {
        let mut destroyed = 0;
        let now = self.clock.now();
        for cert in certificates {
            if cert.verify(&self.public_key()).is_err() {
                tracing::warn!(controller = %cert.controller, "skipping a certificate of destruction that does not verify");
                continue;
            }
            match self.store.controller(&cert.controller)? {
                Some(row) if row.controller.status != ControllerStatus::Destroyed => {}
                _ => continue,
            }
            let chain = ChainId::Controller(cert.controller.clone());
            let text = serde_json::to_string_pretty(cert).expect("serialisable");
            self.store.transact(&cert.controller, now, &mut |tx| {
                let counts = tx.destroy_all(&text, cert.destroyed_at)?;
                Ok(AuditDraft::new(
                    chain.clone(),
                    RESTORE_ACTOR,
                    Action::Processing(Operation::Destruction),
                )
                .fields([
                    "re-applied from the ledger of destructions after a restore".to_owned(),
                    format!("subjects:{}", counts.subjects),
                    format!("records:{}", counts.records),
                ]))
            })?;
            self.keys.evict_controller(&cert.controller);
            destroyed += 1;
        }
        if destroyed > 0 {
            self.store.purge_deleted();
        }
        Ok(destroyed)
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
                Ok(_) => {
                    self.keys.evict_subjects(&e.controller, [&e.subject]);
                    subjects += 1
                }
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
