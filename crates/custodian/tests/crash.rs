//! Crash sweep (in the spirit of SQLite's crash tests and Jepsen's acknowledged-write
//! checks): the real server takes concurrent writes and is killed with SIGKILL at many
//! points (seeded random delays), then restarted, again and again. Afterwards:
//! - every write that was acknowledged (2xx) is in the database;
//! - every committed operation has its audit entry (data and trail commit together);
//! - `custodian verify` passes (chains and signed checkpoints, written while being killed);
//! - SQLite's `PRAGMA integrity_check` answers ok.
//!
//! `CRASH_KILLS` (default 20) and `CRASH_SEED` change the sweep; it prints what it covered.

mod common;

use common::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// splitmix64: a seeded, dependency-free generator; the sweep is reproducible by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the server acknowledged.
#[derive(Default)]
struct Acks {
    subjects: BTreeSet<String>,
    records: BTreeMap<String, String>,
    erased: BTreeSet<String>,
    /// Requests sent whose answer never came (the server died under them): their effect may
    /// or may not have committed; either is allowed, half of one is not.
    unanswered: usize,
    failed_other: usize,
}

fn writer(base: String, app: String, seed: u64, stop: Arc<AtomicBool>, acks: Arc<Mutex<Acks>>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut rng = Rng(seed);
    let mut mine: Vec<String> = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let roll = rng.below(100);
        let (method, url, body, kind) = if roll < 65 || mine.is_empty() {
            let tag = format!("{seed:x}-{n}");
            (
                reqwest::Method::POST,
                format!("{base}/v1/subjects"),
                Some(person(
                    &format!("Crash Person {tag}"),
                    &format!("crash.{tag}@example.org"),
                )),
                "create",
            )
        } else if roll < 85 {
            let s = &mine[rng.below(mine.len() as u64) as usize];
            (
                reqwest::Method::POST,
                format!("{base}/v1/subjects/{s}/records"),
                Some(
                    json!({"fields": {"note": {"category": "user.content.private", "value": format!("note {n}")}}}),
                ),
                "record",
            )
        } else {
            let s = mine.swap_remove(rng.below(mine.len() as u64) as usize);
            (
                reqwest::Method::DELETE,
                format!("{base}/v1/subjects/{s}"),
                None,
                "erase",
            )
        };
        let mut req = client
            .request(method, &url)
            .bearer_auth(&app)
            .header("Custodian-Purpose", PURPOSE);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let answer = rt.block_on(async {
            let r = req.send().await?;
            let status = r.status().as_u16();
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            Ok::<_, reqwest::Error>((status, v))
        });
        let mut a = acks.lock().expect("acks");
        match answer {
            Ok((status, v)) if (200..300).contains(&status) => match kind {
                "create" => {
                    let id = v["id"].as_str().expect("subject id").to_owned();
                    a.subjects.insert(id.clone());
                    if let Some(r) = v["record"].as_str() {
                        a.records.insert(r.to_owned(), id.clone());
                    }
                    mine.push(id);
                }
                "record" => {
                    let id = v["id"].as_str().expect("record id").to_owned();
                    let subject = v["subject"].as_str().expect("subject").to_owned();
                    a.records.insert(id, subject);
                }
                _ => {
                    let erased = url.rsplit('/').next().expect("id").to_owned();
                    a.erased.insert(erased);
                }
            },
            Ok(_) => a.failed_other += 1,
            Err(_) => {
                // The server is gone: stop until the next round.
                a.unanswered += 1;
                return;
            }
        }
    }
}

const WRITERS: u64 = 4;

#[test]
fn sigkill_at_many_points_loses_no_acknowledged_write() {
    let kills: u32 = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x00C0_FFEE);
    let started = Instant::now();
    let mut rng = Rng(seed);
    let sb = Sandbox::new();
    let operator = sb.init_with_operator();
    let serve_args = ["--checkpoint-interval-seconds", "1"];
    let server = sb.serve(&serve_args);
    let tenant = setup_tenant(&server.api(), &operator);
    let acks = Arc::new(Mutex::new(Acks::default()));
    let mut server = Some(server);
    let mut delays = Vec::new();
    for round in 0..kills {
        let s = server.take().unwrap_or_else(|| sb.serve(&serve_args));
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (base, app, stop, acks) = (
                    s.base.clone(),
                    tenant.app.clone(),
                    stop.clone(),
                    acks.clone(),
                );
                let wseed = seed ^ (u64::from(round) << 8) ^ w;
                std::thread::spawn(move || writer(base, app, wseed, stop, acks))
            })
            .collect();
        // The kill point: somewhere in the first second and a half of load.
        let delay = Duration::from_millis(50 + rng.below(1450));
        delays.push(delay.as_millis());
        std::thread::sleep(delay);
        drop(s); // SIGKILL: no graceful shutdown, transactions cut wherever they were.
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.join().expect("writer thread");
        }
    }
    // A last start, so recovery runs once more, then a clean stop.
    let s = sb.serve(&serve_args);
    expect(s.api().get("/v1/purposes", &tenant.admin, None), 200);
    s.stop();

    let acks = Arc::try_unwrap(acks)
        .ok()
        .expect("writers are done")
        .into_inner()
        .expect("acks");
    assert!(
        acks.subjects.len() >= 10,
        "the sweep wrote too little to mean anything: {} subjects",
        acks.subjects.len()
    );

    // What is in the database, read behind the server's back.
    let db = rusqlite::Connection::open(sb.db_path()).expect("open the database");
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok", "SQLite integrity check");
    let set = |sql: &str| -> BTreeSet<String> {
        let mut st = db.prepare(sql).expect("prepare");
        st.query_map([], |r| r.get::<_, String>(0))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    };
    let stored = set("SELECT id FROM subjects");
    let erased = set("SELECT subject_id FROM erasures");
    let records = set("SELECT id FROM records");
    let collected = set(
        "SELECT subject_id FROM audit_entries WHERE action = 'collection' AND refused IS NULL AND subject_id IS NOT NULL",
    );
    let erasure_entries = set(
        "SELECT subject_id FROM audit_entries WHERE action = 'erasure' AND refused IS NULL AND subject_id IS NOT NULL",
    );
    let recorded = set(
        "SELECT record_id FROM audit_entries WHERE action IN ('collection', 'recording') AND refused IS NULL AND record_id IS NOT NULL",
    );

    // Every acknowledged write is there.
    for s in &acks.subjects {
        assert!(
            stored.contains(s) || erased.contains(s),
            "acknowledged subject {s} is lost"
        );
    }
    for s in &acks.erased {
        assert!(erased.contains(s), "acknowledged erasure of {s} is lost");
        assert!(!stored.contains(s), "erased subject {s} is back");
    }
    for (r, s) in &acks.records {
        assert!(
            records.contains(r) || erased.contains(s),
            "acknowledged record {r} is lost"
        );
    }
    // Every committed operation has its audit entry.
    for s in stored.iter().chain(erased.iter()) {
        assert!(collected.contains(s), "subject {s} has no collection entry");
    }
    for s in &erased {
        assert!(erasure_entries.contains(s), "erasure of {s} has no entry");
    }
    for r in &records {
        assert!(recorded.contains(r), "record {r} has no entry");
    }
    drop(db);

    let verify = sb.run(&["verify"]);
    assert_eq!(
        verify.code,
        Some(0),
        "custodian verify:\n{}",
        verify.describe()
    );

    println!(
        "crash sweep: {kills} SIGKILL points (seed {seed:#x}, delays {delays:?} ms), {} writers; acknowledged {} subjects, {} records, {} erasures; {} requests cut by a kill, {} refused; {} subjects and {} records stored; integrity ok, verify ok; {:.1}s",
        WRITERS,
        acks.subjects.len(),
        acks.records.len(),
        acks.erased.len(),
        acks.unanswered,
        acks.failed_other,
        stored.len(),
        records.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(acks.failed_other, 0, "a live server refused a valid write");
}
