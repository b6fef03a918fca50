//! Black-box tests of the data's lifecycle through the real `custodian` binary:
//!
//! - backup → erase → restore keeps the erasure (subject and single record), even when the
//!   database itself was lost, and a restore records itself in every chain;
//! - damaged backups (a flipped byte anywhere, truncations, trailing bytes) and wrong root
//!   keys are refused whole, with a clear message, leaving the live database byte-identical;
//! - the backup file holds no plaintext;
//! - termination over HTTP and the CLI: export, import elsewhere, destruction that leaves
//!   nothing decryptable, and a certificate that `verify-certificate` accepts only as issued;
//! - legal hold over HTTP: 403 for everything, audited, until lifted;
//! - `restore` refuses while a server holds the data directory.

mod common;

use common::*;
use rusqlite::Connection;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A second controller with its own name and the same `support` purpose.
fn second_tenant(api: &Api, operator: &str, name: &str) -> Tenant {
    let c = expect(
        api.post(
            "/v1/controllers",
            operator,
            None,
            &json!({
                "name": name,
                "region": "osc-fr1",
                "agreement_effective": "2026-01-01",
                "governing_law": "FR",
            }),
        ),
        201,
    );
    let controller = str_of(&c, "id").to_owned();
    let t = expect(
        api.post(
            "/v1/tokens",
            operator,
            None,
            &json!({
                "role": "controller_admin",
                "controller": controller,
                "label": "second admin",
                "expires_in_seconds": 3600,
            }),
        ),
        201,
    );
    let admin = str_of(&t, "secret").to_owned();
    expect(
        api.post(
            "/v1/purposes",
            &admin,
            None,
            &json!({
                "name": PURPOSE,
                "description": "Answer customers' support requests",
                "lawful_basis": "contract",
                "categories": ["user"],
                "operations": ["collection", "recording", "retrieval", "consultation",
                               "alteration", "erasure", "restriction", "disclosure"],
                "retention_days": 365,
            }),
        ),
        201,
    );
    let t = expect(
        api.post(
            "/v1/tokens",
            &admin,
            None,
            &json!({"role": "controller_app", "label": "second app", "expires_in_seconds": 3600}),
        ),
        201,
    );
    Tenant {
        controller,
        admin,
        app: str_of(&t, "secret").to_owned(),
    }
}

/// Adds `disclosure` to the common tenant's `support` purpose (exports need it).
fn allow_disclosure(api: &Api, t: &Tenant) {
    expect(
        api.post(
            "/v1/purposes",
            &t.admin,
            None,
            &json!({
                "name": PURPOSE,
                "description": "Answer customers' support requests",
                "lawful_basis": "contract",
                "categories": ["user"],
                "operations": ["collection", "recording", "retrieval", "consultation",
                               "alteration", "erasure", "restriction", "disclosure"],
                "retention_days": 365,
            }),
        ),
        201,
    );
}

/// Creates a subject; returns its id and first record id.
fn create(api: &Api, t: &Tenant, body: &Value) -> (String, String) {
    let c = expect(api.post("/v1/subjects", &t.app, Some(PURPOSE), body), 201);
    (str_of(&c, "id").to_owned(), str_of(&c, "record").to_owned())
}

fn add_record(api: &Api, t: &Tenant, subject: &str, fields: Value) -> String {
    let r = expect(
        api.post(
            &format!("/v1/subjects/{subject}/records"),
            &t.app,
            Some(PURPOSE),
            &json!({ "fields": fields }),
        ),
        201,
    );
    str_of(&r, "id").to_owned()
}

fn lookup_email(api: &Api, t: &Tenant, email: &str) -> Vec<Value> {
    let r = expect(
        api.post(
            "/v1/lookup",
            &t.app,
            Some(PURPOSE),
            &json!({"kind": "email", "value": email}),
        ),
        200,
    );
    r["subjects"].as_array().expect("subjects").clone()
}

/// The whole audit trail of the admin's controller.
fn audit(api: &Api, admin: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let page = expect(
            api.get(&format!("/v1/audit?after={after}&limit=1000"), admin, None),
            200,
        );
        out.extend(page["entries"].as_array().expect("entries").iter().cloned());
        match page["next_after"].as_u64() {
            Some(n) => after = n,
            None => return out,
        }
    }
}

fn last_seq(api: &Api, admin: &str) -> u64 {
    audit(api, admin)
        .last()
        .and_then(|e| e["seq"].as_u64())
        .unwrap_or(0)
}

/// The database file and its companions, whichever exist now.
fn db_files(db: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|s| PathBuf::from(format!("{}{s}", db.display())))
        .filter(|p| p.exists())
        .collect()
}

/// Every file of the database, by name, with its exact bytes.
fn snapshot(db: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    db_files(db)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).expect("read db file");
            (p, b)
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    assert!(!needle.is_empty(), "empty needle");
    hay.windows(needle.len()).any(|w| w == needle)
}

fn sql(sb: &Sandbox) -> Connection {
    let c = Connection::open(sb.db_path()).expect("open the database");
    c.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    c
}

/// A deterministic, incompressible-looking text of `len` ASCII letters.
fn filler(seed: u64, len: usize) -> String {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'a' + (x % 26) as u8) as char
        })
        .collect()
}

/// The public key a deployment prints at the end of `custodian verify`.
fn public_key(sb: &Sandbox) -> String {
    let out = sb.run(&["verify"]);
    out.stdout
        .split("public key ")
        .nth(1)
        .map(|s| s.split_whitespace().next().unwrap_or_default().to_owned())
        .filter(|k| k.len() == 64)
        .unwrap_or_else(|| panic!("no public key in {}", out.describe()))
}

fn root_key_text(sb: &Sandbox) -> String {
    std::fs::read_to_string(sb.data_dir().join("root.key"))
        .expect("root key")
        .trim()
        .to_owned()
}

fn assert_verify_ok(sb: &Sandbox) {
    let v = sb.run(&["verify"]);
    assert_eq!(v.code, Some(0), "{}", v.describe());
    assert!(v.stdout.contains("verify: ok"), "{}", v.describe());
}

// ---------------------------------------------------------------------------------------
// 1. An erasure survives a restore
// ---------------------------------------------------------------------------------------

#[test]
fn an_erased_subject_and_a_deleted_record_stay_gone_after_restoring_an_older_backup() {
    let sb = Sandbox::new();
    let operator = sb.init_with_operator();
    let server = sb.serve(&[]);
    let api = server.api();
    let t = setup_tenant(&api, &operator);

    let s_email = "sigrid.erasable@example.org";
    let (s, s_rec) = create(&api, &t, &person("Sigrid Erasable", s_email));
    let (u, u_kept) = create(&api, &t, &person("Ulrich Partial", "ulrich@example.org"));
    let u_gone = add_record(
        &api,
        &t,
        &u,
        json!({"note": {"category": "user.content", "value": "delete this record"}}),
    );
    let (bystander, _) = create(&api, &t, &person("Bea Bystander", "bea@example.org"));

    // Backup while the server runs.
    let backup = sb.cwd().join("before-erasure.backup");
    let b = sb.run_ok(&[
        "backup",
        "--out",
        backup.to_str().expect("utf-8"),
        "--quiet",
    ]);
    assert!(b.stdout.contains("backup "), "{}", b.describe());
    assert!(backup.is_file());

    // Then: S erased, one record of U deleted.
    expect(
        api.delete(&format!("/v1/subjects/{s}"), &t.app, Some(PURPOSE)),
        200,
    );
    expect(
        api.delete(&format!("/v1/records/{u_gone}"), &t.app, Some(PURPOSE)),
        204,
    );
    drop(api);
    server.stop();

    let r = sb.run_ok(&["restore", backup.to_str().expect("utf-8"), "--quiet"]);
    assert!(
        r.stdout
            .contains("re-applied 1 subject erasure(s) and 1 record erasure(s)"),
        "{}",
        r.describe()
    );
    assert_verify_ok(&sb);

    let server = sb.serve(&[]);
    let api = server.api();
    let got = api.get(&format!("/v1/subjects/{s}"), &t.app, Some(PURPOSE));
    assert!(
        got.status == 410 || got.status == 404,
        "the erased subject came back: {} {:#}",
        got.status,
        got.body
    );
    let got = api.get(&format!("/v1/records/{s_rec}"), &t.app, Some(PURPOSE));
    assert!(got.status == 410 || got.status == 404, "{:#}", got.body);
    assert!(
        lookup_email(&api, &t, s_email).is_empty(),
        "the erased subject is findable by lookup after the restore"
    );
    let got = api.get(&format!("/v1/records/{u_gone}"), &t.app, Some(PURPOSE));
    assert_eq!(
        got.status, 404,
        "the deleted record came back: {:#}",
        got.body
    );
    // Everything else is as it was.
    let view = expect(
        api.get(&format!("/v1/subjects/{u}"), &t.app, Some(PURPOSE)),
        200,
    );
    let recs: Vec<&str> = view["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(recs, vec![u_kept.as_str()]);
    expect(
        api.get(&format!("/v1/subjects/{bystander}"), &t.app, Some(PURPOSE)),
        200,
    );
    assert_eq!(lookup_email(&api, &t, "bea@example.org").len(), 1);

    // The trail says a restore happened and that the erasures were re-applied.
    let trail = audit(&api, &t.admin);
    let restored: Vec<_> = trail
        .iter()
        .filter(|e| e["action"] == "admin.restored_from_backup")
        .collect();
    assert_eq!(restored.len(), 1, "one restore entry in the chain");
    assert!(
        restored[0]["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .any(|f| f.as_str().is_some_and(|f| f.starts_with("backup:")))
    );
    let reapplied: Vec<_> = trail
        .iter()
        .filter(|e| e["actor"] == "system:restore" && e["action"] == "erasure")
        .collect();
    assert_eq!(reapplied.len(), 2, "{reapplied:#?}");
    assert!(reapplied.iter().any(|e| e["subject"] == s.as_str()));
    assert!(reapplied.iter().any(|e| e["record"] == u_gone.as_str()));
    drop(api);
    server.stop();
    assert_verify_ok(&sb);
}

#[test]
fn the_erasure_ledger_alone_keeps_an_erasure_when_the_database_was_lost() {
    let sb = Sandbox::new();
    let operator = sb.init_with_operator();
    let server = sb.serve(&[]);
    let api = server.api();
    let t = setup_tenant(&api, &operator);
    let email = "lost.db@example.org";
    let (s, _) = create(&api, &t, &person("Lost Database", email));
    let backup = sb.cwd().join("b.backup");
    sb.run_ok(&[
        "backup",
        "--out",
        backup.to_str().expect("utf-8"),
        "--quiet",
    ]);
    expect(
        api.delete(&format!("/v1/subjects/{s}"), &t.app, Some(PURPOSE)),
        200,
    );
    drop(api);
    server.stop();

    // The disk holding the database dies; the checkpoint directory (and its ledger) lives.
    for f in db_files(&sb.db_path()) {
        std::fs::remove_file(f).expect("remove");
    }
    let r = sb.run_ok(&["restore", backup.to_str().expect("utf-8"), "--quiet"]);
    assert!(
        r.stdout.contains("re-applied 1 subject erasure(s)"),
        "{}",
        r.describe()
    );
    let server = sb.serve(&[]);
    let api = server.api();
    let got = api.get(&format!("/v1/subjects/{s}"), &t.app, Some(PURPOSE));
    assert!(got.status == 410 || got.status == 404, "{:#}", got.body);
    assert!(lookup_email(&api, &t, email).is_empty());
    drop(api);
    server.stop();
    assert_verify_ok(&sb);
}

// ---------------------------------------------------------------------------------------
// 2. Damaged backups and wrong keys are refused whole
// ---------------------------------------------------------------------------------------

/// The blocks of a backup file: (offset of the length prefix, offset of the body, length).
/// Block 0 is the clear header, block 1 the sealed manifest, then the sealed chunks.
fn blocks(data: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 16;
    while pos + 4 <= data.len() {
        let len = u32::from_be_bytes(data[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        out.push((pos, pos + 4, len));
        pos += 4 + len;
    }
    assert_eq!(pos, data.len(), "the test's reading of the format is off");
    out
}

/// Runs `custodian <args>` expecting a refusal; returns stdout + stderr.
fn refused(sb: &Sandbox, args: &[&str], case: &str) -> String {
    let out = sb.run(args);
    assert!(
        out.code.is_some_and(|c| c != 0),
        "{case}: `custodian {}` was not refused:\n{}",
        args.join(" "),
        out.describe()
    );
    assert!(
        !out.stderr.contains("panicked"),
        "{case}: a panic is not a clear message:\n{}",
        out.describe()
    );
    assert!(
        out.stderr.trim().len() > 20,
        "{case}: no message:\n{}",
        out.describe()
    );
    format!("{}{}", out.stdout, out.stderr)
}

#[test]
fn damaged_backups_and_wrong_keys_are_refused_and_the_live_database_is_untouched() {
    let sb = Sandbox::new();
    let operator = sb.init_with_operator();
    let server = sb.serve(&[]);
    let api = server.api();
    let t = setup_tenant(&api, &operator);
    let (s, _) = create(&api, &t, &person("Livia Untouched", "livia@example.org"));
    // Enough data for a database over 1 MiB: the backup has at least two chunks.
    for i in 0..24 {
        create(
            &api,
            &t,
            &json!({
                "category": "customer",
                "record": {"fields": {
                    "name": {"category": "user.name", "value": format!("Filler {i}")},
                    "note_a": {"category": "user.content", "value": filler(4 * i, 15_000)},
                    "note_b": {"category": "user.content", "value": filler(4 * i + 1, 15_000)},
                    "note_c": {"category": "user.content", "value": filler(4 * i + 2, 15_000)},
                    "note_d": {"category": "user.content", "value": filler(4 * i + 3, 15_000)},
                }},
            }),
        );
    }
    let backup = sb.cwd().join("good.backup");
    sb.run_ok(&[
        "backup",
        "--out",
        backup.to_str().expect("utf-8"),
        "--quiet",
    ]);
    // A change after the backup, so that a wrongful restore would be visible.
    let (after_backup, _) = create(&api, &t, &person("After Backup", "after@example.org"));
    drop(api);
    server.stop();

    let good = std::fs::read(&backup).expect("read backup");
    let layout = blocks(&good);
    assert!(
        layout.len() >= 4,
        "header, manifest and at least two chunks: {layout:?}"
    );
    let (_, header_at, header_len) = layout[0];
    let (manifest_len_at, manifest_at, manifest_len) = layout[1];
    let (_, chunk0_at, chunk0_len) = layout[2];
    let (last_len_at, last_at, last_len) = *layout.last().expect("chunks");
    let header = String::from_utf8(good[header_at..header_at + header_len].to_vec())
        .expect("the header is clear JSON");
    let in_header = |needle: &str| header_at + header.find(needle).expect("in header");

    let flip = |at: usize| {
        let mut d = good.clone();
        d[at] ^= 0x01;
        d
    };
    let mut cases: Vec<(String, Vec<u8>, &[&str])> = vec![
        (
            "a flipped byte in the magic".into(),
            flip(3),
            &["not a Custodian backup"],
        ),
        (
            "a flipped byte in the header's format".into(),
            flip(in_header("custodian.backup/v1") + 12),
            &["header", "format", "altered"],
        ),
        (
            "a flipped byte in the header's backup id".into(),
            flip(in_header("backup_id") + 14),
            &["altered", "does not open", "header"],
        ),
        (
            "a flipped byte in the header's key version".into(),
            flip(in_header("root_key_version") + 18),
            &["root key version", "header"],
        ),
        (
            "a flipped byte in the manifest's length".into(),
            flip(manifest_len_at + 3),
            &["altered", "truncated", "malformed", "does not open"],
        ),
        (
            "a flipped byte in the sealed manifest".into(),
            flip(manifest_at + manifest_len / 2),
            &["manifest was altered", "does not open"],
        ),
        (
            "a flipped byte in the middle of the first chunk".into(),
            flip(chunk0_at + chunk0_len / 2),
            &["chunk 0", "authentication tag"],
        ),
        (
            "a flipped byte in the last chunk's tag".into(),
            flip(last_at + last_len - 1),
            &["authentication tag"],
        ),
        (
            "a flipped byte in the last chunk's length".into(),
            flip(last_len_at + 3),
            &["truncated", "authentication tag", "trailing", "malformed"],
        ),
        (
            "trailing garbage".into(),
            [good.as_slice(), b"garbage"].concat(),
            &["trailing"],
        ),
        (
            "one trailing zero byte".into(),
            [good.as_slice(), &[0u8]].concat(),
            &["trailing"],
        ),
        (
            "the first chunk dropped".into(),
            [&good[..chunk0_at - 4], &good[chunk0_at + chunk0_len..]].concat(),
            &["authentication tag", "truncated"],
        ),
    ];
    for cut in [
        0,
        8,
        16,
        18,
        header_at + header_len / 2,
        manifest_len_at,
        manifest_at + manifest_len / 2,
        chunk0_at - 4,
        chunk0_at + chunk0_len / 2,
        chunk0_at + chunk0_len,
        last_at + last_len / 2,
        good.len() - 1,
    ] {
        cases.push((
            format!("truncated at byte {cut} of {}", good.len()),
            good[..cut].to_vec(),
            &["truncated", "too short", "not a Custodian backup"],
        ));
    }

    let live = snapshot(&sb.db_path());
    assert!(!live.is_empty());
    let check = |case: &str| {
        let now = snapshot(&sb.db_path());
        assert!(
            now == live,
            "{case}: the live database files changed ({:?} vs {:?})",
            now.iter().map(|(p, b)| (p, b.len())).collect::<Vec<_>>(),
            live.iter().map(|(p, b)| (p, b.len())).collect::<Vec<_>>()
        );
        let leftovers: Vec<_> = std::fs::read_dir(sb.data_dir())
            .expect("data dir")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.contains("restore-tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{case}: left {leftovers:?} behind");
    };

    for (i, (case, data, expected)) in cases.iter().enumerate() {
        let f = sb.cwd().join(format!("damaged-{i}.backup"));
        std::fs::write(&f, data).expect("write damaged copy");
        let f = f.to_str().expect("utf-8");
        for args in [
            &["restore", f, "--check", "--quiet"][..],
            &["restore", f, "--quiet"][..],
        ] {
            let msg = refused(&sb, args, case);
            assert!(
                expected.iter().any(|e| msg.contains(e)),
                "{case}: expected a message mentioning one of {expected:?}, got:\n{msg}"
            );
            check(case);
        }
    }

    // Another deployment's root key, given through the environment.
    let other = Sandbox::new();
    other.run_ok(&["init"]);
    let mut cmd = sb.command(&["restore", backup.to_str().expect("utf-8"), "--quiet"]);
    cmd.env("CUSTODIAN_ROOT_KEY", root_key_text(&other));
    let out = run_limited(cmd, CLI_LIMIT).expect("finished");
    assert!(out.code.is_some_and(|c| c != 0), "{}", out.describe());
    assert!(
        out.stderr.contains("does not open with this root key"),
        "{}",
        out.describe()
    );
    check("wrong root key");
    let mut cmd = sb.command(&["restore", backup.to_str().expect("utf-8"), "--check"]);
    cmd.env("CUSTODIAN_ROOT_KEY", root_key_text(&other));
    let out = run_limited(cmd, CLI_LIMIT).expect("finished");
    assert!(out.code.is_some_and(|c| c != 0), "{}", out.describe());
    // And into another deployment's data directory, with that deployment's key: refused,
    // and its own database is untouched too.
    let other_live = snapshot(&other.db_path());
    let out = other.run(&["restore", backup.to_str().expect("utf-8"), "--quiet"]);
    assert!(out.code.is_some_and(|c| c != 0), "{}", out.describe());
    assert!(
        out.stderr.contains("does not open with this root key"),
        "{}",
        out.describe()
    );
    assert!(snapshot(&other.db_path()) == other_live);

    // The refusals left the data as it was: readable, including what came after the backup.
    let server = sb.serve(&[]);
    let api = server.api();
    expect(
        api.get(&format!("/v1/subjects/{s}"), &t.app, Some(PURPOSE)),
        200,
    );
    expect(
        api.get(
            &format!("/v1/subjects/{after_backup}"),
            &t.app,
            Some(PURPOSE),
        ),
        200,
    );
    drop(api);
    server.stop();

    // The intact backup itself passes the same checks (the refusals were about the damage).
    let ok = sb.run_ok(&["restore", backup.to_str().expect("utf-8"), "--check"]);
    assert!(ok.stdout.contains("is intact"), "{}", ok.describe());
    sb.run_ok(&["restore", backup.to_str().expect("utf-8"), "--quiet"]);
    assert_verify_ok(&sb);
}

#[test]
fn the_backup_file_holds_no_plaintext() {
    let sb = Sandbox::new();
    let operator = sb.init_with_operator();
    let server = sb.serve(&[]);
    let api = server.api();
    let t = setup_tenant(&api, &operator);
    let name = "Quorvalda Canaryweather";
    let email = "Quorvalda.Canary@Example.org";
    let phone = "+33 6 98 76 54 32";
    let note = "Quorvalda keeps her spare key under the third flowerpot";
    let (s, _) = create(
        &api,
        &t,
        &json!({
            "category": "customer",
            "record": {"fields": {
                "name": {"category": "user.name", "value": name},
                "email": {"category": "user.contact.email", "value": email},
                "phone": {"category": "user.contact.phone_number", "value": phone},
                "note": {"category": "user.content", "value": note},
            }, "source": "Quorvalda's signup form"},
        }),
    );
    let backup = sb.cwd().join("canary.backup");
    sb.run_ok(&[
        "backup",
        "--out",
        backup.to_str().expect("utf-8"),
        "--quiet",
    ]);
    drop(api);
    server.stop();

    let data = std::fs::read(&backup).expect("backup");
    let mut needles: Vec<String> = Vec::new();
    for v in [
        name,
        email,
        phone,
        note,
        "Quorvalda",
        "Canaryweather",
        "+33698765432",
        "flowerpot",
        // Not personal data, but in the database in clear: proves the whole file is
        // encrypted, not only the fields.
        "Blackbox Shop SAS",
        "Answer customers",
        s.as_str(),
        t.controller.as_str(),
    ] {
        needles.push(v.to_owned());
        needles.push(v.to_lowercase());
        needles.push(v.to_uppercase());
    }
    for n in &needles {
        assert!(
            !contains(&data, n.as_bytes()),
            "the backup holds {n:?} in clear"
        );
    }
    // UTF-16 would be an odd leak, but cheap to rule out for the name.
    let utf16: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
    assert!(!contains(&data, &utf16));
    // The backup is still a working one (the scan is not of an empty file).
    let ok = sb.run_ok(&["restore", backup.to_str().expect("utf-8"), "--check"]);
    assert!(ok.stdout.contains("1 subjects"), "{}", ok.describe());
    assert_eq!(
        mode_of(&backup),
        0o600,
        "the backup is private to its owner"
    );
}

// ---------------------------------------------------------------------------------------
// 3. Termination
// ---------------------------------------------------------------------------------------

/// An export line or a subject export without ids and creation/export timestamps.
fn normalised(v: &Value) -> Value {
    let mut v = v.clone();
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

fn blobs(c: &Connection, sql: &str, controller: &str) -> Vec<Vec<u8>> {
    let mut st = c.prepare(sql).expect("prepare");
    st.query_map([controller], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn sealed_fields(c: &Connection, controller: &str) -> Vec<Vec<u8>> {
    custodian_store::sqlite::stored_fields(c, "controller_id = ?1", [controller])
        .expect("fields")
        .into_iter()
        .map(|f| f.sealed)
        .collect()
}

#[test]
fn termination_exports_losslessly_destroys_everything_and_certifies_it() {
    let sb = Sandbox::new();
    let operator = sb.init_with_operator();
    let server = sb.serve(&[]);
    let api = server.api();
    let a = setup_tenant(&api, &operator);
    allow_disclosure(&api, &a);
    let b = second_tenant(&api, &operator, "Receiving SAS");

    let mut created = Vec::new();
    for (i, (name, email)) in [
        ("Terminus One", "one@example.org"),
        ("Terminus Two", "two@example.org"),
        ("Terminus Three", "three@example.org"),
    ]
    .iter()
    .enumerate()
    {
        let (s, _) = create(&api, &a, &person(name, email));
        if i == 0 {
            add_record(
                &api,
                &a,
                &s,
                json!({
                    "age": {"category": "user.demographic", "value": 52},
                    "newsletter": {"category": "user.content", "value": false},
                }),
            );
        }
        created.push(s);
    }
    expect(
        api.call(
            reqwest::Method::PUT,
            &format!("/v1/subjects/{}/restriction", created[2]),
            Some(&a.app),
            Some(PURPOSE),
            None,
        ),
        204,
    );

    // The controller's admin starts termination over HTTP; processing stops.
    let st = expect(
        api.post(
            &format!("/v1/controllers/{}/termination", a.controller),
            &a.admin,
            None,
            &json!({}),
        ),
        200,
    );
    assert_eq!(st["status"], "terminating");
    assert_eq!(
        api.get(
            &format!("/v1/subjects/{}", created[0]),
            &a.app,
            Some(PURPOSE)
        )
        .status,
        403
    );

    // The full export, by the operator's CLI while the server runs.
    let out = sb.cwd().join("export-a");
    let e = sb.run_ok(&[
        "terminate",
        "export",
        "--controller",
        &a.controller,
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(
        e.stdout.contains("exported 3 subjects and 4 records"),
        "{}",
        e.describe()
    );
    assert_eq!(mode_of(&out), 0o700);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).expect("manifest"))
            .expect("manifest json");
    for f in manifest["files"].as_array().expect("files") {
        let name = str_of(f, "name");
        let data = std::fs::read(out.join(name)).expect("listed file");
        assert_eq!(data.len() as u64, f["bytes"].as_u64().expect("bytes"));
        let mut h = custodian_crypto::hash::Sha256::default();
        h.update(&data);
        let hex: String = h.finish().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, str_of(f, "sha256"), "{name}");
        assert_eq!(mode_of(&out.join(name)), 0o600, "{name}");
    }
    // The CLI checks it whole: signed by this deployment, every file as listed; a count
    // changed in the manifest, or another deployment's key, fails it.
    let dir = out.to_str().expect("utf-8");
    let ok = sb.run(&["verify-export", dir]);
    assert_eq!(ok.code, Some(0), "{}", ok.describe());
    assert!(ok.stdout.contains("export ok"), "{}", ok.describe());
    let other_key = "ab".repeat(32);
    let bad = sb.run(&["verify-export", dir, "--public-key", &other_key]);
    assert_eq!(bad.code, Some(1), "{}", bad.describe());
    let forged = sb.cwd().join("export-forged");
    std::fs::create_dir(&forged).expect("dir");
    for f in ["subjects.jsonl", "audit.jsonl", "checkpoints.json"] {
        std::fs::copy(out.join(f), forged.join(f)).expect("copy");
    }
    let mut m = manifest.clone();
    m["records"] = json!(3);
    std::fs::write(
        forged.join("manifest.json"),
        serde_json::to_vec(&m).expect("json"),
    )
    .expect("write");
    let bad = sb.run(&["verify-export", forged.to_str().expect("utf-8")]);
    assert_eq!(bad.code, Some(1), "{}", bad.describe());
    assert!(bad.stdout.contains("signature"), "{}", bad.describe());

    // Import every line into the other controller over HTTP; export those back: lossless.
    let text = std::fs::read_to_string(out.join("subjects.jsonl")).expect("subjects.jsonl");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 3);
    let mut imported = Vec::new();
    for l in &lines {
        let c = expect(
            api.post("/v1/subjects/import", &b.app, Some(PURPOSE), l),
            201,
        );
        let id = str_of(&c, "id").to_owned();
        // A restricted subject cannot be disclosed: lift, export, and compare with that
        // flag put back, since the restriction is part of what must survive.
        let restricted = l["subject"]["restricted"] == true;
        if restricted {
            expect(
                api.call(
                    reqwest::Method::DELETE,
                    &format!("/v1/subjects/{id}/restriction"),
                    Some(&b.app),
                    Some(PURPOSE),
                    None,
                ),
                204,
            );
        }
        let mut back = expect(
            api.get(&format!("/v1/subjects/{id}/export"), &b.app, Some(PURPOSE)),
            200,
        );
        if restricted {
            back["subject"]["restricted"] = json!(true);
        }
        imported.push(back);
    }
    let mut left: Vec<Value> = lines.iter().map(normalised).collect();
    let mut right: Vec<Value> = imported.iter().map(normalised).collect();
    left.sort_by_key(|v| v.to_string());
    right.sort_by_key(|v| v.to_string());
    assert_eq!(
        left, right,
        "the round trip through another controller lost data"
    );
    let all = serde_json::to_string(&left).expect("json");
    assert!(all.contains("Terminus Three") && all.contains("\"value\":52"));

    // Capture every key and ciphertext of the leaving controller before destruction.
    let c = sql(&sb);
    let mut captured = blobs(
        &c,
        "SELECT wrapped_key FROM controllers WHERE id = ?1",
        &a.controller,
    );
    captured.extend(blobs(
        &c,
        "SELECT wrapped_key FROM subjects WHERE controller_id = ?1",
        &a.controller,
    ));
    captured.extend(sealed_fields(&c, &a.controller));
    captured.extend(blobs(
        &c,
        "SELECT digest FROM lookups WHERE controller_id = ?1",
        &a.controller,
    ));
    drop(c);
    assert_eq!(
        captured.len(),
        1 + 3 + 8 + 3,
        "key, subject keys, fields, lookups"
    );
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for blob in &captured {
        needles.push(blob.clone());
        needles.extend(blob.chunks_exact(16).map(<[u8]>::to_vec));
    }
    let files: Vec<Vec<u8>> = db_files(&sb.db_path())
        .iter()
        .map(|f| std::fs::read(f).expect("read"))
        .collect();
    for n in &needles {
        assert!(
            files.iter().any(|f| contains(f, n)),
            "the scan sees the data before"
        );
    }

    // An admin may not destroy; the operator may.
    assert_eq!(
        api.post(
            &format!("/v1/controllers/{}/destruction", a.controller),
            &a.admin,
            None,
            &json!({}),
        )
        .status,
        403
    );
    let cert = expect(
        api.post(
            &format!("/v1/controllers/{}/destruction", a.controller),
            &operator,
            None,
            &json!({}),
        ),
        200,
    );
    assert_eq!(cert["controller"], a.controller.as_str());
    assert_eq!(cert["subjects"], 3);
    assert_eq!(cert["records"], 4);
    let stored = expect(
        api.get(
            &format!("/v1/controllers/{}/certificate", a.controller),
            &operator,
            None,
        ),
        200,
    );
    assert_eq!(stored, cert);

    // Nothing decryptable of that controller remains in the database files.
    for f in db_files(&sb.db_path()) {
        let data = std::fs::read(&f).expect("read");
        for n in &needles {
            assert!(
                !contains(&data, n),
                "{} bytes of the destroyed controller's keys or ciphertexts survive in {}",
                n.len(),
                f.display()
            );
        }
    }
    // The other controller is untouched and readable.
    let one = lookup_email(&api, &b, "one@example.org");
    assert_eq!(one.len(), 1, "the other controller's data is findable");
    let sid = one[0].as_str().expect("id");
    let view = expect(
        api.get(&format!("/v1/subjects/{sid}"), &b.app, Some(PURPOSE)),
        200,
    );
    assert!(view.to_string().contains("Terminus One"));
    // The destroyed controller's tokens are dead.
    let dead = api.get(
        &format!("/v1/subjects/{}", created[0]),
        &a.app,
        Some(PURPOSE),
    );
    assert!(dead.status == 401 || dead.status == 403 || dead.status == 404);
    drop(api);
    server.stop();
    assert_verify_ok(&sb);

    // The certificate verifies with the CLI, against this deployment's key ...
    let cert_file = sb.cwd().join("certificate.json");
    std::fs::write(&cert_file, serde_json::to_vec_pretty(&cert).expect("json")).expect("write");
    let cf = cert_file.to_str().expect("utf-8");
    let ok = sb.run(&["verify-certificate", cf]);
    assert_eq!(ok.code, Some(0), "{}", ok.describe());
    assert!(ok.stdout.contains("certificate ok"), "{}", ok.describe());
    let pk = public_key(&sb);
    let ok = sb.run(&["verify-certificate", cf, "--public-key", &pk]);
    assert_eq!(ok.code, Some(0), "{}", ok.describe());

    // ... and not once altered, nor against another deployment's key.
    let mut altered: Vec<(&str, Value)> = Vec::new();
    let mut v = cert.clone();
    v["subjects"] = json!(2);
    altered.push(("a count", v));
    let mut v = cert.clone();
    v["records"] = json!(40);
    altered.push(("the record count", v));
    let mut v = cert.clone();
    v["controller"] = json!(b.controller);
    altered.push(("the controller", v));
    let mut v = cert.clone();
    let sig = str_of(&cert, "signature");
    let mut chars: Vec<char> = sig.chars().collect();
    chars[7] = if chars[7] == 'a' { 'b' } else { 'a' };
    v["signature"] = json!(chars.into_iter().collect::<String>());
    altered.push(("one signature hex digit", v));
    let mut v = cert.clone();
    v["destroyed_at"] = json!("2020-01-01T00:00:00Z");
    altered.push(("the time", v));
    for (what, v) in altered {
        let f = sb.cwd().join("altered.json");
        std::fs::write(&f, serde_json::to_vec_pretty(&v).expect("json")).expect("write");
        let out = sb.run(&["verify-certificate", f.to_str().expect("utf-8")]);
        assert_eq!(out.code, Some(1), "altered {what}: {}", out.describe());
        assert!(out.stdout.contains("INVALID"), "{}", out.describe());
    }
    let other = Sandbox::new();
    other.run_ok(&["init"]);
    let other_key = public_key(&other);
    assert_ne!(other_key, pk);
    let out = sb.run(&["verify-certificate", cf, "--public-key", &other_key]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    // Run from the other deployment (its own root key): not its certificate.
    let copy = other.cwd().join("certificate.json");
    std::fs::copy(&cert_file, &copy).expect("copy");
    let out = other.run(&["verify-certificate", copy.to_str().expect("utf-8")]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
}

#[test]
fn a_destroyed_controller_stays_destroyed_after_restoring_an_older_backup() {
    let sb = Sandbox::new();
    let operator = sb.init_with_operator();
    let server = sb.serve(&[]);
    let api = server.api();
    let a = setup_tenant(&api, &operator);
    let b = second_tenant(&api, &operator, "Survivor SAS");
    let (s, _) = create(&api, &a, &person("Resurrecta Never", "never@example.org"));
    let (kept, _) = create(&api, &b, &person("Kept Around", "kept@example.org"));
    let backup = sb.cwd().join("before-destruction.backup");
    sb.run_ok(&[
        "backup",
        "--out",
        backup.to_str().expect("utf-8"),
        "--quiet",
    ]);
    let c = sql(&sb);
    let mut captured = blobs(
        &c,
        "SELECT wrapped_key FROM controllers WHERE id = ?1",
        &a.controller,
    );
    captured.extend(blobs(
        &c,
        "SELECT wrapped_key FROM subjects WHERE controller_id = ?1",
        &a.controller,
    ));
    captured.extend(sealed_fields(&c, &a.controller));
    drop(c);
    expect(
        api.post(
            &format!("/v1/controllers/{}/termination", a.controller),
            &operator,
            None,
            &json!({}),
        ),
        200,
    );
    let cert = expect(
        api.post(
            &format!("/v1/controllers/{}/destruction", a.controller),
            &operator,
            None,
            &json!({}),
        ),
        200,
    );
    drop(api);
    server.stop();

    let r = sb.run_ok(&["restore", backup.to_str().expect("utf-8"), "--quiet"]);
    assert!(
        r.stdout.contains("1 controller destruction(s)"),
        "{}",
        r.describe()
    );
    assert_verify_ok(&sb);
    for f in db_files(&sb.db_path()) {
        let data = std::fs::read(&f).expect("read");
        for blob in &captured {
            for n in std::iter::once(blob.as_slice()).chain(blob.chunks_exact(16)) {
                assert!(
                    !contains(&data, n),
                    "a restore brought back key material of a destroyed controller in {}",
                    f.display()
                );
            }
        }
    }
    let server = sb.serve(&[]);
    let api = server.api();
    let got = api.get(&format!("/v1/subjects/{s}"), &a.app, Some(PURPOSE));
    assert_ne!(got.status, 200, "{:#}", got.body);
    let status = expect(
        api.get(
            &format!("/v1/controllers/{}", a.controller),
            &operator,
            None,
        ),
        200,
    );
    assert_eq!(status["status"], "destroyed", "{status:#}");
    let again = expect(
        api.get(
            &format!("/v1/controllers/{}/certificate", a.controller),
            &operator,
            None,
        ),
        200,
    );
    assert_eq!(again, cert, "the certificate of destruction is kept");
    expect(
        api.get(&format!("/v1/subjects/{kept}"), &b.app, Some(PURPOSE)),
        200,
    );
    drop(api);
    server.stop();
}

// ---------------------------------------------------------------------------------------
// 4. Legal hold
// ---------------------------------------------------------------------------------------

#[test]
fn a_legal_hold_refuses_every_operation_and_destruction_over_http_until_lifted() {
    let sb = Sandbox::new();
    let operator = sb.init_with_operator();
    let server = sb.serve(&[]);
    let api = server.api();
    let t = setup_tenant(&api, &operator);
    allow_disclosure(&api, &t);
    let email = "held.over.http@example.org";
    let (s, rec) = create(&api, &t, &person("Hilda Held", email));
    let hold = format!("/v1/controllers/{}/legal-hold", t.controller);
    let basis = "Order of the Paris court 2026-0042: preserve all records";

    // Only the operator places holds, and a basis is required.
    let r = api.call(
        reqwest::Method::PUT,
        &hold,
        Some(&t.admin),
        None,
        Some(&json!({ "basis": basis })),
    );
    assert_eq!(r.status, 403, "{:#}", r.body);
    let r = api.call(
        reqwest::Method::PUT,
        &hold,
        Some(&operator),
        None,
        Some(&json!({ "basis": "" })),
    );
    assert_eq!(r.status, 422, "{:#}", r.body);
    let placed = expect(
        api.call(
            reqwest::Method::PUT,
            &hold,
            Some(&operator),
            None,
            Some(&json!({ "basis": basis })),
        ),
        200,
    );
    assert_eq!(placed["status"], "legal_hold");
    let before = last_seq(&api, &t.admin);

    let new_person = person("Not Allowed", "not.allowed@example.org");
    let attempts: Vec<(&str, reqwest::Method, String, Option<Value>)> = vec![
        (
            "consultation",
            reqwest::Method::GET,
            format!("/v1/subjects/{s}"),
            None,
        ),
        (
            "retrieval",
            reqwest::Method::GET,
            format!("/v1/records/{rec}"),
            None,
        ),
        (
            "retrieval",
            reqwest::Method::POST,
            "/v1/lookup".into(),
            Some(json!({"kind": "email", "value": email})),
        ),
        (
            "collection",
            reqwest::Method::POST,
            "/v1/subjects".into(),
            Some(new_person),
        ),
        (
            "recording",
            reqwest::Method::POST,
            format!("/v1/subjects/{s}/records"),
            Some(json!({"fields": {"note": {"category": "user.content", "value": "x"}}})),
        ),
        (
            "alteration",
            reqwest::Method::PATCH,
            format!("/v1/records/{rec}"),
            Some(json!({"fields": {"name": {"category": "user.name", "value": "Changed"}}})),
        ),
        (
            "erasure",
            reqwest::Method::DELETE,
            format!("/v1/records/{rec}"),
            None,
        ),
        (
            "erasure",
            reqwest::Method::DELETE,
            format!("/v1/subjects/{s}"),
            None,
        ),
        (
            "disclosure",
            reqwest::Method::GET,
            format!("/v1/subjects/{s}/export"),
            None,
        ),
        (
            "restriction",
            reqwest::Method::PUT,
            format!("/v1/subjects/{s}/restriction"),
            None,
        ),
    ];
    for (op, method, path, body) in &attempts {
        let r = match (method, body) {
            (&reqwest::Method::PATCH, Some(b)) => api.patch(path, &t.app, Some(PURPOSE), b),
            _ => api.call(
                method.clone(),
                path,
                Some(&t.app),
                Some(PURPOSE),
                body.as_ref(),
            ),
        };
        assert_eq!(
            r.status, 403,
            "{op} {method} {path} under a hold: {:#}",
            r.body
        );
        assert!(
            !r.body.to_string().contains(email),
            "a refusal echoes data: {:#}",
            r.body
        );
    }
    let trail = audit(&api, &t.admin);
    let refused: Vec<&Value> = trail
        .iter()
        .filter(|e| e["seq"].as_u64().is_some_and(|q| q > before))
        .collect();
    let actions: Vec<&str> = refused
        .iter()
        .filter(|e| e["outcome"] == "refused")
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    let expected: Vec<&str> = attempts.iter().map(|(op, ..)| *op).collect();
    assert_eq!(actions, expected, "each attempt is audited as refused");
    assert!(
        !serde_json::to_string(&refused)
            .expect("json")
            .contains(email),
        "the trail holds values"
    );
    let placed_entry = trail
        .iter()
        .find(|e| e["action"] == "admin.legal_hold_placed" && e["outcome"] == "allowed")
        .expect("the hold is in the trail");
    assert!(
        placed_entry["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .any(|f| f == &json!(format!("basis:{basis}"))),
        "{placed_entry:#}"
    );

    // Destruction is refused, with a refused entry, even after termination was requested.
    let r = api.post(
        &format!("/v1/controllers/{}/termination", t.controller),
        &operator,
        None,
        &json!({}),
    );
    assert_eq!(
        r.status, 403,
        "termination cannot start under a hold: {:#}",
        r.body
    );
    let before = last_seq(&api, &t.admin);
    let r = api.post(
        &format!("/v1/controllers/{}/destruction", t.controller),
        &operator,
        None,
        &json!({}),
    );
    assert_eq!(r.status, 403, "{:#}", r.body);
    let after: Vec<Value> = audit(&api, &t.admin)
        .into_iter()
        .filter(|e| e["seq"].as_u64().is_some_and(|q| q > before))
        .collect();
    assert_eq!(after.len(), 1, "{after:#?}");
    assert_eq!(after[0]["action"], "destruction");
    assert_eq!(after[0]["outcome"], "refused");
    let held = expect(
        api.get(
            &format!("/v1/controllers/{}", t.controller),
            &operator,
            None,
        ),
        200,
    );
    assert_eq!(held["status"], "legal_hold");

    // Lifted: processing works again, and the lift is audited.
    let lifted = expect(
        api.call(reqwest::Method::DELETE, &hold, Some(&operator), None, None),
        200,
    );
    assert_eq!(lifted["status"], "active");
    assert!(
        audit(&api, &t.admin)
            .iter()
            .any(|e| e["action"] == "admin.legal_hold_lifted")
    );
    let view = expect(
        api.get(&format!("/v1/subjects/{s}"), &t.app, Some(PURPOSE)),
        200,
    );
    assert!(view.to_string().contains("Hilda Held"));
    assert_eq!(lookup_email(&api, &t, email).len(), 1);
    expect(
        api.get(&format!("/v1/subjects/{s}/export"), &t.app, Some(PURPOSE)),
        200,
    );
    drop(api);
    server.stop();
    assert_verify_ok(&sb);
}

// ---------------------------------------------------------------------------------------
// 5. The data-directory lock
// ---------------------------------------------------------------------------------------

#[test]
fn restore_refuses_while_a_server_runs_on_the_data_directory() {
    let sb = Sandbox::new();
    let operator = sb.init_with_operator();
    let server = sb.serve(&[]);
    let api = server.api();
    let t = setup_tenant(&api, &operator);
    let backup = sb.cwd().join("lock.backup");
    sb.run_ok(&[
        "backup",
        "--out",
        backup.to_str().expect("utf-8"),
        "--quiet",
    ]);
    let (s, _) = create(&api, &t, &person("Locked In", "locked@example.org"));

    let msg = refused(
        &sb,
        &["restore", backup.to_str().expect("utf-8"), "--quiet"],
        "restore under a running server",
    );
    assert!(
        msg.contains("locked") && msg.contains("stop it first"),
        "{msg}"
    );
    // A second server on the same directory is refused the same way.
    let second = sb.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert_ne!(second.code, Some(0), "{}", second.describe());
    assert!(second.stderr.contains("locked"), "{}", second.describe());
    // Nothing was restored: data written after the backup is still there.
    expect(
        api.get(&format!("/v1/subjects/{s}"), &t.app, Some(PURPOSE)),
        200,
    );
    drop(api);
    server.stop();
    // With the server stopped, the same restore goes through.
    sb.run_ok(&["restore", backup.to_str().expect("utf-8"), "--quiet"]);
}
