//! `verify` checks long chains in parts on several threads. Whatever the number of parts,
//! the report must be the one the single pass gives, for an intact chain and for every kind
//! of tampering (the single pass itself is tested against the real binary in
//! `crates/custodian/tests/blackbox.rs`).

use custodian_core::audit::{Action, AuditDraft, ChainId};
use custodian_core::ids::{ControllerId, SubjectId};
use custodian_core::operation::Operation;
use custodian_store::Store;
use custodian_store::sqlite::SqliteStore;
use custodian_vault::verify::{VerifyReport, verify_chains_in};
use rusqlite::{Connection, params};
use std::path::Path;
use time::OffsetDateTime;

const ENTRIES: u64 = 61;

fn chain() -> ChainId {
    ChainId::Controller(ControllerId::from_random([7; 16]))
}

/// A chain of `ENTRIES` entries, every 10th a bulk entry naming three subjects.
fn seed(path: &Path) {
    let store = SqliteStore::open(path).unwrap();
    let subject = |i: u64| SubjectId::from_random([(i % 200) as u8 + 1; 16]);
    let drafts = (1..=ENTRIES)
        .map(|i| {
            let d = AuditDraft::new(
                chain(),
                format!("controller_app:tok_{i}"),
                Action::Processing(if i % 2 == 0 {
                    Operation::Consultation
                } else {
                    Operation::Retrieval
                }),
            )
            .fields([format!("field{i}")]);
            if i % 10 == 0 {
                d.subjects(vec![subject(i), subject(i + 1), subject(i + 2)])
            } else {
                d.subject(&subject(i))
            }
        })
        .collect();
    store
        .append_audit(drafts, OffsetDateTime::now_utc())
        .unwrap();
}

fn attacker(path: &Path) -> Connection {
    let c = Connection::open(path).unwrap();
    c.execute_batch("DROP TRIGGER audit_entries_no_update; DROP TRIGGER audit_entries_no_delete;")
        .unwrap();
    c
}

fn report(path: &Path, parts: usize) -> VerifyReport {
    let store = SqliteStore::open(path).unwrap();
    verify_chains_in(&store, &[0; 32], None, Some(&chain()), Some(parts)).unwrap()
}

type Tamper = fn(&Connection, &str);

#[test]
fn every_split_reports_what_the_single_pass_reports() {
    let cases: &[(&str, Tamper)] = &[
        ("intact", |_, _| {}),
        ("actor flipped mid-chain", |c, ch| {
            c.execute(
                "UPDATE audit_entries SET actor = 'controller_app:tok_X' WHERE chain = ?1 AND seq = 33",
                params![ch],
            )
            .unwrap();
        }),
        ("bulk entry's subject list changed", |c, ch| {
            c.execute(
                "UPDATE audit_entries SET subjects = '[]' WHERE chain = ?1 AND seq = 30",
                params![ch],
            )
            .unwrap();
        }),
        ("first entry deleted", |c, ch| {
            c.execute(
                "DELETE FROM audit_entries WHERE chain = ?1 AND seq = 1",
                params![ch],
            )
            .unwrap();
        }),
        // 20, 30, 31 and 40 sit on or next to the boundaries of 2, 3 and 6 parts.
        ("entry on a part boundary deleted", |c, ch| {
            c.execute(
                "DELETE FROM audit_entries WHERE chain = ?1 AND seq IN (20, 30)",
                params![ch],
            )
            .unwrap();
        }),
        ("entry after a part boundary deleted", |c, ch| {
            c.execute(
                "DELETE FROM audit_entries WHERE chain = ?1 AND seq = 31",
                params![ch],
            )
            .unwrap();
        }),
        ("a whole part deleted", |c, ch| {
            c.execute(
                "DELETE FROM audit_entries WHERE chain = ?1 AND seq BETWEEN 21 AND 40",
                params![ch],
            )
            .unwrap();
        }),
        ("two entries renumbered (swapped)", |c, ch| {
            c.execute_batch("PRAGMA foreign_keys = OFF;").unwrap();
            for (from, to) in [(40, -1), (41, 40), (-1, 41)] {
                c.execute(
                    "UPDATE audit_entries SET seq = ?3 WHERE chain = ?1 AND seq = ?2",
                    params![ch, from, to],
                )
                .unwrap();
            }
        }),
        ("tail cut off", |c, ch| {
            c.execute(
                "DELETE FROM audit_entries WHERE chain = ?1 AND seq > 50",
                params![ch],
            )
            .unwrap();
        }),
        ("link forged across a boundary", |c, ch| {
            c.execute(
                "UPDATE audit_entries SET prev_hash = zeroblob(32) WHERE chain = ?1 AND seq = 31",
                params![ch],
            )
            .unwrap();
        }),
    ];
    for (name, tamper) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("custodian.db");
        seed(&path);
        tamper(&attacker(&path), &chain().as_string());
        let single = report(&path, 1);
        assert_eq!(
            single.ok(),
            *name == "intact",
            "{name}: the single pass must catch it: {single:?}"
        );
        for parts in [2, 3, 6, 100] {
            assert_eq!(
                report(&path, parts),
                single,
                "{name}: {parts} parts must report what one pass does"
            );
        }
    }
}
