//! Builds a long audit chain in a data directory made by `custodian init`, through the
//! real path, so that `custodian verify` can be timed on it: N subjects (one record each)
//! under one purpose through the vault, then entries shaped as the vault writes them for
//! consultations (one subject, its field names, the purpose; every 100th a bulk entry
//! naming 50 subjects), appended by the store's own chaining code (`Store::append_audit`:
//! link, hash, insert, move the head) 1,000 per transaction, until the controller's chain
//! holds at least the asked number of entries. Then it runs `Vault::verify` in process, as
//! `custodian verify` does, and prints entries per second.

use custodian_core::audit::{Action, AuditDraft, ChainId};
use custodian_core::category::{DataCategory, SubjectCategory};
use custodian_core::operation::Operation;
use custodian_core::principal::Role;
use custodian_core::purpose::{LawfulBasis, Purpose, PurposeName};
use custodian_core::record::{FieldInput, FieldName, FieldValue, RecordMeta};
use custodian_core::region::Region;
use custodian_store::Store;
use custodian_store::sqlite::SqliteStore;
use custodian_vault::views::{NewRecord, NewSubject};
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
        store.clone(),
        root,
        Arc::new(SystemClock),
        Region::defaults(),
        Some(data_dir.join("checkpoints")),
    );
    let ctx = CallContext::default();
    let c = crate::fixture::controller(&vault, "Chain SAS");
    let token = |role| crate::fixture::principal(&vault, &c, role, "chain", 86_400);
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
    let mut ids = Vec::with_capacity(subjects as usize);
    for i in 0..subjects {
        let created = vault
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
        ids.push(created.id);
        pb.inc(1);
    }
    let chain = ChainId::Controller(c.clone());
    let mut total = store
        .audit_head(&chain)
        .expect("head")
        .map_or(0, |(seq, _)| seq);
    let mut n: u64 = 0;
    while total < entries {
        let batch: Vec<AuditDraft> = (0..1000)
            .map(|_| {
                n += 1;
                let d = AuditDraft::new(
                    chain.clone(),
                    app.actor(),
                    Action::Processing(Operation::Consultation),
                )
                .purpose(&purpose)
                .fields(["note"]);
                if n.is_multiple_of(100) {
                    d.subjects(
                        (0..50)
                            .map(|j| ids[((n + j) % subjects) as usize].clone())
                            .collect(),
                    )
                } else {
                    d.subject(&ids[(n % subjects) as usize])
                }
            })
            .collect();
        let written = store
            .append_audit(batch, time::OffsetDateTime::now_utc())
            .expect("append")
            .len() as u64;
        total += written;
        pb.inc(written);
    }
    pb.finish_and_clear();
    // Baseline in the same run: the same verification in one pass on one thread (what
    // `verify` did before it checked long chains in parts).
    let time = |parts: Option<usize>| {
        let start = Instant::now();
        let report = custodian_vault::verify::verify_chains_in(
            store.as_ref(),
            &vault.public_key(),
            Some(&data_dir.join("checkpoints")),
            None,
            parts,
        )
        .expect("verify");
        (report, start.elapsed().as_secs_f64())
    };
    let (single, single_secs) = time(Some(1));
    let (report, secs) = time(None);
    assert_eq!(single, report, "one pass and parts must agree");
    let rate = |s: f64| report.entries as f64 / s;
    println!(
        "audit-chain: {} entries in {} chain(s), verify {} in process:\n  \
         one pass, one thread (baseline)  {single_secs:.2} s  {:>10.0} entries/s\n  \
         parts, one per core (verify)     {secs:.2} s  {:>10.0} entries/s\n  \
         ratio verify / one pass          {:.2}x",
        report.entries,
        report.chains.len(),
        if report.ok() { "ok" } else { "FAILED" },
        rate(single_secs),
        rate(secs),
        single_secs / secs
    );
}
