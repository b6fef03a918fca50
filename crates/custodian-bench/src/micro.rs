//! The micro-benchmark: N records through `Vault::add_record` (the full protected path:
//! purpose check, validation, AES-256-GCM under the subject key, blind index, audit entry
//! in the same transaction, `synchronous=FULL` commit) against N plain inserts of the same
//! plaintext into a one-table SQLite database with the same durability settings, one
//! transaction per record in both.

use custodian_core::category::{DataCategory, SubjectCategory};
use custodian_core::operation::Operation;
use custodian_core::principal::Role;
use custodian_core::purpose::{LawfulBasis, Purpose, PurposeName};
use custodian_core::record::{FieldInput, FieldName, FieldValue, RecordMeta};
use custodian_core::region::Region;
use custodian_store::sqlite::SqliteStore;
use custodian_vault::views::{NewRecord, NewSubject};
use custodian_vault::{CallContext, SystemClock, Vault};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn person(i: usize) -> (String, String, String) {
    (
        format!("Person {i} Lastname{}", i % 97),
        format!("person{i}@example.org"),
        format!("+3361{:07}", i % 10_000_000),
    )
}

fn plain(dir: &std::path::Path, n: usize) -> Duration {
    let conn = rusqlite::Connection::open(dir.join("plain.db")).expect("open");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, email TEXT, phone TEXT, source TEXT);",
    )
    .expect("schema");
    let start = Instant::now();
    for i in 0..n {
        let (name, email, phone) = person(i);
        conn.execute(
            "INSERT INTO people (name, email, phone, source) VALUES (?1, ?2, ?3, 'bench')",
            rusqlite::params![name, email, phone],
        )
        .expect("insert");
    }
    start.elapsed()
}

fn custodian(dir: &std::path::Path, n: usize) -> Duration {
    let store = SqliteStore::open(dir.join("custodian.db")).expect("open");
    let root = custodian_crypto::keys::RootKey::generate(1).expect("key");
    let vault = Vault::new(
        Arc::new(store),
        root,
        Arc::new(SystemClock),
        Region::defaults(),
        None,
    );
    let ctx = CallContext::default();
    let c = crate::fixture::controller(&vault, "Bench");
    let admin = crate::fixture::principal(&vault, &c, Role::ControllerAdmin, "bench", 3600);
    let name = PurposeName::parse("bench").expect("name");
    vault
        .document_purpose(
            &admin,
            Purpose {
                name: name.clone(),
                description: "benchmark".into(),
                lawful_basis: LawfulBasis::Contract,
                categories: [DataCategory::parse("user").expect("cat")].into(),
                operations: [Operation::Collection, Operation::Recording].into(),
                retention_days: 30,
            },
            &ctx,
        )
        .expect("purpose");
    let app = crate::fixture::principal(&vault, &c, Role::ControllerApp, "bench", 3600);
    let subject = vault
        .create_subject(
            &app,
            &name,
            NewSubject {
                category: SubjectCategory::Customer,
                record: None,
            },
            &ctx,
        )
        .expect("subject")
        .id;
    let f = |s: &str| FieldName::parse(s).expect("field");
    let text = |c: &str, v: String| FieldInput {
        category: DataCategory::parse(c).expect("cat"),
        value: FieldValue::Text(v),
    };
    let start = Instant::now();
    for i in 0..n {
        let (n_, e, p) = person(i);
        let fields = BTreeMap::from([
            (f("name"), text("user.name", n_)),
            (f("email"), text("user.contact.email", e)),
            (f("phone"), text("user.contact.phone_number", p)),
        ]);
        vault
            .add_record(
                &app,
                &name,
                &subject,
                NewRecord {
                    fields,
                    meta: RecordMeta {
                        source: Some("bench".into()),
                        ..Default::default()
                    },
                    expires_at: None,
                },
                &ctx,
            )
            .expect("record");
    }
    start.elapsed()
}

pub fn run(n: usize) {
    let dir = tempfile::tempdir_in(".").expect("tempdir on the working directory's disk");
    // Interleave the targets so that drift in the machine's load hits both alike.
    let mut plain_total = Duration::ZERO;
    let mut custodian_total = Duration::ZERO;
    let rounds = 2;
    for round in 0..rounds {
        let d = dir.path().join(format!("round{round}"));
        std::fs::create_dir_all(&d).expect("dir");
        plain_total += plain(&d, n / rounds);
        custodian_total += custodian(&d, n / rounds);
    }
    let per = |t: Duration| t.as_secs_f64() * 1e6 / n as f64;
    println!("micro-benchmark: {n} records, one durable transaction each (WAL, synchronous=FULL)");
    println!(
        "  baseline  plain SQLite insert (plaintext, no audit)      {:>9.1} µs/record",
        per(plain_total)
    );
    println!(
        "  custodian add_record (check, encrypt, index, audit)      {:>9.1} µs/record",
        per(custodian_total)
    );
    println!(
        "  ratio custodian / plain: {:.2}x",
        custodian_total.as_secs_f64() / plain_total.as_secs_f64()
    );
}
