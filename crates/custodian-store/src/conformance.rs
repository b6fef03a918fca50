//! The store conformance suite: every backend must pass every case here. Backends call
//! [`run_all`] from their own tests with a factory that gives a fresh, empty store.
//!
//! The cases speak only through the [`Store`] trait, so they hold for any backend.

use crate::rows::*;
use crate::{DataTx, MetaChange, Store, StoreError, TxError};
use custodian_core::audit::{Action, AdminAction, AuditDraft, ChainId, GENESIS, Outcome};
use custodian_core::category::{DataCategory, SubjectCategory};
use custodian_core::controller::{Controller, ControllerName, ControllerStatus};
use custodian_core::ids::{AccountId, ControllerId, RecordId, SubjectId, TokenId};
use custodian_core::lookup::LookupKind;
use custodian_core::operation::Operation;
use custodian_core::policy::Denial;
use custodian_core::principal::{Role, TokenScope};
use custodian_core::purpose::{LawfulBasis, Purpose, PurposeName};
use custodian_core::record::{FieldName, RecordHeader, RecordMeta};
use custodian_core::region::{MemberState, RegionId};
use std::collections::BTreeSet;
use time::{Duration, OffsetDateTime};

pub type Factory<'a> = &'a mut dyn FnMut() -> Box<dyn Store>;

/// Every case, each on a fresh store.
pub fn run_all(make: Factory<'_>) {
    type Case = (&'static str, fn(&dyn Store));
    let cases: &[Case] = &[
        ("controllers_round_trip", controllers_round_trip),
        ("tokens_scoped_and_revocable", tokens_scoped_and_revocable),
        (
            "accounts_unique_scoped_and_audited",
            accounts_unique_scoped_and_audited,
        ),
        ("purposes_are_per_controller", purposes_are_per_controller),
        ("data_round_trip", data_round_trip),
        ("tenant_isolation", tenant_isolation),
        ("denied_work_changes_nothing", denied_work_changes_nothing),
        ("chain_links_and_pages", chain_links_and_pages),
        ("erasure_removes_everything", erasure_removes_everything),
        ("objections_and_restriction", objections_and_restriction),
        ("checkpoints_round_trip", checkpoints_round_trip),
        ("duplicate_ids_conflict", duplicate_ids_conflict),
        ("requests_and_outbox", requests_and_outbox),
        (
            "retention_holds_and_destruction",
            retention_holds_and_destruction,
        ),
        (
            "records_by_purpose_and_header_rewrite",
            records_by_purpose_and_header_rewrite,
        ),
        ("consult_reads_then_audits", consult_reads_then_audits),
        (
            "consulted_purposes_follow_every_change",
            consulted_purposes_follow_every_change,
        ),
        ("purpose_metadata_set_at_once", purpose_metadata_set_at_once),
        (
            "expired_records_are_not_counted_altered_or_found",
            expired_records_are_not_counted_altered_or_found,
        ),
        (
            "many_records_rewritten_at_once",
            many_records_rewritten_at_once,
        ),
        (
            "a_purposes_records_come_by_subject",
            a_purposes_records_come_by_subject,
        ),
        (
            "bulk_entries_found_by_subject",
            bulk_entries_found_by_subject,
        ),
        (
            "a_subjects_history_holds_over_long_chains",
            a_subjects_history_holds_over_long_chains,
        ),
    ];
    for (name, case) in cases {
        let store = make();
        eprintln!("conformance [{}] {name}", store.backend());
        case(store.as_ref());
    }
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn rand16() -> [u8; 16] {
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut b = [0u8; 16];
    b[8..].copy_from_slice(&n.to_be_bytes());
    b[0] = 0x11;
    b
}

fn now() -> OffsetDateTime {
    // Whole microseconds: every backend must keep at least that precision.
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000).unwrap()
}

fn new_controller(store: &dyn Store) -> ControllerId {
    let id = ControllerId::from_random(rand16());
    let row = ControllerRow {
        controller: Controller {
            id: id.clone(),
            name: ControllerName::parse("Acme SAS").unwrap(),
            region: RegionId::parse("osc-fr1").unwrap(),
            agreement_effective: time::macros::date!(2026 - 01 - 15),
            governing_law: MemberState::parse("FR").unwrap(),
            status: ControllerStatus::Active,
            created_at: now(),
        },
        wrapped_key: vec![1, 2, 3],
    };
    let audit = AuditDraft::new(
        ChainId::System,
        "operator_admin:cli",
        Action::Admin(AdminAction::ControllerCreated),
    );
    store.insert_controller(&row, audit, now()).unwrap();
    id
}

fn purpose(name: &str, cats: &[&str]) -> Purpose {
    Purpose {
        name: PurposeName::parse(name).unwrap(),
        description: "deliver the service".into(),
        lawful_basis: LawfulBasis::Contract,
        categories: cats
            .iter()
            .map(|c| DataCategory::parse(c).unwrap())
            .collect(),
        operations: [Operation::Recording, Operation::Retrieval].into(),
        retention_days: 30,
    }
}

fn draft(c: &ControllerId, op: Operation) -> AuditDraft {
    AuditDraft::new(
        ChainId::Controller(c.clone()),
        "controller_app:test",
        Action::Processing(op),
    )
}

struct Fixture {
    subject: SubjectId,
    record: RecordId,
}

fn seed_subject(store: &dyn Store, c: &ControllerId, digest: [u8; 32]) -> Fixture {
    let subject = SubjectId::from_random(rand16());
    let record = RecordId::from_random(rand16());
    let (s, r) = (subject.clone(), record.clone());
    let cc = c.clone();
    store
        .transact(c, now(), &mut |tx: &mut dyn DataTx| {
            tx.insert_subject(&SubjectRow {
                id: s.clone(),
                category: SubjectCategory::Customer,
                restricted: false,
                wrapped_key: vec![9; 60],
                created_at: now(),
            })?;
            tx.insert_record(&RecordRow {
                id: r.clone(),
                subject: s.clone(),
                header: RecordHeader {
                    purpose: PurposeName::parse("service").unwrap(),
                    meta: RecordMeta {
                        source: Some("signup form".into()),
                        recipients: vec!["support team".into()],
                        automated_decision: None,
                    }
                    .into(),
                    created_at: now(),
                    updated_at: now(),
                    expires_at: now() + Duration::days(30),
                },
                fields: vec![
                    FieldRow {
                        name: FieldName::parse("email").unwrap(),
                        category: DataCategory::parse("user.contact.email").unwrap(),
                        sealed: vec![7; 40],
                    },
                    FieldRow {
                        name: FieldName::parse("name").unwrap(),
                        category: DataCategory::parse("user.name").unwrap(),
                        sealed: vec![8; 40],
                    },
                ],
            })?;
            tx.insert_lookup(&LookupRow {
                kind: LookupKind::Email,
                digest,
                subject: s.clone(),
                record: r.clone(),
                field: FieldName::parse("email").unwrap(),
            })?;
            Ok(draft(&cc, Operation::Collection)
                .subject(&s)
                .record(&r)
                .fields(["email", "name"]))
        })
        .unwrap();
    Fixture { subject, record }
}

fn controllers_round_trip(store: &dyn Store) {
    let a = new_controller(store);
    let b = new_controller(store);
    let got = store.controller(&a).unwrap().unwrap();
    assert_eq!(got.controller.id, a);
    assert_eq!(got.controller.name.as_str(), "Acme SAS");
    assert_eq!(got.wrapped_key, vec![1, 2, 3]);
    let all: Vec<_> = store
        .controllers()
        .unwrap()
        .into_iter()
        .map(|r| r.controller.id)
        .collect();
    assert_eq!(all.len(), 2);
    assert!(all.contains(&a) && all.contains(&b));
    assert!(
        store
            .controller(&ControllerId::from_random(rand16()))
            .unwrap()
            .is_none()
    );
    assert_eq!(store.audit_head(&ChainId::System).unwrap().unwrap().0, 2);
}

fn token(controller: Option<&ControllerId>, role: Role) -> TokenRow {
    TokenRow {
        id: TokenId::from_random(rand16()),
        hash: custodian_crypto::hash::sha256(&rand16()),
        role,
        controller: controller.cloned(),
        scope: TokenScope {
            purposes: Some([PurposeName::parse("service").unwrap()].into()),
            operations: None,
        },
        label: "ci".into(),
        created_at: now(),
        expires_at: Some(now() + Duration::hours(1)),
        revoked_at: None,
    }
}

fn tokens_scoped_and_revocable(store: &dyn Store) {
    let a = new_controller(store);
    let b = new_controller(store);
    let ta = token(Some(&a), Role::ControllerApp);
    let tb = token(Some(&b), Role::ControllerApp);
    let top = token(None, Role::OperatorAdmin);
    for t in [&ta, &tb, &top] {
        let chain = t
            .controller
            .clone()
            .map_or(ChainId::System, ChainId::Controller);
        store
            .insert_token(
                t,
                AuditDraft::new(chain, "x", Action::Admin(AdminAction::TokenIssued)),
                now(),
            )
            .unwrap();
    }
    assert_eq!(store.token_by_hash(&ta.hash).unwrap().unwrap(), ta);
    assert!(store.token_by_hash(&[0; 32]).unwrap().is_none());
    assert_eq!(store.tokens(Some(&a)).unwrap(), vec![ta.clone()]);
    assert_eq!(store.tokens(None).unwrap(), vec![top.clone()]);
    let revoke = |c: Option<&ControllerId>, id: &TokenId| {
        let chain = c.cloned().map_or(ChainId::System, ChainId::Controller);
        store
            .revoke_token(
                c,
                id,
                AuditDraft::new(chain, "x", Action::Admin(AdminAction::TokenRevoked)),
                now(),
            )
            .unwrap()
    };
    // B cannot revoke A's token; A can, once.
    assert!(!revoke(Some(&b), &ta.id));
    assert!(
        store
            .token_by_hash(&ta.hash)
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert!(revoke(Some(&a), &ta.id));
    assert!(!revoke(Some(&a), &ta.id));
    let revoked = store.token_by_hash(&ta.hash).unwrap().unwrap();
    assert!(revoked.principal_at(now()).is_none());
    assert!(
        store
            .token_by_hash(&tb.hash)
            .unwrap()
            .unwrap()
            .principal_at(now())
            .is_some()
    );
}

fn account(controller: Option<&ControllerId>, role: Role, digest: u8) -> AccountRow {
    AccountRow {
        id: AccountId::from_random(rand16()),
        login_digest: [digest; 32],
        login_sealed: vec![digest; 60],
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA${digest}"),
        role,
        controller: controller.cloned(),
        created_at: now(),
        disabled_at: None,
    }
}

/// Login accounts: found by login digest only, one account per digest across every
/// controller, each belonging to one controller (or to none: the operator's staff), stored
/// with its audit entry or not at all, and disabled only within its own controller.
fn accounts_unique_scoped_and_audited(store: &dyn Store) {
    let a = new_controller(store);
    let b = new_controller(store);
    let chain_of =
        |c: Option<&ControllerId>| c.cloned().map_or(ChainId::System, ChainId::Controller);
    let created = |row: &AccountRow| {
        AuditDraft::new(
            chain_of(row.controller.as_ref()),
            "operator_admin:cli",
            Action::Admin(AdminAction::AccountCreated),
        )
        .fields([row.id.as_str()])
    };
    let acc_a = account(Some(&a), Role::ControllerAdmin, 1);
    let acc_b = account(Some(&b), Role::ControllerViewer, 2);
    let staff = account(None, Role::OperatorAdmin, 3);
    for row in [&acc_a, &acc_b, &staff] {
        let chain = chain_of(row.controller.as_ref());
        let before = store.audit_head(&chain).unwrap().map_or(0, |h| h.0);
        let entry = store.insert_account(row, created(row), now()).unwrap();
        assert_eq!(entry.seq, before + 1);
        assert_eq!(entry.draft.chain, chain);
        assert_eq!(entry.draft.fields, vec![row.id.as_str().to_owned()]);
        assert_eq!(
            store.account_by_login(&row.login_digest).unwrap().as_ref(),
            Some(row)
        );
    }
    assert!(store.account_by_login(&[9; 32]).unwrap().is_none());

    // A login name is taken once, whichever controller asks: a conflict stores nothing,
    // audits nothing, and leaves the first account as it was.
    let refused = |row: &AccountRow| {
        let chain = chain_of(row.controller.as_ref());
        let head = store.audit_head(&chain).unwrap();
        let r = store.insert_account(row, created(row), now());
        assert!(r.is_err(), "{row:?} was stored");
        assert_eq!(
            store.audit_head(&chain).unwrap(),
            head,
            "{row:?} was audited"
        );
        r.unwrap_err()
    };
    let dup = account(Some(&b), Role::ControllerAdmin, 1);
    assert!(matches!(refused(&dup), StoreError::Conflict(_)));
    assert_eq!(store.account_by_login(&[1; 32]).unwrap().unwrap(), acc_a);
    // A controller account needs its controller, and an operator account has none.
    refused(&account(None, Role::ControllerAdmin, 4));
    refused(&account(Some(&a), Role::OperatorAdmin, 5));
    // The controller must exist.
    let ghost = ControllerId::from_random(rand16());
    refused(&account(Some(&ghost), Role::ControllerAdmin, 6));
    for d in [4, 5, 6] {
        assert!(store.account_by_login(&[d; 32]).unwrap().is_none());
    }

    // Disabling is scoped like revoking a token: B (or the operator's scope) cannot disable
    // A's account; A can, once, and the account is then still found, disabled.
    let disable = |c: Option<&ControllerId>, id: &AccountId| {
        store
            .disable_account(
                c,
                id,
                AuditDraft::new(
                    chain_of(c),
                    "x",
                    Action::Admin(AdminAction::AccountDisabled),
                ),
                now(),
            )
            .unwrap()
    };
    let head_b = store.audit_head(&chain_of(Some(&b))).unwrap();
    assert!(!disable(Some(&b), &acc_a.id));
    assert!(!disable(None, &acc_a.id));
    assert_eq!(store.audit_head(&chain_of(Some(&b))).unwrap(), head_b);
    assert!(
        store
            .account_by_login(&[1; 32])
            .unwrap()
            .unwrap()
            .disabled_at
            .is_none()
    );
    assert!(disable(Some(&a), &acc_a.id));
    assert!(!disable(Some(&a), &acc_a.id));
    assert!(
        store
            .account_by_login(&[1; 32])
            .unwrap()
            .unwrap()
            .disabled_at
            .is_some()
    );
    assert!(
        store
            .account_by_login(&[2; 32])
            .unwrap()
            .unwrap()
            .disabled_at
            .is_none()
    );
    assert!(!disable(Some(&a), &staff.id));
    assert!(disable(None, &staff.id));

    // Destroying a controller deletes its accounts (login names are its staff's personal
    // data), and only its own.
    store
        .transact(&a, now(), &mut |tx| {
            tx.destroy_all("certificate", now())?;
            Ok(AuditDraft::new(
                chain_of(Some(&a)),
                "operator_admin:cli",
                Action::Processing(Operation::Erasure),
            ))
        })
        .unwrap();
    assert!(store.account_by_login(&[1; 32]).unwrap().is_none());
    assert!(store.account_by_login(&[2; 32]).unwrap().is_some());
    assert!(store.account_by_login(&[3; 32]).unwrap().is_some());
}

fn purposes_are_per_controller(store: &dyn Store) {
    let a = new_controller(store);
    let b = new_controller(store);
    let p = purpose("service", &["user.contact"]);
    let audit = |c: &ControllerId| {
        AuditDraft::new(
            ChainId::Controller(c.clone()),
            "x",
            Action::Admin(AdminAction::PurposeDocumented),
        )
    };
    store.upsert_purpose(&a, &p, audit(&a), now()).unwrap();
    assert_eq!(store.purposes(&a).unwrap(), vec![p.clone()]);
    assert!(store.purposes(&b).unwrap().is_empty());
    let mut p2 = p.clone();
    p2.retention_days = 90;
    store.upsert_purpose(&a, &p2, audit(&a), now()).unwrap();
    assert_eq!(store.purposes(&a).unwrap(), vec![p2.clone()]);
    let seen = store
        .transact(&b, now(), &mut |tx| {
            assert!(tx.purpose(&p.name)?.is_none());
            Ok(draft(&b, Operation::Consultation))
        })
        .map(|_| ());
    seen.unwrap();
}

fn data_round_trip(store: &dyn Store) {
    let a = new_controller(store);
    let digest = [42u8; 32];
    let f = seed_subject(store, &a, digest);
    store
        .transact(&a, now(), &mut |tx| {
            let s = tx.subject(&f.subject)?.expect("subject");
            assert_eq!(s.category, SubjectCategory::Customer);
            assert_eq!(s.wrapped_key, vec![9; 60]);
            let recs = tx.records_of(&f.subject)?;
            assert_eq!(recs.len(), 1);
            assert_eq!(recs[0].fields.len(), 2);
            assert_eq!(
                recs[0].header.meta.recipients,
                vec!["support team".to_string()]
            );
            let one = tx.record(&f.record)?.expect("record");
            assert_eq!(one, recs[0]);
            assert_eq!(
                tx.find_subjects(LookupKind::Email, &digest)?,
                vec![f.subject.clone()]
            );
            assert!(tx.find_subjects(LookupKind::Phone, &digest)?.is_empty());
            let mut rewritten = one.clone();
            rewritten.fields = crate::fieldset::merge(
                rewritten.fields,
                &[FieldRow {
                    name: FieldName::parse("email").unwrap(),
                    category: DataCategory::parse("user.contact.email").unwrap(),
                    sealed: vec![1; 41],
                }],
            );
            rewritten.header.updated_at = now() + Duration::seconds(1);
            assert!(tx.rewrite_record(&one, &rewritten)?);
            let after = tx.record(&f.record)?.unwrap();
            assert_eq!(after, rewritten);
            let email = after
                .fields
                .iter()
                .find(|x| x.name.as_str() == "email")
                .unwrap();
            assert_eq!(email.sealed, vec![1; 41]);
            assert_eq!(after.fields.len(), 2);
            tx.delete_lookups(&f.record, "email")?;
            assert!(tx.find_subjects(LookupKind::Email, &digest)?.is_empty());
            tx.delete_record(&f.record)?;
            assert!(tx.record(&f.record)?.is_none());
            Ok(draft(&a, Operation::Erasure))
        })
        .unwrap();
}

fn tenant_isolation(store: &dyn Store) {
    let a = new_controller(store);
    let b = new_controller(store);
    let digest = [7u8; 32];
    let fa = seed_subject(store, &a, digest);
    store
        .transact(&b, now(), &mut |tx| {
            assert_eq!(tx.controller()?.controller.id, b);
            assert!(tx.subject(&fa.subject)?.is_none());
            assert!(tx.record(&fa.record)?.is_none());
            assert!(tx.records_of(&fa.subject)?.is_empty());
            assert!(tx.find_subjects(LookupKind::Email, &digest)?.is_empty());
            // Writes through B's transaction cannot reach A's rows either.
            tx.delete_record(&fa.record)?;
            tx.set_restricted(&fa.subject, true)?;
            let counts = tx.erase_subject(&fa.subject, now(), "test")?;
            assert_eq!(counts, ErasedCounts::default());
            Ok(draft(&b, Operation::Erasure))
        })
        .unwrap();
    store
        .transact(&a, now(), &mut |tx| {
            let s = tx.subject(&fa.subject)?.expect("A's subject survives B");
            assert!(!s.restricted);
            assert!(tx.record(&fa.record)?.is_some());
            assert!(!tx.was_erased(&fa.subject)?);
            Ok(draft(&a, Operation::Consultation))
        })
        .unwrap();
    // Audit chains are per controller.
    let a_chain = store
        .audit_page(&ChainId::Controller(a.clone()), 0, 100)
        .unwrap();
    assert!(
        a_chain
            .iter()
            .all(|e| e.draft.chain == ChainId::Controller(a.clone()))
    );
    assert_eq!(a_chain.len(), 2);
}

/// `records_of_purpose` returns exactly one controller's records of one purpose, with their
/// fields; `rewrite_record` moves a record to another subject (its lookup entries follow)
/// and rewrites its metadata, expiry and fields, never its id, purpose or creation time.
fn records_by_purpose_and_header_rewrite(store: &dyn Store) {
    let a = new_controller(store);
    let b = new_controller(store);
    let digest = [5u8; 32];
    let f1 = seed_subject(store, &a, digest);
    let f2 = seed_subject(store, &a, [6u8; 32]);
    let fb = seed_subject(store, &b, [5u8; 32]);
    let other = RecordId::from_random(rand16());
    let later = now() + Duration::days(3);
    let s2 = f2.subject.clone();
    store
        .transact(&a, now(), &mut |tx| {
            // A third record, under another purpose, must not be returned.
            tx.insert_record(&RecordRow {
                id: other.clone(),
                subject: s2.clone(),
                header: RecordHeader {
                    purpose: PurposeName::parse("billing").unwrap(),
                    meta: RecordMeta::default().into(),
                    created_at: now(),
                    updated_at: now(),
                    expires_at: now() + Duration::days(30),
                },
                fields: vec![FieldRow {
                    name: FieldName::parse("iban").unwrap(),
                    category: DataCategory::parse("user.financial.bank_account").unwrap(),
                    sealed: vec![3; 40],
                }],
            })?;
            // Subjects by id: those that exist, never another controller's.
            let mut found: Vec<SubjectId> = tx
                .subjects_by_id(&[
                    f1.subject.clone(),
                    fb.subject.clone(),
                    SubjectId::from_random(rand16()),
                    s2.clone(),
                ])?
                .into_iter()
                .map(|r| r.id)
                .collect();
            found.sort_by(|x, y| x.as_str().cmp(y.as_str()));
            let mut want = vec![f1.subject.clone(), s2.clone()];
            want.sort_by(|x, y| x.as_str().cmp(y.as_str()));
            assert_eq!(found, want);
            assert!(tx.subjects_by_id(&[])?.is_empty());
            // A longer list, with repeats and in no order: the same answer, each subject once.
            let mut long: Vec<SubjectId> =
                (0..12).map(|_| SubjectId::from_random(rand16())).collect();
            long.extend([
                s2.clone(),
                fb.subject.clone(),
                f1.subject.clone(),
                s2.clone(),
            ]);
            let mut found: Vec<SubjectId> = tx
                .subjects_by_id(&long)?
                .into_iter()
                .map(|r| r.id)
                .collect();
            found.sort_by(|x, y| x.as_str().cmp(y.as_str()));
            assert_eq!(found, want);
            let short = [s2.clone(), s2.clone(), fb.subject.clone()];
            let found: Vec<SubjectId> = tx
                .subjects_by_id(&short)?
                .into_iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(found, std::slice::from_ref(&s2));
            let service = PurposeName::parse("service").unwrap();
            let mut got = tx.records_of_purpose(&service)?.to_vec();
            got.sort_by(|x, y| x.id.as_str().cmp(y.id.as_str()));
            let mut want = vec![f1.record.clone(), f2.record.clone()];
            want.sort_by(|x, y| x.as_str().cmp(y.as_str()));
            assert_eq!(got.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), want);
            assert!(got.iter().all(|r| r.fields.len() == 2));
            assert_eq!(
                got.iter().find(|r| r.id == f1.record).unwrap(),
                &tx.record(&f1.record)?.unwrap()
            );
            let billing = tx.records_of_purpose(&PurposeName::parse("billing").unwrap())?;
            assert_eq!(billing.len(), 1);
            assert_eq!(billing[0].fields.len(), 1);
            assert!(
                tx.records_of_purpose(&PurposeName::parse("nothing").unwrap())?
                    .is_empty()
            );

            // Move f1's record to f2's subject, with new metadata and expiry.
            let before = tx.record(&f1.record)?.unwrap();
            let meta = RecordMeta {
                source: Some("import".into()),
                recipients: vec!["auditors".into(), "support".into()],
                automated_decision: Some("scoring".into()),
            };
            let at = now();
            let with = |r: &RecordRow, subject: &SubjectId, meta: &RecordMeta, expires, at| {
                let mut r = r.clone();
                r.subject = subject.clone();
                r.header.meta = meta.clone().into();
                r.header.expires_at = expires;
                r.header.updated_at = at;
                r
            };
            // Id, purpose and creation time are the stored record's, whatever `new` says.
            let mut moved = with(&before, &s2, &meta, later, at);
            moved.header.purpose = PurposeName::parse("billing").unwrap();
            moved.header.created_at = at - Duration::days(9);
            assert!(tx.rewrite_record(&before, &moved)?);
            let after = tx.record(&f1.record)?.unwrap();
            assert_eq!(after.subject, s2);
            assert_eq!(*after.header.meta, meta);
            assert_eq!(after.header.expires_at, later);
            assert_eq!(after.header.updated_at, at);
            assert_eq!(after.header.created_at, before.header.created_at);
            assert_eq!(after.header.purpose, before.header.purpose);
            assert_eq!(after.fields, before.fields);
            assert_eq!(
                tx.find_subjects(LookupKind::Email, &digest)?,
                vec![s2.clone()]
            );
            assert!(tx.records_of(&f1.subject)?.is_empty());
            assert_eq!(tx.records_of(&s2)?.len(), 3);
            // One item at a time: what is not changed stays, None clears, and a rewrite
            // that changes nothing still finds the record and moves its update time.
            let cleared = RecordMeta {
                source: None,
                ..meta.clone()
            };
            let r1 = with(&after, &s2, &cleared, later, at);
            assert!(tx.rewrite_record(&after, &r1)?);
            let r = tx.record(&f1.record)?.unwrap();
            assert_eq!(r, r1);
            let sooner = later - time::Duration::days(1);
            let r2 = with(&r1, &s2, &cleared, sooner, at);
            assert!(tx.rewrite_record(&r1, &r2)?);
            assert_eq!(tx.record(&f1.record)?.unwrap(), r2);
            let at2 = at + time::Duration::seconds(1);
            let r3 = with(&r2, &s2, &cleared, sooner, at2);
            assert!(tx.rewrite_record(&r2, &r3)?);
            let r = tx.record(&f1.record)?.unwrap();
            assert_eq!((r.header.updated_at, r.header.expires_at), (at2, sooner));
            assert_eq!(r.fields, before.fields);
            // Fields and header in one rewrite.
            let mut r4 = with(&r3, &s2, &meta, later, at2);
            r4.fields.truncate(1);
            r4.fields[0].sealed = vec![4; 33];
            assert!(tx.rewrite_record(&r3, &r4)?);
            assert_eq!(tx.record(&f1.record)?.unwrap(), r4);
            let mut gone = r4.clone();
            gone.id = RecordId::from_random(rand16());
            assert!(!tx.rewrite_record(&gone, &gone)?);
            Ok(draft(&a, Operation::Alteration))
        })
        .unwrap();
    // Tenant scoping: B sees only its own record, and cannot rewrite A's.
    let fbr = fb.record.clone();
    let s2c = f2.subject.clone();
    let mut a_record = None;
    store
        .transact(&a, now(), &mut |tx| {
            a_record = tx.record(&f1.record)?;
            Ok(draft(&a, Operation::Consultation))
        })
        .unwrap();
    let a_record = a_record.expect("A's record");
    store
        .transact(&b, now(), &mut |tx| {
            let got = tx.records_of_purpose(&PurposeName::parse("service").unwrap())?;
            assert_eq!(
                got.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
                vec![fbr.clone()]
            );
            // B's transaction cannot rewrite A's record, even knowing it whole.
            let mut moved = a_record.clone();
            moved.subject = s2c.clone();
            moved.header.expires_at = later;
            assert!(!tx.rewrite_record(&a_record, &moved)?);
            Ok(draft(&b, Operation::Consultation))
        })
        .unwrap();
}

fn denied_work_changes_nothing(store: &dyn Store) {
    let a = new_controller(store);
    let chain = ChainId::Controller(a.clone());
    let f = seed_subject(store, &a, [1; 32]);
    let head_before = store.audit_head(&chain).unwrap();
    let r = store.transact(&a, now(), &mut |tx| {
        tx.delete_record(&f.record)?;
        tx.set_restricted(&f.subject, true)?;
        Err(TxError::Denied(Denial::NotFound))
    });
    assert!(matches!(r, Err(TxError::Denied(Denial::NotFound))));
    assert_eq!(store.audit_head(&chain).unwrap(), head_before);
    store
        .transact(&a, now(), &mut |tx| {
            assert!(tx.record(&f.record)?.is_some(), "rolled back");
            assert!(!tx.subject(&f.subject)?.unwrap().restricted);
            Ok(draft(&a, Operation::Consultation))
        })
        .unwrap();
}

fn consult_reads_then_audits(store: &dyn Store) {
    let a = new_controller(store);
    let b = new_controller(store);
    let chain = ChainId::Controller(a.clone());
    let f = seed_subject(store, &a, [3; 32]);
    let head = store.audit_head(&chain).unwrap().unwrap();
    let mut seen = None;
    let entry = store
        .consult(&a, now(), &mut |tx| {
            seen = tx.record(&f.record)?.map(|r| r.id);
            Ok(draft(&a, Operation::Consultation).subject(&f.subject))
        })
        .unwrap();
    assert_eq!(seen, Some(f.record.clone()));
    // Its entry is the chain's next link, and durable: the head moved to it.
    assert_eq!(entry.seq, head.0 + 1);
    assert_eq!(entry.prev_hash, head.1);
    assert_eq!(
        store.audit_head(&chain).unwrap(),
        Some((entry.seq, entry.hash))
    );
    // The same read, its entry waited for on the pending audit: the next link, durable
    // once `wait` returns (alone, its unit committed at once; the waiting under group
    // commit is tested in the SQLite backend's group module).
    let pending = store
        .consult_pending(&a, now(), &mut |tx| {
            assert!(tx.record(&f.record)?.is_some());
            Ok(draft(&a, Operation::Consultation).subject(&f.subject))
        })
        .unwrap();
    let next = pending.wait().unwrap();
    assert_eq!(next.seq, entry.seq + 1);
    assert_eq!(next.prev_hash, entry.hash);
    assert_eq!(
        store.audit_head(&chain).unwrap(),
        Some((next.seq, next.hash))
    );
    // A refused read's entry, appended the same way: the next link, durable once waited for.
    let refusal = store
        .append_pending(
            draft(&a, Operation::Consultation).refused("a test refusal".to_string()),
            now(),
        )
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(refusal.seq, next.seq + 1);
    assert_eq!(refusal.prev_hash, next.hash);
    assert_eq!(
        store.audit_head(&chain).unwrap(),
        Some((refusal.seq, refusal.hash))
    );
    let r = store.consult_pending(&a, now(), &mut |_| Err(TxError::Denied(Denial::NotFound)));
    assert!(matches!(r, Err(TxError::Denied(Denial::NotFound))));
    // Scoped like every unit of work: controller B's consult never sees A's record.
    store
        .consult(&b, now(), &mut |tx| {
            assert!(tx.record(&f.record)?.is_none());
            assert!(tx.subject(&f.subject)?.is_none());
            Ok(draft(&b, Operation::Consultation))
        })
        .unwrap();
    // A refused read appends nothing.
    let before = store.audit_head(&chain).unwrap();
    let r = store.consult(&a, now(), &mut |_| Err(TxError::Denied(Denial::NotFound)));
    assert!(matches!(r, Err(TxError::Denied(Denial::NotFound))));
    assert_eq!(store.audit_head(&chain).unwrap(), before);
    // A consult cannot write: the attempt fails and nothing changes.
    let r = store.consult(&a, now(), &mut |tx| {
        tx.delete_record(&f.record)?;
        Ok(draft(&a, Operation::Consultation))
    });
    assert!(r.is_err(), "a write inside consult must fail");
    assert_eq!(store.audit_head(&chain).unwrap(), before);
    store
        .transact(&a, now(), &mut |tx| {
            assert!(tx.record(&f.record)?.is_some(), "the record is still there");
            Ok(draft(&a, Operation::Consultation))
        })
        .unwrap();
}

/// What a unit of work reads of a purpose's records and of some subjects, sorted.
type View = (Vec<RecordRow>, Vec<SubjectRow>, Vec<Option<SubjectRow>>);

/// A purpose's records and some subjects' rows as a consult reads them (the SQLite backend
/// may answer from rows it kept) and as a write transaction reads them (never from memory).
fn purpose_views(
    store: &dyn Store,
    c: &ControllerId,
    purpose: &PurposeName,
    subjects: &[SubjectId],
) -> (View, View) {
    let read = |tx: &mut dyn DataTx| -> std::result::Result<View, TxError> {
        let mut records = tx.records_of_purpose(purpose)?.to_vec();
        records.sort_by(|x, y| x.id.as_str().cmp(y.id.as_str()));
        let mut rows = tx.subjects_by_id(subjects)?;
        rows.sort_by(|x, y| x.id.as_str().cmp(y.id.as_str()));
        let one_by_one = subjects
            .iter()
            .map(|s| tx.subject(s))
            .collect::<Result<_, _>>()?;
        Ok((records, rows, one_by_one))
    };
    let mut consulted = None;
    store
        .consult(c, now(), &mut |tx| {
            consulted = Some(read(tx)?);
            Ok(draft(c, Operation::Consultation))
        })
        .unwrap();
    let mut written = None;
    store
        .transact(c, now(), &mut |tx| {
            written = Some(read(tx)?);
            Ok(draft(c, Operation::Consultation))
        })
        .unwrap();
    (consulted.unwrap(), written.unwrap())
}

type Change<'a> = Box<dyn Fn(&mut dyn DataTx) -> std::result::Result<(), TxError> + 'a>;

/// What a consult reads of a purpose's records and of subjects is what the database holds
/// after every kind of change to them, read once and read again; a change rolled back
/// leaves it as it was; another controller's purpose of the same name never answers.
fn consulted_purposes_follow_every_change(store: &dyn Store) {
    let a = new_controller(store);
    let b = new_controller(store);
    let service = PurposeName::parse("service").unwrap();
    let f1 = seed_subject(store, &a, [21; 32]);
    let f2 = seed_subject(store, &a, [22; 32]);
    let fb = seed_subject(store, &b, [21; 32]);
    let subjects = [f1.subject.clone(), f2.subject.clone(), fb.subject.clone()];
    let check = |label: &str, records: usize| {
        for round in ["first", "second"] {
            let (consulted, written) = purpose_views(store, &a, &service, &subjects);
            assert_eq!(consulted, written, "{label}: {round} read");
            assert_eq!(consulted.0.len(), records, "{label}: {round} read");
            assert!(consulted.2[2].is_none(), "B's subject is not A's");
        }
        let (theirs, _) = purpose_views(store, &b, &service, &subjects);
        assert_eq!(
            theirs.0.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            vec![fb.record.clone()],
            "{label}: controller B's purpose"
        );
        assert_eq!(
            theirs.1.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            vec![fb.subject.clone()],
            "{label}: controller B's subjects"
        );
    };
    check("seeded", 2);
    let added = RecordId::from_random(rand16());
    let record = |id: &RecordId| {
        let mut row = None;
        store
            .transact(&a, now(), &mut |tx| {
                row = tx.record(id)?;
                Ok(draft(&a, Operation::Consultation))
            })
            .unwrap();
        row.expect("the record exists")
    };
    let first = record(&f1.record);
    let mut new_record = first.clone();
    new_record.id = added.clone();
    let mut new_header = first.clone();
    std::sync::Arc::make_mut(&mut new_header.header.meta).recipients = vec!["auditors".into()];
    new_header.header.updated_at = now() + Duration::seconds(1);
    let mut new_fields = new_header.clone();
    new_fields.fields[0].sealed = vec![5; 41];
    let mut moved = new_fields.clone();
    moved.subject = f2.subject.clone();
    let changes: Vec<(&str, usize, Change<'_>)> = vec![
        (
            "a record added",
            3,
            Box::new(|tx| tx.insert_record(&new_record).map_err(TxError::from)),
        ),
        (
            "a header rewritten",
            3,
            Box::new(|tx| {
                assert!(tx.rewrite_record(&first, &new_header)?);
                Ok(())
            }),
        ),
        (
            "fields rewritten",
            3,
            Box::new(|tx| {
                assert!(tx.rewrite_record(&new_header, &new_fields)?);
                Ok(())
            }),
        ),
        (
            "a record moved to another subject",
            3,
            Box::new(|tx| {
                assert!(tx.rewrite_record(&new_fields, &moved)?);
                Ok(())
            }),
        ),
        (
            "an item set on the whole purpose",
            3,
            Box::new(|tx| {
                let at = now() + Duration::seconds(2);
                let n =
                    tx.alter_purpose_meta(&service, &MetaChange::Source(Some("bulk")), &[], at)?;
                assert_eq!(n, 3);
                Ok(())
            }),
        ),
        (
            "a subject restricted",
            3,
            Box::new(|tx| tx.set_restricted(&f1.subject, true).map_err(TxError::from)),
        ),
        (
            "a record deleted",
            2,
            Box::new(|tx| tx.delete_record(&f2.record).map_err(TxError::from)),
        ),
        (
            "a subject erased",
            1,
            Box::new(|tx| {
                tx.erase_subject(&f2.subject, now(), "test")
                    .map(|_| ())
                    .map_err(TxError::from)
            }),
        ),
        (
            "everything destroyed",
            0,
            Box::new(|tx| {
                tx.destroy_all("certificate", now())
                    .map(|_| ())
                    .map_err(TxError::from)
            }),
        ),
    ];
    for (label, records, change) in changes {
        // The same change rolled back first: nothing moves.
        let before = purpose_views(store, &a, &service, &subjects);
        let r = store.transact(&a, now(), &mut |tx| {
            change(tx)?;
            Err(TxError::Denied(Denial::NotFound))
        });
        assert!(matches!(r, Err(TxError::Denied(Denial::NotFound))));
        assert_eq!(
            purpose_views(store, &a, &service, &subjects),
            before,
            "{label}, rolled back"
        );
        store
            .transact(&a, now(), &mut |tx| {
                change(tx)?;
                Ok(draft(&a, Operation::Alteration))
            })
            .unwrap();
        check(label, records);
    }
}

/// `alter_purpose_meta` sets one item on every record of one purpose of its controller but
/// the excepted subjects', with the update time given; the expiry is capped for each record
/// as `Purpose::expiry` caps it from the record's collection; nothing else changes.
fn purpose_metadata_set_at_once(store: &dyn Store) {
    let a = new_controller(store);
    let b = new_controller(store);
    let f1 = seed_subject(store, &a, [31; 32]);
    let f2 = seed_subject(store, &a, [32; 32]);
    let f3 = seed_subject(store, &a, [33; 32]);
    let fb = seed_subject(store, &b, [31; 32]);
    let service = PurposeName::parse("service").unwrap();
    let documented = purpose("service", &["user"]);
    // One of f1's records was collected long ago: its retention ends before the new expiry.
    let old = RecordId::from_random(rand16());
    let collected = now() - Duration::days(40);
    store
        .transact(&a, now(), &mut |tx| {
            let mut row = tx.record(&f1.record)?.expect("seeded");
            row.id = old.clone();
            row.header.created_at = collected;
            row.header.updated_at = collected;
            tx.insert_record(&row)?;
            Ok(draft(&a, Operation::Collection))
        })
        .unwrap();
    let read = |c: &ControllerId| purpose_records(store, c, &service);
    let before = read(&a);
    let before_b = read(&b);
    assert_eq!(before.len(), 4);
    // Counted by subject: f1 holds two records, the smaller id named; B's are not A's.
    let mut counts = Vec::new();
    store
        .transact(&a, now(), &mut |tx| {
            counts = tx.record_counts_of_purpose(&service)?;
            assert!(
                tx.record_counts_of_purpose(&PurposeName::parse("nothing").unwrap())?
                    .is_empty()
            );
            Ok(draft(&a, Operation::Consultation))
        })
        .unwrap();
    counts.sort_by(|x, y| x.subject.as_str().cmp(y.subject.as_str()));
    let mut want: Vec<RecordCount> = [&f1, &f2, &f3]
        .iter()
        .map(|f| {
            let mine: Vec<&RecordRow> = before.iter().filter(|r| r.subject == f.subject).collect();
            RecordCount {
                subject: f.subject.clone(),
                records: mine.len() as u64,
                first: mine
                    .iter()
                    .map(|r| r.id.clone())
                    .min_by(|x, y| x.as_str().cmp(y.as_str()))
                    .unwrap(),
            }
        })
        .collect();
    want.sort_by(|x, y| x.subject.as_str().cmp(y.subject.as_str()));
    assert_eq!(counts, want);
    assert_eq!(
        want.iter()
            .find(|c| c.subject == f1.subject)
            .unwrap()
            .records,
        2
    );
    let at = now() + Duration::seconds(5);
    let requested = now() + Duration::days(20);
    let recipients = ["auditors".to_owned(), "support".to_owned()];
    store
        .transact(&a, at, &mut |tx| {
            let mut set = |change: MetaChange<'_>, except: &[SubjectId]| {
                tx.alter_purpose_meta(&service, &change, except, at)
            };
            assert_eq!(
                set(
                    MetaChange::Source(Some("crm import")),
                    std::slice::from_ref(&f2.subject)
                )?,
                3
            );
            assert_eq!(set(MetaChange::Recipients(&recipients), &[])?, 4);
            let not_f1 = [f2.subject.clone(), f3.subject.clone()];
            assert_eq!(
                set(MetaChange::AutomatedDecision(Some("scoring")), &not_f1)?,
                2
            );
            let expiry = MetaChange::ExpiresAt {
                requested,
                retention: documented.retention(),
            };
            assert_eq!(set(expiry, &[])?, 4);
            Ok(draft(&a, Operation::Alteration))
        })
        .unwrap();
    let after = read(&a);
    assert_eq!(after.len(), 4);
    for (was, is) in before.iter().zip(&after) {
        assert_eq!(
            (&is.id, &is.subject, &is.fields),
            (&was.id, &was.subject, &was.fields)
        );
        assert_eq!(
            (&is.header.purpose, is.header.created_at),
            (&was.header.purpose, was.header.created_at)
        );
        assert_eq!(is.header.updated_at, at);
        let of_f1 = is.subject == f1.subject;
        let source = if is.subject == f2.subject {
            "signup form"
        } else {
            "crm import"
        };
        assert_eq!(is.header.meta.source.as_deref(), Some(source));
        assert_eq!(is.header.meta.recipients, recipients);
        assert_eq!(
            is.header.meta.automated_decision.as_deref(),
            of_f1.then_some("scoring")
        );
        assert_eq!(
            is.header.expires_at,
            documented.expiry(is.header.created_at, Some(requested))
        );
    }
    let capped = after.iter().find(|r| r.id == old).unwrap();
    assert_eq!(capped.header.expires_at, collected + Duration::days(30));
    // B's records are not A's to change, and B's own statement changes only B's.
    assert_eq!(read(&b), before_b);
    store
        .transact(&b, at, &mut |tx| {
            let n = tx.alter_purpose_meta(&service, &MetaChange::Source(None), &[], at)?;
            assert_eq!(n, 1);
            Ok(draft(&b, Operation::Alteration))
        })
        .unwrap();
    assert_eq!(read(&a), after);
    let theirs = read(&b);
    assert_eq!(theirs[0].id, fb.record);
    assert_eq!(theirs[0].header.meta.source, None);
}

/// A record whose expiry has come (at the unit's instant, `DataTx::now`, inclusive) is left
/// out of a purpose's counts, of a statement over the purpose's records and of lookups,
/// while the retention sweep has not erased it yet; a record one microsecond from its
/// expiry is still in all three.
fn expired_records_are_not_counted_altered_or_found(store: &dyn Store) {
    let a = new_controller(store);
    let live = seed_subject(store, &a, [51; 32]);
    let ending = seed_subject(store, &a, [52; 32]);
    let service = PurposeName::parse("service").unwrap();
    let end = now() + Duration::hours(1);
    store
        .transact(&a, now(), &mut |tx| {
            let old = tx.record(&ending.record)?.expect("seeded");
            let mut new = old.clone();
            new.header.expires_at = end;
            assert!(tx.rewrite_record(&old, &new)?);
            Ok(draft(&a, Operation::Alteration))
        })
        .unwrap();
    let look = |tx: &mut dyn DataTx, digest: u8| tx.find_subjects(LookupKind::Email, &[digest; 32]);
    let counted = |tx: &mut dyn DataTx| -> crate::Result<Vec<SubjectId>> {
        let mut s: Vec<SubjectId> = tx
            .record_counts_of_purpose(&service)?
            .into_iter()
            .map(|c| c.subject)
            .collect();
        s.sort();
        Ok(s)
    };
    let mut both = vec![live.subject.clone(), ending.subject.clone()];
    both.sort();
    let just_before = end - Duration::microseconds(1);
    store
        .transact(&a, just_before, &mut |tx| {
            assert_eq!(tx.now(), just_before);
            assert_eq!(counted(tx)?, both);
            assert_eq!(look(tx, 52)?, vec![ending.subject.clone()]);
            Ok(draft(&a, Operation::Consultation))
        })
        .unwrap();
    store
        .transact(&a, end, &mut |tx| {
            assert_eq!(counted(tx)?, vec![live.subject.clone()]);
            assert!(look(tx, 52)?.is_empty(), "an expired record's lookup entry");
            assert_eq!(look(tx, 51)?, vec![live.subject.clone()]);
            let n =
                tx.alter_purpose_meta(&service, &MetaChange::Source(Some("later")), &[], end)?;
            assert_eq!(n, 1);
            Ok(draft(&a, Operation::Alteration))
        })
        .unwrap();
    let source = |id: &RecordId| {
        purpose_records(store, &a, &service)
            .into_iter()
            .find(|r| &r.id == id)
            .expect("still stored until the sweep")
            .header
            .meta
            .source
            .clone()
    };
    assert_eq!(source(&live.record).as_deref(), Some("later"));
    assert_eq!(source(&ending.record).as_deref(), Some("signup form"));
}

/// A purpose's records as a reader sees them, in id order.
fn purpose_records(store: &dyn Store, c: &ControllerId, p: &PurposeName) -> Vec<RecordRow> {
    let mut out = Vec::new();
    store
        .consult(c, now(), &mut |tx| {
            out = tx.records_of_purpose(p)?.to_vec();
            Ok(draft(c, Operation::Consultation))
        })
        .unwrap();
    out.sort_by(|x, y| x.id.as_str().cmp(y.id.as_str()));
    out
}

/// `records_of_purpose` answers by subject (ids in byte order), each subject's records oldest
/// first, whether the rows are read or kept, and again after the purpose changed.
fn a_purposes_records_come_by_subject(store: &dyn Store) {
    let a = new_controller(store);
    let fixtures: Vec<Fixture> = (0..3u8)
        .map(|i| seed_subject(store, &a, [50 + i; 32]))
        .collect();
    let service = PurposeName::parse("service").unwrap();
    let add = |n: i64, from: i64| {
        store
            .transact(&a, now(), &mut |tx| {
                let seeded = tx.record(&fixtures[0].record)?.expect("seeded");
                for i in from..from + n {
                    let mut row = seeded.clone();
                    row.id = RecordId::from_random(rand16());
                    // Subjects interleaved in time, and some records older than others.
                    row.subject = fixtures[(i % 3) as usize].subject.clone();
                    row.header.created_at = now() - Duration::seconds(100 - (i * 7) % 40);
                    if i % 5 == 4 {
                        row.header.purpose = PurposeName::parse("other").unwrap();
                    }
                    tx.insert_record(&row)?;
                }
                Ok(draft(&a, Operation::Collection))
            })
            .unwrap();
    };
    let read = || {
        let mut out = Vec::new();
        store
            .consult(&a, now(), &mut |tx| {
                out = tx.records_of_purpose(&service)?.to_vec();
                Ok(draft(&a, Operation::Consultation))
            })
            .unwrap();
        out
    };
    let expect_order = |got: &[RecordRow], n: usize| {
        assert_eq!(got.len(), n);
        assert!(got.iter().all(|r| r.header.purpose == service));
        let key = |r: &RecordRow| {
            (
                r.subject.as_bytes().to_vec(),
                r.header.created_at,
                r.id.clone(),
            )
        };
        let mut want = got.to_vec();
        want.sort_by_key(key);
        assert_eq!(
            got.iter().map(|r| &r.id).collect::<Vec<_>>(),
            want.iter().map(|r| &r.id).collect::<Vec<_>>()
        );
        let subjects: BTreeSet<&SubjectId> = got.iter().map(|r| &r.subject).collect();
        assert_eq!(subjects.len(), 3);
    };
    add(20, 0);
    // 3 seeded, 16 of the 20 added (every fifth is another purpose's).
    let first = read();
    expect_order(&first, 19);
    // A second read (kept rows, where a backend keeps them) answers the same.
    assert_eq!(read(), first);
    add(10, 20);
    expect_order(&read(), 27);
}

/// `rewrite_records` over more records than a backend rewrites one at a time: each record
/// gets its own new values (fields, subject, metadata, expiry), the union of what changed is
/// set and nothing else; records of another purpose or controller stay; lookup entries
/// follow moved records; a record that is not there is not counted.
fn many_records_rewritten_at_once(store: &dyn Store) {
    let a = new_controller(store);
    let b = new_controller(store);
    let f1 = seed_subject(store, &a, [41; 32]);
    let f2 = seed_subject(store, &a, [42; 32]);
    let fb = seed_subject(store, &b, [41; 32]);
    let (service, other) = (
        PurposeName::parse("service").unwrap(),
        PurposeName::parse("other").unwrap(),
    );
    // 40 more of f1's records under `service`, one under another purpose.
    store
        .transact(&a, now(), &mut |tx| {
            let seeded = tx.record(&f1.record)?.expect("seeded");
            for i in 0..41 {
                let mut row = seeded.clone();
                row.id = RecordId::from_random(rand16());
                row.header.created_at = now() - Duration::seconds(100 - i);
                if i == 40 {
                    row.header.purpose = other.clone();
                }
                tx.insert_record(&row)?;
            }
            Ok(draft(&a, Operation::Collection))
        })
        .unwrap();
    let read = |c: &ControllerId, p: &PurposeName| purpose_records(store, c, p);
    let before = read(&a, &service);
    assert_eq!(before.len(), 42);
    let (other_before, b_before) = (read(&a, &other), read(&b, &service));
    let at = now() + Duration::seconds(7);
    let mut want = Vec::new();
    let mut pairs = Vec::new();
    for (i, old) in before.iter().enumerate() {
        let mut new = old.clone();
        new.header.updated_at = at;
        // Every record a sealed value of its own; some moved, some with new metadata.
        new.fields[0].sealed = vec![i as u8; 40 + i % 3];
        if i % 3 == 0 || old.id == f1.record {
            new.subject = f2.subject.clone();
        }
        if i % 4 == 0 {
            std::sync::Arc::make_mut(&mut new.header.meta).source = Some(format!("batch {i}"));
        }
        if i % 5 == 0 {
            new.header.expires_at = at + Duration::days(i as i64);
        }
        want.push(new.clone());
        pairs.push((old, new));
    }
    store
        .transact(&a, at, &mut |tx| {
            assert_eq!(tx.rewrite_records(&service, &pairs)?, 42);
            // A record that is not there is not counted; the others are written.
            let mut gone = before[1].clone();
            gone.id = RecordId::from_random(rand16());
            let mut again: Vec<(&RecordRow, RecordRow)> = want
                .iter()
                .map(|r| {
                    let mut new = r.clone();
                    new.header.updated_at = at + Duration::seconds(1);
                    (r, new)
                })
                .collect();
            again.push((&gone, gone.clone()));
            assert_eq!(tx.rewrite_records(&service, &again)?, 42);
            // B's records are not A's to rewrite.
            let theirs = [(&b_before[0], b_before[0].clone())];
            assert_eq!(tx.rewrite_records(&service, &theirs)?, 0);
            Ok(draft(&a, Operation::Alteration))
        })
        .unwrap();
    let after = read(&a, &service);
    let mut want: Vec<RecordRow> = want
        .into_iter()
        .map(|mut r| {
            r.header.updated_at = at + Duration::seconds(1);
            r
        })
        .collect();
    want.sort_by(|x, y| x.id.as_str().cmp(y.id.as_str()));
    assert_eq!(after, want);
    assert_eq!(read(&a, &other), other_before);
    assert_eq!(read(&b, &service), b_before);
    assert_eq!(b_before[0].id, fb.record);
    // The seeded record moved: its lookup entry followed it.
    store
        .consult(&a, now(), &mut |tx| {
            assert_eq!(
                tx.find_subjects(LookupKind::Email, &[41; 32])?,
                vec![f2.subject.clone()]
            );
            Ok(draft(&a, Operation::Consultation))
        })
        .unwrap();
}

fn bulk_entries_found_by_subject(store: &dyn Store) {
    let a = new_controller(store);
    let chain = ChainId::Controller(a.clone());
    let (s1, s2, s3) = (
        SubjectId::from_random(rand16()),
        SubjectId::from_random(rand16()),
        SubjectId::from_random(rand16()),
    );
    let written = store
        .append_audit(
            vec![
                draft(&a, Operation::Retrieval).subject(&s1),
                draft(&a, Operation::Consultation)
                    .subjects(vec![s1.clone(), s2.clone()])
                    .fields(["email"]),
                draft(&a, Operation::Retrieval).subject(&s2),
                draft(&a, Operation::Retrieval).subject(&s3),
            ],
            now(),
        )
        .unwrap();
    // The bulk entry round-trips with its subjects, and hashes as written.
    let stored = store.audit_page(&chain, 0, 100).unwrap();
    assert_eq!(stored, written);
    let bulk = &stored[stored.len() - 3];
    assert_eq!(bulk.draft.subjects, vec![s1.clone(), s2.clone()]);
    assert_eq!(
        custodian_crypto::hash::chain_link(&bulk.prev_hash, &bulk.canonical_bytes()),
        bulk.hash
    );
    // The raw scan `verify` hashes gives each entry's canonical bytes from the stored
    // columns, the same bytes as the decoded entry, over any range.
    let mut raw = Vec::new();
    store
        .scan_audit_raw(&chain, 1, Some(stored.len() as u64 - 1), &mut |e| {
            raw.push((
                e.seq,
                e.chain.to_owned(),
                e.prev_hash,
                e.hash,
                e.canonical.to_vec(),
            ));
            Ok(())
        })
        .unwrap();
    let want: Vec<_> = stored[1..stored.len() - 1]
        .iter()
        .map(|e| {
            (
                e.seq,
                chain.as_string(),
                e.prev_hash,
                e.hash,
                e.canonical_bytes(),
            )
        })
        .collect();
    assert_eq!(raw, want);
    let seqs = |s: &SubjectId, after: u64, limit: u32| history_seqs(store, &chain, s, after, limit);
    let n = stored.len() as u64;
    assert_eq!(seqs(&s1, 0, 100), vec![n - 3, n - 2]);
    assert_eq!(seqs(&s2, 0, 100), vec![n - 2, n - 1]);
    assert_eq!(seqs(&s3, 0, 100), vec![n]);
    assert_eq!(seqs(&s1, n - 3, 100), vec![n - 2], "paged after a seq");
    assert_eq!(seqs(&s2, 0, 1), vec![n - 2], "limited");
    // Another controller's chain never answers for these subjects.
    let b = ChainId::Controller(new_controller(store));
    assert!(store.audit_of_subject(&b, &s1, 0, 100).unwrap().is_empty());
}

/// Over a chain long enough for a backend to index it in several pieces (SQLite: runs
/// of 512 entries, then a tail it reads entry by entry), and written in transactions of
/// varied sizes, a subject's history is exactly the entries naming it, alone or among
/// others, and pages the same way from any point.
fn a_subjects_history_holds_over_long_chains(store: &dyn Store) {
    let a = new_controller(store);
    let chain = ChainId::Controller(a.clone());
    let pool: Vec<SubjectId> = (0..12).map(|_| SubjectId::from_random(rand16())).collect();
    let mut want: Vec<Vec<u64>> = vec![Vec::new(); pool.len()];
    let mut seq = 0u64;
    let mut i = 0usize;
    for batch in [1usize, 300, 700, 2, 333] {
        let drafts: Vec<AuditDraft> = (0..batch)
            .map(|_| {
                i += 1;
                seq += 1;
                let d = draft(&a, Operation::Consultation);
                match i % 7 {
                    // about nobody
                    0 => d,
                    // about one subject
                    1 | 2 => {
                        let k = i % pool.len();
                        want[k].push(seq);
                        d.subject(&pool[k])
                    }
                    // bulk: a varying subset of the pool
                    _ => {
                        let named: Vec<usize> = (0..pool.len())
                            .filter(|k| (i * 31 + k * 7) % 5 < 2)
                            .collect();
                        for &k in &named {
                            want[k].push(seq);
                        }
                        d.subjects(named.iter().map(|&k| pool[k].clone()).collect())
                    }
                }
            })
            .collect();
        store.append_audit(drafts, now()).unwrap();
    }
    assert_eq!(store.audit_head(&chain).unwrap().map(|(s, _)| s), Some(seq));
    let history =
        |s: &SubjectId, after: u64, limit: u32| history_seqs(store, &chain, s, after, limit);
    for (k, s) in pool.iter().enumerate() {
        assert!(want[k].len() > 100, "subject {k} is named often");
        assert_eq!(
            history(s, 0, 100_000),
            want[k],
            "subject {k}, whole history"
        );
        for after in [1, 511, 512, 513, 700, 1024, 1100, seq - 1, seq] {
            let expected: Vec<u64> = want[k]
                .iter()
                .copied()
                .filter(|&q| q > after)
                .take(37)
                .collect();
            assert_eq!(
                history(s, after, 37),
                expected,
                "subject {k}, after {after}"
            );
        }
    }
}

/// Records by id, each with its fields as (name, category, ciphertext).
#[cfg(test)]
pub(crate) type StoredRecords =
    std::collections::BTreeMap<RecordId, Vec<(String, String, Vec<u8>)>>;

/// A subject's records as stored, each with its fields as (name, category, ciphertext),
/// read in one audited consultation (how the migration tests look at what they moved).
#[cfg(test)]
pub(crate) fn stored_records(store: &dyn Store, c: &ControllerId, s: &SubjectId) -> StoredRecords {
    let mut seen = Vec::new();
    store
        .consult(c, now(), &mut |tx: &mut dyn DataTx| {
            seen = tx.records_of(s)?;
            Ok(draft(c, Operation::Consultation))
        })
        .unwrap();
    seen.into_iter()
        .map(|r| {
            let fields = r
                .fields
                .into_iter()
                .map(|f| (f.name.to_string(), f.category.as_str().to_owned(), f.sealed))
                .collect();
            (r.id, fields)
        })
        .collect()
}

/// The three records both backends' migration-8 tests write at version 7 (two fields, one
/// field, none), as migration 8 must have moved them.
#[cfg(test)]
pub(crate) fn check_migration_8_sample(seen: &StoredRecords, [r1, r2, r3]: [&RecordId; 3]) {
    let fields = |id: &RecordId| seen.get(id).expect("record kept").clone();
    assert_eq!(
        fields(r1),
        [
            ("email".into(), "user.contact.email".into(), vec![0x0c]),
            (
                "phone".into(),
                "user.contact.phone_number".into(),
                vec![0x0a, 0x0b]
            ),
        ]
    );
    assert_eq!(
        fields(r2),
        [("name".into(), "user.name".into(), vec![0x0d, 0x0e, 0x0f])]
    );
    assert!(fields(r3).is_empty());
}

/// The seqs of a subject's history on `chain` after `after`, at most `limit`.
pub(crate) fn history_seqs(
    store: &dyn Store,
    chain: &ChainId,
    s: &SubjectId,
    after: u64,
    limit: u32,
) -> Vec<u64> {
    store
        .audit_of_subject(chain, s, after, limit)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect()
}

fn chain_links_and_pages(store: &dyn Store) {
    let a = new_controller(store);
    let chain = ChainId::Controller(a.clone());
    let drafts: Vec<AuditDraft> = (0..25)
        .map(|i| {
            let d = draft(&a, Operation::Retrieval).fields([format!("f{i}")]);
            if i % 5 == 0 {
                d.refused("purpose x does not allow retrieval")
            } else {
                d
            }
        })
        .collect();
    let written = store.append_audit(drafts, now()).unwrap();
    assert_eq!(written.len(), 25);
    let mut prev = GENESIS;
    let mut all = Vec::new();
    store
        .scan_audit(&chain, &mut |e| {
            all.push(e);
            Ok(())
        })
        .unwrap();
    assert_eq!(all, written);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
        assert_eq!(e.prev_hash, prev);
        let recomputed = custodian_crypto::hash::chain_link(&prev, &e.unhashed().canonical_bytes());
        assert_eq!(
            recomputed, e.hash,
            "stored entry {} must hash as written",
            e.seq
        );
        prev = e.hash;
    }
    assert!(matches!(all[0].draft.outcome, Outcome::Refused { .. }));
    assert_eq!(store.audit_head(&chain).unwrap(), Some((25, prev)));
    let page = store.audit_page(&chain, 10, 5).unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![11, 12, 13, 14, 15]
    );
    assert!(store.audit_page(&chain, 25, 5).unwrap().is_empty());
    let chains = store.audit_chains().unwrap();
    assert!(chains.contains(&chain) && chains.contains(&ChainId::System));
    // Every chain with an entry, once each and in the order of its name, however many
    // entries each holds.
    let others: Vec<ControllerId> = (0..3).map(|_| new_controller(store)).collect();
    for (n, c) in others.iter().enumerate() {
        let drafts = (0..=n).map(|_| draft(c, Operation::Retrieval)).collect();
        store.append_audit(drafts, now()).unwrap();
    }
    let mut expected: Vec<ChainId> = chains
        .into_iter()
        .chain(others.into_iter().map(ChainId::Controller))
        .collect();
    expected.sort_by_key(ChainId::as_string);
    expected.dedup();
    let listed = store.audit_chains().unwrap();
    assert_eq!(listed, expected);
}

fn erasure_removes_everything(store: &dyn Store) {
    let a = new_controller(store);
    let digest = [3u8; 32];
    let f = seed_subject(store, &a, digest);
    let keep = seed_subject(store, &a, [4u8; 32]);
    let mut counts = ErasedCounts::default();
    store
        .transact(&a, now(), &mut |tx| {
            counts = tx.erase_subject(&f.subject, now(), "request")?;
            Ok(draft(&a, Operation::Erasure).subject(&f.subject))
        })
        .unwrap();
    assert_eq!(
        counts,
        ErasedCounts {
            records: 1,
            fields: 2,
            lookups: 1
        }
    );
    store
        .transact(&a, now(), &mut |tx| {
            assert!(tx.subject(&f.subject)?.is_none());
            assert!(tx.was_erased(&f.subject)?);
            assert!(tx.records_of(&f.subject)?.is_empty());
            assert!(tx.record(&f.record)?.is_none());
            assert!(tx.find_subjects(LookupKind::Email, &digest)?.is_empty());
            assert!(tx.subject(&keep.subject)?.is_some());
            // Erasing again is harmless.
            assert_eq!(
                tx.erase_subject(&f.subject, now(), "again")?,
                ErasedCounts::default()
            );
            Ok(draft(&a, Operation::Erasure))
        })
        .unwrap();
}

fn objections_and_restriction(store: &dyn Store) {
    let a = new_controller(store);
    let f = seed_subject(store, &a, [5; 32]);
    let marketing = PurposeName::parse("marketing").unwrap();
    store
        .transact(&a, now(), &mut |tx| {
            tx.add_objection(&f.subject, &marketing, now())?;
            tx.add_objection(&f.subject, &marketing, now())?;
            assert_eq!(tx.objections(&f.subject)?, vec![marketing.clone()]);
            tx.set_restricted(&f.subject, true)?;
            assert!(tx.subject(&f.subject)?.unwrap().restricted);
            assert!(tx.remove_objection(&f.subject, &marketing)?);
            assert!(!tx.remove_objection(&f.subject, &marketing)?);
            tx.set_restricted(&f.subject, false)?;
            Ok(draft(&a, Operation::Restriction))
        })
        .unwrap();
}

fn checkpoints_round_trip(store: &dyn Store) {
    let a = new_controller(store);
    let chain = ChainId::Controller(a);
    let cp = Checkpoint {
        chain: chain.clone(),
        seq: 3,
        hash: [6; 32],
        signed_at: now(),
        signature: [7; 64],
    };
    assert_eq!(store.last_checkpoint(&chain).unwrap(), None);
    store.insert_checkpoint(&cp).unwrap();
    store.insert_checkpoint(&cp).unwrap();
    assert_eq!(store.checkpoints(&chain).unwrap(), vec![cp.clone()]);
    // The last is the one with the highest seq, whatever the order they came in.
    let at = |seq| Checkpoint { seq, ..cp.clone() };
    store.insert_checkpoint(&at(10)).unwrap();
    store.insert_checkpoint(&at(7)).unwrap();
    assert_eq!(store.last_checkpoint(&chain).unwrap(), Some(at(10)));
    assert_eq!(
        store.checkpoints(&chain).unwrap(),
        vec![at(3), at(7), at(10)]
    );
}

fn duplicate_ids_conflict(store: &dyn Store) {
    let a = new_controller(store);
    let f = seed_subject(store, &a, [8; 32]);
    let r = store.transact(&a, now(), &mut |tx| {
        tx.insert_subject(&SubjectRow {
            id: f.subject.clone(),
            category: SubjectCategory::Employee,
            restricted: false,
            wrapped_key: vec![0; 60],
            created_at: now(),
        })?;
        Ok(draft(&a, Operation::Collection))
    });
    assert!(
        matches!(r, Err(TxError::Store(StoreError::Conflict(_)))),
        "{r:?}"
    );
}

fn requests_and_outbox(store: &dyn Store) {
    use custodian_core::dsr::{RequestState, Right};
    use custodian_core::ids::DsrId;
    let a = new_controller(store);
    let b = new_controller(store);
    let id = DsrId::from_random(rand16());
    let received = now();
    let mut row = DsrRequestRow {
        id: id.clone(),
        right: Right::Erasure,
        state: RequestState::Received,
        sealed_details: vec![3; 50],
        received_at: received,
        due_at: received + Duration::days(30),
        extended_months: 0,
        extension_reason: None,
        subject: None,
        identity_confirmed_at: None,
        closed_at: None,
        note: None,
    };
    let r = row.clone();
    store
        .transact(&a, now(), &mut |tx| {
            tx.insert_request(&r)?;
            tx.enqueue("dsr.received", "{\"request\":\"x\"}", now())?;
            Ok(draft(&a, Operation::Collection))
        })
        .unwrap();
    let status = store.request_status(&id).unwrap().expect("status");
    assert_eq!(status.controller, a);
    assert_eq!(status.state, RequestState::Received);
    assert!(
        store
            .request_status(&DsrId::from_random(rand16()))
            .unwrap()
            .is_none()
    );
    let due = store.outbox_due(now() + Duration::seconds(1), 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].controller, a);
    assert_eq!(due[0].topic, "dsr.received");
    // B cannot see or change A's request.
    store
        .transact(&b, now(), &mut |tx| {
            assert!(tx.request(&id)?.is_none());
            assert!(tx.requests(false)?.is_empty());
            Ok(draft(&b, Operation::Consultation))
        })
        .unwrap();
    row.state = RequestState::Fulfilled;
    row.subject = Some(SubjectId::from_random(rand16()));
    row.closed_at = Some(now());
    row.note = Some("done".into());
    let r = row.clone();
    store
        .transact(&a, now(), &mut |tx| {
            assert_eq!(tx.requests(true)?.len(), 1);
            tx.update_request(&r)?;
            assert_eq!(tx.request(&r.id)?.as_ref(), Some(&r));
            assert!(tx.requests(true)?.is_empty());
            assert_eq!(tx.requests(false)?.len(), 1);
            Ok(draft(&a, Operation::Alteration))
        })
        .unwrap();
}

fn retention_holds_and_destruction(store: &dyn Store) {
    let a = new_controller(store);
    let b = new_controller(store);
    let fa = seed_subject(store, &a, [21; 32]);
    let fb = seed_subject(store, &b, [22; 32]);
    let keep_b = seed_subject(store, &b, [23; 32]);
    let chain_a = ChainId::Controller(a.clone());

    // Retention: records expire 30 days after seeding.
    let expired = store
        .expired_records(now() + Duration::days(31), 100)
        .unwrap();
    let ea = expired
        .iter()
        .find(|e| e.record == fa.record)
        .expect("A's record expired");
    assert_eq!((&ea.controller, &ea.subject), (&a, &fa.subject));
    assert_eq!(ea.purpose.as_str(), "service");
    assert!(
        store
            .expired_records(now(), 100)
            .unwrap()
            .iter()
            .all(|e| e.record != fa.record)
    );
    let sched = store.expiry_schedule(Some(&a)).unwrap();
    assert_eq!(sched.len(), 1, "{sched:?}");
    assert_eq!((&sched[0].controller, sched[0].records), (&a, 1));
    assert_eq!(
        sched[0].day,
        (now() + Duration::days(30)).date(),
        "bucketed by UTC day"
    );
    let all = store.expiry_schedule(None).unwrap();
    assert_eq!(all.iter().map(|x| x.records).sum::<u64>(), 3);

    // Inside one unit of work: subject ids, extra audit entries, a legal hold, a status.
    let head_before = store.audit_head(&chain_a).unwrap().unwrap().0;
    let placed_at = now();
    store
        .transact(&a, now(), &mut |tx| {
            assert_eq!(tx.subject_ids()?, vec![fa.subject.clone()]);
            tx.append_audit(draft(&a, Operation::Erasure).record(&fa.record))?;
            tx.append_audit(draft(&a, Operation::Erasure))?;
            assert!(tx.active_hold()?.is_none());
            tx.insert_hold(&LegalHoldRow {
                controller: a.clone(),
                placed_at,
                basis: "court order".into(),
                previous_status: ControllerStatus::Active,
                lifted_at: None,
            })?;
            tx.set_status(ControllerStatus::LegalHold)?;
            Ok(draft(&a, Operation::Restriction))
        })
        .unwrap();
    assert_eq!(
        store.audit_head(&chain_a).unwrap().unwrap().0,
        head_before + 3,
        "two extra entries and the unit's own"
    );
    let mut prev = GENESIS;
    store
        .scan_audit(&chain_a, &mut |e| {
            assert_eq!(e.prev_hash, prev, "entry {} links", e.seq);
            prev = e.hash;
            Ok(())
        })
        .unwrap();
    assert_eq!(store.audit_head(&chain_a).unwrap().unwrap().1, prev);
    assert_eq!(
        store.controller(&a).unwrap().unwrap().controller.status,
        ControllerStatus::LegalHold
    );
    store
        .transact(&a, now(), &mut |tx| {
            let hold = tx.active_hold()?.expect("hold in force");
            assert_eq!(
                (hold.placed_at, hold.basis.as_str()),
                (placed_at, "court order")
            );
            assert_eq!(hold.previous_status, ControllerStatus::Active);
            tx.lift_hold(hold.placed_at, now())?;
            assert!(tx.active_hold()?.is_none());
            tx.set_status(ControllerStatus::Active)?;
            Ok(draft(&a, Operation::Restriction))
        })
        .unwrap();

    // The erasure ledger lists every controller's erasures.
    store
        .transact(&b, now(), &mut |tx| {
            tx.erase_subject(&fb.subject, now(), "request")?;
            Ok(draft(&b, Operation::Erasure))
        })
        .unwrap();
    store
        .transact(&a, now(), &mut |tx| {
            tx.erase_subject(&SubjectId::from_random(rand16()), now(), "request")?;
            Ok(draft(&a, Operation::Erasure))
        })
        .unwrap();
    let ledger = store.erasures().unwrap();
    assert!(
        ledger
            .iter()
            .any(|e| e.controller == b && e.subject == fb.subject)
    );
    assert_eq!(ledger.iter().filter(|e| e.controller == a).count(), 1);

    // Destruction: every row of A's personal data and its key go; B is untouched.
    let ta = token(Some(&a), Role::ControllerApp);
    store
        .insert_token(
            &ta,
            AuditDraft::new(
                chain_a.clone(),
                "x",
                Action::Admin(AdminAction::TokenIssued),
            ),
            now(),
        )
        .unwrap();
    let mut counts = DestroyedCounts::default();
    store
        .transact(&a, now(), &mut |tx| {
            counts = tx.destroy_all("certificate of destruction", now())?;
            Ok(draft(&a, Operation::Destruction))
        })
        .unwrap();
    assert_eq!(
        counts,
        DestroyedCounts {
            subjects: 1,
            records: 1,
            fields: 2,
            requests: 0
        }
    );
    let gone = store.controller(&a).unwrap().unwrap();
    assert!(gone.wrapped_key.is_empty());
    assert_eq!(gone.controller.status, ControllerStatus::Destroyed);
    assert!(
        store
            .token_by_hash(&ta.hash)
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert_eq!(
        store.destruction_certificate(&a).unwrap().as_deref(),
        Some("certificate of destruction")
    );
    assert!(store.destruction_certificate(&b).unwrap().is_none());
    assert!(store.erasures().unwrap().iter().all(|e| e.controller != a));
    store
        .transact(&b, now(), &mut |tx| {
            assert!(tx.subject(&keep_b.subject)?.is_some());
            assert_eq!(tx.subject_ids()?, vec![keep_b.subject.clone()]);
            Ok(draft(&b, Operation::Consultation))
        })
        .unwrap();
}
