//! What both backends share of finding a chain's audit entries by subject in runs
//! (`sqlite/subject_index.rs`, `postgres/subject_index.rs`, which hold the SQL): the span
//! of a run, which runs a chain is due, the grouping of a run's entries into one row per
//! subject, the text prefilter for a subject's entries after the last run, and the encoding of a row's seqs. Pure code, no database.
//!
//! Whenever a chain's sequence number reaches a multiple of [`RUN_SPAN`], the entries since
//! the previous run that name subjects (an entry about one subject, `subject_id`, or a bulk
//! entry's list, `subjects`) become one row per subject named, listing the entries' seqs
//! ([`Run`]), keyed by (chain, the run's first seq, subject); a row in `audit_runs` says
//! where the run starts and ends. Entries after the last run are read from their own
//! columns.

use crate::Result;
use crate::sqlite::codec::{corrupt, unjson};
use std::collections::BTreeMap;

/// Entries per run: a run is built at every multiple of it, and a query reads the subject
/// lists of at most this many entries after the last run.
pub(crate) const RUN_SPAN: u64 = 512;

/// The first and last seq of each run that indexes a chain up to `upto` (a multiple of
/// [`RUN_SPAN`]) when its runs end at `indexed` (0: none), in order.
pub(crate) fn spans(indexed: u64, upto: u64) -> impl Iterator<Item = (u64, u64)> {
    let mut first = indexed + 1;
    std::iter::from_fn(move || {
        let last = first + RUN_SPAN - 1;
        (last <= upto).then(|| {
            let span = (first, last);
            first = last + 1;
            span
        })
    })
}

/// Where the complete spans of a chain whose head is `head` end: how far the migrations that
/// build runs (SQLite 0009 and 0012, PostgreSQL 0009 and 0010) index an existing chain.
pub(crate) fn complete_upto(head: u64) -> u64 {
    head - head % RUN_SPAN
}

/// One run's entries, grouped by the subjects they name.
#[derive(Default)]
pub(crate) struct Run {
    by_subject: BTreeMap<String, Vec<u64>>,
}

impl Run {
    /// Entry `seq` names `subjects` (entries are added in seq order; a subject named twice
    /// by one entry is listed once).
    pub(crate) fn add(&mut self, seq: u64, subjects: impl IntoIterator<Item = String>) {
        for s in subjects {
            let seqs = self.by_subject.entry(s).or_default();
            if seqs.last() != Some(&seq) {
                seqs.push(seq);
            }
        }
    }

    /// The run's rows, one per subject, in subject order: the subject and its seqs
    /// ([`encode_seqs`]).
    pub(crate) fn rows(self) -> impl Iterator<Item = (String, String)> {
        self.by_subject
            .into_iter()
            .map(|(subject, seqs)| (subject, encode_seqs(&seqs)))
    }
}

/// The subjects an entry names: its `subject_id`, if any, and its `subjects` list (JSON).
pub(crate) fn named(subject_id: Option<String>, subjects: &str) -> Result<Vec<String>> {
    let mut named: Vec<String> = if subjects == "[]" {
        Vec::new()
    } else {
        unjson(subjects, "audit_entries")?
    };
    named.extend(subject_id);
    Ok(named)
}

/// The text a bulk entry's `subjects` list holds when it names `subject`: ids need no
/// escaping in JSON, so a substring search for it only spares decoding the lists of entries
/// that cannot name the subject; [`named`] decides.
pub(crate) fn quoted(subject: &str) -> String {
    format!("\"{subject}\"")
}

/// The condition on `audit_entries` of the entries [`named`] finds a subject in.
pub(crate) const NAMES_SUBJECTS: &str = "(subject_id IS NOT NULL OR subjects <> '[]')";

/// The `seqs` column of `audit_run_subjects`: a JSON array of numbers.
pub(crate) fn encode_seqs(seqs: &[u64]) -> String {
    serde_json::to_string(seqs).expect("numbers serialise")
}

/// Reads back [`encode_seqs`]; anything else is a corrupt row.
pub(crate) fn decode_seqs(seqs: &str) -> Result<Vec<u64>> {
    serde_json::from_str(seqs).map_err(|e| corrupt("audit_run_subjects", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_continue_from_the_last_run_up_to_a_multiple() {
        assert_eq!(spans(0, 0).count(), 0);
        assert_eq!(spans(0, 511).count(), 0);
        assert_eq!(spans(0, 512).collect::<Vec<_>>(), [(1, 512)]);
        assert_eq!(
            spans(0, 1536).collect::<Vec<_>>(),
            [(1, 512), (513, 1024), (1025, 1536)]
        );
        assert_eq!(spans(512, 1024).collect::<Vec<_>>(), [(513, 1024)]);
        assert_eq!(spans(1024, 1024).count(), 0);
        assert_eq!(complete_upto(0), 0);
        assert_eq!(complete_upto(1030), 1024);
        assert_eq!(complete_upto(1024), 1024);
    }

    #[test]
    fn a_run_is_a_row_per_subject_listing_its_seqs() {
        let mut run = Run::default();
        run.add(3, vec!["b".into(), "a".into()]);
        run.add(7, vec!["a".into(), "a".into()]);
        let rows: Vec<_> = run.rows().collect();
        assert_eq!(
            rows,
            [("a".into(), "[3,7]".into()), ("b".into(), "[3]".into())]
        );
        assert_eq!(decode_seqs("[3,7]").unwrap(), [3, 7]);
        assert!(decode_seqs("[3,-1]").is_err());
        assert!(decode_seqs("3").is_err());
        assert_eq!(
            named(Some("c".into()), "[\"a\",\"b\"]").unwrap(),
            ["a", "b", "c"]
        );
        assert_eq!(named(None, "[]").unwrap(), Vec::<String>::new());
        assert!(named(None, "[1]").is_err());
    }
}
