//! Finding a chain's audit entries by subject without scattering writes.
//!
//! An entry names the subject it is about (`subject_id`), or, for a bulk entry (every record
//! of a purpose, say), hundreds of subjects (`subjects`). Indexing each subject named as a
//! row keyed by subject (the `audit_by_subject` index, migration 0007's `audit_subjects`)
//! dirtied one B-tree page per subject at a random place in the commit of every entry: a
//! consultation of 400 subjects wrote ~400 pages to the WAL, and the checkpoints after it
//! wrote them again. Here, entries are indexed in runs instead: whenever a chain's sequence
//! number reaches a multiple of [`RUN_SPAN`], the entries since the previous run become one
//! row per subject they name, listing the entries' seqs, keyed by (chain, the run's first
//! seq, subject), so a whole run is one sequential append, built in the transaction of the
//! entry that completes it. Entries after the last run (fewer than [`RUN_SPAN`], or more if
//! a run is ever missing: correctness does not depend on it) are found by reading their
//! own columns. Migration 0009 built the runs of bulk entries; 0012 rebuilt them with the
//! entries about one subject and dropped `audit_by_subject`.
//!
//! The index is derived from the entries' `subject_id` and `subjects` columns, which the
//! chain's hashes cover; like the entries, its tables refuse UPDATE and DELETE.

use super::codec::map_err;
use crate::Result;
pub(crate) use crate::subject_runs::RUN_SPAN;
use crate::subject_runs::{NAMES_SUBJECTS, Run, decode_seqs, named, quoted, spans};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeSet;

/// Called after entry `seq` of `chain` is inserted, in its transaction.
pub(crate) fn after_append(tx: &Connection, chain: &str, seq: u64) -> Result<()> {
    if seq.is_multiple_of(RUN_SPAN) {
        build_runs(tx, chain, seq)?;
    }
    Ok(())
}

/// The seq up to which `chain`'s entries are in runs (0: none).
fn indexed_upto(c: &Connection, chain: &str) -> Result<u64> {
    let last: Option<i64> = c
        .prepare_cached(
            "SELECT last_seq FROM audit_runs WHERE chain = ?1 ORDER BY first_seq DESC LIMIT 1",
        )
        .map_err(map_err)?
        .query_row([chain], |r| r.get(0))
        .optional()
        .map_err(map_err)?;
    Ok(last.map_or(0, |s| s as u64))
}

/// The entries of `chain` in (after, upto] that name subjects, with the subjects each
/// names; with `subject`, only those that may name it (the caller checks the list).
fn naming_entries(
    c: &Connection,
    chain: &str,
    after: u64,
    upto: u64,
    subject: Option<&str>,
    each: &mut dyn FnMut(u64, Vec<String>),
) -> Result<()> {
    let pattern = subject.map(quoted);
    let mut st = c
        .prepare_cached(&format!(
            "SELECT seq, subject_id, subjects FROM audit_entries
             WHERE chain = ?1 AND seq > ?2 AND seq <= ?3 AND {NAMES_SUBJECTS}
               AND (?4 IS NULL OR subject_id = ?4 OR instr(subjects, ?5) > 0)
             ORDER BY seq"
        ))
        .map_err(map_err)?;
    let mut rows = st
        .query(params![
            chain,
            after as i64,
            upto.min(i64::MAX as u64) as i64,
            subject,
            pattern
        ])
        .map_err(map_err)?;
    while let Some(r) = rows.next().map_err(map_err)? {
        let seq: i64 = r.get(0).map_err(map_err)?;
        let subject_id: Option<String> = r.get(1).map_err(map_err)?;
        let subjects = r
            .get_ref(2)
            .and_then(|v| Ok(v.as_str()?))
            .map_err(map_err)?;
        each(seq as u64, named(subject_id, subjects)?);
    }
    Ok(())
}

/// Indexes `chain`'s entries up to `upto` (a multiple of [`RUN_SPAN`]) in runs of
/// [`RUN_SPAN`] entries, from where the last run ended.
pub(crate) fn build_runs(tx: &Connection, chain: &str, upto: u64) -> Result<()> {
    for (first, last) in spans(indexed_upto(tx, chain)?, upto) {
        let mut run = Run::default();
        naming_entries(tx, chain, first - 1, last, None, &mut |seq, subjects| {
            run.add(seq, subjects)
        })?;
        let mut st = tx
            .prepare_cached(
                "INSERT INTO audit_run_subjects (chain, first_seq, subject_id, seqs) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(map_err)?;
        for (subject, seqs) in run.rows() {
            st.execute(params![chain, first as i64, subject, seqs])
                .map_err(map_err)?;
        }
        tx.prepare_cached(
            "INSERT INTO audit_runs (chain, first_seq, last_seq) VALUES (?1, ?2, ?3)",
        )
        .map_err(map_err)?
        .execute(params![chain, first as i64, last as i64])
        .map_err(map_err)?;
    }
    Ok(())
}

/// The seqs of `chain`'s entries naming `subject`, after `after`, in order.
pub(crate) fn seqs_of(
    c: &Connection,
    chain: &str,
    subject: &str,
    after: u64,
) -> Result<BTreeSet<u64>> {
    let mut out = BTreeSet::new();
    // Every run, and where the last ends, from one read: a run built meanwhile is found
    // by the scan of the entries after `upto` (entries are never removed).
    let runs: Vec<(i64, i64)> = {
        let mut st = c
            .prepare_cached(
                "SELECT first_seq, last_seq FROM audit_runs WHERE chain = ?1 ORDER BY first_seq",
            )
            .map_err(map_err)?;
        st.query_map(params![chain], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(map_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(map_err)?
    };
    let upto = runs.last().map_or(0, |&(_, last)| last as u64);
    let mut st = c
        .prepare_cached(
            "SELECT seqs FROM audit_run_subjects WHERE chain = ?1 AND first_seq = ?2 AND subject_id = ?3",
        )
        .map_err(map_err)?;
    for (first, _) in runs.into_iter().filter(|&(_, last)| last as u64 > after) {
        let seqs: Option<String> = st
            .query_row(params![chain, first, subject], |r| r.get(0))
            .optional()
            .map_err(map_err)?;
        if let Some(seqs) = seqs {
            out.extend(decode_seqs(&seqs)?.into_iter().filter(|&s| s > after));
        }
    }
    naming_entries(
        c,
        chain,
        upto.max(after),
        u64::MAX,
        Some(subject),
        &mut |seq, subjects| {
            if subjects.iter().any(|s| s == subject) {
                out.insert(seq);
            }
        },
    )?;
    Ok(out)
}
