//! The data's lifecycle at the vault level, on a real SQLite file in a temporary directory,
//! with a clock that only moves when the test says so (no sleeps):
//!
//! - retention: expired records are erased by the sweeper, audited, bounded per pass, held
//!   back under a legal hold, and `expiry_schedule` says what expires when;
//! - termination (DPA §14): the full export is lossless when imported elsewhere and its
//!   manifest catches tampering; destruction leaves nothing decryptable in the database
//!   files, spares other controllers, and yields a certificate that verifies only as issued;
//! - legal hold: no processing and no destruction while it is in force, all audited;
//! - the erasure ledger outside the database, and re-applying it to an older copy.

use custodian_core::audit::ChainId;
use custodian_core::category::{DataCategory, SubjectCategory};
use custodian_core::controller::{ControllerName, ControllerStatus};
use custodian_core::ids::{ControllerId, RecordId, SubjectId};
use custodian_core::lookup::LookupKind;
use custodian_core::operation::Operation;
use custodian_core::policy::{OperatorGrant, Refusal};
use custodian_core::principal::{Principal, Role};
use custodian_core::purpose::{LawfulBasis, Purpose, PurposeName};
use custodian_core::record::{FieldInput, FieldName, FieldValue, RecordMeta};
use custodian_core::region::{MemberState, Region, RegionId};
use custodian_crypto::keys::RootKey;
use custodian_store::sqlite::SqliteStore;
use custodian_vault::bulk::{RecordChange, RecordSet};
use custodian_vault::lifecycle::{Certificate, ExportManifest, RETENTION_ACTOR, read_manifest};
use custodian_vault::verify::entry_view;
use custodian_vault::views::{
    AuditEntryView, FieldUpdate, LookupQuery, NewController, NewRecord, NewSubject, NewToken,
};
use custodian_vault::{CallContext, ManualClock, Vault, VaultError};
use rusqlite::Connection;
use secrecy::SecretString;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

// ---------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------

/// Noon UTC, so that "in two hours" is still the same calendar day.
fn t0() -> OffsetDateTime {
    time::macros::datetime!(2026-03-02 12:00 UTC)
}

/// A vault on its own SQLite file with a manual clock and its checkpoint directory beside it.
struct Env {
    dir: tempfile::TempDir,
    db: PathBuf,
    clock: Arc<ManualClock>,
    /// The root key, encoded, so that a test can open the same deployment twice.
    root: String,
    vault: Vault,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("custodian.db");
        let clock = Arc::new(ManualClock::new(t0()));
        let root = RootKey::generate(1).expect("root key").encode().to_string();
        let vault = open_vault(&db, &dir.path().join("checkpoints"), &clock, &root);
        Self {
            dir,
            db,
            clock,
            root,
            vault,
        }
    }

    fn checkpoint_dir(&self) -> PathBuf {
        self.dir.path().join("checkpoints")
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    fn sql(&self) -> Connection {
        let c = Connection::open(&self.db).expect("open the database directly");
        c.busy_timeout(std::time::Duration::from_secs(10))
            .expect("busy timeout");
        c
    }

    /// A controller with an admin and an application principal and three purposes:
    /// `account` (every user category, 30 days), `trial` (every user category, 1 day) and
    /// `support` (contact data, retrieval only, 30 days).
    fn tenant(&self, name: &str) -> Tenant {
        let v = &self.vault;
        let grant = OperatorGrant::local_cli();
        let controller = v
            .create_controller(
                &grant,
                NewController {
                    name: ControllerName::parse(name).expect("controller name"),
                    region: RegionId::parse("osc-fr1").expect("region"),
                    agreement_effective: time::macros::date!(2024 - 01 - 01),
                    governing_law: MemberState::parse("FR").expect("member state"),
                },
                &ctx(),
            )
            .expect("create controller");
        let adm = v
            .issue_token_locally(
                &grant,
                Role::ControllerAdmin,
                Some(controller.id.clone()),
                "first admin",
                // A year: the tests move the clock by weeks.
                31_622_400,
            )
            .expect("issue admin token");
        let admin = v
            .authenticate(&SecretString::from(adm.secret.clone()))
            .expect("admin authenticates");
        let all = [
            Operation::Collection,
            Operation::Recording,
            Operation::Alteration,
            Operation::Retrieval,
            Operation::Consultation,
            Operation::Erasure,
            Operation::Restriction,
            Operation::Disclosure,
        ];
        for p in [
            purpose("account", &["user"], &all, 30),
            purpose("trial", &["user"], &all, 1),
            purpose("support", &["user.contact"], &[Operation::Retrieval], 30),
        ] {
            v.document_purpose(&admin, p, &ctx())
                .expect("document purpose");
        }
        let app = v
            .issue_token(
                &admin,
                NewToken {
                    role: Role::ControllerApp,
                    controller: None,
                    purposes: None,
                    operations: None,
                    label: "application".into(),
                    expires_in_seconds: 31_622_400,
                },
                &ctx(),
            )
            .expect("issue app token");
        let app = v
            .authenticate(&SecretString::from(app.secret.clone()))
            .expect("app authenticates");
        Tenant {
            id: controller.id,
            admin,
            app,
        }
    }
}

fn open_vault(db: &Path, checkpoints: &Path, clock: &Arc<ManualClock>, root: &str) -> Vault {
    Vault::new(
        Arc::new(SqliteStore::open(db).expect("open the store")),
        RootKey::decode(root).expect("root key"),
        clock.clone(),
        Region::defaults(),
        Some(checkpoints.to_path_buf()),
    )
}

struct Tenant {
    id: ControllerId,
    admin: Principal,
    app: Principal,
}

impl Tenant {
    fn chain(&self) -> ChainId {
        ChainId::Controller(self.id.clone())
    }
}

fn purpose(name: &str, categories: &[&str], ops: &[Operation], days: u32) -> Purpose {
    Purpose {
        name: pn(name),
        description: format!("test purpose {name}"),
        lawful_basis: LawfulBasis::Contract,
        categories: categories
            .iter()
            .map(|c| DataCategory::parse(c).expect("catalogued category"))
            .collect(),
        operations: ops.iter().copied().collect(),
        retention_days: days,
    }
}

fn pn(s: &str) -> PurposeName {
    PurposeName::parse(s).expect("purpose name")
}

fn fname(s: &str) -> FieldName {
    FieldName::parse(s).expect("field name")
}

fn text(s: &str) -> FieldValue {
    FieldValue::Text(s.to_owned())
}

fn ctx() -> CallContext {
    CallContext::default()
}

fn record(items: &[(&str, &str, FieldValue)]) -> NewRecord {
    NewRecord {
        fields: items
            .iter()
            .map(|(name, category, value)| {
                (
                    fname(name),
                    FieldInput {
                        category: DataCategory::parse(category).expect("catalogued category"),
                        value: value.clone(),
                    },
                )
            })
            .collect(),
        meta: RecordMeta::default(),
        expires_at: None,
    }
}

fn expiring(mut r: NewRecord, at: OffsetDateTime) -> NewRecord {
    r.expires_at = Some(at);
    r
}

/// A new end-user subject with `first` as its first record under `purpose`.
fn subject_with(
    v: &Vault,
    app: &Principal,
    purpose: &str,
    first: NewRecord,
) -> (SubjectId, RecordId) {
    let created = v
        .create_subject(
            app,
            &pn(purpose),
            NewSubject {
                category: SubjectCategory::EndUser,
                record: Some(first),
            },
            &ctx(),
        )
        .expect("create subject");
    (created.id, created.record.expect("first record"))
}

/// `n` subjects under `account` whose one record each expires a minute after the one
/// before, from ten minutes after `t0`, and one whose record keeps the purpose's retention.
fn people_expiring(v: &Vault, app: &Principal, n: i64) -> (Vec<RecordId>, RecordId) {
    let expiring_ids = (0..n)
        .map(|i| {
            subject_with(
                v,
                app,
                "account",
                expiring(
                    record(&[("name", "user.name", text(&format!("Person {i}")))]),
                    t0() + Duration::minutes(10 + i),
                ),
            )
            .1
        })
        .collect();
    let (_, keeper) = subject_with(
        v,
        app,
        "account",
        record(&[("name", "user.name", text("Keeper"))]),
    );
    (expiring_ids, keeper)
}

fn add(v: &Vault, app: &Principal, purpose: &str, s: &SubjectId, r: NewRecord) -> RecordId {
    v.add_record(app, &pn(purpose), s, r, &ctx())
        .expect("add record")
        .id
}

/// The whole chain of a controller, read from the store (works after destruction too).
fn trail(v: &Vault, chain: &ChainId) -> Vec<AuditEntryView> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = v
            .store()
            .audit_page(chain, after, 1000)
            .expect("audit page");
        let n = page.len();
        out.extend(page.iter().map(entry_view));
        if n < 1000 {
            return out;
        }
        after = out.last().expect("non-empty").seq;
    }
}

fn trail_after(v: &Vault, chain: &ChainId, after: u64) -> Vec<AuditEntryView> {
    trail(v, chain)
        .into_iter()
        .filter(|e| e.seq > after)
        .collect()
}

fn head(v: &Vault, chain: &ChainId) -> u64 {
    trail(v, chain).last().map_or(0, |e| e.seq)
}

fn readable(v: &Vault, app: &Principal, rec: &RecordId) -> bool {
    match v.get_record(app, &pn("account"), rec, None, &ctx()) {
        Ok(_) => true,
        Err(VaultError::NotFound | VaultError::Gone) => false,
        Err(e) => panic!("unexpected error reading {rec}: {e:?}"),
    }
}

/// Whether the record's row is still in the database, whatever a read answers.
fn stored(env: &Env, rec: &RecordId) -> bool {
    env.sql()
        .query_row(
            "SELECT COUNT(*) FROM records WHERE id = ?1",
            [rec.as_str()],
            |r| r.get::<_, i64>(0),
        )
        .expect("count")
        == 1
}

fn assert_verifies(v: &Vault) {
    let report = v.verify(None).expect("verify");
    assert!(
        report.ok(),
        "audit chains must verify: {:?}",
        report.problems
    );
}

// ----- byte scanning -------------------------------------------------------------------

fn db_files(db: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", db.display())))
        .filter(|p| p.exists())
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    assert!(!needle.is_empty(), "empty needle");
    hay.windows(needle.len()).any(|w| w == needle)
}

fn files_holding(db: &Path, needle: &[u8]) -> Vec<PathBuf> {
    db_files(db)
        .into_iter()
        .filter(|f| contains(&std::fs::read(f).expect("read db file"), needle))
        .collect()
}

/// A blob and its 16-byte windows, so that a partial copy of it is caught too.
fn blob_needles(blob: &[u8], skip_header: usize) -> Vec<Vec<u8>> {
    let mut out = vec![blob.to_vec()];
    let body = &blob[skip_header..];
    out.extend(body.chunks_exact(16).map(<[u8]>::to_vec));
    if body.len() >= 16 {
        out.push(body[body.len() - 16..].to_vec());
    }
    out
}

fn blobs(c: &Connection, sql: &str, controller: &ControllerId) -> Vec<Vec<u8>> {
    let mut st = c.prepare(sql).expect("prepare");
    st.query_map([controller.as_str()], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Every field ciphertext of the controller's records (a record's fields are one column).
fn sealed_fields(c: &Connection, controller: &ControllerId) -> Vec<Vec<u8>> {
    custodian_store::sqlite::stored_fields(c, "controller_id = ?1", [controller.as_str()])
        .expect("fields")
        .into_iter()
        .map(|f| f.sealed)
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. Retention
// ---------------------------------------------------------------------------------------

#[test]
fn expired_records_are_erased_by_the_sweeper_and_audited_without_values() {
    let env = Env::new();
    let v = &env.vault;
    let t = env.tenant("Retention SAS");
    let name = "Kwzorby Retentia";
    let email = "kwzorby.retentia@example.org";

    // Three lives: two hours (the record's own expiry), one day (the `trial` purpose's
    // retention), thirty days (the `account` purpose's).
    let (s1, short) = subject_with(
        v,
        &t.app,
        "account",
        expiring(
            record(&[
                ("name", "user.name", text(name)),
                ("email", "user.contact.email", text(email)),
            ]),
            t0() + Duration::hours(2),
        ),
    );
    let long = add(
        v,
        &t.app,
        "account",
        &s1,
        record(&[("nickname", "user.name", text("Kwz"))]),
    );
    let (s2, trial) = subject_with(
        v,
        &t.app,
        "trial",
        record(&[("plan", "user.content", text("free trial"))]),
    );
    // An expiry asked beyond the purpose's retention is capped by it.
    let capped = add(
        v,
        &t.app,
        "trial",
        &s2,
        expiring(
            record(&[("note", "user.content", text("wants more"))]),
            t0() + Duration::days(90),
        ),
    );
    let view = v
        .get_record(&t.app, &pn("trial"), &capped, None, &ctx())
        .expect("read capped");
    assert_eq!(
        view.expires_at,
        t0() + Duration::days(1),
        "capped by retention"
    );

    // Nothing has expired yet: a pass erases nothing.
    let r = v.sweep_retention(100).expect("sweep");
    assert_eq!(
        (r.erased_records, r.more_pending, r.held_back),
        (0, false, 0)
    );

    // Just before the two hours: still nothing. The boundary is inclusive.
    env.advance(Duration::hours(2) - Duration::seconds(1));
    assert_eq!(v.sweep_retention(100).expect("sweep").erased_records, 0);
    assert!(readable(v, &t.app, &short));
    env.advance(Duration::seconds(1));
    let short_sealed: Vec<Vec<u8>> =
        custodian_store::sqlite::stored_fields(&env.sql(), "id = ?1", [short.as_str()])
            .expect("fields")
            .into_iter()
            .flat_map(|f| blob_needles(&f.sealed, 0))
            .collect();
    assert!(!short_sealed.is_empty());
    let before = head(v, &t.chain());
    let r = v.sweep_retention(100).expect("sweep");
    assert_eq!(
        (r.erased_records, r.more_pending, r.held_back),
        (1, false, 0)
    );
    assert!(!readable(v, &t.app, &short), "the expired record is gone");
    // And off the files, once the purge due within the delay has run.
    v.purge_erased_now();
    for n in &short_sealed {
        let hits = files_holding(&env.db, n);
        assert!(
            hits.is_empty(),
            "an expired record's ciphertext survives in {hits:?}"
        );
    }
    assert!(readable(v, &t.app, &long), "the longer-lived record stays");
    assert!(
        v.get_record(&t.app, &pn("trial"), &trial, None, &ctx())
            .is_ok()
    );
    // The subject itself stays: retention erases records, not people.
    let s1_view = v
        .get_subject(&t.app, &pn("account"), &s1, &ctx())
        .expect("subject stays");
    assert_eq!(s1_view.records.len(), 1);
    // Its lookup entry went with the record.
    let found = v
        .lookup(
            &t.app,
            &pn("account"),
            LookupQuery {
                kind: LookupKind::Email,
                value: email.to_owned(),
            },
            &ctx(),
        )
        .expect("lookup");
    assert!(
        found.subjects.is_empty(),
        "the expired email is not findable"
    );

    // Audited: one erasure entry by the retention actor, naming record and fields only.
    let new: Vec<_> = trail_after(v, &t.chain(), before)
        .into_iter()
        .filter(|e| e.actor == RETENTION_ACTOR)
        .collect();
    assert_eq!(new.len(), 1, "{new:#?}");
    let e = &new[0];
    assert_eq!(e.action, "erasure");
    assert_eq!(e.outcome, "allowed");
    assert_eq!(e.purpose, Some(pn("account")));
    assert_eq!(e.subject.as_ref(), Some(&s1));
    assert_eq!(e.record.as_ref(), Some(&short));
    let mut fields = e.fields.clone();
    fields.sort();
    assert_eq!(fields, vec!["email".to_owned(), "name".to_owned()]);
    let json = serde_json::to_string(e).expect("json");
    for value in [name, email, "Kwzorby", "retentia"] {
        assert!(
            !json.to_lowercase().contains(&value.to_lowercase()),
            "{json}"
        );
    }

    // One day: both `trial` records go (the capped one included), `account` stays.
    env.advance(Duration::days(1));
    let r = v.sweep_retention(100).expect("sweep");
    assert_eq!(r.erased_records, 2);
    for rec in [&trial, &capped] {
        assert!(matches!(
            v.get_record(&t.app, &pn("trial"), rec, None, &ctx()),
            Err(VaultError::NotFound)
        ));
    }
    assert!(readable(v, &t.app, &long));
    let erased_by_retention: Vec<_> = trail(v, &t.chain())
        .into_iter()
        .filter(|e| e.actor == RETENTION_ACTOR && e.action == "erasure")
        .collect();
    assert_eq!(erased_by_retention.len(), 3);
    assert!(
        erased_by_retention
            .iter()
            .any(|e| e.record.as_ref() == Some(&trial) && e.purpose == Some(pn("trial")))
    );

    // Thirty days: the last one goes; the database holds no record any more.
    env.advance(Duration::days(29));
    assert_eq!(v.sweep_retention(100).expect("sweep").erased_records, 1);
    assert!(!readable(v, &t.app, &long));
    assert_eq!(
        env.sql()
            .query_row("SELECT COUNT(*) FROM records", [], |r| r.get::<_, i64>(0))
            .expect("count"),
        0
    );
    assert!(v.expiry_schedule(None).expect("schedule").is_empty());
    assert_verifies(v);
}

/// A record whose retention has run out is not processed while it waits for the sweep:
/// retrieval, consultation, export, lookup and alteration answer as if it were gone (from
/// its expiry's instant on, not a microsecond before), an erasure still takes it, and the
/// sweep erases what is left.
#[test]
fn an_expired_record_is_not_processed_while_it_waits_for_the_sweep() {
    let env = Env::new();
    let v = &env.vault;
    let t = env.tenant("Expiry SAS");
    let account = pn("account");
    let email = "zyqvorn.expiry@example.org";
    let end = t0() + Duration::hours(2);
    // s1: a record ending at `end` and one keeping the purpose's retention; s2: only a
    // record ending at `end`.
    let (s1, ending) = subject_with(
        v,
        &t.app,
        "account",
        expiring(record(&[("email", "user.contact.email", text(email))]), end),
    );
    let kept = add(
        v,
        &t.app,
        "account",
        &s1,
        record(&[("name", "user.name", text("Zyqvorn"))]),
    );
    let (s2, only) = subject_with(
        v,
        &t.app,
        "account",
        expiring(record(&[("name", "user.name", text("Short Lived"))]), end),
    );
    let found = || {
        v.lookup(
            &t.app,
            &account,
            LookupQuery {
                kind: LookupKind::Email,
                value: email.into(),
            },
            &ctx(),
        )
        .expect("lookup")
        .subjects
    };
    let mut every = vec![ending.clone(), kept.clone(), only.clone()];
    every.sort();
    let in_purpose = || {
        let mut ids: Vec<RecordId> = v
            .purpose_records(&t.app, &account, &RecordSet::Purpose, &ctx())
            .expect("purpose records")
            .into_iter()
            .map(|r| r.id)
            .collect();
        ids.sort();
        ids
    };
    let of_subject = |s: &SubjectId| -> Vec<RecordId> {
        v.get_subject(&t.app, &account, s, &ctx())
            .expect("consult subject")
            .records
            .into_iter()
            .map(|r| r.id)
            .collect()
    };

    env.advance(Duration::hours(2) - Duration::microseconds(1));
    assert!(readable(v, &t.app, &ending));
    assert_eq!(found(), vec![s1.clone()]);
    assert_eq!(in_purpose(), every);

    env.advance(Duration::microseconds(1));
    assert!(!readable(v, &t.app, &ending));
    assert!(!readable(v, &t.app, &only));
    assert!(readable(v, &t.app, &kept));
    let rectified = v.update_record(
        &t.app,
        &account,
        &ending,
        FieldUpdate {
            fields: record(&[("email", "user.contact.email", text("new@example.org"))]).fields,
        },
        &ctx(),
    );
    assert!(
        matches!(rectified, Err(VaultError::NotFound)),
        "{rectified:?}"
    );
    assert_eq!(of_subject(&s1), vec![kept.clone()]);
    assert!(of_subject(&s2).is_empty());
    let export = v
        .export_subject(&t.app, &account, &s1, &ctx())
        .expect("export");
    let exported: Vec<&RecordId> = export.records.iter().map(|r| &r.id).collect();
    assert_eq!(exported, vec![&kept]);
    assert!(
        found().is_empty(),
        "found through an expired record's email"
    );
    assert_eq!(in_purpose(), vec![kept.clone()]);
    // Alterations leave it out: over the purpose in one statement, and by subject.
    let altered = |set: RecordSet, change: RecordChange| {
        v.alter_records(&t.app, &account, &set, &change, &ctx())
            .expect("alter")
            .records
    };
    assert_eq!(
        altered(RecordSet::Purpose, RecordChange::Source(Some("crm".into()))),
        1
    );
    assert_eq!(
        altered(
            RecordSet::Subject(s1.clone()),
            RecordChange::Field {
                name: fname("email"),
                input: record(&[("email", "user.contact.email", text("x@example.org"))])
                    .fields
                    .remove(&fname("email"))
                    .expect("input"),
            }
        ),
        1
    );
    // An erasure takes it; the sweep erases the other.
    let erased = v
        .erase_records(&t.app, &account, &RecordSet::Subject(s2.clone()), &ctx())
        .expect("erase");
    assert_eq!(erased.records, 1);
    let swept = v.sweep_retention(100).expect("sweep");
    assert_eq!(swept.erased_records, 1);
    assert!(readable(v, &t.app, &kept));
}

#[test]
fn a_bounded_sweep_leaves_the_rest_for_the_next_pass() {
    let env = Env::new();
    let v = &env.vault;
    let t = env.tenant("Bounded SAS");
    // More than one internal transaction's worth (50), to cover the batching too.
    let (expiring_ids, keeper) = people_expiring(v, &t.app, 62);
    env.advance(Duration::hours(3));
    let before = head(v, &t.chain());

    let r = v.sweep_retention(55).expect("first pass");
    assert_eq!((r.erased_records, r.more_pending), (55, true));
    // Oldest first: the first 55 to expire are the ones gone (all of them are out of
    // reach already: what tells the erased ones is the database).
    for (i, rec) in expiring_ids.iter().enumerate() {
        assert_eq!(stored(&env, rec), i >= 55, "record {i}");
        assert!(!readable(v, &t.app, rec), "record {i}");
    }
    let r = v.sweep_retention(5).expect("second pass");
    assert_eq!((r.erased_records, r.more_pending), (5, true));
    let r = v.sweep_retention(5).expect("third pass");
    assert_eq!((r.erased_records, r.more_pending), (2, false));
    let r = v.sweep_retention(5).expect("idle pass");
    assert_eq!((r.erased_records, r.more_pending), (0, false));
    assert!(expiring_ids.iter().all(|r| !stored(&env, r)));
    assert_eq!(
        v.sweep_retention_backlog(5).expect("idle").erased_records,
        0
    );
    assert!(readable(v, &t.app, &keeper));

    // Exactly one audit entry per erased record, across the internal transactions.
    let entries: Vec<_> = trail_after(v, &t.chain(), before)
        .into_iter()
        .filter(|e| e.actor == RETENTION_ACTOR)
        .collect();
    assert_eq!(entries.len(), 62);
    let mut named: Vec<_> = entries
        .iter()
        .map(|e| e.record.clone().expect("names its record"))
        .collect();
    named.sort();
    named.dedup();
    let mut expected = expiring_ids.clone();
    expected.sort();
    assert_eq!(named, expected);
    assert_verifies(v);
}

/// The server's sweeper clears a backlog in one tick: passes of its bound until none is left.
#[test]
fn a_backlog_of_expired_records_goes_in_one_call_pass_after_pass() {
    let env = Env::new();
    let v = &env.vault;
    let t = env.tenant("Backlog SAS");
    let (expiring_ids, keeper) = people_expiring(v, &t.app, 23);
    env.advance(Duration::hours(3));
    let r = v.sweep_retention_backlog(5).expect("backlog");
    assert_eq!((r.erased_records, r.more_pending), (23, false));
    assert!(expiring_ids.iter().all(|r| !readable(v, &t.app, r)));
    assert!(readable(v, &t.app, &keeper));
    assert_verifies(v);
}

#[test]
fn a_legal_hold_keeps_expired_records_and_does_not_starve_other_controllers() {
    let env = Env::new();
    let v = &env.vault;
    let held = env.tenant("Held SAS");
    let free = env.tenant("Free SAS");
    // The held controller's records expire first, so they come first in expiry order.
    let mut held_records = Vec::new();
    for i in 0..4 {
        held_records.push(
            subject_with(
                v,
                &held.app,
                "account",
                expiring(
                    record(&[("name", "user.name", text(&format!("Held {i}")))]),
                    t0() + Duration::minutes(5 + i),
                ),
            )
            .1,
        );
    }
    let mut free_records = Vec::new();
    for i in 0..3 {
        free_records.push(
            subject_with(
                v,
                &free.app,
                "account",
                expiring(
                    record(&[("name", "user.name", text(&format!("Free {i}")))]),
                    t0() + Duration::minutes(30 + i),
                ),
            )
            .1,
        );
    }
    v.place_legal_hold(&OperatorGrant::local_cli(), &held.id, "Court order 2026/42")
        .expect("place hold");
    env.advance(Duration::hours(1));

    // The way the server's sweeper runs: a small bound, one pass per tick.
    let mut held_back = 0;
    for _ in 0..5 {
        let r = v.sweep_retention(3).expect("sweep");
        held_back += r.held_back;
    }
    assert!(
        held_back > 0,
        "the held controller is reported as held back"
    );
    assert!(
        free_records.iter().all(|r| !readable(v, &free.app, r)),
        "the other controller's expired records must be erased despite the hold"
    );
    let still: i64 = env
        .sql()
        .query_row(
            "SELECT COUNT(*) FROM records WHERE controller_id = ?1",
            [held.id.as_str()],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(still, 4, "held data is kept, sealed, past its retention");
    assert!(
        trail(v, &held.chain())
            .iter()
            .all(|e| e.actor != RETENTION_ACTOR),
        "nothing was erased under the hold"
    );

    // Passes until nothing more may go end with the held records still there.
    let r = v.sweep_retention_backlog(2).expect("backlog");
    assert_eq!(r.erased_records, 0);
    assert!(r.held_back > 0, "{r:?}");

    // Lifted: the next pass erases what had expired.
    v.lift_legal_hold(&OperatorGrant::local_cli(), &held.id)
        .expect("lift");
    let r = v.sweep_retention(100).expect("sweep");
    assert_eq!((r.erased_records, r.held_back), (4, 0));
    assert!(held_records.iter().all(|r| !readable(v, &held.app, r)));
    assert_verifies(v);
}

#[test]
fn the_expiry_schedule_counts_records_per_controller_purpose_and_day() {
    let env = Env::new();
    let v = &env.vault;
    let a = env.tenant("Schedule A");
    let b = env.tenant("Schedule B");
    let day0 = t0().date();
    // A: 2 today (own expiry), 3 tomorrow (`trial`), 1 in 30 days (`account`).
    for h in [1, 3] {
        subject_with(
            v,
            &a.app,
            "account",
            expiring(
                record(&[("name", "user.name", text("a"))]),
                t0() + Duration::hours(h),
            ),
        );
    }
    for _ in 0..3 {
        subject_with(
            v,
            &a.app,
            "trial",
            record(&[("name", "user.name", text("t"))]),
        );
    }
    subject_with(
        v,
        &a.app,
        "account",
        record(&[("name", "user.name", text("l"))]),
    );
    // B: 1 tomorrow.
    subject_with(
        v,
        &b.app,
        "trial",
        record(&[("name", "user.name", text("b"))]),
    );

    let only_a: Vec<_> = v
        .expiry_schedule(Some(&a.id))
        .expect("schedule")
        .into_iter()
        .map(|b| {
            (
                b.controller,
                b.purpose.as_str().to_owned(),
                b.day,
                b.records,
            )
        })
        .collect();
    assert_eq!(
        only_a,
        vec![
            (a.id.clone(), "account".into(), day0, 2),
            (a.id.clone(), "trial".into(), day0 + Duration::days(1), 3),
            (a.id.clone(), "account".into(), day0 + Duration::days(30), 1),
        ]
    );
    let all = v.expiry_schedule(None).expect("schedule");
    assert_eq!(all.iter().map(|b| b.records).sum::<u64>(), 7);
    assert!(all.iter().any(|x| x.controller == b.id
        && x.purpose == pn("trial")
        && x.day == day0 + Duration::days(1)
        && x.records == 1));
    assert!(
        v.expiry_schedule(Some(&b.id))
            .expect("schedule")
            .iter()
            .all(|x| x.controller == b.id)
    );

    // After today's expiries are swept, the schedule no longer lists them.
    env.advance(Duration::hours(4));
    assert_eq!(v.sweep_retention(100).expect("sweep").erased_records, 2);
    let after = v.expiry_schedule(Some(&a.id)).expect("schedule");
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|x| x.day > day0));
}

// ---------------------------------------------------------------------------------------
// 2. Termination: export, import elsewhere, destruction, certificate
// ---------------------------------------------------------------------------------------

/// A subject export line without what necessarily differs after an import: ids, the
/// controller, and the timestamps of the export itself and of the creation of rows.
fn normalised(line: &str) -> Value {
    let mut v: Value = serde_json::from_str(line).expect("an export line is JSON");
    let o = v.as_object_mut().expect("object");
    o.remove("controller");
    o.remove("exported_at");
    let s = o["subject"].as_object_mut().expect("subject");
    s.remove("id");
    s.remove("created_at");
    let mut records: Vec<Value> = o["records"]
        .as_array()
        .expect("records")
        .iter()
        .cloned()
        .map(|mut r| {
            let ro = r.as_object_mut().expect("record");
            ro.remove("id");
            ro.remove("created_at");
            ro.remove("updated_at");
            r
        })
        .collect();
    records.sort_by_key(|r| r.to_string());
    o.insert("records".into(), Value::Array(records));
    v
}

fn normalised_export(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("subjects.jsonl")).expect("subjects.jsonl");
    let mut lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(normalised)
        .collect();
    lines.sort_by_key(|l| l.to_string());
    lines
}

/// A controller with varied data: several records, every value kind, metadata, a
/// restricted subject, an objection, and a record under a second purpose.
fn populate(v: &Vault, t: &Tenant) -> Vec<SubjectId> {
    let mut rich = record(&[
        ("name", "user.name", text("Zéphyrine Exportova")),
        ("email", "user.contact.email", text("zephyrine@example.org")),
        ("age", "user.demographic", FieldValue::Number(41.into())),
        ("vip", "user.content", FieldValue::Bool(true)),
    ]);
    rich.meta = RecordMeta {
        source: Some("signup form".into()),
        recipients: vec!["support team".into(), "billing".into()],
        automated_decision: Some("credit scoring v2".into()),
    };
    let (s1, _) = subject_with(v, &t.app, "account", rich);
    add(
        v,
        &t.app,
        "account",
        &s1,
        expiring(
            record(&[(
                "phone",
                "user.contact.phone_number",
                text("+33 6 11 22 33 44"),
            )]),
            t0() + Duration::days(7),
        ),
    );
    add(
        v,
        &t.app,
        "trial",
        &s1,
        record(&[("plan", "user.content", text("premium trial"))]),
    );
    let (s2, _) = subject_with(
        v,
        &t.app,
        "account",
        record(&[("name", "user.name", text("Restricted Roberta"))]),
    );
    v.set_objection(&t.app, &pn("account"), &s2, &pn("trial"), true, &ctx())
        .expect("object");
    v.set_restriction(&t.app, &pn("account"), &s2, true, &ctx())
        .expect("restrict");
    let (s3, _) = subject_with(
        v,
        &t.app,
        "trial",
        record(&[("note", "user.content", text("only a trial"))]),
    );
    vec![s1, s2, s3]
}

#[test]
fn the_termination_export_is_lossless_and_its_manifest_catches_tampering() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let v = &env.vault;
    let a = env.tenant("Leaving SAS");
    let b = env.tenant("Arriving SAS");
    let subjects = populate(v, &a);
    let op = OperatorGrant::local_cli();

    // Not before termination started.
    let early = env.dir.path().join("early");
    assert!(matches!(
        v.export_controller(op.actor(), &a.id, &early),
        Err(VaultError::Refused(Refusal::ControllerNotActive { .. }))
    ));
    assert_eq!(
        v.start_termination(op.actor(), &a.id).expect("start"),
        ControllerStatus::Terminating
    );
    // Processing has stopped.
    assert!(matches!(
        v.get_subject(&a.app, &pn("account"), &subjects[0], &ctx()),
        Err(VaultError::Refused(Refusal::ControllerNotActive { .. }))
    ));

    let out = env.dir.path().join("export-a");
    let m = v
        .export_controller(op.actor(), &a.id, &out)
        .expect("export");
    assert_eq!((m.subjects, m.records), (3, 5));
    assert_eq!(m.controller, a.id);
    assert_eq!(
        m.public_key,
        v.public_key()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    assert_eq!(
        std::fs::metadata(&out).expect("dir").permissions().mode() & 0o777,
        0o700
    );
    let names: Vec<_> = m.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["subjects.jsonl", "audit.jsonl", "checkpoints.json"]);
    for f in &m.files {
        let p = out.join(&f.name);
        assert_eq!(
            std::fs::metadata(&p).expect("file").permissions().mode() & 0o777,
            0o600,
            "{}",
            f.name
        );
        let data = std::fs::read(&p).expect("read");
        assert_eq!(data.len() as u64, f.bytes, "{}", f.name);
        assert_eq!(
            sha256_hex(&data),
            f.sha256,
            "{}: the manifest's checksum is the file's SHA-256",
            f.name
        );
    }
    assert_eq!(read_manifest(&out).expect("manifest holds"), m);
    // Signed by this deployment, over every field.
    m.verify(&v.public_key())
        .expect("signed by this deployment");
    assert!(
        m.verify(&[7u8; 32]).is_err(),
        "another key is not the signer"
    );
    let mut fewer = m.clone();
    fewer.records -= 1;
    assert!(fewer.verify(&v.public_key()).is_err(), "an altered count");
    // The audit trail goes with it, up to the export itself.
    let audit = std::fs::read_to_string(out.join("audit.jsonl")).expect("audit");
    let last: Value =
        serde_json::from_str(audit.lines().last().expect("entries")).expect("json line");
    assert_eq!(last["action"], "admin.termination_exported");
    assert_eq!(
        audit.lines().count(),
        trail(v, &a.chain()).len(),
        "every entry of the chain"
    );

    // Import into another controller, then export that one the same way: equal, up to
    // ids and timestamps of creation.
    let imported = v
        .import_controller_export(&b.app, &pn("account"), &out, &ctx())
        .expect("import");
    assert_eq!(imported, 3);
    v.start_termination(op.actor(), &b.id).expect("start b");
    let back = env.dir.path().join("export-b");
    let mb = v
        .export_controller(op.actor(), &b.id, &back)
        .expect("export b");
    assert_eq!((mb.subjects, mb.records), (3, 5));
    let (left, right) = (normalised_export(&out), normalised_export(&back));
    assert_eq!(left, right, "the round trip lost or changed something");
    // The comparison is not vacuous: values and metadata are in it.
    let all = serde_json::to_string(&left).expect("json");
    for needle in [
        "Zéphyrine Exportova",
        "credit scoring v2",
        "\"restricted\":true",
        "\"objections\":[\"trial\"]",
        "\"value\":41",
    ] {
        assert!(all.contains(needle), "{needle} missing from {all}");
    }

    // One changed byte in any listed file, or a missing file, fails the manifest check.
    for name in ["subjects.jsonl", "audit.jsonl", "checkpoints.json"] {
        let copy = env.dir.path().join(format!("tampered-{name}"));
        copy_dir(&out, &copy);
        let p = copy.join(name);
        let mut data = std::fs::read(&p).expect("read");
        let mid = data.len() / 2;
        data[mid] ^= 0x01;
        std::fs::write(&p, &data).expect("write");
        let err = read_manifest(&copy).expect_err("tampered file accepted");
        assert!(
            err.to_string().contains(name),
            "the error names the file: {err}"
        );
        if name == "subjects.jsonl" {
            assert!(
                v.import_controller_export(&b.app, &pn("account"), &copy, &ctx())
                    .is_err()
            );
        }
    }
    let copy = env.dir.path().join("tampered-missing");
    copy_dir(&out, &copy);
    std::fs::remove_file(copy.join("audit.jsonl")).expect("remove");
    assert!(read_manifest(&copy).is_err());
    let copy = env.dir.path().join("tampered-manifest");
    copy_dir(&out, &copy);
    let text = std::fs::read_to_string(copy.join("manifest.json")).expect("manifest");
    let altered = text.replacen(&m.files[0].sha256, &"0".repeat(64), 1);
    assert_ne!(text, altered);
    std::fs::write(copy.join("manifest.json"), altered).expect("write");
    assert!(read_manifest(&copy).is_err());
    // A file changed and its size and checksum rewritten to match: only the signature
    // tells, and the import is refused.
    let copy = env.dir.path().join("tampered-consistently");
    copy_dir(&out, &copy);
    let p = copy.join("subjects.jsonl");
    let data = std::fs::read_to_string(&p).expect("read");
    let first = data.lines().next().expect("a subject").len() + 1;
    std::fs::write(&p, &data[first..]).expect("drop a subject");
    let mut forged: ExportManifest =
        serde_json::from_slice(&std::fs::read(copy.join("manifest.json")).expect("read"))
            .expect("manifest");
    let kept = std::fs::read(&p).expect("read");
    forged.files[0].bytes = kept.len() as u64;
    forged.files[0].sha256 = sha256_hex(&kept);
    forged.subjects -= 1;
    std::fs::write(
        copy.join("manifest.json"),
        serde_json::to_vec_pretty(&forged).expect("json"),
    )
    .expect("write");
    let err = read_manifest(&copy).expect_err("a forged manifest accepted");
    assert!(err.to_string().contains("signature"), "{err}");
    assert!(
        v.import_controller_export(&b.app, &pn("account"), &copy, &ctx())
            .is_err()
    );
    // A manifest without a signature (as exports made before they were signed): refused,
    // saying why and what to do; a manifest that is not JSON is malformed.
    let copy = env.dir.path().join("unsigned");
    copy_dir(&out, &copy);
    let mut unsigned: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copy.join("manifest.json")).expect("read"))
            .expect("json");
    unsigned
        .as_object_mut()
        .expect("object")
        .remove("signature");
    std::fs::write(copy.join("manifest.json"), unsigned.to_string()).expect("write");
    let err = read_manifest(&copy).expect_err("an unsigned manifest accepted");
    assert!(
        err.to_string().contains("no signature") && err.to_string().contains("export"),
        "{err}"
    );
    std::fs::write(copy.join("manifest.json"), "{ not json").expect("write");
    let err = read_manifest(&copy).expect_err("garbage accepted");
    assert!(err.to_string().contains("malformed"), "{err}");
}

fn sha256_hex(data: &[u8]) -> String {
    let mut h = custodian_crypto::hash::Sha256::default();
    h.update(data);
    h.finish().iter().map(|b| format!("{b:02x}")).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
    }
}

#[test]
fn destruction_leaves_nothing_decryptable_and_yields_a_certificate_that_verifies() {
    let env = Env::new();
    let v = &env.vault;
    let gone = env.tenant("Destroyed SAS");
    let stays = env.tenant("Staying SAS");
    let subjects = populate(v, &gone);
    let (other, other_rec) = subject_with(
        v,
        &stays.app,
        "account",
        record(&[("name", "user.name", text("Stella Survivor"))]),
    );
    let op = OperatorGrant::local_cli();

    // Destruction needs termination first.
    assert!(matches!(
        v.destroy_controller(&op, &gone.id),
        Err(VaultError::Refused(Refusal::ControllerNotActive { .. }))
    ));

    // Capture, behind the vault's back, every key and ciphertext of the controller.
    let (ckey, skeys, sealed, digests) = {
        let c = env.sql();
        (
            blobs(
                &c,
                "SELECT wrapped_key FROM controllers WHERE id = ?1",
                &gone.id,
            ),
            blobs(
                &c,
                "SELECT wrapped_key FROM subjects WHERE controller_id = ?1",
                &gone.id,
            ),
            sealed_fields(&c, &gone.id),
            blobs(
                &c,
                "SELECT digest FROM lookups WHERE controller_id = ?1",
                &gone.id,
            ),
        )
    };
    assert_eq!((ckey.len(), skeys.len()), (1, 3));
    assert_eq!(sealed.len(), 8, "eight field ciphertexts");
    assert_eq!(digests.len(), 2, "email and phone are indexed");
    let mut needles = Vec::new();
    for b in ckey.iter().chain(&skeys) {
        needles.extend(blob_needles(b, 4));
    }
    for b in &sealed {
        needles.extend(blob_needles(b, 0));
    }
    needles.extend(digests.iter().cloned());
    for n in &needles {
        assert!(
            !files_holding(&env.db, n).is_empty(),
            "a captured blob is not in the files before destruction"
        );
    }

    v.start_termination(op.actor(), &gone.id).expect("start");
    let before = head(v, &gone.chain());
    let cert = v.destroy_controller(&op, &gone.id).expect("destroy");
    assert_eq!(cert.controller, gone.id);
    assert_eq!(cert.controller_name, "Destroyed SAS");
    assert_eq!((cert.subjects, cert.records), (3, 5));
    assert_eq!(cert.destroyed_at, t0());
    assert_eq!(
        cert.audit_chain_seq, before,
        "the head just before destruction"
    );
    let head_hash = trail(v, &gone.chain())
        .into_iter()
        .find(|e| e.seq == before)
        .expect("head entry")
        .hash;
    assert_eq!(cert.audit_chain_head, head_hash);
    cert.verify(&v.public_key())
        .expect("the certificate verifies");
    assert_eq!(v.certificate(&gone.id).expect("stored"), cert);
    // Kept outside the database as well, for restores of older backups.
    assert_eq!(
        custodian_vault::ledger::read_destructions(&env.checkpoint_dir()).expect("ledger"),
        vec![cert.clone()]
    );

    // The destruction is itself audited, with its counts.
    let after = trail_after(v, &gone.chain(), before);
    assert_eq!(after.len(), 1, "{after:#?}");
    assert_eq!(after[0].action, "destruction");
    assert_eq!(after[0].outcome, "allowed");
    assert!(after[0].fields.contains(&"subjects:3".to_owned()));
    assert!(after[0].fields.contains(&"records:5".to_owned()));

    // Nothing of it remains in the database, its WAL or shared memory.
    for n in &needles {
        let hits = files_holding(&env.db, n);
        assert!(
            hits.is_empty(),
            "{} bytes of the destroyed controller's keys or ciphertexts survive in {hits:?}",
            n.len()
        );
    }
    let c = env.sql();
    for table in ["subjects", "records", "lookups", "objections"] {
        let n: i64 = c
            .query_row(
                &format!("SELECT COUNT(*) FROM {table} WHERE controller_id = ?1"),
                [gone.id.as_str()],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(n, 0, "{table} still holds rows of the destroyed controller");
    }
    let status: String = c
        .query_row(
            "SELECT status FROM controllers WHERE id = ?1",
            [gone.id.as_str()],
            |r| r.get(0),
        )
        .expect("status");
    assert_eq!(status, "destroyed");
    // Its principals can do nothing, and the subject ids lead nowhere.
    assert!(
        v.get_subject(&gone.app, &pn("account"), &subjects[0], &ctx())
            .is_err()
    );
    // A second destruction is refused; the certificate stays the first one.
    assert!(v.destroy_controller(&op, &gone.id).is_err());
    assert_eq!(v.certificate(&gone.id).expect("stored"), cert);

    // The other controller is untouched.
    let kept = v
        .get_record(&stays.app, &pn("account"), &other_rec, None, &ctx())
        .expect("the other controller's data is readable");
    assert_eq!(kept.subject, other);
    assert_eq!(
        kept.fields.get(&fname("name")).expect("name").value,
        text("Stella Survivor")
    );
    assert_verifies(v);

    // Any alteration breaks the signature; so does another deployment's key.
    let altered: Vec<(&str, Certificate)> = vec![
        (
            "subjects",
            Certificate {
                subjects: cert.subjects + 1,
                ..cert.clone()
            },
        ),
        (
            "records",
            Certificate {
                records: cert.records - 1,
                ..cert.clone()
            },
        ),
        (
            "controller",
            Certificate {
                controller: stays.id.clone(),
                ..cert.clone()
            },
        ),
        (
            "name",
            Certificate {
                controller_name: "Someone Else SAS".into(),
                ..cert.clone()
            },
        ),
        (
            "time",
            Certificate {
                destroyed_at: cert.destroyed_at + Duration::seconds(1),
                ..cert.clone()
            },
        ),
        (
            "head",
            Certificate {
                audit_chain_seq: cert.audit_chain_seq - 1,
                ..cert.clone()
            },
        ),
        (
            "signature",
            Certificate {
                signature: flip_hex_digit(&cert.signature, 10),
                ..cert.clone()
            },
        ),
    ];
    for (what, c) in altered {
        assert!(
            c.verify(&v.public_key()).is_err(),
            "a certificate with an altered {what} verifies"
        );
    }
    let other_vault = Env::new();
    assert!(cert.verify(&other_vault.vault.public_key()).is_err());
    // Re-signing with another deployment's key does not help against the trusted key.
    let forged = Certificate {
        public_key: other_vault
            .vault
            .public_key()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        ..cert.clone()
    };
    assert!(forged.verify(&v.public_key()).is_err());
}

fn flip_hex_digit(hex: &str, at: usize) -> String {
    let mut chars: Vec<char> = hex.chars().collect();
    chars[at] = if chars[at] == '0' { '1' } else { '0' };
    chars.into_iter().collect()
}

// ---------------------------------------------------------------------------------------
// 3. Legal hold
// ---------------------------------------------------------------------------------------

#[test]
fn a_legal_hold_blocks_processing_and_destruction_until_lifted_all_audited() {
    let env = Env::new();
    let v = &env.vault;
    let t = env.tenant("Held Corp");
    let email = "held.person@example.org";
    let (s, rec) = subject_with(
        v,
        &t.app,
        "account",
        record(&[
            ("name", "user.name", text("Held Person")),
            ("email", "user.contact.email", text(email)),
        ]),
    );
    let op = OperatorGrant::local_cli();

    // The basis is required.
    assert!(matches!(
        v.place_legal_hold(&op, &t.id, "   "),
        Err(VaultError::Invalid(_))
    ));
    let basis = "Tribunal judiciaire de Paris, ordonnance 26/00042";
    assert_eq!(
        v.place_legal_hold(&op, &t.id, basis).expect("place"),
        ControllerStatus::LegalHold
    );
    assert!(
        v.place_legal_hold(&op, &t.id, basis).is_err(),
        "one hold at a time"
    );
    // The controller's own admin sees the hold and its basis in its trail, even sealed.
    let placed = v
        .audit_page(&t.admin, 0, 1000)
        .expect("the admin reads the trail under a hold")
        .entries;
    let entry = placed.last().expect("entry");
    assert_eq!(entry.action, "admin.legal_hold_placed");
    assert_eq!(entry.actor, op.actor());
    assert!(
        entry.fields.contains(&format!("basis:{basis}")),
        "the basis is in the trail: {:?}",
        entry.fields
    );
    assert!(
        entry
            .fields
            .contains(&"status:active->legal_hold".to_owned())
    );

    // Every processing operation is refused and audited as refused.
    let before = head(v, &t.chain());
    let account = pn("account");
    let attempts: Vec<(&str, Result<(), VaultError>)> = vec![
        (
            "consultation",
            v.get_subject(&t.app, &account, &s, &ctx()).map(drop),
        ),
        (
            "retrieval",
            v.get_record(&t.app, &account, &rec, None, &ctx()).map(drop),
        ),
        (
            "retrieval",
            v.lookup(
                &t.app,
                &account,
                LookupQuery {
                    kind: LookupKind::Email,
                    value: email.into(),
                },
                &ctx(),
            )
            .map(drop),
        ),
        (
            "collection",
            v.create_subject(
                &t.app,
                &account,
                NewSubject {
                    category: SubjectCategory::EndUser,
                    record: Some(record(&[("name", "user.name", text("New"))])),
                },
                &ctx(),
            )
            .map(drop),
        ),
        (
            "recording",
            v.add_record(
                &t.app,
                &account,
                &s,
                record(&[("name", "user.name", text("More"))]),
                &ctx(),
            )
            .map(drop),
        ),
        (
            "alteration",
            v.update_record(
                &t.app,
                &account,
                &rec,
                FieldUpdate {
                    fields: record(&[("name", "user.name", text("Changed"))]).fields,
                },
                &ctx(),
            )
            .map(drop),
        ),
        ("erasure", v.delete_record(&t.app, &account, &rec, &ctx())),
        (
            "erasure",
            v.erase_subject(&t.app, &account, &s, &ctx()).map(drop),
        ),
        (
            "disclosure",
            v.export_subject(&t.app, &account, &s, &ctx()).map(drop),
        ),
        (
            "restriction",
            v.set_restriction(&t.app, &account, &s, true, &ctx()),
        ),
    ];
    for (op_name, r) in &attempts {
        assert!(
            matches!(
                r,
                Err(VaultError::Refused(Refusal::ControllerNotActive {
                    status: ControllerStatus::LegalHold
                }))
            ),
            "{op_name} under a hold: {r:?}"
        );
    }
    let refused = trail_after(v, &t.chain(), before);
    assert_eq!(refused.len(), attempts.len(), "{refused:#?}");
    for (e, (op_name, _)) in refused.iter().zip(&attempts) {
        assert_eq!(e.outcome, "refused");
        assert_eq!(&e.action, op_name);
        assert_eq!(e.actor, t.app.actor());
    }
    let json = serde_json::to_string(&refused).expect("json");
    assert!(!json.contains(email) && !json.contains("Held Person"));

    // Destruction is refused too, even once termination had started before the hold.
    v.lift_legal_hold(&op, &t.id).expect("lift");
    v.start_termination(op.actor(), &t.id).expect("start");
    env.advance(Duration::seconds(1));
    v.place_legal_hold(&op, &t.id, basis).expect("place again");
    let before = head(v, &t.chain());
    assert!(matches!(
        v.destroy_controller(&op, &t.id),
        Err(VaultError::Refused(Refusal::ControllerNotActive {
            status: ControllerStatus::LegalHold
        }))
    ));
    let e = trail_after(v, &t.chain(), before);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].action, "destruction");
    assert_eq!(e[0].outcome, "refused");
    let n = sealed_fields(&env.sql(), &t.id).len();
    assert_eq!(n, 2, "nothing destroyed");
    // The hold returns the controller to where it was: terminating, so destruction works.
    assert_eq!(
        v.lift_legal_hold(&op, &t.id).expect("lift"),
        ControllerStatus::Terminating
    );
    let lifted = trail(v, &t.chain());
    assert_eq!(
        lifted.last().expect("entry").action,
        "admin.legal_hold_lifted"
    );
    assert!(v.lift_legal_hold(&op, &t.id).is_err(), "no hold to lift");
    v.destroy_controller(&op, &t.id)
        .expect("destroy after lifting");
    assert_verifies(v);
}

#[test]
fn lifting_a_hold_restores_processing() {
    let env = Env::new();
    let v = &env.vault;
    let t = env.tenant("Lifted Corp");
    let (s, rec) = subject_with(
        v,
        &t.app,
        "account",
        record(&[("name", "user.name", text("Back Again"))]),
    );
    let op = OperatorGrant::local_cli();
    v.place_legal_hold(&op, &t.id, "Preservation order")
        .expect("place");
    assert!(
        v.get_record(&t.app, &pn("account"), &rec, None, &ctx())
            .is_err()
    );
    assert_eq!(
        v.lift_legal_hold(&op, &t.id).expect("lift"),
        ControllerStatus::Active
    );
    let r = v
        .get_record(&t.app, &pn("account"), &rec, None, &ctx())
        .expect("readable again");
    assert_eq!(
        r.fields.get(&fname("name")).expect("name").value,
        text("Back Again")
    );
    add(
        v,
        &t.app,
        "account",
        &s,
        record(&[("name", "user.name", text("Writes work"))]),
    );
    v.export_subject(&t.app, &pn("account"), &s, &ctx())
        .expect("export works");
    v.erase_subject(&t.app, &pn("account"), &s, &ctx())
        .expect("erasure works");
}

// ---------------------------------------------------------------------------------------
// 4. The erasure ledger outside the database
// ---------------------------------------------------------------------------------------

#[test]
fn erasures_are_ledgered_outside_the_database_and_reapply_to_an_older_copy() {
    let env = Env::new();
    let v = &env.vault;
    let t = env.tenant("Ledger SAS");
    let email = "ledgered@example.org";
    let (s, _) = subject_with(
        v,
        &t.app,
        "account",
        record(&[("email", "user.contact.email", text(email))]),
    );
    let (kept, kept_rec) = subject_with(
        v,
        &t.app,
        "account",
        record(&[("name", "user.name", text("Keeps one"))]),
    );
    let dropped = add(
        v,
        &t.app,
        "account",
        &kept,
        record(&[("note", "user.content", text("drop me"))]),
    );

    // An older copy of the database, as a backup would hold it.
    let old = env.dir.path().join("old.db");
    env.sql()
        .execute("VACUUM INTO ?1", [old.to_string_lossy()])
        .expect("copy");

    v.erase_subject(&t.app, &pn("account"), &s, &ctx())
        .expect("erase");
    v.delete_record(&t.app, &pn("account"), &dropped, &ctx())
        .expect("delete");
    let ledger =
        custodian_vault::ledger::read(&env.checkpoint_dir()).expect("the ledger is readable");
    assert_eq!(ledger.len(), 2, "{ledger:?}");
    assert_eq!(
        (&ledger[0].subject, &ledger[0].record),
        (&s, &None),
        "a subject erasure"
    );
    assert_eq!(
        (&ledger[1].subject, ledger[1].record.as_ref()),
        (&kept, Some(&dropped)),
        "a record erasure"
    );
    let raw = std::fs::read_to_string(
        env.checkpoint_dir()
            .join(custodian_vault::ledger::LEDGER_FILE),
    )
    .expect("raw ledger");
    assert!(!raw.contains(email) && !raw.contains("drop me"), "{raw}");

    // The older copy brings them back until the ledger is re-applied to it.
    let restored = open_vault(
        &old,
        &env.dir.path().join("cp-old"),
        &env.clock,
        // The same deployment: the root key is not part of a backup.
        &env.root,
    );
    assert!(
        restored
            .get_subject(&t.app, &pn("account"), &s, &ctx())
            .is_ok()
    );
    assert!(readable(&restored, &t.app, &dropped));
    assert_eq!(
        restored.reapply_erasures(&ledger).expect("re-apply"),
        (1, 1)
    );
    assert!(matches!(
        restored.get_subject(&t.app, &pn("account"), &s, &ctx()),
        Err(VaultError::Gone)
    ));
    assert!(!readable(&restored, &t.app, &dropped));
    assert!(readable(&restored, &t.app, &kept_rec), "the rest stays");
    let found = restored
        .lookup(
            &t.app,
            &pn("account"),
            LookupQuery {
                kind: LookupKind::Email,
                value: email.to_owned(),
            },
            &ctx(),
        )
        .expect("lookup");
    assert!(found.subjects.is_empty());
    // Audited as erasures by the restore, and idempotent.
    let reapplied: Vec<_> = trail(&restored, &t.chain())
        .into_iter()
        .filter(|e| e.actor == custodian_vault::ledger::RESTORE_ACTOR)
        .collect();
    assert_eq!(reapplied.len(), 2);
    assert!(reapplied.iter().all(|e| e.action == "erasure"));
    assert_eq!(restored.reapply_erasures(&ledger).expect("again"), (0, 0));
    assert_verifies(&restored);
}

#[test]
fn a_destruction_reapplies_to_an_older_copy_and_only_with_this_deployments_signature() {
    let env = Env::new();
    let v = &env.vault;
    let gone = env.tenant("Reapplied SAS");
    let stays = env.tenant("Bystander SAS");
    let (s, _) = subject_with(
        v,
        &gone.app,
        "account",
        record(&[("name", "user.name", text("Once Destroyed"))]),
    );
    let (_, kept) = subject_with(
        v,
        &stays.app,
        "account",
        record(&[("name", "user.name", text("Still Here"))]),
    );
    let old = env.dir.path().join("old.db");
    env.sql()
        .execute("VACUUM INTO ?1", [old.to_string_lossy()])
        .expect("copy");
    let op = OperatorGrant::local_cli();
    v.start_termination(op.actor(), &gone.id).expect("start");
    let cert = v.destroy_controller(&op, &gone.id).expect("destroy");
    let ledger = custodian_vault::ledger::read_destructions(&env.checkpoint_dir()).expect("read");

    let restored = open_vault(&old, &env.dir.path().join("cp-old"), &env.clock, &env.root);
    assert!(
        restored
            .get_subject(&gone.app, &pn("account"), &s, &ctx())
            .is_ok()
    );
    // A certificate signed by another deployment destroys nothing.
    let other = Env::new();
    let forged_target = Certificate {
        controller: stays.id.clone(),
        ..cert.clone()
    };
    let other_t = other.tenant("Elsewhere");
    other
        .vault
        .start_termination(op.actor(), &other_t.id)
        .expect("start elsewhere");
    let foreign = other
        .vault
        .destroy_controller(&op, &other_t.id)
        .expect("destroy elsewhere");
    let foreign = Certificate {
        controller: stays.id.clone(),
        ..foreign
    };
    assert_eq!(
        restored
            .reapply_destructions(&[forged_target, foreign])
            .expect("re-apply"),
        0
    );
    assert!(readable(&restored, &stays.app, &kept));

    assert_eq!(restored.reapply_destructions(&ledger).expect("re-apply"), 1);
    assert!(
        restored
            .get_subject(&gone.app, &pn("account"), &s, &ctx())
            .is_err()
    );
    assert_eq!(restored.certificate(&gone.id).expect("certificate"), cert);
    let c = Connection::open(&old).expect("open copy");
    let n: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM subjects WHERE controller_id = ?1",
            [gone.id.as_str()],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(n, 0);
    let key: Vec<u8> = c
        .query_row(
            "SELECT wrapped_key FROM controllers WHERE id = ?1",
            [gone.id.as_str()],
            |r| r.get(0),
        )
        .expect("key");
    assert!(key.is_empty(), "the controller key is shredded again");
    let again: Vec<_> = trail(&restored, &gone.chain())
        .into_iter()
        .filter(|e| e.action == "destruction" && e.outcome == "allowed")
        .collect();
    assert_eq!(
        again.len(),
        1,
        "the older copy had no destruction; now it has one"
    );
    assert_eq!(again[0].actor, custodian_vault::ledger::RESTORE_ACTOR);
    assert!(readable(&restored, &stays.app, &kept), "others untouched");
    assert_eq!(restored.reapply_destructions(&ledger).expect("again"), 0);
    assert_verifies(&restored);
}

// ---------------------------------------------------------------------------------------
// Tokens checked recently are not read again (token_cache)
// ---------------------------------------------------------------------------------------

/// A new application token of `t`'s controller, valid for `seconds`: its secret and id.
fn app_token(env: &Env, t: &Tenant, seconds: u32) -> (SecretString, custodian_core::ids::TokenId) {
    let issued = env
        .vault
        .issue_token(
            &t.admin,
            NewToken {
                role: Role::ControllerApp,
                controller: None,
                purposes: None,
                operations: None,
                label: "cached".into(),
                expires_in_seconds: seconds,
            },
            &ctx(),
        )
        .expect("issue a token");
    (SecretString::from(issued.secret), issued.token.id)
}

#[test]
fn a_token_revoked_through_this_vault_is_refused_at_once() {
    let env = Env::new();
    let t = env.tenant("Cached SAS");
    let (secret, id) = app_token(&env, &t, 3600);
    let v = &env.vault;
    v.authenticate(&secret).expect("authenticates");
    assert!(
        v.authenticate_without_store(&secret).is_some(),
        "now known without the store"
    );
    v.revoke_token(&t.admin, &id, &ctx()).expect("revoke");
    // Same instant: the entry read before the revocation is not trusted any more.
    assert!(v.authenticate_without_store(&secret).is_none());
    assert!(matches!(
        v.authenticate(&secret),
        Err(VaultError::Unauthenticated)
    ));
    assert!(matches!(
        v.authenticate_without_store(&SecretString::from("cst_app_not-a-token".to_owned())),
        Some(Err(VaultError::Unauthenticated))
    ));
}

#[test]
fn a_token_revoked_on_another_node_is_refused_within_a_second() {
    let env = Env::new();
    let t = env.tenant("Two Nodes SAS");
    let (secret, id) = app_token(&env, &t, 3600);
    env.vault
        .authenticate(&secret)
        .expect("node A checks the token");
    let node_b = open_vault(&env.db, &env.checkpoint_dir(), &env.clock, &env.root);
    node_b
        .revoke_token(&t.admin, &id, &ctx())
        .expect("node B revokes it");
    assert!(
        matches!(
            node_b.authenticate(&secret),
            Err(VaultError::Unauthenticated)
        ),
        "node B refuses it at once"
    );
    // The bound the cache documents: node A trusts what it read for at most FRESH_FOR.
    env.clock.advance(Duration::milliseconds(500));
    assert!(
        env.vault.authenticate(&secret).is_ok(),
        "still within the second"
    );
    env.clock
        .advance(custodian_vault::token_cache::FRESH_FOR - Duration::milliseconds(500));
    assert!(matches!(
        env.vault.authenticate(&secret),
        Err(VaultError::Unauthenticated)
    ));
}

#[test]
fn a_remembered_token_still_expires_on_time() {
    let env = Env::new();
    let t = env.tenant("Expiring SAS");
    let (secret, _) = app_token(&env, &t, 60);
    env.clock
        .advance(Duration::seconds(60) - Duration::milliseconds(100));
    env.vault
        .authenticate(&secret)
        .expect("valid for 100 ms more");
    env.clock.advance(Duration::milliseconds(100));
    assert!(matches!(
        env.vault.authenticate_without_store(&secret),
        Some(Err(VaultError::Unauthenticated))
    ));
}

#[test]
fn a_destroyed_controllers_tokens_are_refused_at_once() {
    let env = Env::new();
    let t = env.tenant("Destroyed SAS");
    let (secret, _) = app_token(&env, &t, 3600);
    let v = &env.vault;
    v.authenticate(&secret).expect("authenticates");
    let op = OperatorGrant::local_cli();
    v.start_termination(op.actor(), &t.id).expect("start");
    v.destroy_controller(&op, &t.id).expect("destroy");
    assert!(matches!(
        env.vault.authenticate(&secret),
        Err(VaultError::Unauthenticated)
    ));
}
