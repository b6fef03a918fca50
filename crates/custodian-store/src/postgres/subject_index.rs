//! Finding a chain's audit entries by subject, in runs: `sqlite/subject_index.rs`'s index
//! on PostgreSQL, the same tables (migrations 0009 and 0010) and the same shared arithmetic
//! ([`crate::subject_runs`]). Migration 0007 wrote one `audit_subjects` row per subject
//! named by every bulk entry, one statement each, and `audit_by_subject` took a row per
//! entry about one subject; here a run is written once every [`RUN_SPAN`] entries of a
//! chain, its rows in one statement.
//!
//! Runs are built in the transaction of the entry that completes them, which holds the
//! chain's lock (`lock_chain`): appends to a chain are serialised across nodes, so a run
//! is never built twice (and the primary key would refuse it if it were).

use super::Q;
use super::codec::get;
use crate::Result;
use crate::subject_runs::{
    NAMES_SUBJECTS, RUN_SPAN, Run, complete_upto, decode_seqs, named, quoted, spans,
};
use postgres::{Client, Transaction};
use std::collections::BTreeSet;

/// Called after entry `seq` of `chain` is inserted, in its transaction.
pub(crate) fn after_append(q: &mut Q<'_, Transaction<'_>>, chain: &str, seq: u64) -> Result<()> {
    if seq.is_multiple_of(RUN_SPAN) {
        build_runs(q, chain, seq)?;
    }
    Ok(())
}

/// Migrations 0009's and 0010's code step for one chain whose head is `head`: runs for
/// every complete span.
pub(crate) fn index_existing(q: &mut Q<'_, Transaction<'_>>, chain: &str, head: u64) -> Result<()> {
    build_runs(q, chain, complete_upto(head))
}

fn db_seq(seq: u64) -> i64 {
    seq.min(i64::MAX as u64) as i64
}

/// Indexes `chain`'s entries up to `upto` (a multiple of [`RUN_SPAN`]) in runs of
/// [`RUN_SPAN`] entries, from where the last run ended.
fn build_runs(q: &mut Q<'_, Transaction<'_>>, chain: &str, upto: u64) -> Result<()> {
    let indexed: Option<i64> = q.maybe(
        "SELECT last_seq FROM audit_runs WHERE chain = $1 ORDER BY first_seq DESC LIMIT 1",
        &[&chain],
        |r| get(r, 0),
    )?;
    for (first, last) in spans(indexed.map_or(0, |s| s as u64), upto) {
        let mut run = Run::default();
        for r in q.rows(
            &format!(
                "SELECT seq, subject_id, subjects FROM audit_entries
                 WHERE chain = $1 AND seq > $2 AND seq <= $3 AND {NAMES_SUBJECTS} ORDER BY seq"
            ),
            &[&chain, &db_seq(first - 1), &db_seq(last)],
        )? {
            let seq: i64 = get(&r, 0)?;
            run.add(seq as u64, named(get(&r, 1)?, get(&r, 2)?)?);
        }
        let (subjects, seqs): (Vec<String>, Vec<String>) = run.rows().unzip();
        // All the run's rows in one statement: one round trip, however many subjects.
        q.exec(
            "INSERT INTO audit_run_subjects (chain, first_seq, subject_id, seqs)
             SELECT $1, $2, r.subject_id, r.seqs FROM UNNEST($3::text[], $4::text[]) AS r(subject_id, seqs)",
            &[&chain, &db_seq(first), &subjects, &seqs],
        )?;
        q.exec(
            "INSERT INTO audit_runs (chain, first_seq, last_seq) VALUES ($1, $2, $3)",
            &[&chain, &db_seq(first), &db_seq(last)],
        )?;
    }
    Ok(())
}

/// The seqs of `chain`'s entries naming `subject`, after `after`, in order.
///
/// As SQLite's, without a snapshot: the list of runs is read first, and where the last
/// ends bounds the scan of the entries after it; a run built meanwhile is found by that
/// scan (entries and runs are never changed or removed, and a run commits with its rows).
pub(crate) fn seqs_of(
    q: &mut Q<'_, Client>,
    chain: &str,
    subject: &str,
    after: u64,
) -> Result<BTreeSet<u64>> {
    let mut out = BTreeSet::new();
    let runs: Vec<(i64, i64)> = q.all(
        "SELECT first_seq, last_seq FROM audit_runs WHERE chain = $1 ORDER BY first_seq",
        &[&chain],
        |r| Ok((get(r, 0)?, get(r, 1)?)),
    )?;
    let upto = runs.last().map_or(0, |&(_, last)| last as u64);
    let firsts: Vec<i64> = runs
        .iter()
        .filter(|&&(_, last)| last as u64 > after)
        .map(|&(first, _)| first)
        .collect();
    if !firsts.is_empty() {
        // One point lookup per run on the primary key, sent as one statement.
        for r in q.rows(
            "SELECT seqs FROM audit_run_subjects
             WHERE chain = $1 AND first_seq = ANY($2::bigint[]) AND subject_id = $3",
            &[&chain, &firsts, &subject],
        )? {
            let seqs: &str = get(&r, 0)?;
            out.extend(decode_seqs(seqs)?.into_iter().filter(|&s| s > after));
        }
    }
    // The tail; `strpos` only spares sending the lists that cannot name the subject.
    let pattern = quoted(subject);
    for r in q.rows(
        "SELECT seq, subject_id, subjects FROM audit_entries
         WHERE chain = $1 AND seq > $2 AND (subject_id = $3 OR strpos(subjects, $4) > 0)
         ORDER BY seq",
        &[&chain, &db_seq(upto.max(after)), &subject, &pattern],
    )? {
        let seq: i64 = get(&r, 0)?;
        if named(get(&r, 1)?, get(&r, 2)?)?
            .iter()
            .any(|s| s == subject)
        {
            out.insert(seq as u64);
        }
    }
    Ok(out)
}
