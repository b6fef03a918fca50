//! Personal data: subjects and their records. Each method is one Art. 4(2) operation:
//! it authorises under the named purpose, works inside one store transaction, and returns
//! only after its audit entry has committed with it.

use crate::Pending;
use crate::views::*;
use crate::{CallContext, Vault, VaultError};
use custodian_core::audit::{Action, AuditDraft, ChainId};
use custodian_core::ids::{ControllerId, RecordId, SubjectId};
use custodian_core::lookup::LookupKind;
use custodian_core::operation::Operation;
use custodian_core::policy::{DataGrant, Denial, Refusal, authorize_data};
use custodian_core::principal::Principal;
use custodian_core::purpose::PurposeName;
use custodian_core::record::{
    FieldName, FieldValue, MAX_FIELDS_PER_RECORD, ValidField, validate_field,
};
use custodian_core::{ValidationError, record::RecordHeader};
use custodian_crypto::keys::{ControllerKey, FieldContext, SubjectKey};
use custodian_crypto::random::id_bytes;
use custodian_store::rows::{ControllerRow, FieldRow, LookupRow, RecordRow, SubjectRow};
use custodian_store::{DataTx, PendingAudit, TxError, fieldset};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the audit entry of an operation names, filled in as the work learns it, so that a
/// refusal is recorded with the same detail as a success.
#[derive(Debug, Default)]
pub(crate) struct Subjectmatter {
    pub(crate) subject: Option<SubjectId>,
    /// Every subject of a bulk operation, when there is more than one.
    pub(crate) subjects: Vec<SubjectId>,
    pub(crate) record: Option<RecordId>,
    pub(crate) fields: Vec<String>,
}

impl Subjectmatter {
    fn draft(
        &self,
        grant_actor: &str,
        chain: ChainId,
        op: Operation,
        purpose: &PurposeName,
        ctx: &CallContext,
    ) -> AuditDraft {
        let mut d = AuditDraft::new(chain, grant_actor, Action::Processing(op))
            .purpose(purpose)
            .fields(&self.fields)
            .request(ctx.request.as_ref());
        d.subject = self.subject.clone();
        d.subjects = self.subjects.clone();
        d.record = self.record.clone();
        d
    }
}

/// The record, unless it is unknown or its retention has run out at the unit's instant
/// (`RecordHeader::has_expired`): an expired record is answered as one that never was.
fn live_record(tx: &mut dyn DataTx, id: &RecordId) -> Result<RecordRow, TxError> {
    let now = tx.now();
    tx.record(id)?
        .filter(|r| !r.header.has_expired(now))
        .ok_or_else(|| Denial::NotFound.into())
}

fn validate_fields(
    fields: BTreeMap<FieldName, custodian_core::record::FieldInput>,
) -> Result<Vec<ValidField>, ValidationError> {
    if fields.is_empty() {
        return Err(ValidationError::new(
            "fields",
            "must hold at least one field",
        ));
    }
    if fields.len() > MAX_FIELDS_PER_RECORD {
        return Err(ValidationError::new(
            "fields",
            "at most 64 fields per record",
        ));
    }
    fields
        .into_iter()
        .map(|(name, input)| validate_field(name, input))
        .collect()
}

/// The keys an operation works with: its controller's, and a way to its subjects' through
/// [`Vault::unwrap_subject`], kept for later operations when `epoch` (the key cache's,
/// taken before the operation's transaction began) says they may be.
pub(crate) struct Keys {
    pub(crate) controller: Arc<ControllerKey>,
    pub(crate) epoch: Option<u64>,
    /// When the operation began: how old a kept key may be is judged against it, read once
    /// rather than once per subject.
    pub(crate) started: std::time::Instant,
}

/// How many records a write may change: a unit over many runs first in its store group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scale {
    Few,
    Many,
}

impl Scale {
    /// Every record of a purpose is many; one subject's are few.
    pub(crate) fn of(set: &crate::bulk::RecordSet) -> Self {
        match set {
            crate::bulk::RecordSet::Purpose => Self::Many,
            crate::bulk::RecordSet::Subject(_) => Self::Few,
        }
    }
}

impl Vault {
    /// The controller's key, unwrapped from the controller's row read in a unit of work.
    pub(crate) fn controller_key(
        &self,
        controller: &ControllerId,
        row: &ControllerRow,
    ) -> Result<ControllerKey, TxError> {
        self.root
            .unwrap_controller_key(controller, &row.wrapped_key)
            .map_err(|e| {
                TxError::Store(custodian_store::StoreError::Corrupt {
                    table: "controllers",
                    reason: e.to_string(),
                })
            })
    }

    /// The keys of an operation whose transaction began after the key cache showed
    /// `epoch`: the controller's key from the cache when `row` holds it wrapped as it was.
    pub(crate) fn keys(
        &self,
        controller: &ControllerId,
        row: &ControllerRow,
        epoch: u64,
    ) -> Result<Keys, TxError> {
        let key = match self.keys.controller(controller, &row.wrapped_key) {
            Some(k) => k,
            None => {
                let k = Arc::new(self.controller_key(controller, row)?);
                self.keys
                    .put_controller(controller, &row.wrapped_key, k.clone(), epoch);
                k
            }
        };
        Ok(Keys {
            controller: key,
            epoch: Some(epoch),
            started: std::time::Instant::now(),
        })
    }

    /// The key of the subject whose row is `row`, read in the caller's transaction.
    pub(crate) fn unwrap_subject(
        &self,
        keys: &Keys,
        controller: &ControllerId,
        row: &SubjectRow,
    ) -> Result<Arc<SubjectKey>, TxError> {
        if let Some(k) = self
            .keys
            .subject(controller, &row.id, &row.wrapped_key, keys.started)
        {
            return Ok(k);
        }
        let key = Arc::new(
            keys.controller
                .unwrap_subject_key(controller, &row.id, &row.wrapped_key)
                .map_err(|e| {
                    TxError::Store(custodian_store::StoreError::Corrupt {
                        table: "subjects",
                        reason: e.to_string(),
                    })
                })?,
        );
        if let Some(epoch) = keys.epoch {
            self.keys
                .put_subject(controller, &row.id, &row.wrapped_key, key.clone(), epoch);
        }
        Ok(key)
    }

    /// The common shape of every data operation.
    pub(crate) fn data_op<T>(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        op: Operation,
        ctx: &CallContext,
        matter: Subjectmatter,
        work: impl FnMut(&mut dyn DataTx, &DataGrant, &Keys, &mut Subjectmatter) -> Result<T, TxError>,
    ) -> Result<(T, u64), VaultError> {
        self.data_op_pending(p, purpose, op, ctx, matter, work)?
            .wait_seq()
    }

    /// [`Self::data_op`] that returns as soon as the operation's audit entry is appended:
    /// a read's entry may still wait for its group's commit, and the answer comes out of
    /// the [`Pending`] only once it is durable. A write's is durable on return.
    pub(crate) fn data_op_pending<T>(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        op: Operation,
        ctx: &CallContext,
        matter: Subjectmatter,
        work: impl FnMut(&mut dyn DataTx, &DataGrant, &Keys, &mut Subjectmatter) -> Result<T, TxError>,
    ) -> Result<Pending<T>, VaultError> {
        self.data_op_sized(p, purpose, op, ctx, matter, Scale::Few, work)
    }

    /// [`Self::data_op_pending`] for a write of `scale`: one over many records runs first in
    /// its store group (`Store::transact_many`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn data_op_sized<T>(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        op: Operation,
        ctx: &CallContext,
        matter: Subjectmatter,
        scale: Scale,
        mut work: impl FnMut(
            &mut dyn DataTx,
            &DataGrant,
            &Keys,
            &mut Subjectmatter,
        ) -> Result<T, TxError>,
    ) -> Result<Pending<T>, VaultError> {
        let controller: ControllerId =
            p.controller
                .clone()
                .ok_or(VaultError::Refused(Refusal::RoleForbids {
                    role: p.role,
                    operation: op,
                }))?;
        let chain = ChainId::Controller(controller.clone());
        let mut matter = matter;
        let mut out: Option<T> = None;
        // Reads run beside the writer on a snapshot and only their audit entry queues for
        // the write (`Store::consult_pending`); what they found leaves the `Pending` only
        // once that entry is durable.
        let epoch = self.keys.epoch();
        let mut unit = |tx: &mut dyn DataTx| -> Result<AuditDraft, TxError> {
            // At work until the unit returns (see `spread`: a read splits only when alone).
            let _working = self.spread.working();
            let c = tx.controller()?;
            let documented = tx.purpose(purpose)?;
            let grant = authorize_data(p, &c.controller, purpose, documented.as_ref(), op)
                .map_err(Denial::from)?;
            let keys = self.keys(&controller, &c, epoch)?;
            out = Some(work(tx, &grant, &keys, &mut matter)?);
            Ok(matter.draft(grant.actor(), chain.clone(), op, purpose, ctx))
        };
        let now = self.clock.now();
        let result = match (op.is_read(), scale) {
            (true, _) => self.store.consult_pending(&controller, now, &mut unit),
            (false, Scale::Few) => self
                .store
                .transact(&controller, now, &mut unit)
                .map(PendingAudit::durable),
            (false, Scale::Many) => self
                .store
                .transact_many(&controller, now, &mut unit)
                .map(PendingAudit::durable),
        };
        match result {
            Ok(audit) => Ok(Pending::new(
                out.expect("work ran and produced a value"),
                audit,
            )),
            Err(TxError::Denied(Denial::Refused(r))) => {
                // Appended the way a read's entry is: the caller gets the refusal once it
                // is recorded, and a read refused on an async thread hands it to the
                // store's appending thread instead of waiting there for the writer.
                let draft = matter
                    .draft(&p.actor(), chain, op, purpose, ctx)
                    .refused(r.to_string());
                match self.store.append_pending(draft, self.clock.now()) {
                    Ok(audit) => Ok(Pending::refused(VaultError::Refused(r), audit)),
                    Err(e) => {
                        crate::refusal_not_recorded(&e);
                        Err(VaultError::Refused(r))
                    }
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records an input refusal for an authenticated caller, then returns the error.
    pub(crate) fn refuse_invalid(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        op: Operation,
        ctx: &CallContext,
        e: ValidationError,
    ) -> VaultError {
        let chain = p
            .controller
            .clone()
            .map_or(ChainId::System, ChainId::Controller);
        self.audit_refusal(
            p,
            AuditDraft::new(chain, p.actor(), Action::Processing(op))
                .purpose(purpose)
                .refused(format!("invalid input: {e}"))
                .request(ctx.request.as_ref()),
        );
        VaultError::Invalid(e)
    }

    pub(crate) fn subject_key(
        &self,
        tx: &mut dyn DataTx,
        keys: &Keys,
        grant: &DataGrant,
        id: &SubjectId,
    ) -> Result<(SubjectRow, Arc<SubjectKey>), TxError> {
        let row = match tx.subject(id)? {
            Some(r) => r,
            None if tx.was_erased(id)? => return Err(Denial::Gone.into()),
            None => return Err(Denial::NotFound.into()),
        };
        let key = self.unwrap_subject(keys, grant.controller(), &row)?;
        Ok((row, key))
    }

    pub(crate) fn check_subject_state(
        tx: &mut dyn DataTx,
        grant: &DataGrant,
        row: &SubjectRow,
    ) -> Result<(), TxError> {
        let objected = tx.objections(&row.id)?.contains(&grant.purpose().name);
        grant
            .check_subject(row.restricted, objected)
            .map_err(|r| Denial::from(r).into())
    }

    fn seal_fields(
        grant: &DataGrant,
        keys: &Keys,
        key: &SubjectKey,
        subject: &SubjectId,
        record: &RecordId,
        fields: &[ValidField],
    ) -> (Vec<FieldRow>, Vec<LookupRow>) {
        let index = keys.controller.index_key();
        let mut rows = Vec::with_capacity(fields.len());
        let mut lookups = Vec::new();
        for f in fields {
            let ctx = FieldContext {
                controller: grant.controller(),
                subject,
                record,
                field: &f.name,
            };
            rows.push(FieldRow {
                name: f.name.clone(),
                category: f.category.clone(),
                sealed: key.seal_field(ctx, &f.value.to_plaintext()),
            });
            if let Some((kind, normalized)) = &f.lookup {
                lookups.push(LookupRow {
                    kind: *kind,
                    digest: index.blind(*kind, normalized),
                    subject: subject.clone(),
                    record: record.clone(),
                    field: f.name.clone(),
                });
            }
        }
        (rows, lookups)
    }

    /// The record decrypted, as answered. The row may be one the store keeps: its
    /// metadata is shared, and each ciphertext opened where it lies into the buffer its
    /// plaintext is answered from.
    pub(crate) fn open_record(
        grant: &DataGrant,
        key: &SubjectKey,
        row: &RecordRow,
    ) -> Result<RecordView, TxError> {
        let mut fields = Vec::with_capacity(row.fields.len());
        for f in &row.fields {
            let ctx = FieldContext {
                controller: grant.controller(),
                subject: &row.subject,
                record: &row.id,
                field: &f.name,
            };
            let mut plain = key.open_field(ctx, &f.sealed).map_err(|e| {
                TxError::Store(custodian_store::StoreError::Corrupt {
                    table: "fields",
                    reason: e.to_string(),
                })
            })?;
            let value = FieldValue::take_plaintext(&mut plain).ok_or_else(|| {
                TxError::Store(custodian_store::StoreError::Corrupt {
                    table: "fields",
                    reason: "plaintext is not a JSON scalar".into(),
                })
            })?;
            fields.push((
                f.name.clone(),
                FieldView {
                    category: f.category.clone(),
                    value,
                },
            ));
        }
        // A record's field set is stored in name order.
        let fields = FieldMap::from_sorted(fields);
        Ok(RecordView {
            id: row.id.clone(),
            subject: row.subject.clone(),
            purpose: row.header.purpose.clone(),
            fields,
            meta: row.header.meta.clone(),
            created_at: row.header.created_at,
            updated_at: row.header.updated_at,
            expires_at: row.header.expires_at,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_record(
        &self,
        tx: &mut dyn DataTx,
        grant: &DataGrant,
        keys: &Keys,
        key: &SubjectKey,
        subject: &SubjectId,
        input: &NewRecord,
        fields: &[ValidField],
    ) -> Result<RecordRow, TxError> {
        grant
            .check_fields(fields.iter().map(|f| (&f.name, &f.category)))
            .map_err(Denial::from)?;
        let record = RecordId::from_random(id_bytes());
        let now = self.clock.now();
        let (rows, lookups) = Self::seal_fields(grant, keys, key, subject, &record, fields);
        let row = RecordRow {
            id: record,
            subject: subject.clone(),
            header: RecordHeader {
                purpose: grant.purpose().name.clone(),
                meta: Arc::new(input.meta.clone()),
                created_at: now,
                updated_at: now,
                expires_at: grant.purpose().expiry(now, input.expires_at),
            },
            fields: rows,
        };
        tx.insert_record(&row)?;
        for l in &lookups {
            tx.insert_lookup(l)?;
        }
        Ok(row)
    }

    pub(crate) fn validate_record(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        op: Operation,
        ctx: &CallContext,
        input: &NewRecord,
    ) -> Result<Vec<ValidField>, VaultError> {
        input
            .meta
            .validate()
            .and_then(|()| validate_fields(input.fields.clone()))
            .map_err(|e| self.refuse_invalid(p, purpose, op, ctx, e))
    }

    /// Collection: a new subject, with an optional first record.
    pub fn create_subject(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        input: NewSubject,
        ctx: &CallContext,
    ) -> Result<CreatedSubject, VaultError> {
        let op = Operation::Collection;
        let fields = match &input.record {
            Some(r) => Some(self.validate_record(p, purpose, op, ctx, r)?),
            None => None,
        };
        let id = SubjectId::from_random(id_bytes());
        let matter = Subjectmatter {
            subject: Some(id.clone()),
            fields: fields
                .iter()
                .flatten()
                .map(|f| f.name.to_string())
                .collect(),
            ..Default::default()
        };
        self.data_op(p, purpose, op, ctx, matter, |tx, grant, keys, matter| {
            let key = SubjectKey::generate()
                .map_err(|e| TxError::Store(custodian_store::StoreError::Backend(e.to_string())))?;
            tx.insert_subject(&SubjectRow {
                id: id.clone(),
                category: input.category,
                restricted: false,
                wrapped_key: keys
                    .controller
                    .wrap_subject_key(grant.controller(), &id, &key),
                created_at: self.clock.now(),
            })?;
            let record = match (&input.record, &fields) {
                (Some(r), Some(f)) => Some(self.write_record(tx, grant, keys, &key, &id, r, f)?.id),
                _ => None,
            };
            matter.record = record.clone();
            Ok(CreatedSubject {
                id: id.clone(),
                record,
            })
        })
        .map(|(t, _)| t)
    }

    /// Recording: a new record about an existing subject.
    pub fn add_record(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        subject: &SubjectId,
        input: NewRecord,
        ctx: &CallContext,
    ) -> Result<RecordView, VaultError> {
        let op = Operation::Recording;
        let fields = self.validate_record(p, purpose, op, ctx, &input)?;
        let matter = Subjectmatter {
            subject: Some(subject.clone()),
            fields: fields.iter().map(|f| f.name.to_string()).collect(),
            ..Default::default()
        };
        self.data_op(p, purpose, op, ctx, matter, |tx, grant, keys, matter| {
            let (row, key) = self.subject_key(tx, keys, grant, subject)?;
            Self::check_subject_state(tx, grant, &row)?;
            // Answered from the row as written (stores keep every value as given, the
            // conformance suite's round trips): reading it back cost the writer a
            // statement and a decoding per write, on the one connection all writes share.
            let stored = self.write_record(tx, grant, keys, &key, subject, &input, &fields)?;
            matter.record = Some(stored.id.clone());
            Self::open_record(grant, &key, &stored)
        })
        .map(|(t, _)| t)
    }

    /// Loads a subject and all its records for an operation on the whole subject: names
    /// every field in the audit entry, then checks the subject's state (restriction,
    /// objection) and every field's category against the grant.
    pub(crate) fn whole_subject(
        &self,
        tx: &mut dyn DataTx,
        grant: &DataGrant,
        keys: &Keys,
        subject: &SubjectId,
        matter: &mut Subjectmatter,
    ) -> Result<(SubjectRow, Arc<SubjectKey>, Vec<RecordRow>), TxError> {
        let (row, key) = self.subject_key(tx, keys, grant, subject)?;
        let now = tx.now();
        let records: Vec<RecordRow> = tx
            .records_of(subject)?
            .into_iter()
            .filter(|r| !r.header.has_expired(now))
            .collect();
        matter.fields = records
            .iter()
            .flat_map(|r| r.fields.iter().map(|f| f.name.to_string()))
            .collect();
        matter.fields.sort();
        matter.fields.dedup();
        Self::check_subject_state(tx, grant, &row)?;
        grant
            .check_fields(
                records
                    .iter()
                    .flat_map(|r| r.fields.iter().map(|f| (&f.name, &f.category))),
            )
            .map_err(Denial::from)?;
        Ok((row, key, records))
    }

    /// Consultation: the subject and every record about it. Refused, naming the fields,
    /// when any field's category lies outside the purpose.
    pub fn get_subject(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        subject: &SubjectId,
        ctx: &CallContext,
    ) -> Result<SubjectView, VaultError> {
        self.get_subject_pending(p, purpose, subject, ctx)?.wait()
    }

    /// [`Self::get_subject`], answered once its audit entry is durable (see [`Pending`]).
    pub fn get_subject_pending(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        subject: &SubjectId,
        ctx: &CallContext,
    ) -> Result<Pending<SubjectView>, VaultError> {
        let matter = Subjectmatter {
            subject: Some(subject.clone()),
            ..Default::default()
        };
        self.data_op_pending(
            p,
            purpose,
            Operation::Consultation,
            ctx,
            matter,
            |tx, grant, keys, matter| {
                let (row, key, records) = self.whole_subject(tx, grant, keys, subject, matter)?;
                let records = records
                    .into_iter()
                    .map(|r| Self::open_record(grant, &key, &r))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(SubjectView {
                    id: row.id.clone(),
                    category: row.category,
                    restricted: row.restricted,
                    objections: tx.objections(subject)?,
                    created_at: row.created_at,
                    records,
                })
            },
        )
    }

    /// Retrieval: one record, optionally only some of its fields.
    pub fn get_record(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        record: &RecordId,
        only: Option<&[FieldName]>,
        ctx: &CallContext,
    ) -> Result<RecordView, VaultError> {
        self.get_record_pending(p, purpose, record, only, ctx)?
            .wait()
    }

    /// [`Self::get_record`], answered once its audit entry is durable (see [`Pending`]).
    pub fn get_record_pending(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        record: &RecordId,
        only: Option<&[FieldName]>,
        ctx: &CallContext,
    ) -> Result<Pending<RecordView>, VaultError> {
        let matter = Subjectmatter {
            record: Some(record.clone()),
            ..Default::default()
        };
        self.data_op_pending(
            p,
            purpose,
            Operation::Retrieval,
            ctx,
            matter,
            |tx, grant, keys, matter| {
                let mut row = live_record(tx, record)?;
                if let Some(only) = only {
                    row.fields.retain(|f| only.contains(&f.name));
                }
                matter.subject = Some(row.subject.clone());
                matter.fields = row.fields.iter().map(|f| f.name.to_string()).collect();
                let (subject, key) = self.subject_key(tx, keys, grant, &row.subject)?;
                Self::check_subject_state(tx, grant, &subject)?;
                grant
                    .check_fields(row.fields.iter().map(|f| (&f.name, &f.category)))
                    .map_err(Denial::from)?;
                Self::open_record(grant, &key, &row)
            },
        )
    }

    /// Alteration (rectification, Art. 16): replaces the named fields of a record.
    pub fn update_record(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        record: &RecordId,
        update: FieldUpdate,
        ctx: &CallContext,
    ) -> Result<RecordView, VaultError> {
        let op = Operation::Alteration;
        let fields = validate_fields(update.fields)
            .map_err(|e| self.refuse_invalid(p, purpose, op, ctx, e))?;
        let matter = Subjectmatter {
            record: Some(record.clone()),
            fields: fields.iter().map(|f| f.name.to_string()).collect(),
            ..Default::default()
        };
        self.data_op(p, purpose, op, ctx, matter, |tx, grant, keys, matter| {
            let row = live_record(tx, record)?;
            matter.subject = Some(row.subject.clone());
            let (subject, key) = self.subject_key(tx, keys, grant, &row.subject)?;
            Self::check_subject_state(tx, grant, &subject)?;
            grant
                .check_fields(fields.iter().map(|f| (&f.name, &f.category)))
                .map_err(Denial::from)?;
            let (rows, lookups) =
                Self::seal_fields(grant, keys, &key, &row.subject, record, &fields);
            for f in &fields {
                tx.delete_lookups(record, f.name.as_str())?;
            }
            let mut stored = row.clone();
            stored.fields = fieldset::merge(stored.fields, &rows);
            stored.header.updated_at = self.clock.now();
            if !tx.rewrite_record(&row, &stored)? {
                return Err(Denial::NotFound.into());
            }
            for l in &lookups {
                tx.insert_lookup(l)?;
            }
            Self::open_record(grant, &key, &stored)
        })
        .map(|(t, _)| t)
    }

    /// Erasure of one record (the subject stays).
    pub fn delete_record(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        record: &RecordId,
        ctx: &CallContext,
    ) -> Result<(), VaultError> {
        let matter = Subjectmatter {
            record: Some(record.clone()),
            ..Default::default()
        };
        let subject_of_record = self.data_op(
            p,
            purpose,
            Operation::Erasure,
            ctx,
            matter,
            |tx, grant, keys, matter| {
                let row = tx.record(record)?.ok_or(Denial::NotFound)?;
                matter.subject = Some(row.subject.clone());
                matter.fields = row.fields.iter().map(|f| f.name.to_string()).collect();
                let (subject, _) = self.subject_key(tx, keys, grant, &row.subject)?;
                Self::check_subject_state(tx, grant, &subject)?;
                tx.delete_record(record)?;
                Ok(row.subject)
            },
        )?;
        // A deleted record is erased data: push it out of the WAL, as for a subject.
        self.after_erasure(
            p.controller.as_ref(),
            &[(subject_of_record.0, Some(record.clone()))],
            true,
        );
        Ok(())
    }

    /// Retrieval by lookup key: which subjects have this email, phone or external id.
    /// The value is normalised and blinded; the database never sees it.
    pub fn lookup(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        query: LookupQuery,
        ctx: &CallContext,
    ) -> Result<LookupResult, VaultError> {
        self.lookup_pending(p, purpose, query, ctx)?.wait()
    }

    /// [`Self::lookup`], answered once its audit entry is durable (see [`Pending`]).
    pub fn lookup_pending(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        query: LookupQuery,
        ctx: &CallContext,
    ) -> Result<Pending<LookupResult>, VaultError> {
        let op = Operation::Retrieval;
        let normalized = query
            .kind
            .normalize(&query.value)
            .map_err(|e| self.refuse_invalid(p, purpose, op, ctx, e))?;
        let matter = Subjectmatter {
            fields: vec![format!("lookup:{}", query.kind.as_str())],
            ..Default::default()
        };
        self.data_op_pending(p, purpose, op, ctx, matter, |tx, grant, keys, _| {
            let category = match query.kind {
                LookupKind::Email => "user.contact.email",
                LookupKind::Phone => "user.contact.phone_number",
                LookupKind::ExternalId => "user.unique_id",
            };
            let category =
                custodian_core::category::DataCategory::parse(category).expect("catalogued");
            grant
                .check_fields([(query.kind.as_str(), &category)])
                .map_err(Denial::from)?;
            let digest = keys.controller.index_key().blind(query.kind, &normalized);
            let mut subjects = Vec::new();
            for s in tx.find_subjects(query.kind, &digest)? {
                // A restricted subject, or one who objected to this purpose, is not
                // processed, and finding them is processing.
                if let Some(row) = tx.subject(&s)? {
                    let objected = tx.objections(&s)?.contains(&grant.purpose().name);
                    if grant.check_subject(row.restricted, objected).is_ok() {
                        subjects.push(s);
                    }
                }
            }
            Ok(LookupResult { subjects })
        })
    }

    /// Erasure (Art. 17) of a subject: its key, records, fields and lookup entries go in
    /// one transaction; the audit trail keeps the pseudonymous id. Erasing an erased
    /// subject succeeds again and says so.
    pub fn erase_subject(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        subject: &SubjectId,
        ctx: &CallContext,
    ) -> Result<ErasureReceipt, VaultError> {
        let matter = Subjectmatter {
            subject: Some(subject.clone()),
            ..Default::default()
        };
        let mut receipt = None;
        let ((), audit_seq) = self.data_op(
            p,
            purpose,
            Operation::Erasure,
            ctx,
            matter,
            |tx, grant, _keys, _| {
                let row = match tx.subject(subject)? {
                    Some(r) => r,
                    None if tx.was_erased(subject)? => {
                        receipt = Some((false, Default::default()));
                        return Ok(());
                    }
                    None => return Err(Denial::NotFound.into()),
                };
                Self::check_subject_state(tx, grant, &row)?;
                let counts =
                    tx.erase_subject(subject, self.clock.now(), "controller instruction")?;
                receipt = Some((true, counts));
                Ok(())
            },
        )?;
        let (erased_now, counts) = receipt.expect("work ran");
        if erased_now {
            self.after_erasure(p.controller.as_ref(), &[(subject.clone(), None)], true);
        }
        Ok(ErasureReceipt {
            subject: subject.clone(),
            erased_now,
            records: counts.records,
            fields: counts.fields,
            lookup_entries: counts.lookups,
            audit_seq,
        })
    }

    /// Restriction (Art. 18) and lifting it.
    pub fn set_restriction(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        subject: &SubjectId,
        restricted: bool,
        ctx: &CallContext,
    ) -> Result<(), VaultError> {
        let matter = Subjectmatter {
            subject: Some(subject.clone()),
            fields: vec![if restricted { "restrict" } else { "lift" }.to_owned()],
            ..Default::default()
        };
        self.data_op(
            p,
            purpose,
            Operation::Restriction,
            ctx,
            matter,
            |tx, grant, keys, _| {
                self.subject_key(tx, keys, grant, subject)?;
                tx.set_restricted(subject, restricted)?;
                Ok(())
            },
        )
        .map(|(t, _)| t)
    }
}
