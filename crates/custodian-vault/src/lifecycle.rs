//! The data's lifecycle: retention (records erased when their purpose's retention runs
//! out), termination (DPA §14: full export, then destruction with a signed certificate),
//! and legal holds (data sealed, not processed, not destroyed).

use crate::checkpoint::write_atomically;
use crate::verify::entry_view;
use crate::{Vault, VaultError};
use custodian_core::ValidationError;
use custodian_core::audit::{Action, AdminAction, AuditDraft, ChainId};
use custodian_core::controller::ControllerStatus;
use custodian_core::ids::ControllerId;
use custodian_core::operation::Operation;
use custodian_core::policy::{Denial, OperatorGrant, Refusal};
use custodian_crypto::hash::Sha256;
use custodian_store::TxError;
use custodian_store::rows::{DestroyedCounts, ExpiryBucket, LegalHoldRow};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The actor the audit trail names for erasures by retention.
pub const RETENTION_ACTOR: &str = "system:retention";

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SweepReport {
    pub erased_records: u64,
    /// Records left for the next pass because this one hit its bound.
    pub more_pending: bool,
    /// Controllers whose expired records were kept because a legal hold is in force.
    pub held_back: u64,
}

fn corrupt(table: &'static str, e: impl std::fmt::Display) -> TxError {
    TxError::Store(custodian_store::StoreError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

impl Vault {
    /// One pass of the retention sweeper: erases at most `max` expired records, in small
    /// transactions so that API traffic never waits long, each audited as an erasure by
    /// retention under the record's purpose. State lives in the database (`expires_at`),
    /// so a restart simply resumes.
    pub fn sweep_retention(&self, max: u32) -> Result<SweepReport, VaultError> {
        const PER_TRANSACTION: usize = 50;
        self.keys.drop_stale();
        let now = self.clock.now();
        let expired = self.store.expired_records(now, max)?;
        let mut report = SweepReport {
            more_pending: expired.len() as u32 == max,
            ..Default::default()
        };
        let mut by_controller: BTreeMap<ControllerId, Vec<_>> = BTreeMap::new();
        for e in expired {
            by_controller
                .entry(e.controller.clone())
                .or_default()
                .push(e);
        }
        for (controller, records) in by_controller {
            let chain = ChainId::Controller(controller.clone());
            for batch in records.chunks(PER_TRANSACTION) {
                let mut erased = 0u64;
                let mut held = false;
                let result = self.store.transact(&controller, now, &mut |tx| {
                    erased = 0;
                    if !tx.controller()?.controller.status.allows_processing() {
                        held = true;
                        return Err(Denial::NotFound.into());
                    }
                    let mut last = None;
                    for (i, e) in batch.iter().enumerate() {
                        let Some(row) = tx.record(&e.record)? else {
                            continue;
                        };
                        tx.delete_record(&e.record)?;
                        erased += 1;
                        let draft = AuditDraft::new(
                            chain.clone(),
                            RETENTION_ACTOR,
                            Action::Processing(Operation::Erasure),
                        )
                        .purpose(&e.purpose)
                        .subject(&e.subject)
                        .record(&e.record)
                        .fields(row.fields.iter().map(|f| f.name.to_string()));
                        // Every record gets its own entry so each subject's history stays
                        // queryable; all but the last are appended here, the last by `transact`.
                        if i + 1 == batch.len() {
                            last = Some(draft);
                        } else {
                            tx.append_audit(draft)?;
                        }
                    }
                    Ok(last.unwrap_or_else(|| {
                        AuditDraft::new(
                            chain.clone(),
                            RETENTION_ACTOR,
                            Action::Processing(Operation::Erasure),
                        )
                        .fields(["retention pass: records already gone"])
                    }))
                });
                match result {
                    Ok(_) => report.erased_records += erased,
                    Err(TxError::Denied(_)) if held => {
                        report.held_back += 1;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if report.erased_records > 0 {
            // Within the purge delay, shared with the erasures of that time (`purger`).
            self.purger.request();
        }
        Ok(report)
    }

    /// Passes of [`Self::sweep_retention`], at most `batch` records each, until no expired
    /// record that may be erased is left: a backlog (after downtime, or a restore of an
    /// older backup) goes at once, not a batch per tick of the sweeper. It stops at the
    /// first pass that erases nothing, so records held back by a legal hold end it.
    pub fn sweep_retention_backlog(&self, batch: u32) -> Result<SweepReport, VaultError> {
        let mut total = SweepReport::default();
        loop {
            let r = self.sweep_retention(batch)?;
            total.erased_records += r.erased_records;
            total.held_back = total.held_back.max(r.held_back);
            total.more_pending = r.more_pending;
            if !r.more_pending || r.erased_records == 0 {
                return Ok(total);
            }
        }
    }

    /// What will expire when, per controller and purpose.
    pub fn expiry_schedule(
        &self,
        controller: Option<&ControllerId>,
    ) -> Result<Vec<ExpiryBucket>, VaultError> {
        Ok(self.store.expiry_schedule(controller)?)
    }

    fn change_status(
        &self,
        actor: &str,
        controller: &ControllerId,
        action: AdminAction,
        note: Option<&str>,
        change: &mut dyn FnMut(
            &mut dyn custodian_store::DataTx,
            ControllerStatus,
        ) -> Result<(), TxError>,
    ) -> Result<ControllerStatus, VaultError> {
        let mut after = ControllerStatus::Active;
        self.store
            .transact(controller, self.clock.now(), &mut |tx| {
                let before = tx.controller()?.controller.status;
                change(tx, before)?;
                after = tx.controller()?.controller.status;
                let mut d = AuditDraft::new(
                    ChainId::Controller(controller.clone()),
                    actor,
                    Action::Admin(action),
                )
                .fields([format!(
                    "status:{}->{}",
                    before.as_str(),
                    after.as_str()
                )]);
                if let Some(n) = note {
                    d.fields.push(format!("basis:{n}"));
                }
                Ok(d)
            })?;
        Ok(after)
    }

    /// §14: starts termination. Processing stops; export and destruction become possible.
    pub fn start_termination(
        &self,
        actor: &str,
        controller: &ControllerId,
    ) -> Result<ControllerStatus, VaultError> {
        self.store
            .controller(controller)?
            .ok_or(VaultError::NotFound)?;
        self.change_status(
            actor,
            controller,
            AdminAction::TerminationStarted,
            None,
            &mut |tx, before| match before {
                ControllerStatus::Active => tx
                    .set_status(ControllerStatus::Terminating)
                    .map_err(Into::into),
                ControllerStatus::Terminating => Ok(()),
                other => {
                    Err(Denial::Refused(Refusal::ControllerNotActive { status: other }).into())
                }
            },
        )
    }

    /// §14: a legal hold seals the data: no processing, no destruction, until lifted.
    pub fn place_legal_hold(
        &self,
        grant: &OperatorGrant,
        controller: &ControllerId,
        basis: &str,
    ) -> Result<ControllerStatus, VaultError> {
        let raw = basis;
        let basis = basis.trim();
        if basis.is_empty() || raw.chars().count() > 500 || raw.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "basis",
                "state the legal basis in 1-500 printable characters",
            )
            .into());
        }
        self.store
            .controller(controller)?
            .ok_or(VaultError::NotFound)?;
        let now = self.clock.now();
        self.change_status(
            grant.actor(),
            controller,
            AdminAction::LegalHoldPlaced,
            Some(basis),
            &mut |tx, before| {
                match before {
                    ControllerStatus::Destroyed => {
                        return Err(Denial::Refused(Refusal::ControllerNotActive {
                            status: before,
                        })
                        .into());
                    }
                    // A state conflict, not bad input (409).
                    ControllerStatus::LegalHold => {
                        return Err(TxError::Store(custodian_store::StoreError::Conflict(
                            "a legal hold is already in force",
                        )));
                    }
                    _ => {}
                }
                tx.insert_hold(&LegalHoldRow {
                    controller: controller.clone(),
                    placed_at: now,
                    basis: basis.to_owned(),
                    previous_status: before,
                    lifted_at: None,
                })?;
                tx.set_status(ControllerStatus::LegalHold)
                    .map_err(Into::into)
            },
        )
    }

    pub fn lift_legal_hold(
        &self,
        grant: &OperatorGrant,
        controller: &ControllerId,
    ) -> Result<ControllerStatus, VaultError> {
        self.store
            .controller(controller)?
            .ok_or(VaultError::NotFound)?;
        let now = self.clock.now();
        self.change_status(
            grant.actor(),
            controller,
            AdminAction::LegalHoldLifted,
            None,
            &mut |tx, _| {
                let hold = tx.active_hold()?.ok_or(TxError::Store(
                    custodian_store::StoreError::Conflict("no legal hold is in force"),
                ))?;
                tx.lift_hold(hold.placed_at, now)?;
                tx.set_status(hold.previous_status).map_err(Into::into)
            },
        )
    }

    /// §14: the full export for retrieval, into `dir` (created 0700, files 0600):
    /// `subjects.jsonl` (one subject export per line, the portability format),
    /// `audit.jsonl` (the controller's chain), `checkpoints.json`, and `manifest.json` with
    /// the size and SHA-256 of each. Allowed once termination started, or under a hold
    /// (returning data is not processing it; §14 still asks that it stay confidential).
    pub fn export_controller(
        &self,
        actor: &str,
        controller: &ControllerId,
        dir: &Path,
    ) -> Result<ExportManifest, VaultError> {
        let row = self
            .store
            .controller(controller)?
            .ok_or(VaultError::NotFound)?;
        if matches!(
            row.controller.status,
            ControllerStatus::Active | ControllerStatus::Destroyed
        ) {
            return Err(VaultError::Refused(Refusal::ControllerNotActive {
                status: row.controller.status,
            }));
        }
        let io = |e: std::io::Error| VaultError::Unavailable(format!("writing the export: {e}"));
        create_private_dir(dir).map_err(io)?;
        let mut subjects_file = PrivateFile::create(&dir.join("subjects.jsonl")).map_err(io)?;
        let mut subjects = 0u64;
        let mut records = 0u64;
        let now = self.clock.now();
        let chain = ChainId::Controller(controller.clone());
        let mut write_err = None;
        self.store
            .transact(controller, now, &mut |tx| {
                subjects = 0;
                records = 0;
                let c = tx.controller()?;
                // Every subject once: their keys are not kept for later operations.
                let keys = crate::data::Keys {
                    controller: std::sync::Arc::new(self.controller_key(controller, &c)?),
                    epoch: None,
                    started: std::time::Instant::now(),
                };
                for id in tx.subject_ids()? {
                    let export = self.export_inside(tx, &keys, controller, &id, now)?;
                    records += export.records.len() as u64;
                    subjects += 1;
                    let mut line = serde_json::to_vec(&export).expect("serialisable");
                    line.push(b'\n');
                    if let Err(e) = subjects_file.write_all(&line) {
                        write_err = Some(e);
                        return Err(Denial::NotFound.into());
                    }
                }
                Ok(AuditDraft::new(
                    chain.clone(),
                    actor,
                    Action::Admin(AdminAction::TerminationExported),
                )
                .fields([format!("subjects:{subjects}"), format!("records:{records}")]))
            })
            .map_err(|e| match write_err.take() {
                Some(io_err) => io(io_err),
                None => e.into(),
            })?;
        let subjects_entry = subjects_file.finish("subjects.jsonl").map_err(io)?;

        let mut audit_file = PrivateFile::create(&dir.join("audit.jsonl")).map_err(io)?;
        let mut audit_err = None;
        self.store.scan_audit(&chain, &mut |e| {
            let mut line = serde_json::to_vec(&entry_view(&e)).expect("serialisable");
            line.push(b'\n');
            if let Err(err) = audit_file.write_all(&line) {
                audit_err.get_or_insert(err);
            }
            Ok(())
        })?;
        if let Some(e) = audit_err {
            return Err(io(e));
        }
        let audit_entry = audit_file.finish("audit.jsonl").map_err(io)?;
        let mut cp_file = PrivateFile::create(&dir.join("checkpoints.json")).map_err(io)?;
        cp_file
            .write_all(
                &serde_json::to_vec_pretty(&self.store.checkpoints(&chain)?).expect("serialisable"),
            )
            .map_err(io)?;
        let cp_entry = cp_file.finish("checkpoints.json").map_err(io)?;
        let mut manifest = ExportManifest {
            format: "custodian.controller-export/v1".into(),
            controller: controller.clone(),
            created_at: now,
            subjects,
            records,
            public_key: hex(&self.public_key()),
            files: vec![subjects_entry, audit_entry, cp_entry],
            signature: String::new(),
        };
        manifest.signature = hex(&self.signer.sign(&manifest.signed_bytes()));
        let mut m = PrivateFile::create(&dir.join("manifest.json")).map_err(io)?;
        m.write_all(&serde_json::to_vec_pretty(&manifest).expect("serialisable"))
            .map_err(io)?;
        m.finish("manifest.json").map_err(io)?;
        Ok(manifest)
    }

    /// Imports a controller export (every subject) into the caller's controller, after
    /// checking the manifest's checksums. Returns how many subjects were imported.
    pub fn import_controller_export(
        &self,
        p: &custodian_core::principal::Principal,
        purpose: &custodian_core::purpose::PurposeName,
        dir: &Path,
        ctx: &crate::CallContext,
    ) -> Result<u64, VaultError> {
        let manifest = read_manifest(dir)?;
        let text = std::fs::read_to_string(dir.join("subjects.jsonl"))
            .map_err(|e| VaultError::Unavailable(e.to_string()))?;
        let mut n = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let export: crate::views::SubjectExport = serde_json::from_str(line).map_err(|_| {
                ValidationError::new("subjects.jsonl", "a line is not a subject export")
            })?;
            self.import_subject(p, purpose, export, ctx)?;
            n += 1;
        }
        if n != manifest.subjects {
            return Err(ValidationError::new(
                "subjects.jsonl",
                "holds a different number of subjects than the manifest",
            )
            .into());
        }
        Ok(n)
    }

    /// §14: destroys a terminating controller's data by shredding its key and deleting its
    /// rows, and returns the signed certificate of destruction. Refused under a legal hold.
    pub fn destroy_controller(
        &self,
        grant: &OperatorGrant,
        controller: &ControllerId,
    ) -> Result<Certificate, VaultError> {
        let row = self
            .store
            .controller(controller)?
            .ok_or(VaultError::NotFound)?;
        let chain = ChainId::Controller(controller.clone());
        let now = self.clock.now();
        let mut certificate = None;
        let result = self.store.transact(controller, now, &mut |tx| {
            let status = tx.controller()?.controller.status;
            if status != ControllerStatus::Terminating {
                return Err(Denial::Refused(Refusal::ControllerNotActive { status }).into());
            }
            let head = self.store_head_in(tx, &chain)?;
            let mut counts = DestroyedCounts::default();
            for id in tx.subject_ids()? {
                counts.records += tx.records_of(&id)?.len() as u64;
                counts.subjects += 1;
            }
            let mut cert = Certificate {
                format: "custodian.certificate-of-destruction/v1".into(),
                controller: controller.clone(),
                controller_name: row.controller.name.as_str().to_owned(),
                destroyed_at: now,
                subjects: counts.subjects,
                records: counts.records,
                audit_chain_seq: head.0,
                audit_chain_head: hex(&head.1),
                public_key: hex(&self.public_key()),
                signature: String::new(),
            };
            cert.signature = hex(&self.signer.sign(&cert.signed_bytes()));
            let text = serde_json::to_string_pretty(&cert).expect("serialisable");
            tx.destroy_all(&text, now)?;
            certificate = Some(cert);
            Ok(AuditDraft::new(
                chain.clone(),
                grant.actor(),
                Action::Processing(Operation::Destruction),
            )
            .fields([
                format!("subjects:{}", counts.subjects),
                format!("records:{}", counts.records),
            ]))
        });
        match result {
            // The controller key is shredded in the database; out of memory too.
            Ok(_) => self.keys.evict_controller(controller),
            Err(TxError::Denied(Denial::Refused(r))) => {
                self.store
                    .append_audit(
                        vec![
                            AuditDraft::new(
                                chain,
                                grant.actor(),
                                Action::Processing(Operation::Destruction),
                            )
                            .refused(r.to_string()),
                        ],
                        now,
                    )
                    .ok();
                return Err(VaultError::Refused(r));
            }
            Err(e) => return Err(e.into()),
        }
        // The controller's tokens were revoked with it.
        self.tokens_changed();
        self.store.purge_deleted();
        let certificate = certificate.expect("destruction ran");
        // Outside the database too, so that restoring an older backup cannot undo it.
        self.note_destruction(&certificate);
        Ok(certificate)
    }

    /// The certificate of destruction of a destroyed controller.
    pub fn certificate(&self, controller: &ControllerId) -> Result<Certificate, VaultError> {
        let Some(text) = self.store.destruction_certificate(controller)? else {
            // A controller that exists but was not destroyed has no certificate yet: a
            // state conflict (409), distinct from an unknown controller (404).
            self.store
                .controller(controller)?
                .ok_or(VaultError::NotFound)?;
            return Err(VaultError::Conflict(
                "the controller was not destroyed: no certificate of destruction yet",
            ));
        };
        serde_json::from_str(&text)
            .map_err(|e| VaultError::Internal(format!("stored certificate: {e}")))
    }

    fn store_head_in(
        &self,
        _tx: &mut dyn custodian_store::DataTx,
        chain: &ChainId,
    ) -> Result<(u64, [u8; 32]), TxError> {
        // Read through the store: the head cannot move meanwhile, the write lock is held.
        Ok(self
            .store
            .audit_head(chain)?
            .unwrap_or((0, custodian_core::audit::GENESIS)))
    }

    /// Export of one subject inside an existing transaction, without a purpose grant:
    /// only for §14 retrieval, which returns everything to the controller.
    fn export_inside(
        &self,
        tx: &mut dyn custodian_store::DataTx,
        keys: &crate::data::Keys,
        controller: &ControllerId,
        id: &custodian_core::ids::SubjectId,
        now: time::OffsetDateTime,
    ) -> Result<crate::views::SubjectExport, TxError> {
        use crate::views::*;
        let row = tx.subject(id)?.ok_or(Denial::NotFound)?;
        let key = self.unwrap_subject(keys, controller, &row)?;
        let mut purposes = BTreeMap::new();
        let mut records = Vec::new();
        for r in tx.records_of(id)? {
            if let std::collections::btree_map::Entry::Vacant(v) =
                purposes.entry(r.header.purpose.clone())
                && let Some(doc) = tx.purpose(&r.header.purpose)?
            {
                v.insert(ExportedPurpose {
                    name: doc.name,
                    description: doc.description,
                    lawful_basis: doc.lawful_basis,
                    retention_days: doc.retention_days,
                });
            }
            let mut fields = BTreeMap::new();
            for f in &r.fields {
                let ctx = custodian_crypto::keys::FieldContext {
                    controller,
                    subject: id,
                    record: &r.id,
                    field: &f.name,
                };
                let plain = key
                    .open_field(ctx, &f.sealed)
                    .map_err(|e| corrupt("fields", e))?;
                let value = custodian_core::record::FieldValue::from_plaintext(&plain)
                    .ok_or_else(|| corrupt("fields", "not a JSON scalar"))?;
                fields.insert(
                    f.name.clone(),
                    FieldView {
                        category: f.category.clone(),
                        value,
                    },
                );
            }
            records.push(ExportedRecord {
                id: r.id.clone(),
                purpose: r.header.purpose.clone(),
                categories: r
                    .fields
                    .iter()
                    .map(|f| f.category.clone())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                fields: fields.into_iter().collect(),
                source: r.header.meta.source.clone(),
                recipients: r.header.meta.recipients.clone(),
                automated_decision: r.header.meta.automated_decision.clone(),
                created_at: r.header.created_at,
                updated_at: r.header.updated_at,
                expires_at: r.header.expires_at,
            });
        }
        Ok(SubjectExport {
            format: crate::rights::EXPORT_FORMAT.to_owned(),
            controller: controller.clone(),
            exported_at: now,
            subject: ExportedSubject {
                id: row.id.clone(),
                category: row.category,
                restricted: row.restricted,
                objections: tx.objections(id)?,
                created_at: row.created_at,
            },
            purposes: purposes.into_values().collect(),
            records,
        })
    }
}

use custodian_core::hex::{decode as unhex, encode as hex};

/// A signed certificate of destruction (§14).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub format: String,
    pub controller: ControllerId,
    pub controller_name: String,
    #[serde(with = "custodian_core::rfc3339")]
    pub destroyed_at: time::OffsetDateTime,
    pub subjects: u64,
    pub records: u64,
    /// The controller's audit chain head just before the destruction entry.
    pub audit_chain_seq: u64,
    pub audit_chain_head: String,
    /// Hex Ed25519 public key of the deployment that signed.
    pub public_key: String,
    /// Hex Ed25519 signature over every other field.
    pub signature: String,
}

impl Certificate {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature = String::new();
        signed_message(b"custodian/certificate-of-destruction/v1\0", &unsigned)
    }

    /// Checks the signature against `trusted_key` (the deployment's public key, as printed
    /// by `custodian verify`), not merely against the key the certificate names.
    pub fn verify(&self, trusted_key: &[u8]) -> Result<(), String> {
        check_signature(
            "certificate",
            &self.public_key,
            &self.signature,
            &self.signed_bytes(),
            trusted_key,
        )
    }
}

/// What a signature covers: a domain tag, then the document's JSON with its signature
/// field empty.
fn signed_message(domain: &[u8], unsigned: &impl Serialize) -> Vec<u8> {
    let mut m = domain.to_vec();
    m.extend_from_slice(
        serde_json::to_string(unsigned)
            .expect("serialisable")
            .as_bytes(),
    );
    m
}

/// Checks that `what` names `trusted_key` as its signer and that `signature` (hex) is that
/// key's over `message`.
fn check_signature(
    what: &str,
    named_key: &str,
    signature: &str,
    message: &[u8],
    trusted_key: &[u8],
) -> Result<(), String> {
    let named = unhex(named_key).ok_or("public_key is not hex")?;
    if named != trusted_key {
        return Err(format!(
            "the {what} was signed by another key than the trusted one"
        ));
    }
    let sig = unhex(signature).ok_or("signature is not hex")?;
    if custodian_crypto::sign::verify(trusted_key, message, &sig) {
        Ok(())
    } else {
        Err(format!(
            "the signature does not match the {what}'s contents"
        ))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestFile {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExportManifest {
    pub format: String,
    pub controller: ControllerId,
    #[serde(with = "custodian_core::rfc3339")]
    pub created_at: time::OffsetDateTime,
    pub subjects: u64,
    pub records: u64,
    pub public_key: String,
    pub files: Vec<ManifestFile>,
    /// Hex Ed25519 signature over every other field, by the deployment that exported.
    pub signature: String,
}

impl ExportManifest {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature = String::new();
        signed_message(b"custodian/controller-export-manifest/v1\0", &unsigned)
    }

    /// Checks the signature against `trusted_key` (the exporting deployment's public key),
    /// not merely against the key the manifest names.
    pub fn verify(&self, trusted_key: &[u8]) -> Result<(), String> {
        check_signature(
            "manifest",
            &self.public_key,
            &self.signature,
            &self.signed_bytes(),
            trusted_key,
        )
    }
}

/// Reads an export's manifest and checks its signature (against the key it names) and every
/// file's size and SHA-256.
pub fn read_manifest(dir: &Path) -> Result<ExportManifest, VaultError> {
    let bad = |what: String| VaultError::Invalid(ValidationError::new("export", what));
    let bytes = std::fs::read(dir.join("manifest.json"))
        .map_err(|e| bad(format!("no readable manifest.json: {e}")))?;
    let m: ExportManifest = serde_json::from_slice(&bytes).map_err(|_| {
        // Exports made before manifests were signed lack only the signature: say so, and
        // what to do, rather than "malformed".
        let unsigned = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.as_object().map(|o| !o.contains_key("signature")))
            .unwrap_or(false);
        bad(if unsigned {
            "manifest.json carries no signature (exports made before manifests were signed \
             have none): export the controller again with this version"
                .into()
        } else {
            "manifest.json is malformed".into()
        })
    })?;
    // Against the key it names: this proves the manifest whole, not who made it (for that,
    // `ExportManifest::verify` with a trusted key, as `custodian verify-export` does).
    let named =
        unhex(&m.public_key).ok_or_else(|| bad("manifest.json's public_key is not hex".into()))?;
    m.verify(&named)
        .map_err(|e| bad(format!("manifest.json: {e}")))?;
    for f in &m.files {
        if f.name.contains('/') || f.name.starts_with('.') {
            return Err(bad(format!("manifest names an unsafe file {:?}", f.name)));
        }
        let data = std::fs::read(dir.join(&f.name)).map_err(|e| bad(format!("{}: {e}", f.name)))?;
        let mut h = Sha256::default();
        h.update(&data);
        if data.len() as u64 != f.bytes || hex(&h.finish()) != f.sha256 {
            return Err(bad(format!(
                "{} does not match its checksum in the manifest",
                f.name
            )));
        }
    }
    Ok(m)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// A file created 0600 whose size and SHA-256 are computed as it is written.
struct PrivateFile {
    file: std::fs::File,
    hash: Sha256,
    bytes: u64,
}

impl PrivateFile {
    fn create(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        Ok(Self {
            file,
            hash: Sha256::default(),
            bytes: 0,
        })
    }

    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.hash.update(b);
        self.bytes += b.len() as u64;
        self.file.write_all(b)
    }

    fn finish(self, name: &str) -> std::io::Result<ManifestFile> {
        self.file.sync_all()?;
        Ok(ManifestFile {
            name: name.to_owned(),
            bytes: self.bytes,
            sha256: hex(&self.hash.finish()),
        })
    }
}

/// Keeps `write_atomically` reachable for callers that store certificates beside exports.
pub fn save_certificate(path: &Path, cert: &Certificate) -> std::io::Result<()> {
    write_atomically(
        path,
        serde_json::to_string_pretty(cert)
            .expect("serialisable")
            .as_bytes(),
    )
}
