//! Rows kept between reads while they are unchanged: the decoded records of a purpose
//! ([`RecordCache`]) and the rows of a controller's subjects ([`SubjectCache`]).
//!
//! Why: every audited read commits its audit entry, and SQLite then empties the page cache
//! of every other connection and unmaps its memory map, so the next read walks and decodes
//! cold pages although none of them changed (a third of a bulk consultation's time went
//! to reading a purpose's records, a fifth to looking its subjects up, measured). Each kept
//! set carries the token its table of tokens held when it was read (migration 0013: every
//! unit of work that inserts, changes or deletes a purpose's records gives the purpose a new
//! random token, and one that changes or deletes subjects gives the controller one, in the
//! unit's own transaction, in whichever process writes). A reader uses a kept set only when
//! the token it reads in its own snapshot is the set's, so an answer is always what the
//! snapshot holds.
//!
//! Only readers fill or use them: a writer's transaction can hold changes (and tokens) that
//! a later savepoint rollback undoes, and what is kept must only ever describe committed
//! rows. The rows hold what the database holds (ciphertexts and wrapped keys, metadata,
//! ids), never plaintext; both caches are bounded and emptied after erasures
//! ([`Kept::clear`]), as the WAL is purged then.

use crate::rows::{RecordRow, SubjectRow};
use custodian_core::ids::{ControllerId, SubjectId};
use custodian_core::purpose::PurposeName;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How much a SQLite store keeps in memory between reads (see the module's comment); zero
/// keeps nothing of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptLimits {
    /// Bytes of decoded records, as `row_bytes` counts them (a GDPRbench record of three
    /// fields is about 700).
    pub record_bytes: usize,
    /// Subjects' rows (about 150 bytes each).
    pub subject_rows: usize,
}

impl Default for KeptLimits {
    /// 64 MiB of records (about 90,000 GDPRbench records) and 100,000 subjects.
    fn default() -> Self {
        Self {
            record_bytes: 64 << 20,
            subject_rows: 100_000,
        }
    }
}

/// What a store keeps between reads.
pub(crate) struct Kept {
    pub(crate) records: RecordCache,
    pub(crate) subjects: SubjectCache,
}

impl Kept {
    pub(crate) fn new(limits: KeptLimits) -> Self {
        Self {
            records: RecordCache::new(limits.record_bytes),
            subjects: SubjectCache::new(limits.subject_rows),
        }
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        self.records.clear();
        self.subjects.clear();
    }

    /// Forgets what was read under tokens that are no longer current (after an erasure:
    /// its unit changed the tokens of everything it erased, so the erased rows go, with the
    /// WAL, and what no erasure touched stays).
    pub(crate) fn keep_current(
        &self,
        records: &HashMap<(ControllerId, PurposeName), i64>,
        subjects: &HashMap<ControllerId, i64>,
    ) {
        let mut r = lock(&self.records.inner);
        let r = &mut *r;
        r.entries
            .retain(|key, e| records.get(key) == Some(&e.token));
        r.bytes = r.entries.values().map(|e| e.bytes).sum();
        gauge::record_bytes(r.bytes);
        let mut s = lock(&self.subjects.inner);
        let s = &mut *s;
        s.controllers
            .retain(|c, k| subjects.get(c) == Some(&k.token));
        s.rows = s.controllers.values().map(|k| k.rows.len()).sum();
        gauge::subject_rows(s.rows);
    }
}

/// Metrics of the process's kept rows: counts and sizes only, labelled by kind and outcome
/// (never an id or a purpose).
mod gauge {
    pub(super) fn lookups(kind: &'static str, outcome: &'static str, n: usize) {
        if n > 0 {
            metrics::counter!("custodian_kept_lookups_total", "kind" => kind, "outcome" => outcome)
                .increment(n as u64);
        }
    }

    pub(super) fn record_bytes(n: usize) {
        metrics::gauge!("custodian_kept_record_bytes").set(n as f64);
    }

    pub(super) fn subject_rows(n: usize) {
        metrics::gauge!("custodian_kept_subject_rows").set(n as f64);
    }
}

/// The lock of a cache: its maps hold no invariant a panic could break halfway, so a
/// poisoned one is used as it is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Key = (ControllerId, PurposeName);

struct Entry {
    token: i64,
    rows: Arc<[RecordRow]>,
    bytes: usize,
    last_used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    bytes: usize,
    clock: u64,
}

pub(crate) struct RecordCache {
    budget: usize,
    inner: Mutex<Inner>,
}

/// What a row costs in memory, roughly: its fixed part and what it owns on the heap.
fn row_bytes(r: &RecordRow) -> usize {
    let meta = &r.header.meta;
    std::mem::size_of::<RecordRow>()
        + meta.source.as_ref().map_or(0, String::len)
        + meta.automated_decision.as_ref().map_or(0, String::len)
        + meta
            .recipients
            .iter()
            .map(|s| s.len() + std::mem::size_of::<String>())
            .sum::<usize>()
        + r.fields
            .iter()
            .map(|f| f.sealed.len() + std::mem::size_of_val(f))
            .sum::<usize>()
}

impl RecordCache {
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// The records read under `token`, if they are kept.
    pub(crate) fn get(
        &self,
        controller: &ControllerId,
        purpose: &PurposeName,
        token: i64,
    ) -> Option<Arc<[RecordRow]>> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let found = match inner
            .entries
            .get_mut(&(controller.clone(), purpose.clone()))
        {
            Some(e) if e.token == token => {
                e.last_used = now;
                Some(e.rows.clone())
            }
            _ => None,
        };
        gauge::lookups("records", if found.is_some() { "hit" } else { "miss" }, 1);
        found
    }

    /// Keeps `rows`, read in a snapshot where the purpose's token was `token`, in place of
    /// whatever was kept for the purpose; the least recently used entries go when the
    /// budget is exceeded. A set larger than a quarter of the budget is not kept.
    pub(crate) fn put(
        &self,
        controller: &ControllerId,
        purpose: &PurposeName,
        token: i64,
        rows: Arc<[RecordRow]>,
    ) {
        let bytes: usize = rows.iter().map(row_bytes).sum();
        let key = (controller.clone(), purpose.clone());
        let mut inner = self.lock();
        if let Some(old) = inner.entries.remove(&key) {
            inner.bytes -= old.bytes;
        }
        if bytes > self.budget / 4 {
            gauge::record_bytes(inner.bytes);
            return;
        }
        while inner.bytes + bytes > self.budget {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.bytes -= e.bytes;
            }
        }
        inner.clock += 1;
        let last_used = inner.clock;
        inner.bytes += bytes;
        inner.entries.insert(
            key,
            Entry {
                token,
                rows,
                bytes,
                last_used,
            },
        );
        gauge::record_bytes(inner.bytes);
    }

    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.bytes = 0;
        gauge::record_bytes(0);
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

struct KeptSubjects {
    token: i64,
    rows: HashMap<SubjectId, SubjectRow>,
    last_used: u64,
}

#[derive(Default)]
struct SubjectsInner {
    controllers: HashMap<ControllerId, KeptSubjects>,
    rows: usize,
    clock: u64,
}

/// The rows of a controller's subjects, as read under the controller's subjects token.
pub(crate) struct SubjectCache {
    max_rows: usize,
    inner: Mutex<SubjectsInner>,
}

impl SubjectCache {
    pub(crate) fn new(max_rows: usize) -> Self {
        Self {
            max_rows,
            inner: Mutex::default(),
        }
    }

    /// Of `ids`, the rows kept under `token` (in the order of `ids`), and the ids not kept.
    pub(crate) fn get(
        &self,
        controller: &ControllerId,
        token: i64,
        ids: &[SubjectId],
    ) -> (Vec<SubjectRow>, Vec<SubjectId>) {
        let mut inner = lock(&self.inner);
        inner.clock += 1;
        let now = inner.clock;
        let (found, missing) = match inner.controllers.get_mut(controller) {
            Some(k) if k.token == token => {
                k.last_used = now;
                let mut found = Vec::with_capacity(ids.len());
                let mut missing = Vec::new();
                for id in ids {
                    match k.rows.get(id) {
                        Some(r) => found.push(r.clone()),
                        None => missing.push(id.clone()),
                    }
                }
                (found, missing)
            }
            _ => (Vec::new(), ids.to_vec()),
        };
        gauge::lookups("subjects", "hit", found.len());
        gauge::lookups("subjects", "miss", missing.len());
        (found, missing)
    }

    /// Keeps `rows`, read in a snapshot where the controller's subjects token was `token`;
    /// what was kept under another token goes. Whole controllers go, least recently used
    /// first, to stay within the row limit; rows beyond it are not kept.
    pub(crate) fn put(&self, controller: &ControllerId, token: i64, rows: &[SubjectRow]) {
        if rows.is_empty() {
            return;
        }
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        inner.clock += 1;
        let now = inner.clock;
        let stale = inner
            .controllers
            .get(controller)
            .is_some_and(|k| k.token != token);
        if stale {
            inner.rows -= inner
                .controllers
                .remove(controller)
                .map_or(0, |k| k.rows.len());
        }
        while inner.rows + rows.len() > self.max_rows {
            let Some(oldest) = inner
                .controllers
                .iter()
                .filter(|(c, _)| *c != controller)
                .min_by_key(|(_, k)| k.last_used)
                .map(|(c, _)| c.clone())
            else {
                break;
            };
            if let Some(k) = inner.controllers.remove(&oldest) {
                inner.rows -= k.rows.len();
            }
        }
        let kept = inner
            .controllers
            .entry(controller.clone())
            .or_insert_with(|| KeptSubjects {
                token,
                rows: HashMap::new(),
                last_used: now,
            });
        kept.last_used = now;
        for r in rows {
            if inner.rows >= self.max_rows {
                break;
            }
            if kept.rows.insert(r.id.clone(), r.clone()).is_none() {
                inner.rows += 1;
            }
        }
        gauge::subject_rows(inner.rows);
    }

    pub(crate) fn clear(&self) {
        let mut inner = lock(&self.inner);
        inner.controllers.clear();
        inner.rows = 0;
        gauge::subject_rows(0);
    }

    #[cfg(test)]
    pub(crate) fn rows(&self) -> usize {
        lock(&self.inner).rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::FieldRow;
    use custodian_core::category::DataCategory;
    use custodian_core::ids::{RecordId, SubjectId};
    use custodian_core::record::{FieldName, RecordHeader, RecordMeta};
    use time::OffsetDateTime;

    fn row(n: u8, sealed: usize) -> RecordRow {
        RecordRow {
            id: RecordId::from_random([n; 16]),
            subject: SubjectId::from_random([n; 16]),
            header: RecordHeader {
                purpose: PurposeName::parse("billing").unwrap(),
                meta: RecordMeta::default().into(),
                created_at: OffsetDateTime::UNIX_EPOCH,
                updated_at: OffsetDateTime::UNIX_EPOCH,
                expires_at: OffsetDateTime::UNIX_EPOCH,
            },
            fields: vec![FieldRow {
                name: FieldName::parse("email").unwrap(),
                category: DataCategory::parse("user.contact").unwrap(),
                sealed: vec![0; sealed],
            }],
        }
    }

    fn c(n: u8) -> ControllerId {
        ControllerId::from_random([n; 16])
    }

    fn p(name: &str) -> PurposeName {
        PurposeName::parse(name).unwrap()
    }

    #[test]
    fn an_entry_answers_only_its_own_token() {
        let cache = RecordCache::new(KeptLimits::default().record_bytes);
        cache.put(&c(1), &p("billing"), 7, Arc::from([row(1, 10)]));
        assert_eq!(cache.get(&c(1), &p("billing"), 7).unwrap().len(), 1);
        assert!(cache.get(&c(1), &p("billing"), 8).is_none());
        assert!(
            cache.get(&c(2), &p("billing"), 7).is_none(),
            "another controller"
        );
        assert!(
            cache.get(&c(1), &p("support"), 7).is_none(),
            "another purpose"
        );
        cache.put(&c(1), &p("billing"), 8, Arc::from([row(1, 10), row(2, 10)]));
        assert!(cache.get(&c(1), &p("billing"), 7).is_none(), "replaced");
        assert_eq!(cache.get(&c(1), &p("billing"), 8).unwrap().len(), 2);
        cache.clear();
        assert!(cache.get(&c(1), &p("billing"), 8).is_none());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn the_budget_holds_and_the_least_recently_used_go_first() {
        let one = row_bytes(&row(1, 1000));
        let cache = RecordCache::new(one * 8);
        cache.put(&c(1), &p("a"), 1, Arc::from([row(1, 1000), row(2, 1000)]));
        cache.put(&c(1), &p("b"), 1, Arc::from([row(3, 1000), row(4, 1000)]));
        cache.put(&c(1), &p("c"), 1, Arc::from([row(5, 1000), row(6, 1000)]));
        assert!(
            cache.get(&c(1), &p("a"), 1).is_some(),
            "a is now the most recent"
        );
        cache.put(&c(1), &p("d"), 1, Arc::from([row(7, 1000), row(8, 1000)]));
        cache.put(&c(1), &p("e"), 1, Arc::from([row(9, 1000), row(10, 1000)]));
        assert!(cache.bytes() <= one * 8);
        assert!(
            cache.get(&c(1), &p("b"), 1).is_none(),
            "b was used least recently"
        );
        for kept in ["a", "c", "d", "e"] {
            assert!(cache.get(&c(1), &p(kept), 1).is_some(), "{kept} is kept");
        }
        // A set larger than a quarter of the budget is not kept, and does not evict.
        cache.put(
            &c(1),
            &p("f"),
            1,
            Arc::from([row(11, 1000), row(12, 1000), row(13, 1000), row(14, 1000)]),
        );
        assert!(cache.get(&c(1), &p("f"), 1).is_none());
        assert!(cache.get(&c(1), &p("a"), 1).is_some());
        assert_eq!(cache.bytes(), one * 8);
    }

    fn subject(n: u8) -> SubjectRow {
        SubjectRow {
            id: SubjectId::from_random([n; 16]),
            category: custodian_core::category::SubjectCategory::Customer,
            restricted: false,
            wrapped_key: vec![n; 60],
            created_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn subjects_answer_under_their_token_and_stay_within_the_limit() {
        let cache = SubjectCache::new(4);
        let ids = |ns: &[u8]| ns.iter().map(|n| subject(*n).id).collect::<Vec<_>>();
        cache.put(&c(1), 5, &[subject(1), subject(2)]);
        let (found, missing) = cache.get(&c(1), 5, &ids(&[2, 3, 1]));
        assert_eq!(found, vec![subject(2), subject(1)]);
        assert_eq!(missing, ids(&[3]));
        assert_eq!(
            cache.get(&c(1), 6, &ids(&[1])).1,
            ids(&[1]),
            "another token"
        );
        assert_eq!(
            cache.get(&c(2), 5, &ids(&[1])).1,
            ids(&[1]),
            "another controller"
        );
        // A new token replaces what the old one kept.
        cache.put(&c(1), 6, &[subject(3)]);
        assert_eq!(cache.get(&c(1), 5, &ids(&[3])).1, ids(&[3]));
        assert_eq!(
            cache.get(&c(1), 6, &ids(&[1, 3])),
            (vec![subject(3)], ids(&[1]))
        );
        assert_eq!(cache.rows(), 1);
        // Another controller's rows push the least recently used controller out.
        cache.put(&c(2), 1, &[subject(4), subject(5), subject(6)]);
        assert_eq!(cache.rows(), 4);
        cache.put(&c(3), 1, &[subject(7)]);
        assert!(cache.rows() <= 4);
        assert_eq!(
            cache.get(&c(1), 6, &ids(&[3])).1,
            ids(&[3]),
            "c1 went first"
        );
        assert_eq!(cache.get(&c(3), 1, &ids(&[7])).0, vec![subject(7)]);
        cache.clear();
        assert_eq!(cache.rows(), 0);
    }

    #[test]
    fn only_what_was_read_under_current_tokens_stays() {
        let kept = Kept::new(KeptLimits::default());
        kept.records.put(&c(1), &p("a"), 1, Arc::from([row(1, 10)]));
        kept.records.put(&c(1), &p("b"), 2, Arc::from([row(2, 10)]));
        kept.subjects.put(&c(1), 7, &[subject(1)]);
        kept.subjects.put(&c(2), 8, &[subject(2)]);
        let records = HashMap::from([((c(1), p("a")), 1), ((c(1), p("b")), 3)]);
        let subjects = HashMap::from([(c(1), 9), (c(2), 8)]);
        kept.keep_current(&records, &subjects);
        assert!(kept.records.get(&c(1), &p("a"), 1).is_some());
        assert!(kept.records.get(&c(1), &p("b"), 2).is_none());
        assert_eq!(kept.records.bytes(), row_bytes(&row(1, 10)));
        assert_eq!(kept.subjects.get(&c(1), 7, &[subject(1).id]).0, vec![]);
        assert_eq!(
            kept.subjects.get(&c(2), 8, &[subject(2).id]).0,
            vec![subject(2)]
        );
        assert_eq!(kept.subjects.rows(), 1);
    }
}
