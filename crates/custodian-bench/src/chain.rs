//! Builds a long audit chain in a data directory made by `custodian init`, through the
//! real path, so that `custodian verify` can be timed on it: N subjects (one record each)
//! under one purpose, then consultations of every record of the purpose
//! (`Vault::purpose_records`: one audit entry per subject each), until the controller's
//! chain holds at least the asked number of entries. Then it runs `Vault::verify` in
//! process, as `custodian verify` does, and prints entries per second.

use custodian_core::category::{DataCategory, SubjectCategory};
use custodian_core::controller::ControllerName;
use custodian_core::operation::Operation;
use custodian_core::policy::OperatorGrant;
use custodian_core::principal::Role;
use custodian_core::purpose::{LawfulBasis, Purpose, PurposeName};
use custodian_core::record::{FieldInput, FieldName, FieldValue, RecordMeta};
use custodian_core::region::{MemberState, Region, RegionId};
use custodian_store::Store;
use custodian_store::sqlite::SqliteStore;
use custodian_vault::bulk::RecordSet;
use custodian_vault::views::{NewController, NewRecord, NewSubject};
use custodian_vault::{CallContext, SystemClock, Vault};
use indicatif::ProgressBar;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub fn run(data_dir: &Path, entries: u64, subjects: u64) {
    let key = std::fs::read_to_string(data_dir.join("root.key")).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run `custodian init` first)",
            data_dir.join("root.key").display()
        )
    });
    let root = custodian_crypto::keys::RootKey::decode(key.trim()).expect("root key");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(data_dir.join("custodian.db")).expect("open the database"));
    let vault = Vault::new(
        store,
        root,
        Arc::new(SystemClock),
        Region::defaults(),
        Some(data_dir.join("checkpoints")),
    );
    let ctx = CallContext::default();
    let op = OperatorGrant::local_cli();
    let c = vault
        .create_controller(
            &op,
            NewController {
                name: ControllerName::parse("Chain SAS").expect("name"),
                region: RegionId::parse("osc-fr1").expect("region"),
                agreement_effective: time::macros::date!(2026 - 01 - 01),
                governing_law: MemberState::parse("FR").expect("FR"),
            },
            &ctx,
        )
        .expect("controller");
    let token = |role| {
        let t = vault
            .issue_token_locally(&op, role, Some(c.id.clone()), "chain", 86_400)
            .expect("token");
        vault.authenticate(&t.secret.into()).expect("auth")
    };
    let admin = token(Role::ControllerAdmin);
    let app = token(Role::ControllerApp);
    let purpose = PurposeName::parse("support").expect("name");
    vault
        .document_purpose(
            &admin,
            Purpose {
                name: purpose.clone(),
                description: "answer support requests".into(),
                lawful_basis: LawfulBasis::Contract,
                categories: [DataCategory::parse("user").expect("cat")].into(),
                operations: [Operation::Collection, Operation::Consultation].into(),
                retention_days: 365,
            },
            &ctx,
        )
        .expect("purpose");
    let pb = ProgressBar::new(entries);
    for i in 0..subjects {
        vault
            .create_subject(
                &app,
                &purpose,
                NewSubject {
                    category: SubjectCategory::Customer,
                    record: Some(NewRecord {
                        fields: BTreeMap::from([(
                            FieldName::parse("note").expect("name"),
                            FieldInput {
                                category: DataCategory::parse("user.content.private").expect("cat"),
                                value: FieldValue::Text(format!("support note number {i}")),
                            },
                        )]),
                        meta: RecordMeta::default(),
                        expires_at: None,
                    }),
                },
                &ctx,
            )
            .expect("subject");
        pb.inc(1);
    }
    let mut total = subjects;
    while total < entries {
        let n = vault
            .purpose_records(&app, &purpose, &RecordSet::Purpose, &ctx)
            .expect("consultation")
            .len() as u64;
        total += n;
        pb.inc(n);
    }
    pb.finish_and_clear();
    let start = Instant::now();
    let report = vault.verify(None).expect("verify");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "audit-chain: {} entries in {} chain(s), verify {} in {secs:.2} s in process: {:.0} entries/s",
        report.entries,
        report.chains.len(),
        if report.ok() { "ok" } else { "FAILED" },
        report.entries as f64 / secs
    );
}
