//! The same workload on both storage backends, side by side: N subjects created through
//! `Vault::create_subject` (one record of three fields each: validation, encryption, blind
//! indexes, audit entry, one durable commit), then each of them read back through
//! `Vault::get_subject` (audited consultation, decryption), then the write again with
//! several controllers in parallel (one thread per controller), which SQLite serialises on
//! its single writer and PostgreSQL does not. Ratio: PostgreSQL over SQLite.
//!
//! SQLite runs on a file in the working directory (WAL, `synchronous=FULL`); PostgreSQL on
//! the server named by `--postgres` or `TEST_DATABASE_URL`, in a fresh schema that is dropped
//! afterwards. Both commit durably: on the server, with `fsync=on` and `synchronous_commit=on`.

use custodian_core::category::{DataCategory, SubjectCategory};
use custodian_core::controller::ControllerName;
use custodian_core::ids::SubjectId;
use custodian_core::operation::Operation;
use custodian_core::policy::OperatorGrant;
use custodian_core::principal::{Principal, Role};
use custodian_core::purpose::{LawfulBasis, Purpose, PurposeName};
use custodian_core::record::{FieldInput, FieldName, FieldValue, RecordMeta};
use custodian_core::region::{MemberState, Region, RegionId};
use custodian_store::Store;
use custodian_store::postgres::PostgresStore;
use custodian_store::sqlite::SqliteStore;
use custodian_vault::views::{NewController, NewRecord, NewSubject};
use custodian_vault::{CallContext, SystemClock, Vault};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Threads (and controllers) in the parallel write.
const PARALLEL: usize = 4;

struct Tenant {
    app: Principal,
    purpose: PurposeName,
}

fn vault(store: Arc<dyn Store>) -> Vault {
    let root = custodian_crypto::keys::RootKey::generate(1).expect("key");
    Vault::new(store, root, Arc::new(SystemClock), Region::defaults(), None)
}

fn tenant(vault: &Vault, name: &str) -> Tenant {
    let ctx = CallContext::default();
    let op = OperatorGrant::local_cli();
    let c = vault
        .create_controller(
            &op,
            NewController {
                name: ControllerName::parse(name).expect("name"),
                region: RegionId::parse("osc-fr1").expect("region"),
                agreement_effective: time::macros::date!(2026 - 01 - 01),
                governing_law: MemberState::parse("FR").expect("FR"),
            },
            &ctx,
        )
        .expect("controller");
    let admin = vault
        .issue_token_locally(
            &op,
            Role::ControllerAdmin,
            Some(c.id.clone()),
            "bench",
            3600,
        )
        .expect("token");
    let admin = vault.authenticate(&admin.secret.into()).expect("auth");
    let purpose = PurposeName::parse("bench").expect("name");
    vault
        .document_purpose(
            &admin,
            Purpose {
                name: purpose.clone(),
                description: "benchmark".into(),
                lawful_basis: LawfulBasis::Contract,
                categories: [DataCategory::parse("user").expect("cat")].into(),
                operations: [
                    Operation::Collection,
                    Operation::Recording,
                    Operation::Consultation,
                    Operation::Retrieval,
                ]
                .into(),
                retention_days: 30,
            },
            &ctx,
        )
        .expect("purpose");
    let app = vault
        .issue_token_locally(&op, Role::ControllerApp, Some(c.id), "bench", 3600)
        .expect("token");
    let app = vault.authenticate(&app.secret.into()).expect("auth");
    Tenant { app, purpose }
}

fn new_subject(i: usize) -> NewSubject {
    let f = |s: &str| FieldName::parse(s).expect("field");
    let text = |c: &str, v: String| FieldInput {
        category: DataCategory::parse(c).expect("cat"),
        value: FieldValue::Text(v),
    };
    NewSubject {
        category: SubjectCategory::Customer,
        record: Some(NewRecord {
            fields: BTreeMap::from([
                (
                    f("name"),
                    text("user.name", format!("Person {i} Lastname{}", i % 97)),
                ),
                (
                    f("email"),
                    text("user.contact.email", format!("person{i}@example.org")),
                ),
                (
                    f("phone"),
                    text(
                        "user.contact.phone_number",
                        format!("+3361{:07}", i % 10_000_000),
                    ),
                ),
            ]),
            meta: RecordMeta {
                source: Some("bench".into()),
                ..Default::default()
            },
            expires_at: None,
        }),
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Times {
    write: Duration,
    read: Duration,
    parallel_write: Duration,
}

fn workload(store: Arc<dyn Store>, n: usize) -> Times {
    let v = Arc::new(vault(store));
    let t = tenant(&v, "Bench");
    let ctx = CallContext::default();
    let start = Instant::now();
    let ids: Vec<SubjectId> = (0..n)
        .map(|i| {
            v.create_subject(&t.app, &t.purpose, new_subject(i), &ctx)
                .expect("create subject")
                .id
        })
        .collect();
    let write = start.elapsed();
    let start = Instant::now();
    for id in &ids {
        let view = v
            .get_subject(&t.app, &t.purpose, id, &ctx)
            .expect("get subject");
        assert_eq!(view.records.len(), 1);
    }
    let read = start.elapsed();
    let tenants: Vec<Tenant> = (0..PARALLEL)
        .map(|k| tenant(&v, &format!("Bench {k}")))
        .collect();
    let per = n.div_ceil(PARALLEL);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in &tenants {
            let v = v.clone();
            s.spawn(move || {
                let ctx = CallContext::default();
                for i in 0..per {
                    v.create_subject(&t.app, &t.purpose, new_subject(i), &ctx)
                        .expect("create subject");
                }
            });
        }
    });
    // Normalised to n operations.
    let parallel_write = start.elapsed().mul_f64(n as f64 / (per * PARALLEL) as f64);
    Times {
        write,
        read,
        parallel_write,
    }
}

/// A schema of its own on the server, dropped at the end.
struct Schema {
    admin: postgres::Client,
    name: String,
    url: String,
}

impl Schema {
    fn new(server: &str) -> Result<Schema, String> {
        let mut admin = postgres::Client::connect(server, postgres::NoTls)
            .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
        let name = format!(
            "bench_{}_{}",
            std::process::id(),
            time::OffsetDateTime::now_utc().unix_timestamp()
        );
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .map_err(|e| format!("cannot create a schema: {e}"))?;
        let sep = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{sep}options=-c%20search_path%3D{name}");
        Ok(Schema { admin, name, url })
    }

    fn setting(&mut self, name: &str) -> String {
        self.admin
            .query_one(&format!("SHOW {name}"), &[])
            .map(|r| r.get::<_, String>(0))
            .unwrap_or_else(|_| "?".into())
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}

pub fn run(n: usize, postgres_url: Option<String>) {
    let url = postgres_url.or_else(|| {
        std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
    });
    let dir = tempfile::tempdir_in(".").expect("tempdir on the working directory's disk");
    let sqlite = || -> Arc<dyn Store> {
        let path = dir.path().join(format!(
            "bench-{}.db",
            time::OffsetDateTime::now_utc().unix_timestamp_nanos()
        ));
        Arc::new(SqliteStore::open(path).expect("open sqlite"))
    };
    let Some(url) = url else {
        let s = workload(sqlite(), n);
        println!(
            "backends: postgres SKIPPED (no --postgres URL, TEST_DATABASE_URL unset, and no throwaway cluster could start: install the Debian package postgresql); sqlite alone:"
        );
        print_table(n, s, None, "");
        return;
    };
    let mut schema = match Schema::new(&url) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("backends: {e}");
            std::process::exit(2);
        }
    };
    let settings = format!(
        "PostgreSQL {}: fsync={} synchronous_commit={} full_page_writes={}",
        schema.setting("server_version"),
        schema.setting("fsync"),
        schema.setting("synchronous_commit"),
        schema.setting("full_page_writes")
    );
    // Interleave the backends in two rounds so that drift in the machine's load hits both.
    let mut s_total = Times::default();
    let mut p_total = Times::default();
    for round in 0..2 {
        let s = workload(sqlite(), n / 2);
        let pg: Arc<dyn Store> = Arc::new(PostgresStore::open(&schema.url).expect("open postgres"));
        let p = workload(pg, n / 2);
        s_total = add(s_total, s);
        p_total = add(p_total, p);
        let _ = round;
    }
    print_table(n, s_total, Some(p_total), &settings);
}

fn add(a: Times, b: Times) -> Times {
    Times {
        write: a.write + b.write,
        read: a.read + b.read,
        parallel_write: a.parallel_write + b.parallel_write,
    }
}

fn print_table(n: usize, s: Times, p: Option<Times>, settings: &str) {
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "backends: {n} operations of each kind, one durable transaction each (SQLite: WAL, synchronous=FULL)"
    );
    if !settings.is_empty() {
        println!("  {settings}");
    }
    println!(
        "  {:<44} {:>14} {:>14} {:>16}",
        "", "sqlite", "postgres", "postgres/sqlite"
    );
    let rows = [
        (
            "write  create_subject (1 record, 3 fields)",
            s.write,
            p.map(|p| p.write),
        ),
        (
            "read   get_subject (audited, decrypted)",
            s.read,
            p.map(|p| p.read),
        ),
        (
            "write  same, 4 controllers in parallel",
            s.parallel_write,
            p.map(|p| p.parallel_write),
        ),
    ];
    for (what, sv, pv) in rows {
        match pv {
            Some(pv) => println!(
                "  {what:<44} {:>9.1} µs/op {:>9.1} µs/op {:>15.2}x",
                per(sv),
                per(pv),
                pv.as_secs_f64() / sv.as_secs_f64()
            ),
            None => println!(
                "  {what:<44} {:>9.1} µs/op {:>14} {:>16}",
                per(sv),
                "-",
                "-"
            ),
        }
    }
}
