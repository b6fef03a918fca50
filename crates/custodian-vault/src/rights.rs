//! Data-subject rights beyond single-record operations: access and portability exports
//! (Art. 15, 20), import of an export (portability's other half), bulk recording, and
//! objections (Art. 21). Rectification, erasure and restriction are in `data.rs`.

use crate::views::*;
use crate::{CallContext, Vault, VaultError};
use custodian_core::ValidationError;
use custodian_core::ids::SubjectId;
use custodian_core::operation::Operation;
use custodian_core::policy::{Denial, authorize_data};
use custodian_core::principal::Principal;
use custodian_core::purpose::PurposeName;
use custodian_crypto::keys::SubjectKey;
use custodian_crypto::random::id_bytes;
use custodian_store::TxError;
use custodian_store::rows::SubjectRow;
use std::collections::BTreeSet;
use std::sync::Arc;

pub const EXPORT_FORMAT: &str = "custodian.subject-export/v1";

/// The published JSON Schema of [`SubjectExport`].
pub const EXPORT_SCHEMA: &str = include_str!("../schemas/subject-export.v1.json");

fn store_err(e: impl std::fmt::Display) -> TxError {
    TxError::Store(custodian_store::StoreError::Backend(e.to_string()))
}

impl Vault {
    /// Access (Art. 15) and portability (Art. 20): every record and field of a subject with
    /// the Art. 15 metadata. A disclosure: refused while the subject is restricted.
    pub fn export_subject(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        subject: &SubjectId,
        ctx: &CallContext,
    ) -> Result<SubjectExport, VaultError> {
        let matter = crate::data::Subjectmatter {
            subject: Some(subject.clone()),
            ..Default::default()
        };
        self.data_op(
            p,
            purpose,
            Operation::Disclosure,
            ctx,
            matter,
            |tx, grant, keys, matter| {
                let (row, key, records) = self.whole_subject(tx, grant, keys, subject, matter)?;
                let mut purposes = Vec::new();
                for name in records
                    .iter()
                    .map(|r| r.header.purpose.clone())
                    .collect::<BTreeSet<_>>()
                {
                    if let Some(doc) = tx.purpose(&name)? {
                        purposes.push(ExportedPurpose {
                            name: doc.name,
                            description: doc.description,
                            lawful_basis: doc.lawful_basis,
                            retention_days: doc.retention_days,
                        });
                    }
                }
                let mut exported = Vec::with_capacity(records.len());
                for r in records {
                    let view = Self::open_record(grant, &key, &r)?;
                    let meta = Arc::unwrap_or_clone(view.meta);
                    exported.push(ExportedRecord {
                        id: view.id,
                        purpose: view.purpose,
                        categories: view
                            .fields
                            .values()
                            .map(|f| f.category.clone())
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .collect(),
                        fields: view.fields,
                        source: meta.source,
                        recipients: meta.recipients,
                        automated_decision: meta.automated_decision,
                        created_at: view.created_at,
                        updated_at: view.updated_at,
                        expires_at: view.expires_at,
                    });
                }
                Ok(SubjectExport {
                    format: EXPORT_FORMAT.to_owned(),
                    controller: grant.controller().clone(),
                    exported_at: self.clock.now(),
                    subject: ExportedSubject {
                        id: row.id.clone(),
                        category: row.category,
                        restricted: row.restricted,
                        objections: tx.objections(subject)?,
                        created_at: row.created_at,
                    },
                    purposes,
                    records: exported,
                })
            },
        )
        .map(|(t, _)| t)
    }

    /// Portability's receiving end: creates a new subject holding the export's records,
    /// each under its own purpose, which must be documented here and allow recording.
    /// One transaction, one audit entry.
    pub fn import_subject(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        export: SubjectExport,
        ctx: &CallContext,
    ) -> Result<CreatedSubject, VaultError> {
        let op = Operation::Collection;
        if export.format != EXPORT_FORMAT {
            return Err(self.refuse_invalid(
                p,
                purpose,
                op,
                ctx,
                ValidationError::new("format", "must be custodian.subject-export/v1"),
            ));
        }
        if export
            .purposes
            .iter()
            .any(|x| !(1..=custodian_core::purpose::MAX_RETENTION_DAYS).contains(&x.retention_days))
        {
            return Err(self.refuse_invalid(
                p,
                purpose,
                op,
                ctx,
                ValidationError::new(
                    "purposes.retention_days",
                    "must be between 1 and 36525 days",
                ),
            ));
        }
        let mut prepared = Vec::with_capacity(export.records.len());
        for r in &export.records {
            let input = NewRecord {
                fields: r
                    .fields
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            custodian_core::record::FieldInput {
                                category: v.category.clone(),
                                value: v.value.clone(),
                            },
                        )
                    })
                    .collect(),
                meta: custodian_core::record::RecordMeta {
                    source: r.source.clone(),
                    recipients: r.recipients.clone(),
                    automated_decision: r.automated_decision.clone(),
                },
                expires_at: Some(r.expires_at),
            };
            let fields = self.validate_record(p, purpose, op, ctx, &input)?;
            prepared.push((r.purpose.clone(), input, fields));
        }
        let id = SubjectId::from_random(id_bytes());
        let matter = crate::data::Subjectmatter {
            subject: Some(id.clone()),
            fields: prepared
                .iter()
                .flat_map(|(_, _, f)| f.iter().map(|x| x.name.to_string()))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            ..Default::default()
        };
        self.data_op(p, purpose, op, ctx, matter, |tx, grant, keys, _| {
            let key = SubjectKey::generate().map_err(store_err)?;
            tx.insert_subject(&SubjectRow {
                id: id.clone(),
                category: export.subject.category,
                restricted: false,
                wrapped_key: keys
                    .controller
                    .wrap_subject_key(grant.controller(), &id, &key),
                created_at: self.clock.now(),
            })?;
            let controller = tx.controller()?;
            for (record_purpose, input, fields) in &prepared {
                let documented = tx.purpose(record_purpose)?;
                let record_grant = authorize_data(
                    p,
                    &controller.controller,
                    record_purpose,
                    documented.as_ref(),
                    Operation::Recording,
                )
                .map_err(Denial::from)?;
                self.write_record(tx, &record_grant, keys, &key, &id, input, fields)?;
            }
            for objected in &export.subject.objections {
                tx.add_objection(&id, objected, self.clock.now())?;
            }
            if export.subject.restricted {
                tx.set_restricted(&id, true)?;
            }
            Ok(CreatedSubject {
                id: id.clone(),
                record: None,
            })
        })
        .map(|(t, _)| t)
    }

    /// Recording of many records about one subject in one transaction with one audit entry
    /// naming every field involved.
    pub fn add_records(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        subject: &SubjectId,
        inputs: Vec<NewRecord>,
        ctx: &CallContext,
    ) -> Result<usize, VaultError> {
        let op = Operation::Recording;
        let mut prepared = Vec::with_capacity(inputs.len());
        for input in inputs {
            let fields = self.validate_record(p, purpose, op, ctx, &input)?;
            prepared.push((input, fields));
        }
        let matter = crate::data::Subjectmatter {
            subject: Some(subject.clone()),
            fields: prepared
                .iter()
                .flat_map(|(_, f)| f.iter().map(|x| x.name.to_string()))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            ..Default::default()
        };
        self.data_op(p, purpose, op, ctx, matter, |tx, grant, keys, _| {
            let (row, key) = self.subject_key(tx, keys, grant, subject)?;
            Self::check_subject_state(tx, grant, &row)?;
            for (input, fields) in &prepared {
                self.write_record(tx, grant, keys, &key, subject, input, fields)?;
            }
            Ok(prepared.len())
        })
        .map(|(t, _)| t)
    }

    /// Objection (Art. 21): from now on, processing of this subject under `objected` is
    /// refused; `on = false` withdraws the objection.
    pub fn set_objection(
        &self,
        p: &Principal,
        purpose: &PurposeName,
        subject: &SubjectId,
        objected: &PurposeName,
        on: bool,
        ctx: &CallContext,
    ) -> Result<(), VaultError> {
        let matter = crate::data::Subjectmatter {
            subject: Some(subject.clone()),
            fields: vec![format!(
                "{}:{objected}",
                if on { "object" } else { "withdraw" }
            )],
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
                // The path names the objection to a purpose; an undocumented purpose is no
                // such thing (404, like any other unknown id in a path).
                if tx.purpose(objected)?.is_none() {
                    return Err(Denial::NotFound.into());
                }
                if on {
                    tx.add_objection(subject, objected, self.clock.now())?;
                } else {
                    tx.remove_objection(subject, objected)?;
                }
                Ok(())
            },
        )
        .map(|(t, _)| t)
    }
}

/// The export as CSV: one row per field, with the record's metadata repeated.
pub fn export_csv(e: &SubjectExport) -> String {
    fn cell(s: &str) -> String {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    }
    let mut out = String::from(
        "subject,record,purpose,field,category,value,source,recipients,automated_decision,created_at,expires_at,restricted,objections\n",
    );
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let objections = e
        .subject
        .objections
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(";");
    for r in &e.records {
        for (name, f) in &r.fields {
            let value = match &f.value {
                custodian_core::record::FieldValue::Text(s) => s.clone(),
                custodian_core::record::FieldValue::Number(n) => n.to_string(),
                custodian_core::record::FieldValue::Bool(b) => b.to_string(),
            };
            let row = [
                e.subject.id.to_string(),
                r.id.to_string(),
                r.purpose.to_string(),
                name.to_string(),
                f.category.to_string(),
                value,
                r.source.clone().unwrap_or_default(),
                r.recipients.join(";"),
                r.automated_decision.clone().unwrap_or_default(),
                fmt(r.created_at),
                fmt(r.expires_at),
                e.subject.restricted.to_string(),
                objections.clone(),
            ];
            out.push_str(&row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
    }
    out
}
