//! The conformance suite and the concurrency tests against a real PostgreSQL server. The
//! server comes from `TEST_DATABASE_URL` (`./scripts/test` starts a throwaway cluster and
//! sets it when PostgreSQL's server binaries are installed); each case gets a fresh, empty
//! schema of its own through `search_path`.

use super::PostgresStore;
use crate::rows::*;
use crate::{DataTx, Store};
use custodian_core::audit::{Action, AdminAction, AuditDraft, ChainId, GENESIS};
use custodian_core::category::SubjectCategory;
use custodian_core::controller::{Controller, ControllerName, ControllerStatus};
use custodian_core::ids::{ControllerId, RecordId, SubjectId};
use custodian_core::operation::Operation;
use custodian_core::region::{MemberState, RegionId};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use time::OffsetDateTime;

/// The server's URL, or `None` after saying (outside the test harness's capture) why the
/// PostgreSQL tests are skipped.
fn server_url(test: &str) -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "postgres: SKIPPED (TEST_DATABASE_URL unset: PostgreSQL server binaries not found) [{test}]"
            );
            None
        }
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Fresh schemas in the test database, dropped when this is dropped.
struct Schemas {
    base: String,
    admin: postgres::Client,
    made: Vec<String>,
}

impl Schemas {
    fn new(base: &str) -> Self {
        let admin = postgres::Client::connect(base, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to TEST_DATABASE_URL: {e}"));
        Self {
            base: base.to_owned(),
            admin,
            made: Vec::new(),
        }
    }

    /// A URL whose connections see only a new, empty schema.
    fn fresh(&mut self) -> String {
        let name = format!(
            "cst_test_{}_{}_{}",
            std::process::id(),
            OffsetDateTime::now_utc().unix_timestamp_nanos() % 1_000_000_000,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        self.admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .expect("create schema");
        self.made.push(name.clone());
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{name}", self.base)
    }
}

impl Drop for Schemas {
    fn drop(&mut self) {
        for s in &self.made {
            let _ = self
                .admin
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"));
        }
    }
}

#[test]
fn conformance() {
    let Some(base) = server_url("conformance") else {
        return;
    };
    let mut schemas = Schemas::new(&base);
    crate::conformance::run_all(&mut || {
        let url = schemas.fresh();
        Box::new(PostgresStore::open_with_pool(&url, 4).expect("open postgres store"))
    });
}

/// A database a newer custodian migrated is refused before anything is written to it.
#[test]
fn a_database_migrated_by_a_newer_custodian_is_refused() {
    let Some(base) = server_url("newer_schema") else {
        return;
    };
    let mut schemas = Schemas::new(&base);
    let url = schemas.fresh();
    let running = PostgresStore::open_with_pool(&url, 1).expect("open postgres store");
    running.check_schema().unwrap();
    let newer = super::MIGRATIONS.last().unwrap().0 + 1;
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)",
            &[&newer],
        )
        .unwrap();
    drop(client);
    // A store opened before: its readiness check says so.
    let e = running.check_schema().expect_err("a newer schema");
    assert!(e.to_string().contains("newer custodian"), "{e}");
    drop(running);
    let e = PostgresStore::open_with_pool(&url, 1).expect_err("refused");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("migration {newer}")) && msg.contains("newer custodian"),
        "{msg}"
    );
}

fn controller_row(n: u8) -> ControllerRow {
    let mut r = [0u8; 16];
    r[0] = 0x42;
    r[15] = n;
    r[8..16]
        .copy_from_slice(&(OffsetDateTime::now_utc().unix_timestamp_nanos() as u64).to_be_bytes());
    ControllerRow {
        controller: Controller {
            id: ControllerId::from_random(r),
            name: ControllerName::parse("Concurrent SAS").unwrap(),
            region: RegionId::parse("osc-fr1").unwrap(),
            agreement_effective: time::macros::date!(2026 - 01 - 15),
            governing_law: MemberState::parse("FR").unwrap(),
            status: ControllerStatus::Active,
            created_at: OffsetDateTime::now_utc(),
        },
        wrapped_key: vec![1, 2, 3],
    }
}

/// Several stores (as several API nodes would hold) append to one controller's chain from
/// many threads at once, through both `transact` and `append_audit`: afterwards the chain
/// has every entry exactly once, in one unbroken sequence of links.
#[test]
fn concurrent_appends_from_several_nodes_keep_the_chain_whole() {
    let Some(base) = server_url("concurrent_appends") else {
        return;
    };
    let mut schemas = Schemas::new(&base);
    let url = schemas.fresh();
    let nodes: Vec<Arc<PostgresStore>> = (0..3)
        .map(|_| Arc::new(PostgresStore::open_with_pool(&url, 4).expect("open")))
        .collect();
    let row = controller_row(1);
    let c = row.controller.id.clone();
    nodes[0]
        .insert_controller(
            &row,
            AuditDraft::new(
                ChainId::System,
                "test",
                Action::Admin(AdminAction::ControllerCreated),
            ),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    let chain = ChainId::Controller(c.clone());
    let per_thread = 25;
    let threads_per_node = 4;
    let subjects_made = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        for (n, node) in nodes.iter().enumerate() {
            for t in 0..threads_per_node {
                let node = node.clone();
                let c = c.clone();
                let made = subjects_made.clone();
                s.spawn(move || {
                    for i in 0..per_thread {
                        let at = OffsetDateTime::now_utc();
                        if i % 5 == 4 {
                            // A refusal-style entry through the other append path.
                            node.append_audit(
                                vec![
                                    AuditDraft::new(
                                        ChainId::Controller(c.clone()),
                                        "test",
                                        Action::Processing(Operation::Retrieval),
                                    )
                                    .refused("not allowed"),
                                ],
                                at,
                            )
                            .unwrap();
                            continue;
                        }
                        let mut r = [0u8; 16];
                        r[0] = 0x77;
                        r[1] = n as u8;
                        r[2] = t as u8;
                        r[3] = i as u8;
                        r[8..16].copy_from_slice(&(at.unix_timestamp_nanos() as u64).to_be_bytes());
                        let sid = SubjectId::from_random(r);
                        let cc = c.clone();
                        node.transact(&c, at, &mut |tx: &mut dyn DataTx| {
                            tx.insert_subject(&SubjectRow {
                                id: sid.clone(),
                                category: SubjectCategory::Customer,
                                restricted: false,
                                wrapped_key: vec![9; 60],
                                created_at: at,
                            })?;
                            Ok(AuditDraft::new(
                                ChainId::Controller(cc.clone()),
                                "test",
                                Action::Processing(Operation::Collection),
                            )
                            .subject(&sid))
                        })
                        .unwrap();
                        made.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }
    });
    let expected = (nodes.len() * threads_per_node * per_thread) as u64;
    let mut prev = GENESIS;
    let mut seen = 0u64;
    nodes[1]
        .scan_audit(&chain, &mut |e| {
            seen += 1;
            assert_eq!(e.seq, seen, "sequence has a gap or a repeat");
            assert_eq!(e.prev_hash, prev, "entry {} does not link", e.seq);
            assert_eq!(
                custodian_crypto::hash::chain_link(&prev, &e.unhashed().canonical_bytes()),
                e.hash,
                "entry {} does not hash as stored",
                e.seq
            );
            prev = e.hash;
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, expected);
    assert_eq!(nodes[2].audit_head(&chain).unwrap(), Some((expected, prev)));
    assert_eq!(
        subjects_made.load(Ordering::Relaxed),
        expected * 4 / 5,
        "every transact committed"
    );
    drop(nodes);
}

/// Two nodes starting against an empty database at once both come up: migrations are
/// serialised by an advisory lock.
#[test]
fn nodes_starting_together_migrate_once() {
    let Some(base) = server_url("migrate_once") else {
        return;
    };
    let mut schemas = Schemas::new(&base);
    let url = schemas.fresh();
    let opened: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| s.spawn(|| PostgresStore::open_with_pool(&url, 2)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for o in &opened {
        assert!(o.is_ok(), "{o:?}");
    }
    let store = opened.into_iter().next().unwrap().unwrap();
    let row = store
        .read(|q| q.one("SELECT COUNT(*) FROM schema_migrations", &[]))
        .unwrap();
    let n: i64 = row.get(0);
    assert_eq!(n as usize, super::MIGRATIONS.len());
}

/// A database written before migration 8 (a row per field) reads back the same records
/// after it, erasure still counts every field, and the old table is gone. Enough fields for
/// the code step to read them in more than one batch, a record's rows across a batch end.
#[test]
fn migration_8_moves_fields_into_their_records() {
    let Some(base) = server_url("migration_8") else {
        return;
    };
    let mut schemas = Schemas::new(&base);
    let url = schemas.fresh();
    let c = ControllerId::from_random([1; 16]);
    let s = SubjectId::from_random([2; 16]);
    let (r1, r2, r3) = (
        RecordId::from_random([3; 16]),
        RecordId::from_random([4; 16]),
        RecordId::from_random([5; 16]),
    );
    let bulk: Vec<RecordId> = (0..200u8)
        .map(|i| {
            let mut b = [6u8; 16];
            b[15] = i;
            RecordId::from_random(b)
        })
        .collect();
    let per_bulk_record = 60i32;
    assert!(bulk.len() * per_bulk_record as usize > super::MIGRATION_BATCH as usize);
    {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        super::migrate_upto(&mut client, 7).unwrap();
        client
            .batch_execute(&format!(
                "INSERT INTO controllers VALUES ('{c}', 'Acme', 'osc-fr1', '2026-01-15', 'FR', 'active', 0, '\\x01');
                 INSERT INTO subjects VALUES ('{c}', '{s}', 'customer', FALSE, '\\x02', 0);
                 INSERT INTO records VALUES ('{c}', '{r1}', '{s}', 'billing', NULL, '[]', NULL, 0, 0, 1);
                 INSERT INTO records VALUES ('{c}', '{r2}', '{s}', 'billing', 'form', '[\"bank\"]', NULL, 0, 0, 1);
                 INSERT INTO records VALUES ('{c}', '{r3}', '{s}', 'billing', NULL, '[]', NULL, 0, 0, 1);
                 INSERT INTO fields VALUES ('{c}', '{r1}', 'phone', 'user.contact.phone_number', '\\x0a0b');
                 INSERT INTO fields VALUES ('{c}', '{r1}', 'email', 'user.contact.email', '\\x0c');
                 INSERT INTO fields VALUES ('{c}', '{r2}', 'name', 'user.name', '\\x0d0e0f');",
                c = c.as_str(),
                s = s.as_str(),
                r1 = r1.as_str(),
                r2 = r2.as_str(),
                r3 = r3.as_str(),
            ))
            .unwrap();
        for r in &bulk {
            client
                .execute(
                    "INSERT INTO records VALUES ($1, $2, $3, 'billing', NULL, '[]', NULL, 0, 0, 1)",
                    &[&c.as_str(), &r.as_str(), &s.as_str()],
                )
                .unwrap();
            // Field fN holds N (4 bytes, big-endian) and then the record's id.
            client
                .execute(
                    "INSERT INTO fields SELECT $1, $2, 'f' || g, 'user.name', int4send(g) || convert_to($2, 'UTF8')
                     FROM generate_series(1, $3) g",
                    &[&c.as_str(), &r.as_str(), &per_bulk_record],
                )
                .unwrap();
        }
    }
    let store = PostgresStore::open_with_pool(&url, 2).unwrap();
    let seen = crate::conformance::stored_records(&store, &c, &s);
    let fields = |id: &RecordId| seen.get(id).expect("record kept").clone();
    assert_eq!(seen.len(), 3 + bulk.len());
    crate::conformance::check_migration_8_sample(&seen, [&r1, &r2, &r3]);
    for r in &bulk {
        let got = fields(r);
        assert_eq!(got.len(), per_bulk_record as usize, "{}", r.as_str());
        for (name, category, sealed) in got {
            let n: i32 = name[1..].parse().unwrap();
            let mut want = n.to_be_bytes().to_vec();
            want.extend_from_slice(r.as_str().as_bytes());
            assert_eq!((category.as_str(), &sealed), ("user.name", &want), "{name}");
        }
    }
    let mut counts = None;
    store
        .transact(&c, OffsetDateTime::now_utc(), &mut |tx: &mut dyn DataTx| {
            counts = Some(tx.erase_subject(&s, OffsetDateTime::now_utc(), "test")?);
            Ok(AuditDraft::new(
                ChainId::Controller(c.clone()),
                "test",
                Action::Processing(Operation::Erasure),
            ))
        })
        .unwrap();
    let counts = counts.unwrap();
    assert_eq!(counts.records, 3 + bulk.len() as u64);
    assert_eq!(
        counts.fields,
        3 + bulk.len() as u64 * per_bulk_record as u64
    );
    let row = store
        .read(|q| {
            q.one(
                "SELECT COUNT(*) FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_name = 'fields'",
                &[],
            )
        })
        .unwrap();
    let n: i64 = row.get(0);
    assert_eq!(n, 0, "the table of one row per field is dropped");
    let row = store
        .read(|q| q.one("SELECT MAX(version) FROM schema_migrations", &[]))
        .unwrap();
    let v: i64 = row.get(0);
    assert_eq!(v, super::MIGRATIONS.last().unwrap().0);
}

/// Writes `head` entries of `chain` behind the store's back, as the migration tests' older
/// schemas held them: every third names both subjects (bulk), every seventh other is about
/// `s1` alone; and the chain's head.
fn write_chain(
    client: &mut postgres::Client,
    chain: &ChainId,
    s1: &SubjectId,
    s2: &SubjectId,
    head: i64,
) {
    let both = format!("[\"{}\",\"{}\"]", s1.as_str(), s2.as_str());
    client
        .execute(
            "INSERT INTO audit_entries (chain, seq, at, actor, action, subject_id, fields, prev_hash, hash, subjects)
             SELECT $1, g, 0, 'controller_app:test', 'consultation',
                    CASE WHEN g % 3 <> 0 AND g % 7 = 0 THEN $2 END, '[]', $4, $4,
                    CASE WHEN g % 3 = 0 THEN $3 ELSE '[]' END
             FROM generate_series(1, $5::bigint) g",
            &[
                &chain.as_string(),
                &s1.as_str(),
                &both,
                &&[0u8; 32][..],
                &head,
            ],
        )
        .unwrap();
    client
        .execute(
            "INSERT INTO audit_heads (chain, seq, hash) VALUES ($1, $2, $3)",
            &[&chain.as_string(), &head, &&[0u8; 32][..]],
        )
        .unwrap();
}

/// A chain written before migration 9 (bulk entries indexed by 0007's audit_subjects) is
/// indexed in runs by it, as SQLite's `migration_9_indexes_existing_chains_in_runs`: a
/// subject's history is the same before and after, appends go on building runs from where
/// the migration left off, and the new tables refuse changes as the entries do.
#[test]
fn migration_9_indexes_existing_chains_in_runs() {
    let Some(base) = server_url("migration_9") else {
        return;
    };
    let mut schemas = Schemas::new(&base);
    let url = schemas.fresh();
    let c = ControllerId::from_random([1; 16]);
    let chain = ChainId::Controller(c.clone());
    let (s1, s2) = (
        SubjectId::from_random([2; 16]),
        SubjectId::from_random([3; 16]),
    );
    let head = 1030i64;
    // Every third entry names both subjects (a bulk entry, indexed in audit_subjects as
    // 0007 did); every seventh is about s1 alone.
    let mut want1: Vec<u64> = (1..=head as u64)
        .filter(|q| q % 3 == 0 || q % 7 == 0)
        .collect();
    {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        super::migrate_upto(&mut client, 8).unwrap();
        write_chain(&mut client, &chain, &s1, &s2, head);
        client
            .execute(
                "INSERT INTO audit_subjects (chain, subject_id, seq)
                 SELECT $1, s, g FROM generate_series(3, $4::bigint, 3) g, UNNEST(ARRAY[$2, $3]) s",
                &[&chain.as_string(), &s1.as_str(), &s2.as_str(), &head],
            )
            .unwrap();
    }
    let store = PostgresStore::open_with_pool(&url, 2).unwrap();
    let history = |s: &SubjectId, after: u64, limit: u32| {
        crate::conformance::history_seqs(&store, &chain, s, after, limit)
    };
    assert_eq!(history(&s1, 0, 10_000), want1);
    assert_eq!(
        history(&s2, 500, 5),
        [501, 504, 507, 510, 513],
        "paged across the first run's end"
    );
    let count = |sql: &str| -> i64 {
        let row = store.read(|q| q.one(sql, &[])).unwrap();
        row.get(0)
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM audit_runs"),
        2,
        "two complete spans of 512 entries, the rest a tail"
    );
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_name = 'audit_subjects'"
        ),
        0,
        "0007's table is dropped"
    );

    // Appending on: the entry at 1536 completes the third run.
    let drafts: Vec<AuditDraft> = (head as u64 + 1..=1540)
        .map(|q| {
            let d = AuditDraft::new(
                chain.clone(),
                "test",
                Action::Processing(Operation::Consultation),
            );
            if q % 2 == 0 {
                want1.push(q);
                d.subjects(vec![s1.clone(), s2.clone()])
            } else {
                d
            }
        })
        .collect();
    store
        .append_audit(drafts, OffsetDateTime::now_utc())
        .unwrap();
    assert_eq!(count("SELECT COUNT(*) FROM audit_runs"), 3);
    assert_eq!(
        count("SELECT MAX(last_seq) FROM audit_runs"),
        1536,
        "runs continue from where the migration left off"
    );
    assert_eq!(history(&s1, 0, 10_000), want1);
    assert_eq!(history(&s1, 1530, 10), [1532, 1534, 1536, 1538, 1540]);

    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    for sql in [
        "UPDATE audit_runs SET last_seq = 0",
        "DELETE FROM audit_runs",
        "TRUNCATE audit_runs",
        "UPDATE audit_run_subjects SET seqs = '[]'",
        "DELETE FROM audit_run_subjects",
        "TRUNCATE audit_run_subjects",
    ] {
        let err = client.batch_execute(sql).expect_err(sql);
        assert!(
            err.as_db_error()
                .is_some_and(|d| d.message().contains("append-only")),
            "{sql}: {err}"
        );
    }
    drop(store);
}

/// Migration 10 (SQLite's 12) indexes the entries about one subject in runs too, rebuilding
/// the runs 0009 built of bulk entries only, and drops audit_by_subject.
#[test]
fn migration_10_indexes_every_entry_naming_a_subject_in_runs() {
    let Some(base) = server_url("migration_10") else {
        return;
    };
    let mut schemas = Schemas::new(&base);
    let url = schemas.fresh();
    let chain = ChainId::Controller(ControllerId::from_random([1; 16]));
    let (s1, s2) = (
        SubjectId::from_random([2; 16]),
        SubjectId::from_random([3; 16]),
    );
    let head = 1030i64;
    // Every third entry names both subjects (bulk); every seventh other is about s1.
    let want1: Vec<u64> = (1..=head as u64)
        .filter(|q| q % 3 == 0 || q % 7 == 0)
        .collect();
    {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        super::migrate_upto(&mut client, 9).unwrap();
        write_chain(&mut client, &chain, &s1, &s2, head);
        // The first span's run as 0009 built it: bulk entries only.
        let mut run = crate::subject_runs::Run::default();
        for q in (1..=512u64).filter(|q| q % 3 == 0) {
            run.add(q, [s1.as_str().to_owned(), s2.as_str().to_owned()]);
        }
        for (subject, seqs) in run.rows() {
            client
                .execute(
                    "INSERT INTO audit_run_subjects (chain, first_seq, subject_id, seqs) VALUES ($1, 1, $2, $3)",
                    &[&chain.as_string(), &subject, &seqs],
                )
                .unwrap();
        }
        client
            .execute(
                "INSERT INTO audit_runs (chain, first_seq, last_seq) VALUES ($1, 1, 512)",
                &[&chain.as_string()],
            )
            .unwrap();
    }
    let store = PostgresStore::open_with_pool(&url, 2).unwrap();
    assert_eq!(
        crate::conformance::history_seqs(&store, &chain, &s1, 0, 10_000),
        want1
    );
    let count = |sql: &str| -> i64 {
        let row = store.read(|q| q.one(sql, &[])).unwrap();
        row.get(0)
    };
    assert_eq!(count("SELECT COUNT(*) FROM audit_runs"), 2);
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM pg_indexes
             WHERE schemaname = current_schema() AND indexname = 'audit_by_subject'"
        ),
        0
    );
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let refused = client.execute("DELETE FROM audit_runs", &[]).unwrap_err();
    let refused = refused
        .as_db_error()
        .map(|e| e.message())
        .unwrap_or_default();
    assert!(refused.contains("append-only"), "{refused}");
}

/// The audit trail refuses UPDATE, DELETE and TRUNCATE, as SQLite's triggers do.
#[test]
fn audit_entries_are_append_only() {
    let Some(base) = server_url("append_only") else {
        return;
    };
    let mut schemas = Schemas::new(&base);
    let url = schemas.fresh();
    let store = PostgresStore::open_with_pool(&url, 2).unwrap();
    store
        .insert_controller(
            &controller_row(2),
            AuditDraft::new(
                ChainId::System,
                "test",
                Action::Admin(AdminAction::ControllerCreated),
            ),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    for sql in [
        "UPDATE audit_entries SET actor = 'someone else'",
        "DELETE FROM audit_entries",
        "TRUNCATE audit_entries",
    ] {
        let err = client.batch_execute(sql).expect_err(sql);
        assert!(
            err.to_string().contains("append-only")
                || err
                    .as_db_error()
                    .is_some_and(|d| d.message().contains("append-only")),
            "{sql}: {err}"
        );
    }
    assert_eq!(
        store.audit_head(&ChainId::System).unwrap().map(|h| h.0),
        Some(1)
    );
}

#[test]
fn urls_lose_their_password_in_messages() {
    use super::redact_url;
    assert_eq!(
        redact_url("postgres://app:s3cret@db.example:5432/custodian"),
        "postgres://app@db.example:5432/custodian"
    );
    assert_eq!(
        redact_url("postgresql://db/custodian?password=s3cret&sslmode=disable"),
        "postgresql://db/custodian?sslmode=disable"
    );
    assert_eq!(
        redact_url("postgres://localhost/x"),
        "postgres://localhost/x"
    );
    assert!(super::is_postgres_url("postgresql://h/d"));
    assert!(!super::is_postgres_url("sqlite://x.db"));
    assert!(!super::is_postgres_url("custodian-data/custodian.db"));
}
