//! End-to-end tests of the `Vault` API on a real SQLite file in a temporary directory.
//!
//! Each test states one promise of the DPA that the vault must keep, and checks it from the
//! outside: through the API, by reading the database with `rusqlite` behind the vault's
//! back, and by scanning the raw bytes of the database files.

use custodian_core::audit::ChainId;
use custodian_core::category::{DataCategory, SubjectCategory};
use custodian_core::controller::ControllerName;
use custodian_core::ids::{ControllerId, RecordId, SubjectId, TokenId};
use custodian_core::lookup::LookupKind;
use custodian_core::operation::Operation;
use custodian_core::policy::{OperatorGrant, Refusal};
use custodian_core::principal::{Principal, Role};
use custodian_core::purpose::{LawfulBasis, Purpose, PurposeName};
use custodian_core::record::{FieldInput, FieldName, FieldValue, RecordMeta};
use custodian_core::region::{MemberState, Region, RegionId};
use custodian_crypto::keys::RootKey;
use custodian_store::sqlite::SqliteStore;
use custodian_vault::verify::{VerifyReport, verify_chains};
use custodian_vault::views::{
    AuditEntryView, FieldUpdate, LookupQuery, NewController, NewRecord, NewSubject, NewToken,
    RecordView,
};
use custodian_vault::{CallContext, SystemClock, Vault, VaultError};
use rusqlite::{Connection, params};
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------

/// A vault on its own SQLite file, with its checkpoint directory beside it.
struct Env {
    dir: tempfile::TempDir,
    db: PathBuf,
    vault: Vault,
}

impl Env {
    fn new() -> Self {
        Self::with_purge_delay(custodian_vault::purger::DEFAULT_DELAY)
    }

    /// A vault whose erasures leave the files `delay` after they answer (see `purger`).
    fn with_purge_delay(delay: std::time::Duration) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("custodian.db");
        let store = SqliteStore::open(&db).expect("open the store");
        let vault = Vault::new(
            Arc::new(store),
            RootKey::generate(1).expect("root key"),
            Arc::new(SystemClock),
            Region::defaults(),
            Some(dir.path().join("checkpoints")),
        )
        .with_purge_delay(delay);
        Self { dir, db, vault }
    }

    fn checkpoint_dir(&self) -> PathBuf {
        self.dir.path().join("checkpoints")
    }

    /// A direct connection to the database, as an attacker or a forensic check would open it.
    fn sql(&self) -> Connection {
        let c = Connection::open(&self.db).expect("open the database directly");
        c.busy_timeout(std::time::Duration::from_secs(10))
            .expect("busy timeout");
        c
    }

    /// One controller with an admin and an application principal, and two purposes:
    /// `account` (every personal-data category, every operation the tests use) and
    /// `support` (contact information only, retrieval only).
    fn tenant(&self, name: &str) -> Tenant {
        let v = &self.vault;
        let ctx = CallContext::default();
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
                &ctx,
            )
            .expect("create controller");
        let adm = v
            .issue_token_locally(
                &grant,
                Role::ControllerAdmin,
                Some(controller.id.clone()),
                "first admin",
                3600,
            )
            .expect("issue admin token");
        let admin_secret = SecretString::from(adm.secret.clone());
        let admin = v.authenticate(&admin_secret).expect("admin authenticates");
        v.document_purpose(
            &admin,
            purpose(
                "account",
                &["user"],
                &[
                    Operation::Collection,
                    Operation::Recording,
                    Operation::Alteration,
                    Operation::Retrieval,
                    Operation::Consultation,
                    Operation::Erasure,
                    Operation::Restriction,
                ],
            ),
            &ctx,
        )
        .expect("document account");
        v.document_purpose(
            &admin,
            purpose("support", &["user.contact"], &[Operation::Retrieval]),
            &ctx,
        )
        .expect("document support");
        let app_token = v
            .issue_token(
                &admin,
                NewToken {
                    role: Role::ControllerApp,
                    controller: None,
                    purposes: None,
                    operations: None,
                    label: "application".into(),
                    expires_in_seconds: 3600,
                },
                &ctx,
            )
            .expect("issue app token");
        let app_secret = SecretString::from(app_token.secret.clone());
        let app = v.authenticate(&app_secret).expect("app authenticates");
        Tenant {
            id: controller.id,
            admin,
            admin_token: adm.token.id,
            app,
            app_token: app_token.token.id,
            app_secret,
        }
    }
}

struct Tenant {
    id: ControllerId,
    admin: Principal,
    admin_token: TokenId,
    app: Principal,
    app_token: TokenId,
    app_secret: SecretString,
}

impl Tenant {
    fn chain(&self) -> ChainId {
        ChainId::Controller(self.id.clone())
    }
}

fn purpose(name: &str, categories: &[&str], ops: &[Operation]) -> Purpose {
    Purpose {
        name: pn(name),
        description: format!("test purpose {name}"),
        lawful_basis: LawfulBasis::Contract,
        categories: categories
            .iter()
            .map(|c| DataCategory::parse(c).expect("catalogued category"))
            .collect(),
        operations: ops.iter().copied().collect(),
        retention_days: 30,
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

fn fields(items: &[(&str, &str, FieldValue)]) -> BTreeMap<FieldName, FieldInput> {
    items
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
        .collect()
}

fn record(items: &[(&str, &str, FieldValue)]) -> NewRecord {
    NewRecord {
        fields: fields(items),
        meta: RecordMeta::default(),
        expires_at: None,
    }
}

fn ctx() -> CallContext {
    CallContext::default()
}

/// Creates an end-user subject with one record under `account`.
fn new_subject(
    v: &Vault,
    app: &Principal,
    items: &[(&str, &str, FieldValue)],
) -> (SubjectId, RecordId) {
    let created = v
        .create_subject(
            app,
            &pn("account"),
            NewSubject {
                category: SubjectCategory::EndUser,
                record: Some(record(items)),
            },
            &ctx(),
        )
        .expect("create subject");
    let rec = created.record.expect("first record id");
    (created.id, rec)
}

fn field_value<'a>(r: &'a RecordView, name: &str) -> &'a FieldValue {
    &r.fields.get(&fname(name)).expect("field present").value
}

/// Every entry of a controller's trail after `after`, read as its admin.
fn trail_after(v: &Vault, admin: &Principal, after: u64) -> Vec<AuditEntryView> {
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let page = v.audit_page(admin, cursor, 1000).expect("audit page");
        out.extend(page.entries);
        match page.next_after {
            Some(n) => cursor = n,
            None => return out,
        }
    }
}

fn last_seq(v: &Vault, admin: &Principal) -> u64 {
    trail_after(v, admin, 0).last().map_or(0, |e| e.seq)
}

fn count(c: &Connection, sql: &str, p: impl rusqlite::Params) -> i64 {
    c.query_row(sql, p, |r| r.get(0)).expect("count query")
}

/// The fields of the records matching `filter`, as stored (a record's fields are one
/// column of its row).
fn stored_fields(
    c: &Connection,
    filter: &str,
    p: impl rusqlite::Params,
) -> Vec<custodian_store::rows::FieldRow> {
    custodian_store::sqlite::stored_fields(c, filter, p).expect("fields")
}

fn field_count(c: &Connection) -> i64 {
    stored_fields(c, "1", []).len() as i64
}

// ---------------------------------------------------------------------------------------
// Byte scanning of the database files
// ---------------------------------------------------------------------------------------

/// The database file and its companions, whichever exist right now.
fn db_files(db: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", db.display())))
        .filter(|p| p.exists())
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    assert!(!needle.is_empty(), "empty needle");
    if hay.len() < needle.len() {
        return false;
    }
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|&b| b == needle[0]) {
            None => return false,
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return true;
                }
                i += 1;
            }
        }
    }
    false
}

/// Which of the database files hold `needle`.
fn files_holding(db: &Path, needle: &[u8]) -> Vec<PathBuf> {
    db_files(db)
        .into_iter()
        .filter(|f| contains(&std::fs::read(f).expect("read db file"), needle))
        .collect()
}

/// A ciphertext or wrapped key, and 16-byte windows of it, so that a partial copy of it
/// (a page split, an old WAL frame) is caught as well as a whole one.
fn blob_needles(blob: &[u8], skip_header: usize) -> Vec<Vec<u8>> {
    let mut out = vec![blob.to_vec()];
    let body = &blob[skip_header..];
    out.extend(body.chunks_exact(16).map(<[u8]>::to_vec));
    if body.len() >= 16 {
        out.push(body[body.len() - 16..].to_vec());
    }
    out
}

// ---------------------------------------------------------------------------------------
// 1. Purpose limitation
// ---------------------------------------------------------------------------------------

/// A new record is answered from what was written, and that answer is exactly what a
/// retrieval and a consultation read back: fields (in name order, with a lookup field among
/// them), metadata, times and expiry.
#[test]
fn a_new_record_is_answered_as_it_is_read_back() {
    let env = Env::new();
    let v = &env.vault;
    let t = env.tenant("Acme");
    let (subject, _) = new_subject(v, &t.app, &[("name", "user.name", text("Ada Roundtrip"))]);
    let mut input = record(&[
        ("zeta", "user.content.private", text("last by name")),
        (
            "email",
            "user.contact.email",
            text("Ada.Roundtrip@Example.org"),
        ),
        ("alpha", "user.name", text("first by name")),
    ]);
    input.meta = RecordMeta {
        source: Some("support call".into()),
        recipients: vec!["courier".into(), "auditors".into()],
        automated_decision: Some("none, reviewed by a person".into()),
    };
    let requested = time::OffsetDateTime::now_utc() + time::Duration::days(3);
    input.expires_at = Some(requested);
    let answered = v
        .add_record(&t.app, &pn("account"), &subject, input, &ctx())
        .expect("add record");
    assert_eq!(answered.expires_at, requested);
    let names: Vec<&str> = answered.fields.keys().map(FieldName::as_str).collect();
    assert_eq!(names, ["alpha", "email", "zeta"]);
    let retrieved = v
        .get_record(&t.app, &pn("account"), &answered.id, None, &ctx())
        .expect("retrieve");
    assert_eq!(retrieved, answered);
    let consulted = v
        .get_subject(&t.app, &pn("account"), &subject, &ctx())
        .expect("consult");
    assert_eq!(
        consulted.records.iter().find(|r| r.id == answered.id),
        Some(&answered)
    );
}

#[test]
fn retrieval_outside_the_purpose_categories_is_refused_and_audited_without_values() {
    let env = Env::new();
    let v = &env.vault;
    let t = env.tenant("Acme");
    let iban = "FR7630006000011234567890189";
    let email = "purpose.canary@example.org";
    let (subject, rec) = new_subject(
        v,
        &t.app,
        &[
            ("email", "user.contact.email", text(email)),
            ("iban", "user.financial.bank_account", text(iban)),
        ],
    );
    // Under the broad purpose the record is readable, so the refusal below is the
    // purpose's doing and not some other failure.
    let full = v
        .get_record(&t.app, &pn("account"), &rec, None, &ctx())
        .expect("readable under account");
    assert_eq!(field_value(&full, "iban"), &text(iban));

    let before = last_seq(v, &t.admin);
    let err = v
        .get_record(&t.app, &pn("support"), &rec, None, &ctx())
        .expect_err("support may not read a bank account");
    match &err {
        VaultError::Refused(Refusal::PurposeForbidsCategories { purpose, fields }) => {
            assert_eq!(purpose, &pn("support"));
            assert_eq!(fields, &vec!["iban".to_owned()], "names the field, only it");
        }
        other => panic!("expected PurposeForbidsCategories, got {other:?}"),
    }
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(iban) && !shown.contains(email), "{shown}");

    let new = trail_after(v, &t.admin, before);
    assert_eq!(new.len(), 1, "exactly one new audit entry: {new:?}");
    let e = &new[0];
    assert_eq!(e.outcome, "refused");
    assert_eq!(e.action, "retrieval");
    assert_eq!(e.purpose, Some(pn("support")));
    assert_eq!(e.subject.as_ref(), Some(&subject));
    assert_eq!(e.record.as_ref(), Some(&rec));
    assert!(
        e.fields.iter().any(|f| f == "iban"),
        "fields: {:?}",
        e.fields
    );
    assert!(
        e.reason.as_deref().is_some_and(|r| r.contains("iban")),
        "reason names the field: {:?}",
        e.reason
    );
    let json = serde_json::to_string(e).expect("serialise entry");
    for value in [iban, email, "7630006000011234567890189"] {
        assert!(!json.contains(value), "audit entry holds a value: {json}");
    }

    // Narrowing the request to the contact fields makes the same call lawful.
    let only = [fname("email")];
    let narrowed = v
        .get_record(&t.app, &pn("support"), &rec, Some(&only), &ctx())
        .expect("email alone is within support");
    assert_eq!(narrowed.fields.len(), 1);
    assert_eq!(field_value(&narrowed, "email"), &text(email));
}

// ---------------------------------------------------------------------------------------
// 2. Encryption at rest
// ---------------------------------------------------------------------------------------

#[test]
fn personal_data_never_reaches_the_database_files_in_clear() {
    let env = Env::new();
    let db = env.db.clone();
    let name = "Zyxqanary Quillbottom";
    let email_in = "Zyx.Canary@Example.org";
    let email = "zyx.canary@example.org";
    let phone_in = "+33 6 12 34 56 78";
    let phone = "+33612345678";
    let note = "Zyxqanary diary: Quillbottom likes turnips";
    let renamed = "Zyxqanary Quillbottom-Ferncastle";

    let subject;
    {
        let v = &env.vault;
        let t = env.tenant("Acme");
        let (s, rec) = new_subject(
            v,
            &t.app,
            &[
                ("name", "user.name", text(name)),
                ("email", "user.contact.email", text(email_in)),
                ("phone", "user.contact.phone_number", text(phone_in)),
            ],
        );
        subject = s;
        let second = v
            .add_record(
                &t.app,
                &pn("account"),
                &subject,
                record(&[("diary", "user.content.private", text(note))]),
                &ctx(),
            )
            .expect("add record");
        let updated = v
            .update_record(
                &t.app,
                &pn("account"),
                &rec,
                FieldUpdate {
                    fields: fields(&[("alias", "user.name", text(renamed))]),
                },
                &ctx(),
            )
            .expect("update record");
        assert_eq!(field_value(&updated, "alias"), &text(renamed));

        // Readable back through the vault: the canaries really were stored.
        let view = v
            .get_subject(&t.app, &pn("account"), &subject, &ctx())
            .expect("get subject");
        let first = view.records.iter().find(|r| r.id == rec).expect("record");
        assert_eq!(field_value(first, "name"), &text(name));
        assert_eq!(field_value(first, "email"), &text(email));
        assert_eq!(field_value(first, "phone"), &text(phone));
        assert_eq!(field_value(first, "alias"), &text(renamed));
        let diary = view
            .records
            .iter()
            .find(|r| r.id == second.id)
            .expect("second record");
        assert_eq!(field_value(diary, "diary"), &text(note));
        let found = v
            .lookup(
                &t.app,
                &pn("account"),
                LookupQuery {
                    kind: LookupKind::Email,
                    value: email_in.to_owned(),
                },
                &ctx(),
            )
            .expect("lookup by email");
        assert_eq!(found.subjects, vec![subject.clone()]);
        let found = v
            .lookup(
                &t.app,
                &pn("account"),
                LookupQuery {
                    kind: LookupKind::Phone,
                    value: phone.to_owned(),
                },
                &ctx(),
            )
            .expect("lookup by phone");
        assert_eq!(found.subjects, vec![subject.clone()]);
    }

    let canaries: Vec<String> = [
        name,
        "Zyxqanary",
        "Quillbottom",
        "Ferncastle",
        "turnips",
        email_in,
        email,
        "zyx.canary",
        phone_in,
        phone,
        "33612345678",
        "612345678",
    ]
    .iter()
    .flat_map(|c| [c.to_string(), c.to_lowercase(), c.to_uppercase()])
    .collect();

    let scan = |when: &str| {
        let files = db_files(&db);
        assert!(
            files.iter().any(|f| f == &db),
            "{when}: database file missing"
        );
        // The scanner finds what is in clear: the pseudonymous subject id is.
        assert!(
            !files_holding(&db, subject.as_str().as_bytes()).is_empty(),
            "{when}: scanner does not see the subject id, so it would not see values either"
        );
        for c in &canaries {
            let hits = files_holding(&db, c.as_bytes());
            assert!(hits.is_empty(), "{when}: {c:?} found in clear in {hits:?}");
        }
    };
    scan("while open");
    drop(env.vault);
    scan("after close");
}

// ---------------------------------------------------------------------------------------
// 3. Erasure
// ---------------------------------------------------------------------------------------

#[test]
fn erasure_removes_every_trace_and_is_idempotent() {
    // An hour: the erased bytes are looked for before the purge and after it.
    let env = Env::with_purge_delay(std::time::Duration::from_secs(3600));
    let v = &env.vault;
    let t = env.tenant("Acme");
    let email = "erase.me@example.org";
    let phone = "+33 6 99 88 77 66";
    let (s, rec1) = new_subject(
        v,
        &t.app,
        &[
            ("name", "user.name", text("Erasmus Gonewright")),
            ("email", "user.contact.email", text(email)),
            ("phone", "user.contact.phone_number", text(phone)),
        ],
    );
    let rec2 = v
        .add_record(
            &t.app,
            &pn("account"),
            &s,
            record(&[
                ("address", "user.contact.address", text("1 Rue du Néant")),
                (
                    "iban",
                    "user.financial.bank_account",
                    text("FR7612345000019876543210987"),
                ),
            ]),
            &ctx(),
        )
        .expect("second record")
        .id;
    // A bystander whose data must survive.
    let (other, other_rec) = new_subject(
        v,
        &t.app,
        &[
            ("name", "user.name", text("Stella Staysworth")),
            ("email", "user.contact.email", text("stay@example.org")),
        ],
    );

    // Capture, behind the vault's back, the bytes that erasure must destroy.
    let (wrapped_key, sealed, digests) = {
        let c = env.sql();
        let wrapped: Vec<u8> = c
            .query_row(
                "SELECT wrapped_key FROM subjects WHERE id = ?1",
                [s.as_str()],
                |r| r.get(0),
            )
            .expect("wrapped key");
        let sealed: Vec<Vec<u8>> = stored_fields(&c, "subject_id = ?1", [s.as_str()])
            .into_iter()
            .map(|f| f.sealed)
            .collect();
        let mut st = c
            .prepare("SELECT digest FROM lookups WHERE subject_id = ?1")
            .expect("prepare");
        let digests: Vec<Vec<u8>> = st
            .query_map([s.as_str()], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        (wrapped, sealed, digests)
    };
    assert_eq!(wrapped_key.len(), 64, "version + nonce + key + tag");
    assert_eq!(sealed.len(), 5, "five field ciphertexts");
    assert_eq!(digests.len(), 2, "email and phone are indexed");
    let mut needles = blob_needles(&wrapped_key, 4);
    for b in &sealed {
        needles.extend(blob_needles(b, 0));
    }
    needles.extend(digests.iter().cloned());
    // The scan can see them before erasure, so its silence afterwards means something.
    for n in &needles {
        assert!(
            !files_holding(&env.db, n).is_empty(),
            "a captured blob is not in the files before erasure"
        );
    }

    let receipt = v
        .erase_subject(&t.app, &pn("account"), &s, &ctx())
        .expect("erase");
    assert!(receipt.erased_now);
    assert_eq!(receipt.subject, s);
    assert_eq!(
        (receipt.records, receipt.fields, receipt.lookup_entries),
        (2, 5, 2)
    );

    assert!(matches!(
        v.get_subject(&t.app, &pn("account"), &s, &ctx()),
        Err(VaultError::Gone)
    ));
    for rec in [&rec1, &rec2] {
        let r = v.get_record(&t.app, &pn("account"), rec, None, &ctx());
        assert!(
            matches!(r, Err(VaultError::NotFound | VaultError::Gone)),
            "{r:?}"
        );
    }
    for (kind, value) in [(LookupKind::Email, email), (LookupKind::Phone, phone)] {
        let found = v
            .lookup(
                &t.app,
                &pn("account"),
                LookupQuery {
                    kind,
                    value: value.to_owned(),
                },
                &ctx(),
            )
            .expect("lookup");
        assert!(found.subjects.is_empty(), "{kind:?} still finds someone");
    }
    let again = v
        .erase_subject(&t.app, &pn("account"), &s, &ctx())
        .expect("erasing again succeeds");
    assert!(!again.erased_now);
    assert_eq!(
        (again.records, again.fields, again.lookup_entries),
        (0, 0, 0)
    );

    // The bystander is untouched.
    let kept = v
        .get_record(&t.app, &pn("account"), &other_rec, None, &ctx())
        .expect("bystander readable");
    assert_eq!(field_value(&kept, "name"), &text("Stella Staysworth"));
    assert_eq!(kept.subject, other);

    // No row anywhere still points at the subject or its records.
    {
        let c = env.sql();
        let sid = s.as_str();
        assert_eq!(
            count(&c, "SELECT COUNT(*) FROM subjects WHERE id = ?1", [sid]),
            0
        );
        assert_eq!(
            count(
                &c,
                "SELECT COUNT(*) FROM records WHERE subject_id = ?1 OR id IN (?2, ?3)",
                params![sid, rec1.as_str(), rec2.as_str()]
            ),
            0
        );
        assert!(
            stored_fields(&c, "id IN (?1, ?2)", params![rec1.as_str(), rec2.as_str()]).is_empty()
        );
        assert_eq!(
            count(
                &c,
                "SELECT COUNT(*) FROM lookups WHERE subject_id = ?1 OR record_id IN (?2, ?3)",
                params![sid, rec1.as_str(), rec2.as_str()]
            ),
            0
        );
        assert_eq!(
            count(
                &c,
                "SELECT COUNT(*) FROM objections WHERE subject_id = ?1",
                [sid]
            ),
            0
        );
        assert_eq!(
            count(
                &c,
                "SELECT COUNT(*) FROM erasures WHERE subject_id = ?1",
                [sid]
            ),
            1,
            "the erasure ledger keeps the pseudonym"
        );
    }

    // The erasure answered before its purge ran: the files still hold what it deleted
    // (in the WAL's old frames) until the purge, at most the purge delay later.
    assert!(
        needles
            .iter()
            .any(|n| !files_holding(&env.db, n).is_empty()),
        "the erasure purged the files before it answered, despite the delay"
    );
    v.purge_erased_now();
    // Crypto-shredding: the key and ciphertexts are gone from every file, WAL included.
    for n in &needles {
        let hits = files_holding(&env.db, n);
        assert!(
            hits.is_empty(),
            "{} bytes of an erased subject's key/ciphertext/digest survive in {hits:?}",
            n.len()
        );
    }

    // The trail records the erasure and still verifies.
    let report = v.verify(None).expect("verify");
    assert!(report.ok(), "{:?}", report.problems);
    let trail = trail_after(v, &t.admin, 0);
    let erasure = trail
        .iter()
        .find(|e| e.seq == receipt.audit_seq)
        .expect("receipt names an entry");
    assert_eq!(erasure.action, "erasure");
    assert_eq!(erasure.outcome, "allowed");
    assert_eq!(erasure.subject.as_ref(), Some(&s));
    assert!(
        trail
            .iter()
            .any(|e| e.seq == again.audit_seq && e.action == "erasure"),
        "the repeated erasure is audited too"
    );
}

#[test]
fn an_erasure_not_yet_purged_is_purged_when_its_vault_is_dropped() {
    let env = Env::with_purge_delay(std::time::Duration::from_secs(3600));
    let t = env.tenant("Acme");
    let (s, _) = new_subject(
        &env.vault,
        &t.app,
        &[("email", "user.contact.email", text("dropped@example.org"))],
    );
    let wrapped_key: Vec<u8> = env
        .sql()
        .query_row(
            "SELECT wrapped_key FROM subjects WHERE id = ?1",
            [s.as_str()],
            |r| r.get(0),
        )
        .expect("wrapped key");
    let needles = blob_needles(&wrapped_key, 4);
    env.vault
        .erase_subject(&t.app, &pn("account"), &s, &ctx())
        .expect("erase");
    assert!(
        needles
            .iter()
            .any(|n| !files_holding(&env.db, n).is_empty()),
        "not purged yet: an hour is not up"
    );
    // The store stays open: closing SQLite's last connection would checkpoint the WAL and
    // delete it, whether or not the vault purged.
    let store = env.vault.store().clone();
    let Env { dir, db, vault } = env;
    drop(vault);
    for n in &needles {
        let hits = files_holding(&db, n);
        assert!(
            hits.is_empty(),
            "the erased key survives the vault in {hits:?}"
        );
    }
    drop((store, dir));
}

// ---------------------------------------------------------------------------------------
// 4. No audit entry, no operation
// ---------------------------------------------------------------------------------------

#[test]
fn operations_fail_closed_when_the_audit_trail_cannot_be_written() {
    let env = Env::new();
    let v = &env.vault;
    let t = env.tenant("Acme");
    let (s, rec) = new_subject(
        v,
        &t.app,
        &[
            ("name", "user.name", text("Alice Original")),
            ("email", "user.contact.email", text("alice@example.org")),
        ],
    );
    let before = v
        .get_record(&t.app, &pn("account"), &rec, None, &ctx())
        .expect("read before");
    let (subjects_before, records_before, fields_before, audit_before) = {
        let c = env.sql();
        (
            count(&c, "SELECT COUNT(*) FROM subjects", []),
            count(&c, "SELECT COUNT(*) FROM records", []),
            field_count(&c),
            count(&c, "SELECT COUNT(*) FROM audit_entries", []),
        )
    };

    env.sql()
        .execute_batch(
            "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_entries
             BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END;",
        )
        .expect("inject failure");

    let fails = |what: &str, r: Result<(), VaultError>| match r {
        Err(VaultError::Internal(_) | VaultError::Unavailable(_)) => {}
        other => panic!("{what}: expected a storage failure, got {other:?}"),
    };
    fails(
        "update_record",
        v.update_record(
            &t.app,
            &pn("account"),
            &rec,
            FieldUpdate {
                fields: fields(&[("name", "user.name", text("Mallory Changed"))]),
            },
            &ctx(),
        )
        .map(drop),
    );
    fails(
        "add_record",
        v.add_record(
            &t.app,
            &pn("account"),
            &s,
            record(&[("note", "user.content", text("should not exist"))]),
            &ctx(),
        )
        .map(drop),
    );
    fails(
        "create_subject",
        v.create_subject(
            &t.app,
            &pn("account"),
            NewSubject {
                category: SubjectCategory::Customer,
                record: Some(record(&[("name", "user.name", text("Ghost"))])),
            },
            &ctx(),
        )
        .map(drop),
    );
    fails(
        "delete_record",
        v.delete_record(&t.app, &pn("account"), &rec, &ctx()),
    );
    fails(
        "erase_subject",
        v.erase_subject(&t.app, &pn("account"), &s, &ctx())
            .map(drop),
    );
    fails(
        "set_restriction",
        v.set_restriction(&t.app, &pn("account"), &s, true, &ctx()),
    );
    // Reading is processing too: an unaudited read is refused.
    fails(
        "get_record",
        v.get_record(&t.app, &pn("account"), &rec, None, &ctx())
            .map(drop),
    );

    env.sql()
        .execute_batch("DROP TRIGGER fail_audit;")
        .expect("remove failure");

    {
        let c = env.sql();
        assert_eq!(
            count(&c, "SELECT COUNT(*) FROM subjects", []),
            subjects_before
        );
        assert_eq!(
            count(&c, "SELECT COUNT(*) FROM records", []),
            records_before
        );
        assert_eq!(field_count(&c), fields_before);
        assert_eq!(
            count(&c, "SELECT COUNT(*) FROM audit_entries", []),
            audit_before
        );
        assert_eq!(
            count(&c, "SELECT COUNT(*) FROM erasures", []),
            0,
            "no erasure was recorded"
        );
    }
    let after = v
        .get_record(&t.app, &pn("account"), &rec, None, &ctx())
        .expect("read after");
    assert_eq!(after, before, "the record is exactly as it was");
    let view = v
        .get_subject(&t.app, &pn("account"), &s, &ctx())
        .expect("subject after");
    assert_eq!(view.records.len(), 1, "no new record");
    assert!(!view.restricted);
    let report = v.verify(None).expect("verify");
    assert!(report.ok(), "{:?}", report.problems);
}

// ---------------------------------------------------------------------------------------
// 5. Tamper evidence
// ---------------------------------------------------------------------------------------

/// A controller chain of a dozen entries, checkpointed (in the database and in the
/// checkpoint directory). Returns the environment, the tenant and the chain's last seq.
fn chained() -> (Env, Tenant, u64) {
    let env = Env::new();
    let t = env.tenant("Acme");
    {
        let v = &env.vault;
        let (s, rec) = new_subject(
            v,
            &t.app,
            &[
                ("name", "user.name", text("Chain Linkworth")),
                ("email", "user.contact.email", text("chain@example.org")),
            ],
        );
        v.get_subject(&t.app, &pn("account"), &s, &ctx())
            .expect("consult");
        v.update_record(
            &t.app,
            &pn("account"),
            &rec,
            FieldUpdate {
                fields: fields(&[("name", "user.name", text("Chain Linkworth II"))]),
            },
            &ctx(),
        )
        .expect("alter");
        let _ = v.get_record(&t.app, &pn("support"), &rec, None, &ctx()); // refused
        v.get_record(&t.app, &pn("account"), &rec, None, &ctx())
            .expect("retrieve");
        let (s2, _) = new_subject(v, &t.app, &[("name", "user.name", text("Second Person"))]);
        v.set_restriction(&t.app, &pn("account"), &s2, true, &ctx())
            .expect("restrict");
        v.erase_subject(&t.app, &pn("account"), &s2, &ctx())
            .expect("erase");
    }
    let last = last_seq(&env.vault, &t.admin);
    assert!(last >= 10, "chain too short: {last}");
    let made = env.vault.checkpoint().expect("checkpoint");
    assert!(
        made.iter()
            .any(|cp| cp.chain == t.chain() && cp.seq == last),
        "the controller chain was checkpointed at its head"
    );
    assert!(
        env.checkpoint_dir()
            .join(custodian_vault::checkpoint::file_name(&t.chain()))
            .exists(),
        "checkpoint file written outside the database"
    );
    (env, t, last)
}

/// Drops the append-only triggers, as an attacker with the database file would.
fn attacker(env: &Env) -> Connection {
    let c = env.sql();
    c.execute_batch("DROP TRIGGER audit_entries_no_update; DROP TRIGGER audit_entries_no_delete;")
        .expect("drop append-only triggers");
    c
}

/// Asserts the report's only problem is on the tenant's chain, at one of `seqs`.
fn assert_caught(report: &VerifyReport, t: &Tenant, seqs: &[u64], case: &str) {
    assert!(!report.ok(), "{case}: tampering not detected");
    assert_eq!(report.problems.len(), 1, "{case}: {:?}", report.problems);
    let p = &report.problems[0];
    assert_eq!(p.chain, t.chain().as_string(), "{case}: {p:?}");
    assert!(
        p.seq.is_some_and(|s| seqs.contains(&s)),
        "{case}: expected seq in {seqs:?}, got {p:?}"
    );
}

fn chain_name(t: &Tenant) -> String {
    t.chain().as_string()
}

#[test]
fn untampered_chains_verify() {
    let (env, t, last) = chained();
    let report = env.vault.verify(None).expect("verify");
    assert!(report.ok(), "{:?}", report.problems);
    let mine = report
        .chains
        .iter()
        .find(|c| c.chain == chain_name(&t))
        .expect("controller chain reported");
    assert_eq!(mine.entries, last);
    assert_eq!(
        mine.checkpoints_checked, 2,
        "the in-database and the external checkpoint were both checked"
    );
    assert!(report.chains.iter().any(|c| c.chain == "system"));
    // Verification alone changes nothing.
    assert!(env.vault.verify(Some(&t.chain())).expect("again").ok());
}

#[test]
fn verify_names_an_altered_entry() {
    for column in ["actor", "fields"] {
        let (env, t, last) = chained();
        let k = 5;
        assert!(k < last);
        let c = attacker(&env);
        let original: String = c
            .query_row(
                &format!("SELECT {column} FROM audit_entries WHERE chain = ?1 AND seq = ?2"),
                params![chain_name(&t), k],
                |r| r.get(0),
            )
            .expect("read entry");
        let mut bytes = original.clone().into_bytes();
        // Flip the low bit of one letter (stays ASCII, so the row still decodes).
        let i = bytes
            .iter()
            .position(u8::is_ascii_lowercase)
            .expect("a letter to flip");
        bytes[i] ^= 0x01;
        let altered = String::from_utf8(bytes).expect("ascii");
        assert_ne!(altered, original);
        let n = c
            .execute(
                &format!("UPDATE audit_entries SET {column} = ?3 WHERE chain = ?1 AND seq = ?2"),
                params![chain_name(&t), k, altered],
            )
            .expect("tamper");
        assert_eq!(n, 1);
        let report = env.vault.verify(None).expect("verify");
        assert_caught(&report, &t, &[k], &format!("altered {column}"));
        assert!(
            report.problems[0].what.contains("altered"),
            "{:?}",
            report.problems
        );
    }
}

#[test]
fn verify_names_a_deleted_entry() {
    let (env, t, last) = chained();
    let k = last / 2;
    let c = attacker(&env);
    let n = c
        .execute(
            "DELETE FROM audit_entries WHERE chain = ?1 AND seq = ?2",
            params![chain_name(&t), k],
        )
        .expect("delete");
    assert_eq!(n, 1);
    let report = env.vault.verify(None).expect("verify");
    assert_caught(&report, &t, &[k], "deleted middle entry");
}

#[test]
fn verify_catches_swapped_entries() {
    const CONTENT: &str =
        "at, actor, action, purpose, subject_id, record_id, fields, refused, request_id";
    // Two ways to swap: exchange what two entries say (hashes left in place), or exchange
    // their places in the chain (every column but seq).
    for whole_rows in [false, true] {
        let (env, t, last) = chained();
        let c = attacker(&env);
        let chain = chain_name(&t);
        let action_at = |seq: u64| -> String {
            c.query_row(
                "SELECT action FROM audit_entries WHERE chain = ?1 AND seq = ?2",
                params![chain, seq],
                |r| r.get(0),
            )
            .expect("action")
        };
        let k = (3..last - 1)
            .find(|&k| action_at(k) != action_at(k + 1))
            .expect("two adjacent entries that differ");
        if whole_rows {
            c.execute_batch(&format!(
                "UPDATE audit_entries SET seq = -1 WHERE chain = '{chain}' AND seq = {k};
                 UPDATE audit_entries SET seq = {k} WHERE chain = '{chain}' AND seq = {k1};
                 UPDATE audit_entries SET seq = {k1} WHERE chain = '{chain}' AND seq = -1;",
                k1 = k + 1
            ))
            .expect("swap rows");
        } else {
            let read = |seq: u64| -> Vec<rusqlite::types::Value> {
                c.query_row(
                    &format!("SELECT {CONTENT} FROM audit_entries WHERE chain = ?1 AND seq = ?2"),
                    params![chain, seq],
                    |r| (0..9).map(|i| r.get(i)).collect(),
                )
                .expect("read content")
            };
            let (a, b) = (read(k), read(k + 1));
            assert_ne!(a, b);
            let write = |seq: u64, vals: &[rusqlite::types::Value]| {
                let sets = CONTENT
                    .split(", ")
                    .enumerate()
                    .map(|(i, col)| format!("{col} = ?{}", i + 3))
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut p: Vec<rusqlite::types::Value> =
                    vec![chain.clone().into(), (seq as i64).into()];
                p.extend(vals.iter().cloned());
                let n = c
                    .execute(
                        &format!("UPDATE audit_entries SET {sets} WHERE chain = ?1 AND seq = ?2"),
                        rusqlite::params_from_iter(p),
                    )
                    .expect("write content");
                assert_eq!(n, 1);
            };
            write(k, &b);
            write(k + 1, &a);
        }
        let report = env.vault.verify(None).expect("verify");
        assert_caught(
            &report,
            &t,
            &[k, k + 1],
            &format!("swapped entries {k},{} (whole rows: {whole_rows})", k + 1),
        );
    }
}

#[test]
fn verify_catches_a_clean_truncation_against_the_checkpoints() {
    let (env, t, last) = chained();
    let n = 3;
    let new_last = last - n;
    let chain = chain_name(&t);
    let c = attacker(&env);
    let deleted = c
        .execute(
            "DELETE FROM audit_entries WHERE chain = ?1 AND seq > ?2",
            params![chain, new_last],
        )
        .expect("truncate");
    assert_eq!(deleted as u64, n);
    let moved = c
        .execute(
            "UPDATE audit_heads SET seq = ?2,
               hash = (SELECT hash FROM audit_entries WHERE chain = ?1 AND seq = ?2)
             WHERE chain = ?1",
            params![chain, new_last],
        )
        .expect("move the head back");
    assert_eq!(moved, 1);

    let store = env.vault.store().clone();
    let pk = env.vault.public_key();
    let only = t.chain();

    // The in-database checkpoint alone catches it.
    let report = verify_chains(store.as_ref(), &pk, None, Some(&only)).expect("verify");
    assert_caught(
        &report,
        &t,
        &[new_last + 1],
        "truncation vs in-db checkpoint",
    );

    // Now the attacker also deletes the checkpoints kept in the database.
    c.execute("DELETE FROM checkpoints WHERE chain = ?1", [&chain])
        .expect("delete checkpoints");
    // What is left in the database is self-consistent: without the copy outside it, the
    // truncation would go unnoticed (this is what makes the case a *clean* truncation).
    let blind = verify_chains(store.as_ref(), &pk, None, Some(&only)).expect("verify");
    assert!(blind.ok(), "{:?}", blind.problems);
    // The checkpoint file outside the database catches it.
    let report = env.vault.verify(None).expect("verify");
    assert_caught(
        &report,
        &t,
        &[new_last + 1],
        "truncation vs external checkpoint",
    );
    assert!(
        report.problems[0].what.contains("removed"),
        "{:?}",
        report.problems
    );
}

// ---------------------------------------------------------------------------------------
// 6. Tenant isolation
// ---------------------------------------------------------------------------------------

#[test]
fn one_tenant_cannot_reach_another_tenants_data_or_tokens() {
    let env = Env::new();
    let v = &env.vault;
    let a = env.tenant("Tenant A");
    let b = env.tenant("Tenant B");
    v.document_purpose(
        &a.admin,
        purpose("a-only-newsletter", &["user.contact"], &[Operation::Use]),
        &ctx(),
    )
    .expect("A's own purpose");
    let email = "alice.a@example.org";
    let (s, rec) = new_subject(
        v,
        &a.app,
        &[
            ("name", "user.name", text("Alice of A")),
            ("email", "user.contact.email", text(email)),
        ],
    );
    let before = v
        .get_subject(&a.app, &pn("account"), &s, &ctx())
        .expect("A reads its subject");

    let p = pn("account"); // B documented a purpose of the same name.
    let not_found = |what: &str, r: Result<(), VaultError>| match r {
        Err(VaultError::NotFound) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    };
    not_found(
        "get_subject",
        v.get_subject(&b.app, &p, &s, &ctx()).map(drop),
    );
    not_found(
        "get_record",
        v.get_record(&b.app, &p, &rec, None, &ctx()).map(drop),
    );
    not_found(
        "update_record",
        v.update_record(
            &b.app,
            &p,
            &rec,
            FieldUpdate {
                fields: fields(&[("name", "user.name", text("Owned by B"))]),
            },
            &ctx(),
        )
        .map(drop),
    );
    not_found(
        "add_record",
        v.add_record(
            &b.app,
            &p,
            &s,
            record(&[("name", "user.name", text("Planted by B"))]),
            &ctx(),
        )
        .map(drop),
    );
    not_found("delete_record", v.delete_record(&b.app, &p, &rec, &ctx()));
    not_found(
        "erase_subject",
        v.erase_subject(&b.app, &p, &s, &ctx()).map(drop),
    );
    not_found(
        "set_restriction",
        v.set_restriction(&b.app, &p, &s, true, &ctx()),
    );
    // B's admin fares no better than B's app.
    not_found(
        "get_subject as B admin",
        v.get_subject(&b.admin, &p, &s, &ctx()).map(drop),
    );
    let found = v
        .lookup(
            &b.app,
            &p,
            LookupQuery {
                kind: LookupKind::Email,
                value: email.to_owned(),
            },
            &ctx(),
        )
        .expect("B's lookup runs in B's space");
    assert!(found.subjects.is_empty(), "B found A's subject by email");

    // A's data is exactly as it was.
    let after = v
        .get_subject(&a.app, &pn("account"), &s, &ctx())
        .expect("A still reads its subject");
    assert_eq!(after, before);

    // Tokens and purposes.
    not_found(
        "revoke A's app token",
        v.revoke_token(&b.admin, &a.app_token, &ctx()),
    );
    not_found(
        "revoke A's admin token",
        v.revoke_token(&b.admin, &a.admin_token, &ctx()),
    );
    v.authenticate(&a.app_secret)
        .expect("A's app token still works");
    let b_tokens = v.list_tokens(&b.admin, &ctx()).expect("B's tokens");
    assert_eq!(b_tokens.len(), 2, "B's admin and app tokens");
    assert!(
        b_tokens
            .iter()
            .all(|tk| tk.controller.as_ref() == Some(&b.id)
                && tk.id != a.app_token
                && tk.id != a.admin_token),
        "{b_tokens:?}"
    );
    let b_purposes = v.list_purposes(&b.admin).expect("B's purposes");
    let names: Vec<&str> = b_purposes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["account", "support"]);
    assert!(
        v.list_purposes(&b.app)
            .expect("B app's purposes")
            .iter()
            .all(|p| p.name.as_str() != "a-only-newsletter")
    );
    assert!(
        v.list_purposes(&a.admin)
            .expect("A's purposes")
            .iter()
            .any(|p| p.name.as_str() == "a-only-newsletter"),
        "A's purpose exists, so its absence from B's list is isolation"
    );
    assert!(matches!(
        v.get_controller(&b.admin, &a.id),
        Err(VaultError::NotFound)
    ));
    assert!(matches!(
        v.issue_token(
            &b.admin,
            NewToken {
                role: Role::ControllerApp,
                controller: Some(a.id.clone()),
                purposes: None,
                operations: None,
                label: "sneaky".into(),
                expires_in_seconds: 3600,
            },
            &ctx(),
        ),
        Err(VaultError::NotFound)
    ));
    // B's trail never shows A's entries.
    let a_hashes: Vec<String> = trail_after(v, &a.admin, 0)
        .into_iter()
        .map(|e| e.hash)
        .collect();
    assert!(
        trail_after(v, &b.admin, 0)
            .iter()
            .all(|e| !a_hashes.contains(&e.hash) && e.subject.as_ref() != Some(&s))
    );
    // A's own admin can revoke the token B could not: the NotFound above was isolation.
    v.revoke_token(&a.admin, &a.app_token, &ctx())
        .expect("A revokes its own token");
    assert!(matches!(
        v.authenticate(&a.app_secret),
        Err(VaultError::Unauthenticated)
    ));
}

// ---------------------------------------------------------------------------------------
// 7. Restriction (Art. 18)
// ---------------------------------------------------------------------------------------

#[test]
fn a_restricted_subject_is_only_stored_until_lifted_and_may_be_erased() {
    let env = Env::new();
    let v = &env.vault;
    let t = env.tenant("Acme");
    let p = pn("account");
    let email = "restricted@example.org";
    let (s, rec) = new_subject(
        v,
        &t.app,
        &[
            ("name", "user.name", text("Rhea Stricted")),
            ("email", "user.contact.email", text(email)),
        ],
    );
    let before = v.get_subject(&t.app, &p, &s, &ctx()).expect("read");
    assert!(!before.restricted);

    v.set_restriction(&t.app, &p, &s, true, &ctx())
        .expect("restrict");
    let restricted = |what: &str, op: Operation, r: Result<(), VaultError>| match r {
        Err(VaultError::Refused(Refusal::SubjectRestricted { operation })) => {
            assert_eq!(operation, op, "{what}");
        }
        other => panic!("{what}: expected SubjectRestricted, got {other:?}"),
    };
    restricted(
        "get_subject",
        Operation::Consultation,
        v.get_subject(&t.app, &p, &s, &ctx()).map(drop),
    );
    restricted(
        "get_record",
        Operation::Retrieval,
        v.get_record(&t.app, &p, &rec, None, &ctx()).map(drop),
    );
    restricted(
        "update_record",
        Operation::Alteration,
        v.update_record(
            &t.app,
            &p,
            &rec,
            FieldUpdate {
                fields: fields(&[("name", "user.name", text("Changed While Restricted"))]),
            },
            &ctx(),
        )
        .map(drop),
    );
    restricted(
        "add_record",
        Operation::Recording,
        v.add_record(
            &t.app,
            &p,
            &s,
            record(&[("note", "user.content", text("added while restricted"))]),
            &ctx(),
        )
        .map(drop),
    );
    let found = v
        .lookup(
            &t.app,
            &p,
            LookupQuery {
                kind: LookupKind::Email,
                value: email.to_owned(),
            },
            &ctx(),
        )
        .expect("lookup");
    assert!(found.subjects.is_empty(), "a restricted subject was found");
    let refusals = trail_after(v, &t.admin, 0)
        .into_iter()
        .filter(|e| e.outcome == "refused" && e.subject.as_ref() == Some(&s))
        .count();
    assert!(refusals >= 4, "each refusal is audited ({refusals})");

    v.set_restriction(&t.app, &p, &s, false, &ctx())
        .expect("lift");
    let after = v.get_subject(&t.app, &p, &s, &ctx()).expect("read again");
    assert!(!after.restricted);
    assert_eq!(after, before, "nothing changed while restricted");
    v.get_record(&t.app, &p, &rec, None, &ctx())
        .expect("record readable again");

    v.set_restriction(&t.app, &p, &s, true, &ctx())
        .expect("restrict again");
    let receipt = v
        .erase_subject(&t.app, &p, &s, &ctx())
        .expect("erasure is allowed while restricted");
    assert!(receipt.erased_now);
    assert!(matches!(
        v.get_subject(&t.app, &p, &s, &ctx()),
        Err(VaultError::Gone)
    ));
}

// ---------------------------------------------------------------------------------------
// 8. Input control
// ---------------------------------------------------------------------------------------

#[test]
fn card_numbers_and_bad_emails_are_refused_without_echoing_them() {
    let env = Env::new();
    let v = &env.vault;
    let t = env.tenant("Acme");
    let p = pn("account");
    let (s, rec) = new_subject(v, &t.app, &[("name", "user.name", text("Carl Cardless"))]);
    let stored = v.get_record(&t.app, &p, &rec, None, &ctx()).expect("read");
    let counts = |env: &Env| {
        let c = env.sql();
        (
            count(&c, "SELECT COUNT(*) FROM subjects", []),
            count(&c, "SELECT COUNT(*) FROM records", []),
            field_count(&c),
        )
    };
    let start = counts(&env);
    // Whole card numbers only: short digit runs occur by chance in hex hashes and ids.
    let card_digits = ["4111111111111111", "4111 1111 1111 1111"];

    let invalid = |what: &str, r: Result<(), VaultError>, secret: &[&str]| {
        let e = match r {
            Err(VaultError::Invalid(e)) => e,
            other => panic!("{what}: expected Invalid, got {other:?}"),
        };
        let shown = format!("{e} {e:?} {}", VaultError::Invalid(e.clone()));
        for s in secret {
            assert!(!shown.contains(s), "{what}: error echoes {s:?}: {shown}");
        }
        e
    };
    let card = "4111 1111 1111 1111";

    // In a new subject's first record.
    let seq = last_seq(v, &t.admin);
    let e = invalid(
        "create_subject",
        v.create_subject(
            &t.app,
            &p,
            NewSubject {
                category: SubjectCategory::Customer,
                record: Some(record(&[
                    ("name", "user.name", text("Paying Customer")),
                    ("note", "user.content.private", text(card)),
                ])),
            },
            &ctx(),
        )
        .map(drop),
        &card_digits,
    );
    assert_eq!(e.field, "fields.note");
    assert_eq!(counts(&env), start, "nothing stored");
    let new = trail_after(v, &t.admin, seq);
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(new[0].outcome, "refused");
    assert_eq!(new[0].action, "collection");
    let json = serde_json::to_string(&new[0]).expect("json");
    for d in card_digits {
        assert!(!json.contains(d), "audit entry holds card digits: {json}");
    }
    assert!(
        new[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("card") && !r.contains("4111")),
        "{:?}",
        new[0].reason
    );

    // Inside longer text, in a number, in a record's metadata, on add and on update.
    let seq = last_seq(v, &t.admin);
    invalid(
        "add_record with a card in text",
        v.add_record(
            &t.app,
            &p,
            &s,
            record(&[(
                "comment",
                "user.content",
                text("my card is 4111-1111-1111-1111, thanks"),
            )]),
            &ctx(),
        )
        .map(drop),
        &card_digits,
    );
    invalid(
        "add_record with a card as a number",
        v.add_record(
            &t.app,
            &p,
            &s,
            record(&[(
                "amount",
                "user.content",
                FieldValue::Number(4_111_111_111_111_111u64.into()),
            )]),
            &ctx(),
        )
        .map(drop),
        &card_digits,
    );
    let mut with_meta = record(&[("name", "user.name", text("Meta Person"))]);
    with_meta.meta.source = Some(format!("imported with card {card}"));
    invalid(
        "add_record with a card in its metadata",
        v.add_record(&t.app, &p, &s, with_meta, &ctx()).map(drop),
        &card_digits,
    );
    invalid(
        "update_record with a card",
        v.update_record(
            &t.app,
            &p,
            &rec,
            FieldUpdate {
                fields: fields(&[("name", "user.name", text(card))]),
            },
            &ctx(),
        )
        .map(drop),
        &card_digits,
    );
    assert_eq!(counts(&env), start, "nothing stored");
    let refused = trail_after(v, &t.admin, seq);
    assert_eq!(
        v.get_record(&t.app, &p, &rec, None, &ctx())
            .expect("read again"),
        stored,
        "the record is unchanged"
    );
    assert_eq!(refused.len(), 4, "each refusal is audited: {refused:?}");
    for e in &refused {
        assert_eq!(e.outcome, "refused");
        let json = serde_json::to_string(e).expect("json");
        for d in card_digits {
            assert!(!json.contains(d), "audit entry holds card digits: {json}");
        }
    }

    // An invalid email is refused without echoing it, in the error or the trail.
    let bad_email = "zyxq-not-an-email";
    let seq = last_seq(v, &t.admin);
    let e = invalid(
        "invalid email",
        v.create_subject(
            &t.app,
            &p,
            NewSubject {
                category: SubjectCategory::Customer,
                record: Some(record(&[("email", "user.contact.email", text(bad_email))])),
            },
            &ctx(),
        )
        .map(drop),
        &[bad_email, "zyxq"],
    );
    assert_eq!(e.field, "fields.email");
    assert_eq!(counts(&env), start, "nothing stored");
    let new = trail_after(v, &t.admin, seq);
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].outcome, "refused");
    let json = serde_json::to_string(&new[0]).expect("json");
    assert!(!json.contains("zyxq"), "{json}");
}

/// Deleting one record is an erasure (Art. 17): its ciphertext must not linger in the
/// files, since the subject key that opens it still exists.
#[test]
fn deleting_a_record_leaves_no_ciphertext_in_the_files() {
    let env = Env::new();
    let v = &env.vault;
    let t = env.tenant("Acme");
    let (s, kept) = new_subject(v, &t.app, &[("name", "user.name", text("Keep Me"))]);
    let gone = v
        .add_record(
            &t.app,
            &pn("account"),
            &s,
            record(&[("note", "user.content", text("delete me please"))]),
            &ctx(),
        )
        .expect("add record")
        .id;
    let sealed: Vec<u8> = stored_fields(&env.sql(), "id = ?1", [gone.as_str()])
        .pop()
        .expect("ciphertext")
        .sealed;
    let needles = blob_needles(&sealed, 0);
    assert!(
        needles
            .iter()
            .all(|n| !files_holding(&env.db, n).is_empty()),
        "the scan sees the ciphertext before deletion"
    );
    v.delete_record(&t.app, &pn("account"), &gone, &ctx())
        .expect("delete record");
    assert!(matches!(
        v.get_record(&t.app, &pn("account"), &gone, None, &ctx()),
        Err(VaultError::NotFound)
    ));
    v.get_record(&t.app, &pn("account"), &kept, None, &ctx())
        .expect("the other record stays");
    // The purge due within the delay, now.
    v.purge_erased_now();
    for n in &needles {
        let hits = files_holding(&env.db, n);
        assert!(
            hits.is_empty(),
            "{} bytes of a deleted record's ciphertext survive in {hits:?}",
            n.len()
        );
    }
}
