//! Black-box tests: every test drives the real `custodian` binary (CLI and HTTP server as a
//! child process) from a fresh temporary directory, the way an operator would.

mod common;

use common::*;
use rusqlite::Connection;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// 1. The full flow: init, first operator token, serve, HTTP administration and data calls,
//    erasure, graceful stop, verify.
// ---------------------------------------------------------------------------------------

#[test]
fn full_flow_init_serve_collect_erase_verify() {
    let sb = Sandbox::new();

    let init = sb.run_ok(&["init"]);
    assert!(
        init.stdout.contains("root key written"),
        "{}",
        init.describe()
    );
    let key = sb.data_dir().join("root.key");
    assert!(key.is_file(), "no root key at {}", key.display());
    assert_eq!(mode_of(&key), 0o600, "root.key must be 0600");
    assert_eq!(mode_of(&sb.data_dir()), 0o700, "the data dir must be 0700");
    assert!(
        sb.cwd().join("custodian.toml").is_file(),
        "init writes a config"
    );
    assert!(sb.db_path().is_file(), "init creates the database");

    let token = sb.run_ok(&[
        "token",
        "create",
        "--role",
        "operator_admin",
        "--label",
        "t",
    ]);
    let operator = token.stdout.trim().to_owned();
    assert!(operator.starts_with("cst_op_"), "{}", token.describe());
    assert_eq!(
        token.stdout.lines().count(),
        1,
        "only the secret goes to stdout"
    );
    assert!(
        !token.stderr.contains(&operator),
        "the secret is printed once, on stdout"
    );

    let server = sb.serve(&[]);
    let api = server.api();
    let health = api.call(reqwest::Method::GET, "/healthz", None, None, None);
    assert_eq!(health.status, 200);

    // Without a token, nothing; with a made-up one, nothing either.
    assert_eq!(
        api.call(reqwest::Method::GET, "/v1/controllers", None, None, None)
            .status,
        401
    );
    assert_eq!(api.get("/v1/controllers", "cst_op_nope", None).status, 401);

    let tenant = setup_tenant(&api, &operator);

    let listed = expect(api.get("/v1/controllers", &operator, None), 200);
    assert!(
        listed
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c["id"] == tenant.controller.as_str())),
        "{listed:#}"
    );

    // Collection, with the purpose named.
    let created = expect(
        api.post(
            "/v1/subjects",
            &tenant.app,
            Some(PURPOSE),
            &person("Alice Martin", "alice.martin@example.org"),
        ),
        201,
    );
    let subject = str_of(&created, "id").to_owned();
    assert!(subject.starts_with("sub_"), "{created:#}");
    let record = str_of(&created, "record").to_owned();
    assert!(record.starts_with("rec_"), "{created:#}");

    // A data call that names no purpose is refused.
    let no_purpose = api.get(&format!("/v1/subjects/{subject}"), &tenant.app, None);
    assert_eq!(no_purpose.status, 400, "{:#}", no_purpose.body);

    // Consultation: the values come back decrypted and unchanged.
    let view = expect(
        api.get(
            &format!("/v1/subjects/{subject}"),
            &tenant.app,
            Some(PURPOSE),
        ),
        200,
    );
    assert_eq!(view["id"], subject.as_str());
    assert_eq!(view["category"], "customer");
    assert_eq!(view["restricted"], false);
    let records = view["records"].as_array().expect("records");
    assert_eq!(records.len(), 1, "{view:#}");
    let r = &records[0];
    assert_eq!(r["id"], record.as_str());
    assert_eq!(r["purpose"], PURPOSE);
    assert_eq!(r["fields"]["name"]["value"], "Alice Martin");
    assert_eq!(r["fields"]["name"]["category"], "user.name");
    assert_eq!(r["fields"]["email"]["value"], "alice.martin@example.org");
    assert_eq!(r["fields"]["email"]["category"], "user.contact.email");
    assert_eq!(r["source"], "signup form");

    // The same record through the records endpoint.
    let rec = expect(
        api.get(&format!("/v1/records/{record}"), &tenant.app, Some(PURPOSE)),
        200,
    );
    assert_eq!(rec["fields"]["name"]["value"], "Alice Martin");

    // Erasure, then the subject is gone for good (410, not 404), and erasure is idempotent.
    let receipt = expect(
        api.delete(
            &format!("/v1/subjects/{subject}"),
            &tenant.app,
            Some(PURPOSE),
        ),
        200,
    );
    assert_eq!(receipt["subject"], subject.as_str());
    assert_eq!(receipt["erased_now"], true);
    assert_eq!(receipt["records"], 1);
    let gone = api.get(
        &format!("/v1/subjects/{subject}"),
        &tenant.app,
        Some(PURPOSE),
    );
    assert_eq!(gone.status, 410, "{:#}", gone.body);
    let again = expect(
        api.delete(
            &format!("/v1/subjects/{subject}"),
            &tenant.app,
            Some(PURPOSE),
        ),
        200,
    );
    assert_eq!(again["erased_now"], false);

    // The audit trail shows who did what, never the values.
    let audit = expect(api.get("/v1/audit", &tenant.admin, None), 200);
    let entries = audit["entries"].as_array().expect("entries");
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in ["collection", "consultation", "erasure"] {
        assert!(actions.contains(&a), "no {a} entry in {actions:?}");
    }
    let text = audit.to_string();
    assert!(!text.contains("Alice"), "audit leaks a value: {text}");
    assert!(
        !text.contains("alice.martin"),
        "audit leaks a value: {text}"
    );

    drop(api);
    server.stop();

    let verify = sb.run(&["verify"]);
    assert_eq!(verify.code, Some(0), "{}", verify.describe());
    assert!(
        verify.stdout.contains("verify: ok"),
        "{}",
        verify.describe()
    );
    assert!(
        verify
            .stdout
            .contains(&format!("chain {}:", tenant.controller)),
        "{}",
        verify.describe()
    );

    let json = sb.run(&["verify", "--json"]);
    assert_eq!(json.code, Some(0), "{}", json.describe());
    let report: Value = serde_json::from_str(
        json.stdout
            .lines()
            .take_while(|l| !l.starts_with("verify:"))
            .collect::<Vec<_>>()
            .join("\n")
            .as_str(),
    )
    .unwrap_or_else(|e| panic!("verify --json: {e}\n{}", json.describe()));
    assert_eq!(report["problems"], json!([]), "{report:#}");
    assert!(report["entries"].as_u64().unwrap_or(0) >= 6, "{report:#}");
}

// ---------------------------------------------------------------------------------------
// 2. Tamper detection through `custodian verify`.
// ---------------------------------------------------------------------------------------

/// A data dir whose controller chain holds a few dozen entries, all made through the real
/// server; the server is stopped, `custodian checkpoint` has run and `verify` passes.
struct Seeded {
    sb: Sandbox,
    chain: String,
    head: u64,
}

fn seeded() -> Seeded {
    let sb = Sandbox::new();
    let operator = sb.init_with_operator();
    let server = sb.serve(&["--checkpoint-interval-seconds", "3600"]);
    let api = server.api();
    let t = setup_tenant(&api, &operator);
    for i in 0..10 {
        let created = expect(
            api.post(
                "/v1/subjects",
                &t.app,
                Some(PURPOSE),
                &person(&format!("Person {i}"), &format!("person.{i}@example.org")),
            ),
            201,
        );
        let subject = str_of(&created, "id").to_owned();
        let record = str_of(&created, "record").to_owned();
        expect(
            api.get(&format!("/v1/subjects/{subject}"), &t.app, Some(PURPOSE)),
            200,
        );
        if i % 2 == 0 {
            let updated = expect(
                api.patch(
                    &format!("/v1/records/{record}"),
                    &t.app,
                    Some(PURPOSE),
                    &json!({"fields": {"name": {"category": "user.name", "value": format!("Renamed {i}")}}}),
                ),
                200,
            );
            assert_eq!(updated["fields"]["name"]["value"], format!("Renamed {i}"));
        }
        if i % 4 == 3 {
            expect(
                api.delete(&format!("/v1/subjects/{subject}"), &t.app, Some(PURPOSE)),
                200,
            );
        }
    }
    drop(api);
    server.stop();

    let cp = sb.run_ok(&["checkpoint"]);
    assert!(cp.stdout.contains("checkpoint"), "{}", cp.describe());
    let verify = sb.run(&["verify"]);
    assert_eq!(verify.code, Some(0), "untampered: {}", verify.describe());

    let db = Connection::open(sb.db_path()).expect("open db");
    let head: i64 = db
        .query_row(
            "SELECT seq FROM audit_heads WHERE chain = ?1",
            [&t.controller],
            |r| r.get(0),
        )
        .expect("controller head");
    let count: i64 = db
        .query_row(
            "SELECT count(*) FROM audit_entries WHERE chain = ?1",
            [&t.controller],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(head, count, "a clean chain has entries 1..=head");
    assert!(head >= 24, "only {head} entries on the controller chain");
    Seeded {
        sb,
        chain: t.controller,
        head: head as u64,
    }
}

/// Opens the database as an attacker with file access would: dropping the append-only
/// triggers first.
fn attacker_db(s: &Seeded) -> Connection {
    let db = Connection::open(s.sb.db_path()).expect("open db");
    db.execute_batch("DROP TRIGGER audit_entries_no_update; DROP TRIGGER audit_entries_no_delete;")
        .expect("drop the append-only triggers");
    db
}

/// Runs `custodian verify`, expects exit 1, and returns the entry named by the first FAIL
/// line for `chain`, with that line.
fn verify_fails(s: &Seeded) -> (u64, String) {
    let out = s.sb.run(&["verify"]);
    assert_eq!(
        out.code,
        Some(1),
        "verify must fail on tampered data: {}",
        out.describe()
    );
    assert!(out.stdout.contains("verify: FAILED"), "{}", out.describe());
    let prefix = format!("FAIL chain {} at entry ", s.chain);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}N:` line: {}", out.describe()))
        .to_owned();
    let seq = line[prefix.len()..]
        .split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no entry number in {line:?}"));
    (seq, line)
}

#[test]
fn tamper_control_untampered_verifies() {
    let s = seeded();
    // Opening the database and dropping the triggers alone changes no history.
    drop(attacker_db(&s));
    let out = s.sb.run(&["verify"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(out.stdout.contains("verify: ok"), "{}", out.describe());
    assert!(!out.stdout.contains("FAIL"), "{}", out.describe());
}

#[test]
fn tamper_flipped_byte_in_actor_is_named() {
    let s = seeded();
    let n = s.head / 2;
    let db = attacker_db(&s);
    let actor: String = db
        .query_row(
            "SELECT actor FROM audit_entries WHERE chain = ?1 AND seq = ?2",
            rusqlite::params![s.chain, n],
            |r| r.get(0),
        )
        .expect("actor");
    let mut bytes = actor.clone().into_bytes();
    let i = bytes.len() / 2;
    assert!(bytes[i].is_ascii_graphic(), "{actor:?}");
    bytes[i] ^= 0x01;
    let forged = String::from_utf8(bytes).expect("still text");
    assert_ne!(forged, actor);
    let changed = db
        .execute(
            "UPDATE audit_entries SET actor = ?3 WHERE chain = ?1 AND seq = ?2",
            rusqlite::params![s.chain, n, forged],
        )
        .expect("update");
    assert_eq!(changed, 1);
    drop(db);

    let (seq, line) = verify_fails(&s);
    assert_eq!(seq, n, "{line}");
    assert!(line.contains(&format!("entry {n}")), "{line}");

    // The JSON report names the same entry.
    let out = s.sb.run(&["verify", "--json"]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let json_text: String = out
        .stdout
        .lines()
        .take_while(|l| !l.starts_with("verify:"))
        .collect::<Vec<_>>()
        .join("\n");
    let report: Value = serde_json::from_str(&json_text)
        .unwrap_or_else(|e| panic!("verify --json: {e}\n{}", out.describe()));
    let problems = report["problems"].as_array().expect("problems");
    assert!(
        problems
            .iter()
            .any(|p| p["chain"] == s.chain.as_str() && p["seq"] == n),
        "{report:#}"
    );
}

#[test]
fn tamper_deleted_middle_entry_is_named() {
    let s = seeded();
    let n = s.head / 2;
    let db = attacker_db(&s);
    let deleted = db
        .execute(
            "DELETE FROM audit_entries WHERE chain = ?1 AND seq = ?2",
            rusqlite::params![s.chain, n],
        )
        .expect("delete");
    assert_eq!(deleted, 1);
    drop(db);

    let (seq, line) = verify_fails(&s);
    assert_eq!(seq, n, "{line}");
}

/// Picks a middle pair of adjacent entries whose actions differ.
fn adjacent_pair(db: &Connection, s: &Seeded) -> u64 {
    let action = |seq: u64| -> String {
        db.query_row(
            "SELECT action FROM audit_entries WHERE chain = ?1 AND seq = ?2",
            rusqlite::params![s.chain, seq],
            |r| r.get(0),
        )
        .expect("action")
    };
    (s.head / 2..s.head - 1)
        .find(|&n| action(n) != action(n + 1))
        .expect("two adjacent entries with different actions")
}

#[test]
fn tamper_swapped_adjacent_contents_are_named() {
    let s = seeded();
    let db = attacker_db(&s);
    let n = adjacent_pair(&db, &s);
    const COLS: [&str; 9] = [
        "at",
        "actor",
        "action",
        "purpose",
        "subject_id",
        "record_id",
        "fields",
        "refused",
        "request_id",
    ];
    let row = |seq: u64| -> Vec<rusqlite::types::Value> {
        db.query_row(
            &format!(
                "SELECT {} FROM audit_entries WHERE chain = ?1 AND seq = ?2",
                COLS.join(", ")
            ),
            rusqlite::params![s.chain, seq],
            |r| (0..COLS.len()).map(|i| r.get(i)).collect(),
        )
        .expect("row")
    };
    let (a, b) = (row(n), row(n + 1));
    assert_ne!(a, b);
    let set = COLS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ?{}", i + 3))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("UPDATE audit_entries SET {set} WHERE chain = ?1 AND seq = ?2");
    for (seq, values) in [(n, &b), (n + 1, &a)] {
        let mut params: Vec<&dyn rusqlite::ToSql> = vec![&s.chain, &seq];
        params.extend(values.iter().map(|v| v as &dyn rusqlite::ToSql));
        assert_eq!(db.execute(&sql, params.as_slice()).expect("swap"), 1);
    }
    assert_eq!(row(n), b);
    drop(db);

    let (seq, line) = verify_fails(&s);
    assert!(
        seq == n || seq == n + 1,
        "expected entry {n} or {}: {line}",
        n + 1
    );
}

#[test]
fn tamper_swapped_adjacent_seq_numbers_are_named() {
    let s = seeded();
    let db = attacker_db(&s);
    let n = adjacent_pair(&db, &s);
    db.execute_batch("BEGIN").expect("begin");
    for (from, to) in [
        (n as i64, -1i64),
        (n as i64 + 1, n as i64),
        (-1, n as i64 + 1),
    ] {
        let changed = db
            .execute(
                "UPDATE audit_entries SET seq = ?3 WHERE chain = ?1 AND seq = ?2",
                rusqlite::params![s.chain, from, to],
            )
            .expect("renumber");
        assert_eq!(changed, 1);
    }
    db.execute_batch("COMMIT").expect("commit");
    drop(db);

    let (seq, line) = verify_fails(&s);
    assert!(
        seq == n || seq == n + 1,
        "expected entry {n} or {}: {line}",
        n + 1
    );
}

#[test]
fn tamper_truncated_chain_is_caught_by_the_external_checkpoint() {
    let s = seeded();
    let external =
        s.sb.data_dir()
            .join("checkpoints")
            .join(format!("{}.checkpoint.json", s.chain));
    let file: Value =
        serde_json::from_slice(&std::fs::read(&external).expect("external checkpoint file"))
            .expect("checkpoint json");
    assert_eq!(
        file["seq"], s.head,
        "the external checkpoint covers the head"
    );

    let keep = s.head - 3;
    let db = attacker_db(&s);
    let deleted = db
        .execute(
            "DELETE FROM audit_entries WHERE chain = ?1 AND seq > ?2",
            rusqlite::params![s.chain, keep],
        )
        .expect("delete tail");
    assert_eq!(deleted, 3);
    let moved = db
        .execute(
            "UPDATE audit_heads SET seq = ?2,
                 hash = (SELECT hash FROM audit_entries WHERE chain = ?1 AND seq = ?2)
             WHERE chain = ?1",
            rusqlite::params![s.chain, keep],
        )
        .expect("move head");
    assert_eq!(moved, 1);
    let removed = db
        .execute(
            "DELETE FROM checkpoints WHERE chain = ?1 AND seq > ?2",
            rusqlite::params![s.chain, keep],
        )
        .expect("delete checkpoints");
    assert!(removed >= 1, "the final checkpoint was in the database");
    let left: Option<i64> = db
        .query_row(
            "SELECT max(seq) FROM checkpoints WHERE chain = ?1",
            [&s.chain],
            |r| r.get(0),
        )
        .expect("max checkpoint");
    assert!(left.is_none_or(|m| m as u64 <= keep));
    drop(db);

    let (seq, line) = verify_fails(&s);
    assert!(line.contains("removed"), "{line}");
    assert_eq!(seq, keep + 1, "{line}");
}

// ---------------------------------------------------------------------------------------
// 3. Configuration refusals.
// ---------------------------------------------------------------------------------------

fn serve_refused(sb: &Sandbox) -> Output {
    let out = sb.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(
        out.code,
        Some(2),
        "serve must refuse to start: {}",
        out.describe()
    );
    assert!(!out.stdout.contains("listening on"), "{}", out.describe());
    out
}

#[test]
fn serve_refuses_an_unknown_config_key() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.cwd().join("custodian.toml"),
        "listen = \"127.0.0.1:0\"\nlisten_adress = \"127.0.0.1:9\"\n",
    )
    .expect("write config");
    let out = serve_refused(&sb);
    assert!(out.stderr.contains("listen_adress"), "{}", out.describe());
}

#[test]
fn serve_refuses_without_a_root_key() {
    let sb = Sandbox::new();
    let out = serve_refused(&sb);
    assert!(out.stderr.contains("custodian init"), "{}", out.describe());
    assert!(
        !sb.data_dir().join("root.key").exists(),
        "serve must not invent a root key"
    );
}

#[test]
fn serve_refuses_a_root_key_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    sb.run_ok(&["init"]);
    let key = sb.data_dir().join("root.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = serve_refused(&sb);
    assert!(out.stderr.contains("chmod 600"), "{}", out.describe());
    // The other commands that need the key refuse too.
    let verify = sb.run(&["verify"]);
    assert_eq!(verify.code, Some(2), "{}", verify.describe());
    assert!(verify.stderr.contains("chmod 600"), "{}", verify.describe());
}

// ---------------------------------------------------------------------------------------
// 4. The demo.
// ---------------------------------------------------------------------------------------

#[test]
fn serve_demo_prints_a_working_token_and_example() {
    let sb = Sandbox::new();
    let server = sb.serve(&["--demo"]);
    let banner = server.banner.join("\n");

    let token = server
        .banner
        .iter()
        .find_map(|l| l.split_once("demo: application token:"))
        .map(|(_, t)| t.trim().to_owned())
        .unwrap_or_else(|| panic!("no demo application token line:\n{banner}"));
    assert!(token.starts_with("cst_app_"), "{banner}");

    let curl = server
        .banner
        .iter()
        .find(|l| l.contains("curl") && l.contains("/v1/subjects/"))
        .unwrap_or_else(|| panic!("no curl example:\n{banner}"));
    assert!(
        curl.contains(&token),
        "the example uses the app token: {curl}"
    );
    assert!(
        curl.contains("Custodian-Purpose: support"),
        "the example names its purpose: {curl}"
    );
    // The example can be pasted as it is: its URL is on the address the server bound.
    let url = curl
        .split_whitespace()
        .find(|w| w.contains("/v1/subjects/"))
        .expect("subject URL")
        .to_owned();
    assert!(
        url.starts_with(&server.base),
        "{url} is not on {}",
        server.base
    );

    let api = server.api();
    let view = expect(api.get(&url, &token, Some("support")), 200);
    let records = view["records"].as_array().expect("records");
    assert!(!records.is_empty(), "{view:#}");
    let fields = records[0]["fields"].as_object().expect("fields");
    for f in ["name", "email"] {
        assert!(fields.contains_key(f), "no {f} in {view:#}");
        assert!(
            fields[f]["value"].as_str().is_some_and(|v| !v.is_empty()),
            "{view:#}"
        );
    }
    assert!(
        fields["email"]["value"]
            .as_str()
            .is_some_and(|e| e.contains('@')),
        "{view:#}"
    );

    // The demo initialised its own directory, not the default one, and kept it private.
    assert!(sb.cwd().join("custodian-demo").is_dir());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(sb.cwd().join("custodian-demo"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "demo data dir mode {mode:o}");
    }
    assert!(!sb.data_dir().exists());
    drop(api);
    server.stop();
}

// ---------------------------------------------------------------------------------------
// 5. Help.
// ---------------------------------------------------------------------------------------

#[test]
fn help_works_for_every_subcommand() {
    let sb = Sandbox::new();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--help"],
            &["vault", "init", "serve", "token", "verify", "checkpoint"],
        ),
        (&["init", "--help"], &["root key", "--write-config"]),
        (
            &["serve", "--help"],
            &[
                "HTTP API",
                "--listen",
                "--demo",
                "--checkpoint-interval-seconds",
            ],
        ),
        (&["token", "--help"], &["tokens", "create"]),
        (
            &["token", "create", "--help"],
            &[
                "Issues a token",
                "--role",
                "--controller",
                "--label",
                "--days",
            ],
        ),
        (&["verify", "--help"], &["audit chain", "--json"]),
        (&["checkpoint", "--help"], &["Signs", "audit chain"]),
        (&["account", "--help"], &["accounts", "create"]),
        (
            &["account", "create", "--help"],
            &["standard input", "--login", "--role", "--controller"],
        ),
    ];
    for (args, needles) in cases {
        let out = sb.run(args);
        assert_eq!(
            out.code,
            Some(0),
            "custodian {}: {}",
            args.join(" "),
            out.describe()
        );
        for n in *needles {
            assert!(
                out.stdout.to_lowercase().contains(&n.to_lowercase()),
                "`custodian {}` does not mention {n:?}:\n{}",
                args.join(" "),
                out.stdout
            );
        }
        // The global flags are documented everywhere.
        assert!(out.stdout.contains("--config"), "{}", out.stdout);
    }
    let version = sb.run_ok(&["--version"]);
    assert!(
        version.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        version.describe()
    );
    // Help writes nothing into the working directory.
    assert_eq!(
        std::fs::read_dir(sb.cwd()).expect("cwd").count(),
        0,
        "help must not create files"
    );
}
