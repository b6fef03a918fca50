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

use custodian_core::hex::encode as hex;

/// Verifies the given chains (all of them when `only` is `None`).
pub fn verify_chains(
    store: &dyn Store,
    public_key: &[u8; 32],
    external_dir: Option<&Path>,
    only: Option<&ChainId>,
) -> Result<VerifyReport, StoreError> {
    verify_chains_in(store, public_key, external_dir, only, None)
}

/// [`verify_chains`], checking each chain in `segments` parts on as many threads (by
/// default one for chains under 100,000 entries, else one per core). The report is the
/// same whatever the number of parts; tests check that.
pub fn verify_chains_in(
    store: &dyn Store,
    public_key: &[u8; 32],
    external_dir: Option<&Path>,
    only: Option<&ChainId>,
    segments: Option<usize>,
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
        verify_one(
            store,
            public_key,
            &chain,
            &checkpoints,
            segments,
            &mut report,
        )?;
    }
    Ok(report)
}

/// How many parts a chain of `entries` is checked in, each on its own thread: one for
/// short chains (threads cost more than they save), else one per core (at most 8).
fn auto_segments(entries: u64) -> usize {
    if entries < 100_000 {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    }
}

/// What checking one part of a chain (`after < seq <= until`) found.
struct Segment {
    /// The part's first entry: its seq and the previous hash it claims.
    first: Option<(u64, [u8; 32])>,
    /// The last entry that held (`after` when none did) and its hash.
    last: u64,
    last_hash: [u8; 32],
    problem: Option<Problem>,
    checked: u64,
    hash_at_head_before: Option<[u8; 32]>,
}

/// Checks the entries with `after < seq <= until` on their own: numbering, links between
/// them, each entry's hash, checkpoints. The first entry's link to the part before is
/// checked by the caller (`start` is the hash it must link to when known: the genesis
/// hash for the first part).
#[allow(clippy::too_many_arguments)]
fn verify_segment(
    store: &dyn Store,
    chain: &ChainId,
    after: u64,
    until: Option<u64>,
    start: Option<[u8; 32]>,
    by_seq: &BTreeMap<u64, Vec<&Checkpoint>>,
    head_before: Option<(u64, [u8; 32])>,
    problem: &(dyn Fn(Option<u64>, String) -> Problem + Sync),
) -> Result<Segment, StoreError> {
    let mut seg = Segment {
        first: None,
        last: after,
        last_hash: start.unwrap_or(GENESIS),
        problem: None,
        checked: 0,
        hash_at_head_before: None,
    };
    let mut expected = after + 1;
    let mut prev = start;
    let chain_name = chain.as_string();
    store.scan_audit_raw(chain, after, until, &mut |e| {
        if seg.problem.is_some() {
            return Ok(());
        }
        if seg.first.is_none() {
            seg.first = Some((e.seq, e.prev_hash));
        }
        if head_before.is_some_and(|(s, _)| s == e.seq) {
            seg.hash_at_head_before = Some(e.hash);
        }
        let linked = *prev.get_or_insert(e.prev_hash);
        let found = if e.seq != expected {
            Some(problem(
                Some(expected),
                format!(
                    "entry {expected} is missing or out of order (found entry {} in its place)",
                    e.seq
                ),
            ))
        } else if e.prev_hash != linked {
            Some(problem(
                Some(e.seq),
                format!("entry {} does not link to entry {}", e.seq, e.seq - 1),
            ))
        } else if chain_link(&linked, e.canonical) != e.hash || e.chain != chain_name {
            Some(problem(Some(e.seq), format!("entry {} was altered", e.seq)))
        } else {
            None
        };
        if found.is_some() {
            seg.problem = found;
            return Ok(());
        }
        if let Some(cps) = by_seq.get(&e.seq) {
            for cp in cps {
                if cp.hash != e.hash {
                    seg.problem = Some(problem(
                        Some(e.seq),
                        format!("entry {} differs from its signed checkpoint", e.seq),
                    ));
                    return Ok(());
                }
                seg.checked += 1;
            }
        }
        prev = Some(e.hash);
        seg.last = e.seq;
        seg.last_hash = e.hash;
        expected += 1;
        Ok(())
    })?;
    Ok(seg)
}

fn verify_one(
    store: &dyn Store,
    public_key: &[u8; 32],
    chain: &ChainId,
    checkpoints: &[Checkpoint],
    segments: Option<usize>,
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
    let known = head_before.map_or(0, |(s, _)| s);
    let parts = segments.unwrap_or_else(|| auto_segments(known)).max(1) as u64;
    // Parts split the entries known now; the last one runs to the end of the chain.
    let bounds: Vec<(u64, Option<u64>)> = (0..parts)
        .map(|i| {
            let after = known * i / parts;
            let until = (i + 1 < parts).then(|| known * (i + 1) / parts);
            (after, until)
        })
        .collect();
    let mut last = 0u64;
    let mut prev = GENESIS;
    let mut checked = 0u64;
    let mut hash_at_head_before = None;
    let mut broken = first_problem.is_some();
    if !broken {
        let results: Vec<Result<Segment, StoreError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = bounds
                .iter()
                .enumerate()
                .map(|(i, &(after, until))| {
                    let (by_seq, problem) = (&by_seq, &problem);
                    scope.spawn(move || {
                        let start = (i == 0).then_some(GENESIS);
                        verify_segment(
                            store,
                            chain,
                            after,
                            until,
                            start,
                            by_seq,
                            head_before,
                            problem,
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a verify thread panicked"))
                .collect()
        });
        // Join the parts in order: each must start where the one before it ended and link
        // to it; the first problem in chain order is the one reported.
        for seg in results {
            let seg = seg?;
            if let Some((first, claimed)) = seg.first {
                if first != last + 1 {
                    first_problem = Some(problem(
                        Some(last + 1),
                        format!(
                            "entry {} is missing or out of order (found entry {first} in its place)",
                            last + 1
                        ),
                    ));
                } else if claimed != prev {
                    first_problem = Some(problem(
                        Some(first),
                        format!("entry {first} does not link to entry {last}"),
                    ));
                }
            }
            if first_problem.is_some() {
                broken = true;
                break;
            }
            checked += seg.checked;
            hash_at_head_before = hash_at_head_before.or(seg.hash_at_head_before);
            // An empty part, or one whose very first entry failed, moved nothing forward.
            if seg.first.is_some() && seg.last > last {
                last = seg.last;
                prev = seg.last_hash;
            }
            if let Some(p) = seg.problem {
                first_problem = Some(p);
                broken = true;
                break;
            }
        }
    }
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
        let controller = trail_reader(p)?;
        let limit = limit.clamp(1, 1000);
        let entries =
            self.store
                .audit_page(&ChainId::Controller(controller.clone()), after, limit)?;
        Ok(page(entries, limit))
    }

    /// One subject's history in the caller's controller's trail (who processed which of its
    /// fields, when, under which purpose), oldest first: the entries naming the subject,
    /// bulk entries listing it included. Same readers and paging as [`Vault::audit_page`].
    pub fn subject_history(
        &self,
        p: &custodian_core::principal::Principal,
        subject: &custodian_core::ids::SubjectId,
        after: u64,
        limit: u32,
    ) -> Result<crate::views::AuditPage, crate::VaultError> {
        let controller = trail_reader(p)?;
        let limit = limit.clamp(1, 1000);
        let entries = self.store.audit_of_subject(
            &ChainId::Controller(controller.clone()),
            subject,
            after,
            limit,
        )?;
        // Every subject a controller ever held has at least the entry of its collection:
        // none at all means not this controller's subject (as anywhere else, 404).
        if after == 0 && entries.is_empty() {
            return Err(crate::VaultError::NotFound);
        }
        Ok(page(entries, limit))
    }
}

/// The controller whose trail `p` may read (its admins, viewers and auditors).
fn trail_reader(
    p: &custodian_core::principal::Principal,
) -> Result<&custodian_core::ids::ControllerId, crate::VaultError> {
    let controller = p.controller.as_ref().ok_or(crate::VaultError::Refused(
        custodian_core::policy::Refusal::NotControllerAdmin,
    ))?;
    custodian_core::policy::authorize_audit_read(p, controller)?;
    Ok(controller)
}

fn page(entries: Vec<custodian_core::audit::AuditEntry>, limit: u32) -> crate::views::AuditPage {
    let next_after = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    crate::views::AuditPage {
        entries: entries.iter().map(entry_view).collect(),
        next_after,
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
        subjects: d.subjects.clone(),
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
