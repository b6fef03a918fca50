//! `verify`: recomputes every chain from its first entry, and checks it against the signed
//! checkpoints in the database and outside it. It reports the first bad entry of each
//! chain: an altered entry, a missing or reordered one, or a chain cut short of a checkpoint.

use crate::checkpoint::{CheckpointFile, read_external, signature_holds};
use custodian_core::audit::{ChainId, GENESIS};
use custodian_crypto::hash::chain_link;
use custodian_store::rows::Checkpoint;
use custodian_store::{Store, StoreError};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChainReport {
    pub chain: String,
    pub entries: u64,
    /// Hex hash of the last entry.
    pub head: String,
    pub checkpoints_checked: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    pub chain: String,
    /// The first entry that does not hold, where one can be named.
    pub seq: Option<u64>,
    pub what: String,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyReport {
    pub chains: Vec<ChainReport>,
    pub problems: Vec<Problem>,
    pub entries: u64,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Verifies the given chains (all of them when `only` is `None`).
pub fn verify_chains(
    store: &dyn Store,
    public_key: &[u8; 32],
    external_dir: Option<&Path>,
    only: Option<&ChainId>,
) -> Result<VerifyReport, StoreError> {
    let external: BTreeMap<ChainId, CheckpointFile> = match external_dir {
        Some(d) => read_external(d)
            .map_err(|e| StoreError::Unavailable(format!("reading checkpoints: {e}")))?
            .into_iter()
            .map(|f| (f.checkpoint.chain.clone(), f))
            .collect(),
        None => BTreeMap::new(),
    };
    let mut chains: BTreeSet<ChainId> = store.audit_chains()?.into_iter().collect();
    chains.extend(external.keys().cloned());
    if let Some(c) = only {
        chains.retain(|x| x == c);
    }
    let mut report = VerifyReport::default();
    for chain in chains {
        let mut checkpoints = store.checkpoints(&chain)?;
        if let Some(f) = external.get(&chain) {
            checkpoints.push(f.checkpoint.clone());
        }
        verify_one(store, public_key, &chain, &checkpoints, &mut report)?;
    }
    Ok(report)
}

fn verify_one(
    store: &dyn Store,
    public_key: &[u8; 32],
    chain: &ChainId,
    checkpoints: &[Checkpoint],
    report: &mut VerifyReport,
) -> Result<(), StoreError> {
    let name = chain.as_string();
    let problem = |seq: Option<u64>, what: String| Problem {
        chain: name.clone(),
        seq,
        what,
    };
    let mut first_problem: Option<Problem> = None;
    let mut by_seq: BTreeMap<u64, Vec<&Checkpoint>> = BTreeMap::new();
    for cp in checkpoints {
        if !signature_holds(public_key, cp) {
            first_problem.get_or_insert(problem(
                Some(cp.seq),
                format!("checkpoint at entry {} has a bad signature", cp.seq),
            ));
        }
        by_seq.entry(cp.seq).or_default().push(cp);
    }
    // The head is read before the scan and again after it: a server appending meanwhile
    // moves it forward, which is fine, but the entry at the first head must match it and no
    // entry may lie beyond the second.
    let head_before = store.audit_head(chain)?;
    let mut hash_at_head_before = None;
    let mut expected = 1u64;
    let mut prev = GENESIS;
    let mut checked = 0u64;
    let mut broken = first_problem.is_some();
    store.scan_audit(chain, &mut |e| {
        if broken {
            return Ok(());
        }
        if head_before.is_some_and(|(s, _)| s == e.seq) {
            hash_at_head_before = Some(e.hash);
        }
        let found = if e.seq != expected {
            Some(problem(
                Some(expected),
                format!(
                    "entry {expected} is missing or out of order (found entry {} in its place)",
                    e.seq
                ),
            ))
        } else if e.prev_hash != prev {
            Some(problem(
                Some(e.seq),
                format!("entry {} does not link to entry {}", e.seq, e.seq - 1),
            ))
        } else if chain_link(&prev, &e.canonical_bytes()) != e.hash || e.draft.chain != *chain {
            Some(problem(Some(e.seq), format!("entry {} was altered", e.seq)))
        } else {
            None
        };
        if let Some(p) = found {
            first_problem = Some(p);
            broken = true;
            return Ok(());
        }
        if let Some(cps) = by_seq.get(&e.seq) {
            for cp in cps {
                if cp.hash != e.hash {
                    first_problem = Some(problem(
                        Some(e.seq),
                        format!("entry {} differs from its signed checkpoint", e.seq),
                    ));
                    broken = true;
                    return Ok(());
                }
                checked += 1;
            }
        }
        prev = e.hash;
        expected += 1;
        Ok(())
    })?;
    let last = expected - 1;
    if !broken {
        if let Some((&cp_seq, cps)) = by_seq.range(last + 1..).next() {
            first_problem = Some(problem(
                Some(last + 1),
                format!(
                    "the chain ends at entry {last} but a checkpoint signed at {} covers entry {cp_seq}: entries were removed",
                    cps[0].signed_at
                ),
            ));
        } else if let Some(p) = head_problem(
            head_before,
            hash_at_head_before,
            store.audit_head(chain)?,
            last,
            &problem,
        ) {
            first_problem = Some(p);
        } else if last > 0 && head_before.is_none() {
            first_problem = Some(problem(
                None,
                "the chain has entries but no recorded head".into(),
            ));
        }
    }
    report.entries += last;
    report.chains.push(ChainReport {
        chain: name.clone(),
        entries: last,
        head: hex(&prev),
        checkpoints_checked: checked,
    });
    if let Some(p) = first_problem {
        report.problems.push(p);
    }
    Ok(())
}

impl crate::Vault {
    /// Verifies every chain, or one controller's.
    pub fn verify(&self, only: Option<&ChainId>) -> Result<VerifyReport, crate::VaultError> {
        Ok(verify_chains(
            self.store.as_ref(),
            &self.public_key(),
            self.checkpoint_dir.as_deref(),
            only,
        )?)
    }

    /// A page of the caller's controller's audit trail (admins and viewers).
    pub fn audit_page(
        &self,
        p: &custodian_core::principal::Principal,
        after: u64,
        limit: u32,
    ) -> Result<crate::views::AuditPage, crate::VaultError> {
        let controller = p.controller.as_ref().ok_or(crate::VaultError::Refused(
            custodian_core::policy::Refusal::NotControllerAdmin,
        ))?;
        custodian_core::policy::authorize_audit_read(p, controller)?;
        let limit = limit.clamp(1, 1000);
        let entries =
            self.store
                .audit_page(&ChainId::Controller(controller.clone()), after, limit)?;
        let next_after = (entries.len() == limit as usize)
            .then(|| entries.last().map(|e| e.seq))
            .flatten();
        Ok(crate::views::AuditPage {
            entries: entries.iter().map(entry_view).collect(),
            next_after,
        })
    }
}

pub fn entry_view(e: &custodian_core::audit::AuditEntry) -> crate::views::AuditEntryView {
    use custodian_core::audit::Outcome;
    let d = &e.draft;
    let (outcome, reason) = match &d.outcome {
        Outcome::Allowed => ("allowed".to_owned(), None),
        Outcome::Refused { reason } => ("refused".to_owned(), Some(reason.clone())),
    };
    crate::views::AuditEntryView {
        seq: e.seq,
        at: e.at,
        actor: d.actor.clone(),
        action: d.action.as_string(),
        purpose: d.purpose.clone(),
        subject: d.subject.clone(),
        record: d.record.clone(),
        fields: d.fields.clone(),
        outcome,
        reason,
        request: d.request.as_ref().map(|r| r.to_string()),
        prev_hash: hex(&e.prev_hash),
        hash: hex(&e.hash),
    }
}

/// Checks the recorded head against the scanned chain; see `verify_one`.
fn head_problem(
    before: Option<(u64, [u8; 32])>,
    hash_at_before: Option<[u8; 32]>,
    after: Option<(u64, [u8; 32])>,
    last: u64,
    problem: &dyn Fn(Option<u64>, String) -> Problem,
) -> Option<Problem> {
    if let Some((seq, hash)) = before
        && (seq > last || hash_at_before != Some(hash))
    {
        return Some(problem(
            Some(seq.min(last + 1)),
            format!(
                "the recorded head (entry {seq}) does not match the chain (its last entry is {last})"
            ),
        ));
    }
    if let Some((seq, _)) = after
        && last > seq
    {
        return Some(problem(
            Some(seq + 1),
            format!(
                "entries {}..={last} lie beyond the recorded head (entry {seq})",
                seq + 1
            ),
        ));
    }
    None
}
