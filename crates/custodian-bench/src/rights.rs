//! The rights benchmark: erasure of a subject holding 1, 1,000 and 100,000 records, and
//! export throughput, each against plain SQLite doing the same row work in the same run.
//!
//! Erasure (`Vault::erase_subject`): purpose check, one transaction deleting the subject's
//! lookup entries, records (each row holding its sealed fields), objections and its key row
//! (the wrapped subject key: the cryptographic part, one row whatever the amount of data),
//! the erasure-ledger row and the hash-chained audit entry, a `synchronous=FULL` commit,
//! then the erasure's purge (the pages written since the last purge scrubbed of unused
//! bytes, the WAL checkpointed and its stale frames zeroed, or truncated past 8 MiB) so
//! deleted content lingers neither in the WAL nor in live pages. The baseline deletes the
//! same number of plaintext rows (one per record) from a one-table database with the same
//! pragmas (WAL, `synchronous=FULL`, `secure_delete=ON`), in one transaction, then a WAL
//! checkpoint (TRUNCATE).
//!
//! The fixed part is measured by erasing, in the same database and just before, a subject
//! that holds no records: the key row, the ledger row, the audit entry, the commit and the
//! WAL purge, without any record to delete. Both databases are checkpointed after
//! loading, so no measurement pays for the load's WAL.
//!
//! Export (`Vault::export_subject`): purpose check, every record and field read, every field
//! decrypted (AES-256-GCM under the subject key), the Art. 15 metadata assembled, the audit
//! entry committed; against a plain `SELECT` of the same rows' plaintext into memory.

use custodian_core::category::{DataCategory, SubjectCategory};
use custodian_core::controller::ControllerName;
use custodian_core::ids::SubjectId;
use custodian_core::operation::Operation;
use custodian_core::policy::OperatorGrant;
use custodian_core::principal::{Principal, Role};
use custodian_core::purpose::{LawfulBasis, Purpose, PurposeName};
use custodian_core::record::{FieldInput, FieldName, FieldValue, RecordMeta};
use custodian_core::region::{MemberState, Region, RegionId};
use custodian_store::sqlite::SqliteStore;
use custodian_vault::views::{NewController, NewRecord, NewSubject};
use custodian_vault::{CallContext, SystemClock, Vault};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH: usize = 5_000;
/// Records per subject, and how many subjects of that size are erased (the median is shown).
const SIZES: [(usize, usize); 3] = [(1, 5), (1_000, 3), (100_000, 1)];

fn person(i: usize) -> (String, String, String) {
    (
        format!("Person {i} Lastname{}", i % 97),
        format!("person{i}@example.org"),
        format!("+3361{:07}", i % 10_000_000),
    )
}

struct Custodian {
    vault: Vault,
    app: Principal,
    purpose: PurposeName,
    ctx: CallContext,
}

impl Custodian {
    fn open(dir: &Path) -> Self {
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
        let op = OperatorGrant::local_cli();
        let c = vault
            .create_controller(
                &op,
                NewController {
                    name: ControllerName::parse("Bench").expect("name"),
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
                        Operation::Disclosure,
                        Operation::Erasure,
                    ]
                    .into(),
                    retention_days: 30,
                },
                &ctx,
            )
            .expect("purpose");
        let app = vault
            .issue_token_locally(&op, Role::ControllerApp, Some(c.id.clone()), "bench", 3600)
            .expect("token");
        let app = vault.authenticate(&app.secret.into()).expect("auth");
        Self {
            vault,
            app,
            purpose,
            ctx,
        }
    }

    fn subject(&self) -> SubjectId {
        self.vault
            .create_subject(
                &self.app,
                &self.purpose,
                NewSubject {
                    category: SubjectCategory::Customer,
                    record: None,
                },
                &self.ctx,
            )
            .expect("subject")
            .id
    }

    /// `n` records of name, email and phone (two blind-indexed), in batches.
    fn load(&self, subject: &SubjectId, n: usize) {
        let f = |s: &str| FieldName::parse(s).expect("field");
        let text = |c: &str, v: String| FieldInput {
            category: DataCategory::parse(c).expect("cat"),
            value: FieldValue::Text(v),
        };
        let mut i = 0;
        while i < n {
            let batch = (i..(i + BATCH).min(n))
                .map(|j| {
                    let (name, email, phone) = person(j);
                    NewRecord {
                        fields: BTreeMap::from([
                            (f("name"), text("user.name", name)),
                            (f("email"), text("user.contact.email", email)),
                            (f("phone"), text("user.contact.phone_number", phone)),
                        ]),
                        meta: RecordMeta {
                            source: Some("bench".into()),
                            ..Default::default()
                        },
                        expires_at: None,
                    }
                })
                .collect::<Vec<_>>();
            i += batch.len();
            self.vault
                .add_records(&self.app, &self.purpose, subject, batch, &self.ctx)
                .expect("records");
        }
    }

    fn erase(&self, subject: &SubjectId) -> (Duration, u64) {
        let start = Instant::now();
        let receipt = self
            .vault
            .erase_subject(&self.app, &self.purpose, subject, &self.ctx)
            .expect("erase");
        let t = start.elapsed();
        assert!(receipt.erased_now);
        (t, receipt.records)
    }
}

struct Plain {
    conn: rusqlite::Connection,
}

impl Plain {
    fn open(dir: &Path) -> Self {
        let conn = rusqlite::Connection::open(dir.join("plain.db")).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;
             CREATE TABLE people (id INTEGER PRIMARY KEY, subject TEXT NOT NULL,
                 name TEXT, email TEXT, phone TEXT, source TEXT);
             CREATE INDEX people_by_subject ON people(subject);",
        )
        .expect("schema");
        Self { conn }
    }

    fn load(&mut self, subject: &str, n: usize) {
        let tx = self.conn.transaction().expect("tx");
        {
            let mut st = tx
                .prepare(
                    "INSERT INTO people (subject, name, email, phone, source) VALUES (?1, ?2, ?3, ?4, 'bench')",
                )
                .expect("prepare");
            for i in 0..n {
                let (name, email, phone) = person(i);
                st.execute(rusqlite::params![subject, name, email, phone])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }

    fn checkpoint(&self) {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .expect("checkpoint");
    }

    fn delete(&mut self, subject: &str) -> (Duration, usize) {
        let start = Instant::now();
        let tx = self.conn.transaction().expect("tx");
        let n = tx
            .execute("DELETE FROM people WHERE subject = ?1", [subject])
            .expect("delete");
        tx.commit().expect("commit");
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .expect("checkpoint");
        (start.elapsed(), n)
    }

    fn select(&self, subject: &str) -> (Duration, usize) {
        let start = Instant::now();
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, name, email, phone, source FROM people WHERE subject = ?1 ORDER BY id",
            )
            .expect("prepare");
        let rows: Vec<(i64, String, String, String, String)> = st
            .query_map([subject], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        (start.elapsed(), rows.len())
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn megabytes(path: &Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / 1e6)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us_per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n.max(1) as f64
}

pub fn run() {
    let dir = tempfile::tempdir_in(".").expect("tempdir on the working directory's disk");
    println!(
        "rights benchmark: erasure and export against plain SQLite (WAL, synchronous=FULL, secure_delete=ON)"
    );
    println!(
        "  records/subject: name, email, phone (email and phone blind-indexed); loaded with add_records in batches of {BATCH}"
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        // On a shared machine, say how shared it was.
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        println!("  load average at start: {}", load.join(" "));
    }
    println!();
    println!(
        "  {:>8}  {:>11}  {:>14}  {:>12}  {:>14}  {:>12}  {:>8}",
        "records", "key only", "custodian", "per record", "plain DELETE", "per record", "ratio"
    );
    let mut export_line = None;
    let mut sizes = Vec::new();
    for (n, reps) in SIZES {
        let d = dir.path().join(format!("n{n}"));
        std::fs::create_dir_all(&d).expect("dir");
        let c = Custodian::open(&d);
        let mut plain = Plain::open(&d);
        let subjects: Vec<SubjectId> = (0..reps)
            .map(|_| {
                let s = c.subject();
                c.load(&s, n);
                plain.load(s.as_str(), n);
                s
            })
            .collect();
        let empties: Vec<SubjectId> = (0..reps).map(|_| c.subject()).collect();
        c.vault.store().purge_deleted();
        plain.checkpoint();
        sizes.push((
            n * reps,
            megabytes(&d.join("custodian.db")),
            megabytes(&d.join("plain.db")),
        ));

        if n == SIZES[SIZES.len() - 1].0 {
            // Export throughput: best of three, each side, interleaved.
            let subject = &subjects[0];
            let mut best_c = Duration::MAX;
            let mut best_json = Duration::MAX;
            let mut best_p = Duration::MAX;
            let mut bytes = 0;
            for _ in 0..3 {
                let start = Instant::now();
                let e = c
                    .vault
                    .export_subject(&c.app, &c.purpose, subject, &c.ctx)
                    .expect("export");
                best_c = best_c.min(start.elapsed());
                assert_eq!(e.records.len(), n);
                let start = Instant::now();
                bytes = serde_json::to_vec(&e).expect("json").len();
                best_json = best_json.min(start.elapsed());
                let (t, rows) = plain.select(subject.as_str());
                assert_eq!(rows, n);
                best_p = best_p.min(t);
            }
            // The export's audit entry sits in the WAL; do not bill it to the erasure.
            c.vault.store().purge_deleted();
            export_line = Some((n, best_c, best_json, bytes, best_p));
        }

        let (mut key_only, mut t_c, mut t_p) = (vec![], vec![], vec![]);
        for (subject, empty) in subjects.iter().zip(&empties) {
            key_only.push(c.erase(empty).0);
            let (t, erased) = c.erase(subject);
            assert_eq!(erased as usize, n);
            t_c.push(t);
            let (t, deleted) = plain.delete(subject.as_str());
            assert_eq!(deleted, n);
            t_p.push(t);
        }
        let (key_only, t_c, t_p) = (median(key_only), median(t_c), median(t_p));
        println!(
            "  {:>8}  {:>8.2} ms  {:>11.2} ms  {:>9.2} µs  {:>11.2} ms  {:>9.2} µs  {:>7.2}x",
            n,
            ms(key_only),
            ms(t_c),
            us_per(t_c, n),
            ms(t_p),
            us_per(t_p, n),
            t_c.as_secs_f64() / t_p.as_secs_f64()
        );
    }
    println!(
        "  key only: erasing a subject with no records, in the same database (key row, ledger, audit entry, commit, WAL purge)"
    );
    println!("  medians of 5, 3 and 1 erasures; database sizes before erasing:");
    for (records, c, p) in sizes {
        println!(
            "    {records:>8} records: custodian {c:>7.1} MB, plain {p:>6.1} MB ({:.1}x the bytes)",
            c / p.max(f64::MIN_POSITIVE)
        );
    }
    if let Some((n, c, json, bytes, p)) = export_line {
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        println!();
        println!("export of one subject holding {n} records (best of 3):");
        println!(
            "  baseline  plain SQLite SELECT of the same rows (plaintext)   {:>10.0} records/s  ({:.1} ms)",
            rate(p),
            ms(p)
        );
        println!(
            "  custodian export_subject (read, decrypt, Art. 15 metadata, audit)  {:>10.0} records/s  ({:.1} ms)",
            rate(c),
            ms(c)
        );
        println!(
            "  custodian export_subject + JSON serialisation ({:.1} MB)       {:>10.0} records/s  ({:.1} ms)",
            bytes as f64 / 1e6,
            rate(c + json),
            ms(c + json)
        );
        println!(
            "  ratio custodian export / plain SELECT: {:.2}x",
            c.as_secs_f64() / p.as_secs_f64()
        );
    }
}
