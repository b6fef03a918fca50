//! Operations on a set of records at once: every record collected under the call's purpose,
//! or only one subject's records under it, consulted, altered or erased in one
//! transaction. These are the "metadata queries" of GDPRbench (all records of a purpose or
//! of a user); like every data operation each is one Art. 4(2) operation under the named
//! purpose, checked by the same grant, and returns only after its audit entries committed
//! with the change.
//!
//! Audit: one entry per subject touched (naming the subject, the fields involved and the
//! record when there is only one), so that a subject's history stays queryable by subject.
//! Subjects who restricted processing or objected to the purpose are left out of the set,
//! as `lookup` leaves them out: finding them would be processing them.

use crate::data::{Keys, Scale, Subjectmatter};
use crate::paging::{Page, PageCursor, RecordPage, set_order};
use crate::views::{AuditPage, RecordView};
use crate::{CallContext, Pending, Vault, VaultError};
use custodian_core::ValidationError;
use custodian_core::audit::ChainId;
use custodian_core::category::DataCategory;
use custodian_core::ids::SubjectId;
use custodian_core::operation::Operation;
use custodian_core::policy::{DataGrant, Denial};
use custodian_core::principal::Principal;
use custodian_core::purpose::{Purpose, PurposeName};
use custodian_core::record::{
    FieldInput, FieldName, FieldValue, RecordMeta, ValidField, validate_field,
};
use custodian_crypto::keys::{FieldContext, SubjectKey};
use custodian_store::rows::{FieldRow, LookupRow, RecordRow, SubjectRow};
use custodian_store::{DataTx, MetaChange, StoreError, TxError, fieldset};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;
use time::OffsetDateTime;

/// Which records a bulk operation works on. Always only records collected under the
/// purpose the call names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordSet {
    /// Every record collected under the purpose.
    Purpose,
    /// The records of one subject collected under the purpose.
    Subject(SubjectId),
}

/// One change applied to every record of a set (Alteration).
#[derive(Debug, Clone)]
pub enum RecordChange {
    /// A new retention end; capped by the purpose's retention counted from the record's
    /// collection, so that a change can shorten a record's life but never stretch it.
    ExpiresAt(OffsetDateTime),
    /// The records are about another subject of the same controller: their fields are
    /// re-encrypted under that subject's key, and their lookup entries follow them.
    Subject(SubjectId),
    /// Writes one field (added where missing), validated and encrypted as any field.
    Field { name: FieldName, input: FieldInput },
    /// Recategorises one field where present: its value is decrypted, validated again under
    /// the new category (card numbers, lookup normalisation) and re-encrypted.
    Category {
        field: FieldName,
        category: DataCategory,
    },
    /// Art. 15(1)(g).
    Source(Option<String>),
    /// Art. 15(1)(c).
    Recipients(Vec<String>),
    /// Art. 15(1)(h).
    AutomatedDecision(Option<String>),
}

impl RecordChange {
    /// The change as one statement can make it over a purpose's records, when it can:
    /// the same value for every record, or the expiry `Purpose::expiry` gives each.
    fn meta(&self, purpose: &Purpose) -> Option<MetaChange<'_>> {
        Some(match self {
            Self::Source(s) => MetaChange::Source(s.as_deref()),
            Self::Recipients(r) => MetaChange::Recipients(r),
            Self::AutomatedDecision(a) => MetaChange::AutomatedDecision(a.as_deref()),
            Self::ExpiresAt(t) => MetaChange::ExpiresAt {
                requested: *t,
                retention: purpose.retention(),
            },
            Self::Subject(_) | Self::Field { .. } | Self::Category { .. } => return None,
        })
    }

    /// What the audit entry names: a field, or the metadata item changed.
    fn audit_name(&self) -> String {
        match self {
            Self::ExpiresAt(_) => "meta:expires_at".into(),
            Self::Subject(_) => "meta:subject".into(),
            Self::Field { name, .. } => name.to_string(),
            Self::Category { field, .. } => format!("category:{field}"),
            Self::Source(_) => "meta:source".into(),
            Self::Recipients(_) => "meta:recipients".into(),
            Self::AutomatedDecision(_) => "meta:automated_decision".into(),
        }
    }

    /// Checks what can be checked before any record is touched.
    fn validate(&self) -> Result<Option<ValidField>, ValidationError> {
        let meta = |m: RecordMeta| m.validate().map(|()| None);
        match self {
            Self::Field { name, input } => validate_field(name.clone(), input.clone()).map(Some),
            Self::Source(s) => meta(RecordMeta {
                source: s.clone(),
                ..Default::default()
            }),
            Self::Recipients(r) => meta(RecordMeta {
                recipients: r.clone(),
                ..Default::default()
            }),
            Self::AutomatedDecision(a) => meta(RecordMeta {
                automated_decision: a.clone(),
                ..Default::default()
            }),
            Self::Category { category, .. } if category.is_payment_card() => {
                Err(ValidationError::new(
                    "category",
                    "payment card numbers are handled by the payment gateway and are never stored here (DPA §4)",
                ))
            }
            Self::ExpiresAt(_) | Self::Subject(_) | Self::Category { .. } => Ok(None),
        }
    }
}

/// What a change makes of one record.
enum Altered {
    /// It does not apply (a recategorisation of a field the record lacks).
    NotApplicable,
    /// It applies and leaves the record as it is (a move to the subject it is about).
    Unchanged,
    /// The record as it is to be written.
    To(RecordRow),
}

/// What a bulk alteration or erasure did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BulkReport {
    pub records: u64,
    pub subjects: u64,
    /// Subjects left out because they restricted processing or objected to the purpose.
    pub skipped_subjects: u64,
}

fn corrupt(table: &'static str, e: impl std::fmt::Display) -> TxError {
    TxError::Store(StoreError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

/// The records of a set by subject, with each subject's row: subjects in id order, each
/// one's records in the order the store answered them (oldest first), borrowed from those
/// rows. Subjects the operation may not process are not in it.
struct Groups<'r> {
    records: Vec<&'r RecordRow>,
    subjects: Vec<(SubjectRow, Range<usize>)>,
}

impl<'r> Groups<'r> {
    fn iter(&self) -> impl Iterator<Item = (&SubjectRow, &[&'r RecordRow])> + '_ {
        self.subjects
            .iter()
            .map(|(row, at)| (row, &self.records[at.clone()]))
    }

    fn records(&self) -> impl Iterator<Item = &'r RecordRow> + '_ {
        self.iter().flat_map(|(_, records)| records.iter().copied())
    }

    /// Only the records of `page`, and the key to ask for the next page with when records
    /// follow it.
    fn window(self, page: &Page) -> (Self, Option<PageCursor>) {
        let Groups { records, subjects } = self;
        let mut kept = Vec::new();
        let mut left = page.limit();
        let mut last = None;
        let mut more = false;
        for (row, at) in subjects {
            let run = &records[at.clone()];
            // Runs are in the set's order: the first record after the cursor, by key.
            let from = page
                .after()
                .map_or(0, |c| run.partition_point(|r| !c.precedes(r)));
            if from == run.len() {
                continue;
            }
            if left == 0 {
                more = true;
                break;
            }
            let to = (from + left).min(run.len());
            left -= to - from;
            last = Some(run[to - 1]);
            more = to < run.len();
            kept.push((row, at.start + from..at.start + to));
        }
        let next = last.filter(|_| more).map(PageCursor::of);
        (
            Groups {
                records,
                subjects: kept,
            },
            next,
        )
    }
}

/// The one audit entry of a bulk operation, filled in as the work goes: every subject
/// touched (the store indexes each, so a subject's history still finds the entry), the
/// names of every field involved, and the record when there is exactly one.
#[derive(Default)]
struct Audit {
    /// In the order they were met (groups come in id order): sorted once at the end.
    subjects: Vec<SubjectId>,
    fields: BTreeSet<String>,
    records: u64,
    record: Option<custodian_core::ids::RecordId>,
    /// The field lists last checked and named, whichever subjects held them (see
    /// [`Self::every_record`]).
    lists: Vec<Vec<(FieldName, DataCategory)>>,
}

impl Audit {
    fn subject(&mut self, subject: &SubjectId, records: &[&RecordRow], fields: BTreeSet<String>) {
        let one = match records {
            [one] => Some(&one.id),
            _ => None,
        };
        self.counted(subject, records.len() as u64, one, fields);
    }

    /// [`Self::subject`] knowing only how many records were processed, and which one when
    /// there was exactly one.
    fn counted(
        &mut self,
        subject: &SubjectId,
        records: u64,
        one: Option<&custodian_core::ids::RecordId>,
        fields: BTreeSet<String>,
    ) {
        self.subjects.push(subject.clone());
        self.fields.extend(fields);
        self.records += records;
        if let (1, Some(one)) = (records, one) {
            self.record = Some(one.clone());
        }
    }

    /// A subject all of whose `records` (in the set) are processed, with every field they
    /// hold; `check` sees each field list (names and categories) before it is named, but a
    /// list the same as one of the last eight it saw, of this record's subject or another's,
    /// is not checked or named again: the records of a set mostly hold the same few lists,
    /// and `check` must depend on the list alone (both callers' do: a grant's, or none).
    fn every_record<E>(
        &mut self,
        subject: &SubjectId,
        records: &[&RecordRow],
        mut check: impl FnMut(&[FieldRow]) -> Result<(), E>,
    ) -> Result<(), E> {
        const LISTS_KEPT: usize = 8;
        for fields in records.iter().map(|r| &r.fields[..]) {
            let same = |list: &Vec<(FieldName, DataCategory)>| {
                list.len() == fields.len()
                    && list
                        .iter()
                        .zip(fields)
                        .all(|((n, c), f)| *n == f.name && *c == f.category)
            };
            // The latest first: a record mostly holds the list of the record before it.
            if self.lists.iter().rev().any(same) {
                continue;
            }
            check(fields)?;
            for f in fields {
                // Without allocating a name the entry already holds.
                if !self.fields.contains(f.name.as_str()) {
                    self.fields.insert(f.name.to_string());
                }
            }
            if self.lists.len() == LISTS_KEPT {
                self.lists.remove(0);
            }
            self.lists.push(
                fields
                    .iter()
                    .map(|f| (f.name.clone(), f.category.clone()))
                    .collect(),
            );
        }
        self.subjects.push(subject.clone());
        self.records += records.len() as u64;
        if let [one] = records {
            self.record = Some(one.id.clone());
        }
        Ok(())
    }

    /// Hands what the entry names to `data_op`, which commits it with the work.
    fn finish(self, matter: &mut Subjectmatter) {
        matter.fields = self.fields.into_iter().collect();
        matter.record = if self.records == 1 { self.record } else { None };
        let mut subjects = self.subjects;
        if !subjects.is_sorted() {
            subjects.sort_unstable();
        }
        subjects.dedup();
        if subjects.len() == 1 {
            matter.subject = subjects.pop();
        } else {
            matter.subject = None;
            matter.subjects = subjects;
        }
    }
}

/// Whether a bulk operation takes the records of its set whose retention has run out
/// (`RecordHeader::has_expired`), which only erasures still touch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expired {
    Left,
    Taken,
}

/// `records` by subject (subjects in id order), and where each subject's run is.
fn by_subject<'r>(
    records: impl IntoIterator<Item = &'r RecordRow>,
) -> (Vec<&'r RecordRow>, Vec<Range<usize>>) {
    let mut order: Vec<&RecordRow> = records.into_iter().collect();
    // Stores answer a purpose's records by subject already (`DataTx::records_of_purpose`):
    // the groups are then runs of the answer, and a bulk read builds no map. The full order
    // (each subject's oldest first, then by id) is what a page's cursor counts on, whatever
    // collation a store's sort used.
    if !order.is_sorted_by(|a, b| set_order(a, b).is_le()) {
        order.sort_by(|a, b| set_order(a, b));
    }
    let mut runs: Vec<Range<usize>> = Vec::new();
    for (i, r) in order.iter().enumerate() {
        match runs.last_mut() {
            Some(at) if order[at.start].subject == r.subject => at.end = i + 1,
            _ => runs.push(i..i + 1),
        }
    }
    (order, runs)
}

impl Vault {
    /// The set's records, as the store answers them: a purpose's are shared with the rows
    /// it keeps between reads, so that a bulk read copies none it does not answer.
    fn load_set(
        &self,
        tx: &mut dyn DataTx,
        grant: &DataGrant,
        keys: &Keys,
        set: &RecordSet,
    ) -> Result<Arc<[RecordRow]>, TxError> {
        let purpose = &grant.purpose().name;
        Ok(match set {
            RecordSet::Purpose => tx.records_of_purpose(purpose)?,
            RecordSet::Subject(s) => {
                // Unknown and erased subjects answer as they do everywhere else.
                self.subject_key(tx, keys, grant, s)?;
                tx.records_of(s)?
                    .into_iter()
                    .filter(|r| &r.header.purpose == purpose)
                    .collect()
            }
        })
    }

    /// `records` grouped by subject, without the subjects whose state forbids the
    /// operation (named in `skipped`), and without the expired records unless `expired`
    /// says they are taken.
    fn group<'r>(
        tx: &mut dyn DataTx,
        grant: &DataGrant,
        set: &RecordSet,
        records: &'r [RecordRow],
        expired: Expired,
        skipped: &mut Vec<SubjectId>,
    ) -> Result<Groups<'r>, TxError> {
        let now = tx.now();
        let (order, runs) = by_subject(
            records
                .iter()
                .filter(|r| expired == Expired::Taken || !r.header.has_expired(now)),
        );
        let subjects: Vec<SubjectId> = runs
            .iter()
            .map(|at| order[at.start].subject.clone())
            .collect();
        let rows = Self::admit(tx, grant, set, &subjects, skipped)?;
        Ok(Groups {
            records: order,
            subjects: rows
                .into_iter()
                .zip(runs)
                .filter_map(|(row, at)| Some((row?, at)))
                .collect(),
        })
    }

    /// The rows of `subjects` (the subjects of the set's records, each once), in their
    /// order; `None` for those whose state forbids the operation, which are also named in
    /// `skipped`.
    fn admit(
        tx: &mut dyn DataTx,
        grant: &DataGrant,
        set: &RecordSet,
        subjects: &[SubjectId],
        skipped: &mut Vec<SubjectId>,
    ) -> Result<Vec<Option<SubjectRow>>, TxError> {
        // The subjects' rows and the purpose's objectors, each in one query.
        let rows = match set {
            RecordSet::Purpose => tx.subjects_by_id(subjects)?,
            RecordSet::Subject(s) => tx.subject(s)?.into_iter().collect(),
        };
        let rows = Self::in_order(rows, subjects)?;
        let mut objectors = tx.objectors(&grant.purpose().name)?;
        objectors.sort_unstable();
        Ok(rows
            .into_iter()
            .map(|row| {
                let objected = objectors.binary_search(&row.id).is_ok();
                if grant.check_subject(row.restricted, objected).is_ok() {
                    Some(row)
                } else {
                    skipped.push(row.id);
                    None
                }
            })
            .collect())
    }

    /// `rows` in the order of `subjects`, one each; a subject without a row is a record
    /// naming a missing subject.
    fn in_order(rows: Vec<SubjectRow>, subjects: &[SubjectId]) -> Result<Vec<SubjectRow>, TxError> {
        // Stores mostly answer in the order asked: then there is nothing to match.
        if rows.len() == subjects.len() && rows.iter().zip(subjects).all(|(r, s)| &r.id == s) {
            return Ok(rows);
        }
        let mut by_id: BTreeMap<SubjectId, SubjectRow> =
            rows.into_iter().map(|r| (r.id.clone(), r)).collect();
        subjects
            .iter()
            .map(|s| {
                by_id
                    .remove(s)
                    .ok_or_else(|| corrupt("records", "a record names a missing subject"))
            })
            .collect()
    }

    /// Consultation of a set of records: every record collected under `purpose` (or only
    /// one subject's), decrypted. Refused, naming the fields, when any field's category lies
    /// outside the purpose.
    pub fn purpose_records(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        set: &RecordSet,
        ctx: &CallContext,
    ) -> Result<Vec<RecordView>, VaultError> {
        self.purpose_records_pending(p, purpose, set, ctx)?.wait()
    }

    /// [`Self::purpose_records`], answered once its audit entry is durable (see [`Pending`]).
    pub fn purpose_records_pending(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        set: &RecordSet,
        ctx: &CallContext,
    ) -> Result<Pending<Vec<RecordView>>, VaultError> {
        self.consult_set(p, purpose, set, None, ctx)
            .map(|pending| pending.map(|page| page.records))
    }

    /// One page of [`Self::purpose_records`] (see [`crate::paging`]): only its records are
    /// decrypted, and only they are named in the audit entry.
    pub fn purpose_records_page_pending(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        set: &RecordSet,
        page: &Page,
        ctx: &CallContext,
    ) -> Result<Pending<RecordPage>, VaultError> {
        self.consult_set(p, purpose, set, Some(page), ctx)
    }

    fn consult_set(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        set: &RecordSet,
        page: Option<&Page>,
        ctx: &CallContext,
    ) -> Result<Pending<RecordPage>, VaultError> {
        let op = Operation::Consultation;
        let matter = Subjectmatter::default();
        self.data_op_pending(p, purpose, op, ctx, matter, |tx, grant, keys, matter| {
            let mut skipped = Vec::new();
            let records = self.load_set(tx, grant, keys, set)?;
            let groups = Self::group(tx, grant, set, &records, Expired::Left, &mut skipped)?;
            let (groups, next) = match page {
                Some(page) => groups.window(page),
                None => (groups, None),
            };
            // Every field checked before any is decrypted.
            let mut audit = Audit::default();
            for (row, records) in groups.iter() {
                audit.every_record(&row.id, records, |fields| {
                    grant
                        .check_fields(fields.iter().map(|f| (&f.name, &f.category)))
                        .map_err(Denial::from)
                })?;
            }
            audit.finish(matter);
            // Subject by subject, over idle cores when there are (see `spread`).
            let by_subject = |part: &[(SubjectRow, Range<usize>)]| {
                let mut out = Vec::with_capacity(part.iter().map(|(_, at)| at.len()).sum());
                for (row, at) in part {
                    let key = self.unwrap_subject(keys, grant.controller(), row)?;
                    for r in &groups.records[at.clone()] {
                        out.push(Self::open_record(grant, &key, r)?);
                    }
                }
                Ok::<_, TxError>(out)
            };
            let records = self
                .spread
                .map(&groups.subjects, |(_, at)| at.len(), by_subject)?;
            Ok(RecordPage { records, next })
        })
    }

    /// Alteration of a set of records: one change applied to each.
    pub fn alter_records(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        set: &RecordSet,
        change: &RecordChange,
        ctx: &CallContext,
    ) -> Result<BulkReport, VaultError> {
        let op = Operation::Alteration;
        let valid = change
            .validate()
            .map_err(|e| self.refuse_invalid(p, purpose, op, ctx, e))?;
        let matter = Subjectmatter::default();
        let scale = Scale::of(set);
        self.data_op_sized(
            p,
            purpose,
            op,
            ctx,
            matter,
            scale,
            |tx, grant, keys, matter| {
                // The unit's instant: what it counts as expired and the update time it
                // writes are the same moment (`DataTx::alter_purpose_meta`).
                let now = tx.now();
                let mut report = BulkReport::default();
                let mut skipped = Vec::new();
                let mut audit = Audit::default();
                // An item the same for every record of a purpose (or computed from each
                // one's collection): one statement over the purpose's records, which are
                // counted by subject, never read.
                if let (RecordSet::Purpose, Some(meta)) = (set, change.meta(grant.purpose())) {
                    let counts = tx.record_counts_of_purpose(purpose)?;
                    let subjects: Vec<SubjectId> =
                        counts.iter().map(|c| c.subject.clone()).collect();
                    let admitted = Self::admit(tx, grant, set, &subjects, &mut skipped)?;
                    report.skipped_subjects = skipped.len() as u64;
                    for (c, _) in counts.iter().zip(admitted).filter(|(_, row)| row.is_some()) {
                        report.subjects += 1;
                        report.records += c.records;
                        let names = BTreeSet::from([change.audit_name()]);
                        audit.counted(&c.subject, c.records, Some(&c.first), names);
                    }
                    let changed = tx.alter_purpose_meta(purpose, &meta, &skipped, now)?;
                    if changed != report.records {
                        return Err(corrupt(
                            "records",
                            "a purpose's records changed while they were altered",
                        ));
                    }
                    audit.finish(matter);
                    return Ok(report);
                }
                let records = self.load_set(tx, grant, keys, set)?;
                let groups = Self::group(tx, grant, set, &records, Expired::Left, &mut skipped)?;
                report.skipped_subjects = skipped.len() as u64;
                if let Some(f) = &valid {
                    grant
                        .check_fields([(&f.name, &f.category)])
                        .map_err(Denial::from)?;
                }
                if let RecordChange::Category { field, category } = change {
                    grant
                        .check_fields([(field, category)])
                        .map_err(Denial::from)?;
                }
                // Moving records to another subject processes that subject too.
                let target = match change {
                    RecordChange::Subject(t) => {
                        let (row, key) = self.subject_key(tx, keys, grant, t)?;
                        Self::check_subject_state(tx, grant, &row)?;
                        Some((t.clone(), key))
                    }
                    _ => None,
                };
                let needs_key = matches!(
                    change,
                    RecordChange::Field { .. }
                        | RecordChange::Category { .. }
                        | RecordChange::Subject(_)
                );
                let mut rewrites = Vec::new();
                for (row, records) in groups.iter() {
                    let subject = &row.id;
                    let key = if needs_key {
                        Some(self.unwrap_subject(keys, grant.controller(), row)?)
                    } else {
                        None
                    };
                    let mut touched = Vec::new();
                    for r in records {
                        let altered = self.alter_one(
                            tx,
                            grant,
                            keys,
                            key.as_deref(),
                            target.as_ref(),
                            r,
                            change,
                            valid.as_ref(),
                            now,
                        )?;
                        match altered {
                            Altered::NotApplicable => continue,
                            Altered::Unchanged => {}
                            Altered::To(new) => rewrites.push((*r, new)),
                        }
                        touched.push(*r);
                    }
                    if touched.is_empty() {
                        continue;
                    }
                    report.subjects += 1;
                    report.records += touched.len() as u64;
                    let mut names = BTreeSet::from([change.audit_name()]);
                    if matches!(change, RecordChange::Subject(_)) {
                        names.extend(
                            touched
                                .iter()
                                .flat_map(|r| r.fields.iter().map(|f| f.name.to_string())),
                        );
                    }
                    audit.subject(subject, &touched, names);
                }
                // Written together: one statement over the purpose's records where the
                // store can (`DataTx::rewrite_records`).
                if tx.rewrite_records(purpose, &rewrites)? != rewrites.len() as u64 {
                    return Err(Denial::NotFound.into());
                }
                if let (Some((t, _)), true) = (&target, report.records > 0) {
                    let names = groups
                        .records()
                        .flat_map(|r| r.fields.iter().map(|f| f.name.to_string()))
                        .chain([change.audit_name()])
                        .collect();
                    audit.subject(t, &[], names);
                }
                audit.finish(matter);
                Ok(report)
            },
        )?
        .wait_seq()
        .map(|(t, _)| t)
    }

    /// Applies `change` to one record, but for writing the record itself: what to write.
    #[allow(clippy::too_many_arguments)]
    fn alter_one(
        &self,
        tx: &mut dyn DataTx,
        grant: &DataGrant,
        keys: &Keys,
        key: Option<&SubjectKey>,
        target: Option<&(SubjectId, Arc<SubjectKey>)>,
        r: &RecordRow,
        change: &RecordChange,
        valid: Option<&ValidField>,
        now: OffsetDateTime,
    ) -> Result<Altered, TxError> {
        let seal = |key: &SubjectKey, subject: &SubjectId, name: &FieldName, plain: &[u8]| {
            key.seal_field(
                FieldContext {
                    controller: grant.controller(),
                    subject,
                    record: &r.id,
                    field: name,
                },
                plain,
            )
        };
        let open = |f: &FieldRow| -> Result<_, TxError> {
            key.expect("key unwrapped for changes that need it")
                .open_field(
                    FieldContext {
                        controller: grant.controller(),
                        subject: &r.subject,
                        record: &r.id,
                        field: &f.name,
                    },
                    &f.sealed,
                )
                .map_err(|e| corrupt("fields", e))
        };
        // The record as it will be; the store writes only what differs from `r`, found by
        // `r`'s key (read in this transaction: no second read per record).
        let mut new = r.clone();
        new.header.updated_at = now;
        let write_field = |tx: &mut dyn DataTx,
                           new: &mut RecordRow,
                           f: &ValidField,
                           key: &SubjectKey|
         -> Result<(), TxError> {
            let row = FieldRow {
                name: f.name.clone(),
                category: f.category.clone(),
                sealed: seal(key, &r.subject, &f.name, &f.value.to_plaintext()),
            };
            tx.delete_lookups(&r.id, f.name.as_str())?;
            new.fields = fieldset::merge(std::mem::take(&mut new.fields), &[row]);
            if let Some((kind, normalized)) = &f.lookup {
                tx.insert_lookup(&LookupRow {
                    kind: *kind,
                    digest: keys.controller.index_key().blind(*kind, normalized),
                    subject: r.subject.clone(),
                    record: r.id.clone(),
                    field: f.name.clone(),
                })?;
            }
            Ok(())
        };
        fn meta(new: &mut RecordRow) -> &mut RecordMeta {
            Arc::make_mut(&mut new.header.meta)
        }
        match change {
            RecordChange::ExpiresAt(t) => {
                new.header.expires_at = grant.purpose().expiry(r.header.created_at, Some(*t))
            }
            RecordChange::Source(s) => meta(&mut new).source = s.clone(),
            RecordChange::Recipients(v) => meta(&mut new).recipients = v.clone(),
            RecordChange::AutomatedDecision(a) => meta(&mut new).automated_decision = a.clone(),
            RecordChange::Field { .. } => {
                let f = valid.expect("validated before the transaction");
                write_field(tx, &mut new, f, key.expect("key"))?;
            }
            RecordChange::Category { field, category } => {
                let Some(old) = r.fields.iter().find(|f| &f.name == field) else {
                    return Ok(Altered::NotApplicable);
                };
                let value = FieldValue::from_plaintext(&open(old)?)
                    .ok_or_else(|| corrupt("fields", "plaintext is not a JSON scalar"))?;
                let f = validate_field(
                    field.clone(),
                    FieldInput {
                        category: category.clone(),
                        value,
                    },
                )
                .map_err(Denial::from)?;
                write_field(tx, &mut new, &f, key.expect("key"))?;
            }
            RecordChange::Subject(_) => {
                let (t, tkey) = target.expect("target unwrapped");
                if t == &r.subject {
                    return Ok(Altered::Unchanged);
                }
                new.fields = r
                    .fields
                    .iter()
                    .map(|f| {
                        Ok(FieldRow {
                            name: f.name.clone(),
                            category: f.category.clone(),
                            sealed: seal(tkey, t, &f.name, &open(f)?),
                        })
                    })
                    .collect::<Result<Vec<_>, TxError>>()?;
                new.subject = t.clone();
            }
        }
        Ok(Altered::To(new))
    }

    /// Erasure of a set of records (the subjects stay).
    pub fn erase_records(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        set: &RecordSet,
        ctx: &CallContext,
    ) -> Result<BulkReport, VaultError> {
        let op = Operation::Erasure;
        let matter = Subjectmatter::default();
        let mut erased: Vec<(SubjectId, custodian_core::ids::RecordId)> = Vec::new();
        let scale = Scale::of(set);
        let (report, _) = self
            .data_op_sized(
                p,
                purpose,
                op,
                ctx,
                matter,
                scale,
                |tx, grant, keys, matter| {
                    erased.clear();
                    let mut report = BulkReport::default();
                    let mut skipped = Vec::new();
                    let records = self.load_set(tx, grant, keys, set)?;
                    let groups =
                        Self::group(tx, grant, set, &records, Expired::Taken, &mut skipped)?;
                    report.skipped_subjects = skipped.len() as u64;
                    let mut audit = Audit::default();
                    for (row, records) in groups.iter() {
                        let subject = &row.id;
                        for r in records {
                            tx.delete_record(&r.id)?;
                            erased.push((subject.clone(), r.id.clone()));
                        }
                        report.subjects += 1;
                        report.records += records.len() as u64;
                        audit.every_record(subject, records, |_| Ok::<_, TxError>(()))?;
                    }
                    audit.finish(matter);
                    Ok(report)
                },
            )?
            .wait_seq()?;
        let erased: Vec<_> = erased.into_iter().map(|(s, r)| (s, Some(r))).collect();
        self.after_erasure(p.controller.as_ref(), &erased, report.records > 0);
        Ok(report)
    }

    /// The last `limit` entries (1-1000) of the caller's controller's audit trail, oldest
    /// first (admins and viewers, as for [`Vault::audit_page`]).
    pub fn audit_tail(&self, p: &Principal, limit: u32) -> Result<AuditPage, VaultError> {
        let controller = p.controller.as_ref().ok_or(VaultError::Refused(
            custodian_core::policy::Refusal::NotControllerAdmin,
        ))?;
        custodian_core::policy::authorize_audit_read(p, controller)?;
        let limit = limit.clamp(1, 1000);
        let chain = ChainId::Controller(controller.clone());
        let head = self.store.audit_head(&chain)?.map_or(0, |(seq, _)| seq);
        self.audit_page(p, head.saturating_sub(u64::from(limit)), limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodian_core::ids::RecordId;
    use custodian_core::record::RecordHeader;

    fn row(subject: &SubjectId, n: u8) -> RecordRow {
        let at = OffsetDateTime::UNIX_EPOCH;
        RecordRow {
            id: RecordId::from_random([n; 16]),
            subject: subject.clone(),
            header: RecordHeader {
                purpose: PurposeName::parse("crm").unwrap(),
                meta: Arc::default(),
                created_at: at,
                updated_at: at,
                expires_at: at,
            },
            fields: Vec::new(),
        }
    }

    fn runs_of<'r>(order: &[&'r RecordRow], runs: &[Range<usize>]) -> Vec<Vec<&'r RecordId>> {
        runs.iter()
            .map(|at| {
                let run = &order[at.clone()];
                assert!(run.iter().all(|r| r.subject == run[0].subject));
                run.iter().map(|r| &r.id).collect()
            })
            .collect()
    }

    #[test]
    fn records_group_into_runs_by_subject_whatever_order_they_come_in() {
        let s: Vec<SubjectId> = (1..=3).map(|i| SubjectId::from_random([i; 16])).collect();
        assert!(s.is_sorted());
        // Interleaved: grouped by subject, each subject's records in the order given.
        let mixed = [
            row(&s[1], 0),
            row(&s[0], 1),
            row(&s[1], 2),
            row(&s[2], 3),
            row(&s[0], 4),
        ];
        let (order, runs) = by_subject(&mixed);
        let ids = |i: &[usize]| i.iter().map(|&i| &mixed[i].id).collect::<Vec<_>>();
        assert_eq!(
            runs_of(&order, &runs),
            [ids(&[1, 4]), ids(&[0, 2]), ids(&[3])]
        );
        let subjects: Vec<SubjectId> = runs
            .iter()
            .map(|at| order[at.start].subject.clone())
            .collect();
        assert_eq!(subjects, s);
        // Already by subject (as stores answer): the same runs, the order untouched.
        let sorted = [row(&s[0], 5), row(&s[0], 6), row(&s[2], 7)];
        let (order, runs) = by_subject(&sorted);
        assert!(order.iter().zip(&sorted).all(|(a, b)| std::ptr::eq(*a, b)));
        assert_eq!(runs, [0..2, 2..3]);
        assert!(by_subject(&[]).1.is_empty());
    }

    fn field(name: &str, category: &str) -> FieldRow {
        FieldRow {
            name: FieldName::parse(name).unwrap(),
            category: DataCategory::parse(category).unwrap(),
            sealed: vec![1; 28],
        }
    }

    /// Within one subject's records: a list is checked again when its names or categories
    /// change, not when a record holds a list seen just before.
    #[test]
    fn a_field_list_is_checked_again_only_when_names_or_categories_change() {
        let s = SubjectId::from_random([1; 16]);
        let with = |n: u8, fields: Vec<FieldRow>| RecordRow {
            fields,
            ..row(&s, n)
        };
        let (email, name) = ("user.contact.email", "user.name");
        let records = [
            with(0, vec![field("email", email), field("name", name)]),
            with(1, vec![field("email", email), field("name", name)]),
            // Same names, another category: checked.
            with(2, vec![field("email", email), field("name", email)]),
            with(3, vec![field("email", email), field("name", email)]),
            // A field fewer: checked; then the first list again, still recent: not.
            with(4, vec![field("email", email)]),
            with(5, vec![field("email", email), field("name", name)]),
        ];
        let refs: Vec<&RecordRow> = records.iter().collect();
        let mut checked = Vec::new();
        let mut audit = Audit::default();
        audit
            .every_record(&s, &refs, |fields| {
                let at = records
                    .iter()
                    .position(|r| std::ptr::eq(r.fields.as_slice(), fields))
                    .unwrap();
                checked.push(at);
                Ok::<_, ()>(())
            })
            .unwrap();
        assert_eq!(checked, [0, 2, 4]);
        assert_eq!(audit.records, 6);
        let mut none = Audit::default();
        none.every_record(&s, &[], |_| Err::<(), _>(())).unwrap();
        assert_eq!(none.records, 0);
    }

    /// A list checked for one subject is not checked again for the next subjects holding
    /// it; a list not among the last eight is, and a refused list stops the audit there.
    #[test]
    fn a_field_list_is_checked_once_across_subjects_while_it_is_recent() {
        let (email, name) = ("user.contact.email", "user.name");
        let subject = |n: u8| SubjectId::from_random([n; 16]);
        let with = |s: &SubjectId, n: u8, fields: Vec<FieldRow>| RecordRow {
            fields,
            ..row(s, n)
        };
        let mut audit = Audit::default();
        let checked = std::cell::Cell::new(0);
        let check = |_: &[FieldRow]| {
            checked.set(checked.get() + 1);
            Ok::<_, ()>(())
        };
        let (a, b) = (subject(1), subject(2));
        let first = with(&a, 0, vec![field("email", email), field("name", name)]);
        let same = with(&b, 1, vec![field("email", email), field("name", name)]);
        audit.every_record(&a, &[&first], check).unwrap();
        audit.every_record(&b, &[&same], check).unwrap();
        assert_eq!(checked.get(), 1);
        // Eight other lists push the first out: it is checked again after them.
        let others: Vec<RecordRow> = (0..8u8)
            .map(|n| {
                let f = format!("f{n}");
                with(&subject(10 + n), 10 + n, vec![field(&f, email)])
            })
            .collect();
        for r in &others {
            audit.every_record(&r.subject, &[r], check).unwrap();
        }
        assert_eq!(checked.get(), 9);
        audit.every_record(&a, &[&first], check).unwrap();
        assert_eq!(checked.get(), 10);
        let mut matter = Subjectmatter::default();
        audit.finish(&mut matter);
        for f in ["email", "name", "f0", "f7"] {
            assert!(matter.fields.iter().any(|n| n == f), "{f} not named");
        }
        assert_eq!(matter.fields.len(), 10);
        // A refusal is returned, whatever was seen before.
        let mut refused = Audit::default();
        assert_eq!(
            refused.every_record(&a, &[&first], |_| Err::<(), _>("refused")),
            Err("refused")
        );
    }
}
