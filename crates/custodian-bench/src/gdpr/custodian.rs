//! Custodian, library path: every GDPRbench operation is one `Vault` call by a controller
//! application's real token principal, under the record's purpose (purpose check, field
//! validation and card scan, AES-256-GCM under the subject key, hash-chained audit entry
//! committed in the same durable transaction), on the embedded SQLite store with the
//! configuration `custodian serve` uses (WAL, synchronous=FULL, secure_delete, erasure
//! ledger outside the database).
//!
//! Mapping of GDPRbench's record onto Custodian's model:
//! - USR `user<j>` → a data subject (created with the first record of `user<j>`); the
//!   bench keeps `user<j>` → subject id and `key<k>` → record id in its own memory.
//! - PUR `purpose<i>` → the documented purpose the record is collected under (25 purposes,
//!   `purpose0`..`purpose24`, each allowing the operations below on every category used).
//! - DATA → the encrypted field `data`, whose data category is CAT (`cat<i>` → the i-th of
//!   ten catalogue categories in [`CATEGORIES`]).
//! - OBJ, ACL → the encrypted fields `objection` and `acl` (category `system.operations`):
//!   they are per-record strings, not Art. 21 objections (which would stop all processing of
//!   the subject under the purpose) nor token scopes.
//! - DEC → `automated_decision`, SHR → `recipients`, SRC → `source` (Art. 15 metadata, in clear).
//! - TTL → the record's `expires_at` (now + TTL), enforced by `Vault::sweep_retention`.

use super::keys::{MetaField, USERS, Values};
use super::target::{Res, Target};
use custodian_core::category::{DataCategory, SubjectCategory};
use custodian_core::controller::ControllerName;
use custodian_core::ids::{ControllerId, RecordId, SubjectId};
use custodian_core::operation::Operation;
use custodian_core::policy::OperatorGrant;
use custodian_core::principal::{Principal, Role};
use custodian_core::purpose::{LawfulBasis, Purpose, PurposeName};
use custodian_core::record::{FieldInput, FieldName, FieldValue, RecordMeta};
use custodian_core::region::{MemberState, Region, RegionId};
use custodian_store::Store;
use custodian_store::sqlite::SqliteStore;
use custodian_vault::bulk::{RecordChange, RecordSet};
use custodian_vault::views::{FieldUpdate, NewController, NewRecord, NewSubject};
use custodian_vault::{CallContext, SystemClock, Vault, VaultError};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// CAT `cat<i>` → a data category of the catalogue (none of them a lookup key).
pub const CATEGORIES: [&str; 10] = [
    "user.contact.address",
    "user.name",
    "user.workplace",
    "user.job_title",
    "user.content.private",
    "user.content.public",
    "user.behavior.browsing_history",
    "user.behavior.timeline_event",
    "user.demographic",
    "user.device.connection_log",
];

const SHARDS: usize = 64;

pub struct CustodianTarget {
    vault: Vault,
    app: Principal,
    admin: Principal,
    controller: ControllerId,
    purposes: Vec<PurposeName>,
    categories: Vec<DataCategory>,
    system: DataCategory,
    f_data: FieldName,
    f_obj: FieldName,
    f_acl: FieldName,
    records: Vec<Mutex<HashMap<u64, RecordId>>>,
    users: Vec<Mutex<Option<SubjectId>>>,
    ctx: CallContext,
}

fn err(e: VaultError) -> String {
    e.to_string()
}

impl CustodianTarget {
    pub fn open(dir: &Path) -> Res<Self> {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.join("custodian.db")).map_err(|e| e.to_string())?);
        let ledger = dir.join("checkpoints");
        std::fs::create_dir_all(&ledger).map_err(|e| e.to_string())?;
        let root = custodian_crypto::keys::RootKey::generate(1).map_err(|e| e.to_string())?;
        let vault = Vault::new(
            store,
            root,
            Arc::new(SystemClock),
            Region::defaults(),
            Some(ledger),
        );
        let ctx = CallContext::default();
        let op = OperatorGrant::local_cli();
        let c = vault
            .create_controller(
                &op,
                NewController {
                    name: ControllerName::parse("GDPRbench").expect("name"),
                    region: RegionId::parse("osc-fr1").expect("region"),
                    agreement_effective: time::macros::date!(2026 - 01 - 01),
                    governing_law: MemberState::parse("FR").expect("FR"),
                },
                &ctx,
            )
            .map_err(err)?;
        let token = |role| {
            vault
                .issue_token_locally(&op, role, Some(c.id.clone()), "gdprbench", 7 * 86_400)
                .and_then(|t| vault.authenticate(&t.secret.into()))
                .map_err(err)
        };
        let admin = token(Role::ControllerAdmin)?;
        let app = token(Role::ControllerApp)?;
        let categories: Vec<DataCategory> = CATEGORIES
            .iter()
            .map(|c| DataCategory::parse(c).expect("catalogued"))
            .collect();
        let system = DataCategory::parse("system.operations").expect("catalogued");
        let mut purposes = Vec::new();
        for i in 0..super::keys::PURPOSES {
            let name = PurposeName::parse(&format!("purpose{i}")).expect("name");
            vault
                .document_purpose(
                    &admin,
                    Purpose {
                        name: name.clone(),
                        description: format!("GDPRbench purpose {i}"),
                        lawful_basis: LawfulBasis::Contract,
                        categories: categories.iter().cloned().chain([system.clone()]).collect(),
                        operations: [
                            Operation::Collection,
                            Operation::Recording,
                            Operation::Retrieval,
                            Operation::Consultation,
                            Operation::Alteration,
                            Operation::Erasure,
                        ]
                        .into(),
                        // The longest TTL is 1,000,000 s (11.6 days): the purpose never cuts it.
                        retention_days: 30,
                    },
                    &ctx,
                )
                .map_err(err)?;
            purposes.push(name);
        }
        Ok(Self {
            vault,
            app,
            admin,
            controller: c.id,
            purposes,
            categories,
            system,
            f_data: FieldName::parse("data").expect("name"),
            f_obj: FieldName::parse("objection").expect("name"),
            f_acl: FieldName::parse("acl").expect("name"),
            records: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            users: (0..USERS).map(|_| Mutex::new(None)).collect(),
            ctx,
        })
    }

    fn purpose(&self, v: &Values) -> &PurposeName {
        &self.purposes[v.pur as usize]
    }

    /// PUR of key k, without building its other values.
    fn key_purpose(&self, k: u64) -> &PurposeName {
        &self.purposes[(k % super::keys::PURPOSES) as usize]
    }

    fn record_id(&self, k: u64) -> Option<RecordId> {
        self.records[k as usize % SHARDS]
            .lock()
            .expect("map")
            .get(&k)
            .cloned()
    }

    fn subject(&self, v: &Values) -> Option<SubjectId> {
        self.users[v.usr as usize].lock().expect("users").clone()
    }

    fn text(&self, category: &DataCategory, s: &str) -> FieldInput {
        FieldInput {
            category: category.clone(),
            value: FieldValue::Text(s.to_owned()),
        }
    }

    fn content(&self, v: &Values) -> BTreeMap<FieldName, FieldInput> {
        BTreeMap::from([
            (
                self.f_data.clone(),
                self.text(&self.categories[v.cat as usize], &v.data),
            ),
            (self.f_obj.clone(), self.text(&self.system, &v.obj)),
            (self.f_acl.clone(), self.text(&self.system, &v.acl)),
        ])
    }

    fn change(&self, v: &Values, field: MetaField) -> Option<RecordChange> {
        Some(match field {
            MetaField::Ttl => {
                RecordChange::ExpiresAt(self.vault.now() + time::Duration::seconds(v.ttl as i64))
            }
            MetaField::Usr => RecordChange::Subject(self.subject(v)?),
            MetaField::Obj => RecordChange::Field {
                name: self.f_obj.clone(),
                input: self.text(&self.system, &v.obj),
            },
            MetaField::Dec => RecordChange::AutomatedDecision(Some(v.dec.clone())),
            MetaField::Acl => RecordChange::Field {
                name: self.f_acl.clone(),
                input: self.text(&self.system, &v.acl),
            },
            MetaField::Shr => RecordChange::Recipients(vec![v.shr.clone()]),
            MetaField::Src => RecordChange::Source(Some(v.src.clone())),
            MetaField::Cat => RecordChange::Category {
                field: self.f_data.clone(),
                category: self.categories[v.cat as usize].clone(),
            },
        })
    }

    fn user_set(&self, v: &Values) -> Option<RecordSet> {
        self.subject(v).map(RecordSet::Subject)
    }
}

/// A missing record or subject is an answer (GDPRbench reads deleted keys too), not a failure.
fn missing<T>(r: Result<T, VaultError>, none: T) -> Res<T> {
    match r {
        Ok(t) => Ok(t),
        Err(VaultError::NotFound | VaultError::Gone) => Ok(none),
        Err(e) => Err(err(e)),
    }
}

impl Target for CustodianTarget {
    fn name(&self) -> &'static str {
        "custodian"
    }

    fn describe(&self) -> String {
        "custodian: Vault library path on SQLite (WAL, synchronous=FULL, secure_delete=ON), token principal, \
         purpose check, AES-256-GCM per field, hash-chained audit in the same transaction, erasure ledger fsync"
            .into()
    }

    fn insert(&self, k: u64, v: &Values) -> Res<()> {
        let purpose = self.purpose(v);
        let record = NewRecord {
            fields: self.content(v),
            meta: RecordMeta {
                source: Some(v.src.clone()),
                recipients: vec![v.shr.clone()],
                automated_decision: Some(v.dec.clone()),
            },
            expires_at: Some(self.vault.now() + time::Duration::seconds(v.ttl as i64)),
        };
        let existing = self.subject(v);
        let id = match existing {
            Some(s) => {
                self.vault
                    .add_record(&self.app, purpose, &s, record, &self.ctx)
                    .map_err(err)?
                    .id
            }
            None => {
                // The first record of a user creates its subject; hold the slot meanwhile.
                let mut slot = self.users[v.usr as usize].lock().expect("users");
                match slot.clone() {
                    Some(s) => {
                        drop(slot);
                        self.vault
                            .add_record(&self.app, purpose, &s, record, &self.ctx)
                            .map_err(err)?
                            .id
                    }
                    None => {
                        let created = self
                            .vault
                            .create_subject(
                                &self.app,
                                purpose,
                                NewSubject {
                                    category: SubjectCategory::Customer,
                                    record: Some(record),
                                },
                                &self.ctx,
                            )
                            .map_err(err)?;
                        *slot = Some(created.id);
                        created.record.ok_or("no record id")?
                    }
                }
            }
        };
        self.records[k as usize % SHARDS]
            .lock()
            .expect("map")
            .insert(k, id);
        Ok(())
    }

    fn read(&self, k: u64) -> Res<usize> {
        let Some(id) = self.record_id(k) else {
            return Ok(0);
        };
        missing(
            self.vault
                .get_record(&self.app, self.key_purpose(k), &id, None, &self.ctx)
                // Its three fields and the record's description: all ten GDPRbench fields.
                .map(|r| if r.fields.is_empty() { 0 } else { 10 }),
            0,
        )
    }

    fn read_meta_purpose(&self, v: &Values) -> Res<usize> {
        self.vault
            .purpose_records(&self.app, self.purpose(v), &RecordSet::Purpose, &self.ctx)
            .map(|r| r.len())
            .map_err(err)
    }

    fn read_meta_user(&self, v: &Values) -> Res<usize> {
        let Some(s) = self.subject(v) else {
            return Ok(0);
        };
        missing(
            self.vault
                .get_subject(&self.app, self.purpose(v), &s, &self.ctx)
                .map(|s| s.records.len()),
            0,
        )
    }

    fn update(&self, k: u64, v: &Values) -> Res<bool> {
        let Some(id) = self.record_id(k) else {
            return Ok(false);
        };
        missing(
            self.vault
                .update_record(
                    &self.app,
                    self.purpose(v),
                    &id,
                    FieldUpdate {
                        fields: self.content(v),
                    },
                    &self.ctx,
                )
                .map(|_| true),
            false,
        )
    }

    fn update_meta_purpose(&self, v: &Values, field: MetaField) -> Res<usize> {
        let Some(change) = self.change(v, field) else {
            return Ok(0);
        };
        self.vault
            .alter_records(
                &self.app,
                self.purpose(v),
                &RecordSet::Purpose,
                &change,
                &self.ctx,
            )
            .map(|r| r.records as usize)
            .map_err(err)
    }

    fn update_meta_user(&self, v: &Values, field: MetaField) -> Res<usize> {
        let (Some(change), Some(set)) = (self.change(v, field), self.user_set(v)) else {
            return Ok(0);
        };
        missing(
            self.vault
                .alter_records(&self.app, self.purpose(v), &set, &change, &self.ctx)
                .map(|r| r.records as usize),
            0,
        )
    }

    fn delete(&self, k: u64) -> Res<bool> {
        let Some(id) = self.record_id(k) else {
            return Ok(false);
        };
        missing(
            self.vault
                .delete_record(&self.app, self.key_purpose(k), &id, &self.ctx)
                .map(|()| true),
            false,
        )
    }

    fn delete_meta_purpose(&self, v: &Values) -> Res<usize> {
        self.vault
            .erase_records(&self.app, self.purpose(v), &RecordSet::Purpose, &self.ctx)
            .map(|r| r.records as usize)
            .map_err(err)
    }

    fn delete_meta_user(&self, v: &Values) -> Res<usize> {
        let Some(set) = self.user_set(v) else {
            return Ok(0);
        };
        missing(
            self.vault
                .erase_records(&self.app, self.purpose(v), &set, &self.ctx)
                .map(|r| r.records as usize),
            0,
        )
    }

    fn count(&self) -> Res<u64> {
        Ok(self
            .vault
            .expiry_schedule(Some(&self.controller))
            .map_err(err)?
            .iter()
            .map(|b| b.records)
            .sum())
    }

    fn read_log(&self, l: u32) -> Res<usize> {
        self.vault
            .audit_tail(&self.admin, l)
            .map(|p| p.entries.len())
            .map_err(err)
    }

    fn sweep(&self) -> Res<u64> {
        let mut total = 0;
        loop {
            let r = self.vault.sweep_retention(500).map_err(err)?;
            total += r.erased_records;
            if !r.more_pending {
                return Ok(total);
            }
        }
    }
}
