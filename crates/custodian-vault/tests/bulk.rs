//! The operations on sets of records (`bulk.rs`: GDPRbench's metadata queries): they stay
//! inside the named purpose, leave out subjects who restricted processing or objected, audit
//! one entry per subject touched in the same transaction, re-encrypt when records move to
//! another subject, and refuse what the purpose does not cover.

use custodian_core::audit::ChainId;
use custodian_core::category::{DataCategory, SubjectCategory};
use custodian_core::controller::ControllerName;
use custodian_core::ids::SubjectId;
use custodian_core::operation::Operation;
use custodian_core::policy::{OperatorGrant, Refusal};
use custodian_core::principal::{Principal, Role};
use custodian_core::purpose::{LawfulBasis, Purpose, PurposeName};
use custodian_core::record::{FieldInput, FieldName, FieldValue, RecordMeta};
use custodian_core::region::{MemberState, Region, RegionId};
use custodian_crypto::keys::RootKey;
use custodian_store::Store;
use custodian_store::sqlite::SqliteStore;
use custodian_vault::bulk::{RecordChange, RecordSet};
use custodian_vault::views::{NewController, NewRecord, NewSubject};
use custodian_vault::{CallContext, SystemClock, Vault, VaultError};
use std::collections::BTreeMap;
use std::sync::Arc;

struct Env {
    _dir: tempfile::TempDir,
    vault: Vault,
    store: Arc<dyn Store>,
    admin: Principal,
    app: Principal,
    chain: ChainId,
}

fn purpose(name: &str, cats: &[&str]) -> Purpose {
    Purpose {
        name: PurposeName::parse(name).unwrap(),
        description: "bulk test".into(),
        lawful_basis: LawfulBasis::Contract,
        categories: cats
            .iter()
            .map(|c| DataCategory::parse(c).unwrap())
            .collect(),
        operations: [
            Operation::Collection,
            Operation::Recording,
            Operation::Consultation,
            Operation::Retrieval,
            Operation::Alteration,
            Operation::Erasure,
            Operation::Restriction,
        ]
        .into(),
        retention_days: 30,
    }
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("c.db")).unwrap());
    let vault = Vault::new(
        store.clone(),
        RootKey::generate(1).unwrap(),
        Arc::new(SystemClock),
        Region::defaults(),
        Some(dir.path().join("checkpoints")),
    );
    let ctx = CallContext::default();
    let op = OperatorGrant::local_cli();
    let c = vault
        .create_controller(
            &op,
            NewController {
                name: ControllerName::parse("Bulk SAS").unwrap(),
                region: RegionId::parse("osc-fr1").unwrap(),
                agreement_effective: time::macros::date!(2026 - 01 - 01),
                governing_law: MemberState::parse("FR").unwrap(),
            },
            &ctx,
        )
        .unwrap();
    let token = |role| {
        let t = vault
            .issue_token_locally(&op, role, Some(c.id.clone()), "t", 3600)
            .unwrap();
        vault.authenticate(&t.secret.into()).unwrap()
    };
    let admin = token(Role::ControllerAdmin);
    let app = token(Role::ControllerApp);
    vault
        .document_purpose(&admin, purpose("crm", &["user"]), &ctx)
        .unwrap();
    vault
        .document_purpose(&admin, purpose("billing", &["user"]), &ctx)
        .unwrap();
    vault
        .document_purpose(&admin, purpose("narrow", &["user.name"]), &ctx)
        .unwrap();
    Env {
        _dir: dir,
        vault,
        store,
        admin,
        app,
        chain: ChainId::Controller(c.id),
    }
}

fn p(s: &str) -> PurposeName {
    PurposeName::parse(s).unwrap()
}

fn record(note: &str) -> NewRecord {
    NewRecord {
        fields: BTreeMap::from([
            (
                FieldName::parse("note").unwrap(),
                FieldInput {
                    category: DataCategory::parse("user.content.private").unwrap(),
                    value: FieldValue::Text(note.into()),
                },
            ),
            (
                FieldName::parse("email").unwrap(),
                FieldInput {
                    category: DataCategory::parse("user.contact.email").unwrap(),
                    value: FieldValue::Text(format!("{note}@example.org")),
                },
            ),
        ]),
        meta: RecordMeta {
            source: Some("form".into()),
            ..Default::default()
        },
        expires_at: None,
    }
}

fn subject(e: &Env, purpose: &str, note: &str) -> SubjectId {
    e.vault
        .create_subject(
            &e.app,
            &p(purpose),
            NewSubject {
                category: SubjectCategory::Customer,
                record: Some(record(note)),
            },
            &CallContext::default(),
        )
        .unwrap()
        .id
}

/// Whose records under `crm` hold the email address `value` (by its blind index).
fn by_email(e: &Env, value: &str) -> Vec<SubjectId> {
    e.vault
        .lookup(
            &e.app,
            &p("crm"),
            custodian_vault::views::LookupQuery {
                kind: custodian_core::lookup::LookupKind::Email,
                value: value.into(),
            },
            &CallContext::default(),
        )
        .unwrap()
        .subjects
}

fn head(e: &Env) -> u64 {
    e.store.audit_head(&e.chain).unwrap().map_or(0, |h| h.0)
}

#[test]
fn purpose_records_stay_in_their_purpose_skip_objectors_and_audit_once_by_subject() {
    let e = env();
    let ctx = CallContext::default();
    let a = subject(&e, "crm", "alice");
    let b = subject(&e, "crm", "bob");
    let c = subject(&e, "crm", "carol");
    let _other = subject(&e, "billing", "dave");
    e.vault
        .set_restriction(&e.app, &p("crm"), &c, true, &ctx)
        .unwrap();
    let before = head(&e);
    let got = e
        .vault
        .purpose_records(&e.app, &p("crm"), &RecordSet::Purpose, &ctx)
        .unwrap();
    let mut subjects: Vec<_> = got.iter().map(|r| r.subject.clone()).collect();
    subjects.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(
        subjects, want,
        "only crm's records, and not the restricted subject's"
    );
    assert!(got.iter().all(|r| r.purpose == p("crm")));
    let notes: Vec<_> = got
        .iter()
        .map(|r| r.fields[&FieldName::parse("note").unwrap()].value.clone())
        .collect();
    assert!(notes.contains(&FieldValue::Text("alice".into())));
    // One entry for the whole read, naming every subject read and the fields...
    let page = e.vault.audit_tail(&e.admin, 10).unwrap();
    let new: Vec<_> = page.entries.iter().filter(|x| x.seq > before).collect();
    assert_eq!(new.len(), 1);
    let x = new[0];
    assert_eq!(x.action, "consultation");
    assert_eq!(x.subject, None);
    let mut named = x.subjects.clone();
    named.sort();
    assert_eq!(named, want);
    assert_eq!(x.fields, vec!["email".to_string(), "note".to_string()]);
    // ...and each subject's own history finds it; the restricted subject's does not.
    for s in [&a, &b] {
        let h = e.vault.subject_history(&e.admin, s, 0, 100).unwrap();
        assert_eq!(h.entries.last().map(|x| x.seq), Some(x.seq));
    }
    let h = e.vault.subject_history(&e.admin, &c, 0, 100).unwrap();
    assert!(h.entries.iter().all(|y| y.seq != x.seq));
    // The application may not read the trail, even by subject.
    assert!(e.vault.subject_history(&e.app, &a, 0, 100).is_err());
    // An objection takes the subject out too.
    e.vault
        .set_objection(&e.app, &p("crm"), &b, &p("crm"), true, &ctx)
        .unwrap();
    let got = e
        .vault
        .purpose_records(&e.app, &p("crm"), &RecordSet::Purpose, &ctx)
        .unwrap();
    assert_eq!(
        got.iter().map(|r| r.subject.clone()).collect::<Vec<_>>(),
        vec![a.clone()]
    );
    // Once the purpose no longer covers the records' fields, reading them is refused, and
    // the refusal is audited.
    e.vault
        .document_purpose(&e.admin, purpose("crm", &["user.name"]), &ctx)
        .unwrap();
    let r = e
        .vault
        .purpose_records(&e.app, &p("crm"), &RecordSet::Purpose, &ctx);
    assert!(
        matches!(
            r,
            Err(VaultError::Refused(
                Refusal::PurposeForbidsCategories { .. }
            ))
        ),
        "{r:?}"
    );
    let last = e.vault.audit_tail(&e.admin, 1).unwrap();
    assert_eq!(last.entries[0].outcome, "refused");
}

#[test]
fn alterations_change_what_they_say_and_moving_records_reencrypts_them() {
    let e = env();
    let ctx = CallContext::default();
    let a = subject(&e, "crm", "alice");
    let b = subject(&e, "crm", "bob");
    let r = e
        .vault
        .alter_records(
            &e.app,
            &p("crm"),
            &RecordSet::Purpose,
            &RecordChange::Recipients(vec!["auditor".into()]),
            &ctx,
        )
        .unwrap();
    assert_eq!((r.records, r.subjects), (2, 2));
    let later = e.vault.now() + time::Duration::days(400);
    e.vault
        .alter_records(
            &e.app,
            &p("crm"),
            &RecordSet::Subject(a.clone()),
            &RecordChange::ExpiresAt(later),
            &ctx,
        )
        .unwrap();
    let view = e.vault.get_subject(&e.app, &p("crm"), &a, &ctx).unwrap();
    assert_eq!(view.records[0].meta.recipients, vec!["auditor".to_string()]);
    assert!(
        view.records[0].expires_at < e.vault.now() + time::Duration::days(31),
        "a change cannot stretch a record past its purpose's retention"
    );
    // Recategorise: validated again (a note is no email address).
    let bad = e.vault.alter_records(
        &e.app,
        &p("crm"),
        &RecordSet::Purpose,
        &RecordChange::Category {
            field: FieldName::parse("note").unwrap(),
            category: DataCategory::parse("user.contact.email").unwrap(),
        },
        &ctx,
    );
    assert!(matches!(bad, Err(VaultError::Invalid(_))), "{bad:?}");
    // Move a's records to b: b now holds both, decryptable under b's key.
    let moved = e
        .vault
        .alter_records(
            &e.app,
            &p("crm"),
            &RecordSet::Subject(a.clone()),
            &RecordChange::Subject(b.clone()),
            &ctx,
        )
        .unwrap();
    assert_eq!(moved.records, 1);
    let bv = e.vault.get_subject(&e.app, &p("crm"), &b, &ctx).unwrap();
    assert_eq!(bv.records.len(), 2);
    assert!(
        bv.records
            .iter()
            .any(|r| r.fields[&FieldName::parse("note").unwrap()].value
                == FieldValue::Text("alice".into()))
    );
    assert!(
        e.vault
            .get_subject(&e.app, &p("crm"), &a, &ctx)
            .unwrap()
            .records
            .is_empty()
    );
    // The lookup entry followed the record.
    assert_eq!(by_email(&e, "alice@example.org"), vec![b.clone()]);
    // A field written to every record of the purpose.
    e.vault
        .alter_records(
            &e.app,
            &p("crm"),
            &RecordSet::Purpose,
            &RecordChange::Field {
                name: FieldName::parse("flag").unwrap(),
                input: FieldInput {
                    category: DataCategory::parse("user.content").unwrap(),
                    value: FieldValue::Text("x".into()),
                },
            },
            &ctx,
        )
        .unwrap();
    let bv = e.vault.get_subject(&e.app, &p("crm"), &b, &ctx).unwrap();
    assert!(
        bv.records
            .iter()
            .all(|r| r.fields.contains_key(&FieldName::parse("flag").unwrap()))
    );
    // Outside the purpose's categories: refused, with nothing changed.
    let refused = e.vault.alter_records(
        &e.app,
        &p("narrow"),
        &RecordSet::Purpose,
        &RecordChange::Field {
            name: FieldName::parse("flag").unwrap(),
            input: FieldInput {
                category: DataCategory::parse("user.content").unwrap(),
                value: FieldValue::Text("y".into()),
            },
        },
        &ctx,
    );
    assert!(
        matches!(
            refused,
            Err(VaultError::Refused(
                Refusal::PurposeForbidsCategories { .. }
            ))
        ),
        "{refused:?}"
    );
    assert!(e.vault.verify(None).unwrap().ok());
}

#[test]
fn erasing_a_set_leaves_the_subjects_and_the_other_purposes() {
    let e = env();
    let ctx = CallContext::default();
    let a = subject(&e, "crm", "alice");
    e.vault
        .add_record(&e.app, &p("billing"), &a, record("invoice"), &ctx)
        .unwrap();
    let b = subject(&e, "crm", "bob");
    let r = e
        .vault
        .erase_records(&e.app, &p("crm"), &RecordSet::Purpose, &ctx)
        .unwrap();
    assert_eq!((r.records, r.subjects), (2, 2));
    let av = e
        .vault
        .get_subject(&e.app, &p("billing"), &a, &ctx)
        .unwrap();
    assert_eq!(av.records.len(), 1);
    assert_eq!(av.records[0].purpose, p("billing"));
    assert!(
        e.vault
            .get_subject(&e.app, &p("crm"), &b, &ctx)
            .unwrap()
            .records
            .is_empty()
    );
    assert!(matches!(
        e.vault.erase_records(
            &e.app,
            &p("crm"),
            &RecordSet::Subject(SubjectId::from_random([9; 16])),
            &ctx
        ),
        Err(VaultError::NotFound)
    ));
}

#[test]
fn subject_keys_kept_in_memory_leave_with_an_erasure_and_a_destruction() {
    let e = env();
    let ctx = CallContext::default();
    let ChainId::Controller(controller) = e.chain.clone() else {
        unreachable!("a controller's chain")
    };
    let a = subject(&e, "crm", "alice");
    let _b = subject(&e, "crm", "bob");
    let notes = |e: &Env| {
        let mut v: Vec<String> = e
            .vault
            .purpose_records(&e.app, &p("crm"), &RecordSet::Purpose, &ctx)
            .unwrap()
            .into_iter()
            .map(|r| format!("{:?}", r.fields.get("note").map(|f| &f.value)))
            .collect();
        v.sort();
        v
    };
    let first = notes(&e);
    assert_eq!(first.len(), 2);
    assert_eq!(e.vault.subject_keys_in_memory(&controller), 2);
    assert_eq!(notes(&e), first, "kept keys open the same fields");

    e.vault.erase_subject(&e.app, &p("crm"), &a, &ctx).unwrap();
    assert_eq!(e.vault.subject_keys_in_memory(&controller), 1);
    assert!(matches!(
        e.vault.get_subject(&e.app, &p("crm"), &a, &ctx),
        Err(VaultError::Gone)
    ));
    assert_eq!(notes(&e).len(), 1);

    let op = OperatorGrant::local_cli();
    e.vault.start_termination(op.actor(), &controller).unwrap();
    e.vault.destroy_controller(&op, &controller).unwrap();
    assert_eq!(e.vault.subject_keys_in_memory(&controller), 0);
}

#[test]
fn a_purpose_wide_alteration_leaves_restricted_and_objecting_subjects_and_caps_expiry() {
    let e = env();
    let ctx = CallContext::default();
    let a = subject(&e, "crm", "alice");
    let b = subject(&e, "crm", "bob");
    let c = subject(&e, "crm", "carol");
    e.vault
        .set_restriction(&e.app, &p("crm"), &c, true, &ctx)
        .unwrap();
    e.vault
        .set_objection(&e.app, &p("crm"), &b, &p("crm"), true, &ctx)
        .unwrap();
    // The records as the store holds them, the restricted and objecting subjects' too.
    let stored = |e: &Env| {
        let ChainId::Controller(controller) = &e.chain else {
            unreachable!("a controller's chain")
        };
        let mut rows = Vec::new();
        e.store
            .transact(controller, e.vault.now(), &mut |tx| {
                rows = tx.records_of_purpose(&p("crm"))?.to_vec();
                Ok(custodian_core::audit::AuditDraft::new(
                    e.chain.clone(),
                    "test",
                    custodian_core::audit::Action::Processing(Operation::Consultation),
                ))
            })
            .unwrap();
        rows.into_iter()
            .map(|r| (r.subject.clone(), r))
            .collect::<BTreeMap<_, _>>()
    };
    let before = stored(&e);
    let entries = head(&e);
    let r = e
        .vault
        .alter_records(
            &e.app,
            &p("crm"),
            &RecordSet::Purpose,
            &RecordChange::Source(Some("import".into())),
            &ctx,
        )
        .unwrap();
    assert_eq!((r.records, r.subjects, r.skipped_subjects), (1, 1, 2));
    assert_eq!(head(&e), entries + 1, "one entry for the whole set");
    let tail = e.vault.audit_tail(&e.admin, 1).unwrap();
    let entry = &tail.entries[0];
    assert_eq!(
        entry.subject.as_ref(),
        Some(&a),
        "the entry names who was touched"
    );
    assert_eq!(entry.fields, vec!["meta:source".to_string()]);
    let after = stored(&e);
    assert_eq!(
        entry.record.as_ref(),
        Some(&after[&a].id),
        "one record touched: the entry names it"
    );
    assert_eq!(after[&a].header.meta.source.as_deref(), Some("import"));
    for untouched in [&b, &c] {
        assert_eq!(after[untouched], before[untouched]);
    }

    let created = after[&a].header.created_at;
    let sooner = e.vault.now() + time::Duration::days(3);
    let later = e.vault.now() + time::Duration::days(400);
    for (asked, expected) in [
        (later, created + time::Duration::days(30)),
        (sooner, sooner),
    ] {
        e.vault
            .alter_records(
                &e.app,
                &p("crm"),
                &RecordSet::Purpose,
                &RecordChange::ExpiresAt(asked),
                &ctx,
            )
            .unwrap();
        let now = stored(&e);
        assert_eq!(now[&a].header.expires_at, expected);
        assert_eq!(now[&b].header.expires_at, before[&b].header.expires_at);
    }
}

/// More records than the store rewrites one at a time (it writes them in one statement):
/// each record still gets its own ciphertext, a recategorised field keeps its value, and a
/// move re-encrypts every record under the new subject's key, with the lookups following.
#[test]
fn alterations_of_many_records_at_once_keep_each_record_its_own() {
    let e = env();
    let ctx = CallContext::default();
    let notes: Vec<String> = (0..24).map(|i| format!("person{i}")).collect();
    let subjects: Vec<SubjectId> = notes.iter().map(|n| subject(&e, "crm", n)).collect();
    let target = subject(&e, "billing", "target");
    let alter = |set: &RecordSet, change: RecordChange| {
        e.vault
            .alter_records(&e.app, &p("crm"), set, &change, &ctx)
            .unwrap()
    };
    let all = || {
        e.vault
            .purpose_records(&e.app, &p("crm"), &RecordSet::Purpose, &ctx)
            .unwrap()
    };
    let (note, flag) = (
        FieldName::parse("note").unwrap(),
        FieldName::parse("flag").unwrap(),
    );
    let r = alter(
        &RecordSet::Purpose,
        RecordChange::Field {
            name: flag.clone(),
            input: FieldInput {
                category: DataCategory::parse("user.content").unwrap(),
                value: FieldValue::Text("x".into()),
            },
        },
    );
    assert_eq!((r.records, r.subjects), (24, 24));
    let r = alter(
        &RecordSet::Purpose,
        RecordChange::Category {
            field: note.clone(),
            category: DataCategory::parse("user.content").unwrap(),
        },
    );
    assert_eq!(r.records, 24);
    let views = all();
    assert_eq!(views.len(), 24);
    for v in &views {
        let i = subjects.iter().position(|s| s == &v.subject).unwrap();
        assert_eq!(v.fields[&note].value, FieldValue::Text(notes[i].clone()));
        assert_eq!(v.fields[&note].category.as_str(), "user.content");
        assert_eq!(v.fields[&flag].value, FieldValue::Text("x".into()));
    }
    // Every record of the purpose to one subject: each decrypts under its key.
    let r = alter(&RecordSet::Purpose, RecordChange::Subject(target.clone()));
    assert_eq!(r.records, 24);
    let moved = e
        .vault
        .get_subject(&e.app, &p("crm"), &target, &ctx)
        .unwrap();
    let mut held: Vec<String> = moved
        .records
        .iter()
        .filter(|r| r.purpose == p("crm"))
        .map(|r| match &r.fields[&note].value {
            FieldValue::Text(t) => t.clone(),
            other => panic!("a note is text, not {other:?}"),
        })
        .collect();
    held.sort();
    let mut want = notes.clone();
    want.sort();
    assert_eq!(held, want);
    assert_eq!(by_email(&e, "person7@example.org"), vec![target.clone()]);
    assert!(e.vault.verify(None).unwrap().ok());
}

/// A read of more records than one thread opens alone (`spread`): every record once, each
/// with its own values, subjects in id order and each one's records oldest first, as a
/// read on one thread answers.
#[test]
fn a_large_read_answers_every_record_once_in_order() {
    let e = env();
    let ctx = CallContext::default();
    let (subjects, per) = (40, 28);
    let mut want: Vec<(SubjectId, Vec<String>)> = (0..subjects)
        .map(|i| {
            let notes: Vec<String> = (0..per).map(|j| format!("s{i}r{j}")).collect();
            let id = subject(&e, "crm", &notes[0]);
            for n in &notes[1..] {
                e.vault
                    .add_record(&e.app, &p("crm"), &id, record(n), &ctx)
                    .unwrap();
            }
            (id, notes)
        })
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let before = head(&e);
    let views = e
        .vault
        .purpose_records(&e.app, &p("crm"), &RecordSet::Purpose, &ctx)
        .unwrap();
    assert_eq!(views.len(), subjects * per);
    let note = FieldName::parse("note").unwrap();
    let got: Vec<(SubjectId, String)> = views
        .iter()
        .map(|v| match &v.fields[&note].value {
            FieldValue::Text(t) => (v.subject.clone(), t.clone()),
            other => panic!("a note that is not text: {other:?}"),
        })
        .collect();
    let expected: Vec<(SubjectId, String)> = want
        .iter()
        .flat_map(|(s, notes)| notes.iter().map(|n| (s.clone(), n.clone())))
        .collect();
    assert_eq!(got, expected);
    // One audit entry for the whole read.
    assert_eq!(head(&e), before + 1);
}
