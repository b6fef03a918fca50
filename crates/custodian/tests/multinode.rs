//! Stateless multi-node serving over PostgreSQL, tested with the real binary: several
//! `custodian serve` processes share one database and one root key, take concurrent writes
//! for the same controller, survive the loss of a node (kill -9), and leave every audit chain
//! verifiable. Also the at-rest canary scan of a PostgreSQL database.
//!
//! The PostgreSQL server comes from `TEST_DATABASE_URL` (`./scripts/test` starts a throwaway
//! cluster and sets it when PostgreSQL's server binaries are installed). Each test creates
//! its own database there and drops it afterwards. Without it, the tests say so and pass.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Writers per node, all against the same controller.
const WRITERS_PER_NODE: usize = 8;

fn server_url(test: &str) -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            // Straight to stderr: the harness does not capture it, so the skip is visible.
            let _ = writeln!(
                std::io::stderr(),
                "postgres: SKIPPED (TEST_DATABASE_URL unset: PostgreSQL server binaries not found) [multinode::{test}]"
            );
            None
        }
    }
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let authority = main.split('/').next().unwrap_or(main);
    match query {
        Some(q) => format!("{scheme}://{authority}/{db}?{q}"),
        None => format!("{scheme}://{authority}/{db}"),
    }
}

/// A database of its own on the test server, dropped (even with connections left) at the end.
struct FreshDb {
    server: String,
    name: String,
    url: String,
}

impl FreshDb {
    fn new(server: &str, tag: &str) -> FreshDb {
        let name = format!(
            "cst_{tag}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() % 1_000_000_000)
                .unwrap_or_default()
        );
        let mut admin = postgres::Client::connect(server, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to TEST_DATABASE_URL: {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create the test database");
        let url = with_database(server, &name);
        FreshDb {
            server: server.to_owned(),
            name,
            url,
        }
    }

    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the test database")
    }
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Two sandboxes (two machines, as far as the nodes know) sharing one database and one root
/// key; the operator token was issued against the shared database.
struct Nodes {
    a: Sandbox,
    b: Sandbox,
    operator: String,
}

fn two_node_setup(db: &FreshDb) -> Nodes {
    let a = Sandbox::new();
    let b = Sandbox::new();
    a.run_ok(&["init", "--database", &db.url]);
    // The second node gets the same root key, as a deployment would hand it out.
    std::fs::create_dir_all(b.data_dir()).unwrap();
    set_mode(&b.data_dir(), 0o700);
    std::fs::copy(a.data_dir().join("root.key"), b.data_dir().join("root.key")).unwrap();
    set_mode(&b.data_dir().join("root.key"), 0o600);
    let out = a.run_ok(&[
        "token",
        "create",
        "--role",
        "operator_admin",
        "--label",
        "multinode operator",
        "--days",
        "1",
        "--database",
        &db.url,
    ]);
    let operator = out.stdout.trim().to_owned();
    assert!(operator.starts_with("cst_op_"), "{}", out.describe());
    Nodes { a, b, operator }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn serve_on(sb: &Sandbox, db: &FreshDb) -> Server {
    let s = sb.serve(&["--database", &db.url]);
    assert!(
        !sb.db_path().exists(),
        "a postgres:// database must not create a SQLite file"
    );
    s
}

/// A small HTTP client that reports failures instead of panicking (a node may be dead).
struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> Http {
        Http {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        }
    }

    fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let mut req = self
            .client
            .request(method, url)
            .bearer_auth(token)
            .header("Custodian-Purpose", PURPOSE);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.rt.block_on(async move {
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let text = resp.text().await.map_err(|e| e.to_string())?;
            Ok((
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            ))
        })
    }
}

#[derive(Debug, Clone)]
struct Ack {
    subject: String,
    email: String,
    node: usize,
    at: Instant,
}

#[derive(Debug, Default)]
struct Tally {
    acks: Vec<Ack>,
    /// (node, when, what)
    failures: Vec<(usize, Instant, String)>,
}

/// `WRITERS_PER_NODE` threads per node create subjects until `during` returns (it runs on
/// the calling thread meanwhile, sees the tally so far, and decides when the load ends);
/// every 2xx answer is an acknowledged write.
fn load(
    nodes: &[(usize, String)],
    app: &str,
    tag: &str,
    during: impl FnOnce(&Mutex<Tally>),
) -> Tally {
    let tally = Mutex::new(Tally::default());
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for (node, base) in nodes {
            for w in 0..WRITERS_PER_NODE {
                let (tally, stop) = (&tally, &stop);
                s.spawn(move || {
                    let http = Http::new();
                    let url = format!("{base}/v1/subjects");
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let email = format!("{tag}.n{node}.w{w}.{i}@example.org");
                        let body = person(&format!("Writer {node}-{w} #{i}"), &email);
                        match http.call(reqwest::Method::POST, &url, app, Some(&body)) {
                            Ok((st, v)) if (200..300).contains(&st) => {
                                let subject = str_of(&v, "id").to_owned();
                                tally.lock().unwrap().acks.push(Ack {
                                    subject,
                                    email,
                                    node: *node,
                                    at: Instant::now(),
                                });
                            }
                            Ok((st, v)) => {
                                tally.lock().unwrap().failures.push((
                                    *node,
                                    Instant::now(),
                                    format!("{st} {v}"),
                                ));
                            }
                            Err(e) => {
                                tally
                                    .lock()
                                    .unwrap()
                                    .failures
                                    .push((*node, Instant::now(), e));
                                std::thread::sleep(Duration::from_millis(50));
                            }
                        }
                    }
                });
            }
        }
        // Whatever `during` does (even panic), the writers stop.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        during(&tally);
    });
    tally.into_inner().unwrap()
}

/// Acknowledged writes of `node` so far.
fn acked(t: &Mutex<Tally>, node: usize) -> usize {
    t.lock()
        .unwrap()
        .acks
        .iter()
        .filter(|a| a.node == node)
        .count()
}

/// Reads every acknowledged subject back (spread over `bases`) and checks its email.
fn read_back(bases: &[String], app: &str, acks: &[Ack]) {
    let missing = Mutex::new(Vec::new());
    let chunk = acks.len().div_ceil(8).max(1);
    std::thread::scope(|s| {
        for (k, part) in acks.chunks(chunk).enumerate() {
            let base = &bases[k % bases.len()];
            let missing = &missing;
            s.spawn(move || {
                let http = Http::new();
                for a in part {
                    let got = http.call(
                        reqwest::Method::GET,
                        &format!("{base}/v1/subjects/{}", a.subject),
                        app,
                        None,
                    );
                    let ok = matches!(&got, Ok((200, v))
                        if v["records"][0]["fields"]["email"]["value"] == a.email.as_str());
                    if !ok {
                        missing
                            .lock()
                            .unwrap()
                            .push(format!("{} ({}): {got:?}", a.subject, a.email));
                    }
                }
            });
        }
    });
    let missing = missing.into_inner().unwrap();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes are not readable, e.g. {:?}",
        missing.len(),
        acks.len(),
        &missing[..missing.len().min(5)]
    );
}

/// Every acknowledged subject is in the database (checked with SQL, beside the API).
fn all_in_database(db: &FreshDb, acks: &[Ack]) {
    let mut c = db.client();
    let stored: HashSet<String> = c
        .query("SELECT id FROM subjects", &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let lost: Vec<&str> = acks
        .iter()
        .filter(|a| !stored.contains(&a.subject))
        .map(|a| a.subject.as_str())
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged but not stored: {lost:?} (of {})",
        acks.len()
    );
}

fn verify_ok(sb: &Sandbox, db: &FreshDb) -> String {
    let out = sb.run(&["verify", "--database", &db.url]);
    assert_eq!(out.code, Some(0), "verify failed:\n{}", out.describe());
    assert!(out.stdout.contains("verify: ok"), "{}", out.describe());
    out.stdout
}

fn summary(t: &Tally, node: usize) -> (usize, usize) {
    (
        t.acks.iter().filter(|a| a.node == node).count(),
        t.failures.iter().filter(|f| f.0 == node).count(),
    )
}

#[test]
fn two_nodes_concurrent_writers_on_one_controller() {
    let Some(server) = server_url("two_nodes_concurrent_writers_on_one_controller") else {
        return;
    };
    let db = FreshDb::new(&server, "mn_load");
    let nodes = two_node_setup(&db);
    let sa = serve_on(&nodes.a, &db);
    let sb = serve_on(&nodes.b, &db);
    // Administration through node A, data through both: the nodes share everything.
    let tenant = setup_tenant(&sa.api(), &nodes.operator);

    let started = Instant::now();
    let tally = load(
        &[(0, sa.base.clone()), (1, sb.base.clone())],
        &tenant.app,
        "load",
        |tally| {
            // 5 s, longer only if a node has not answered yet (10 s more at most).
            std::thread::sleep(Duration::from_secs(5));
            let give_up = Instant::now() + Duration::from_secs(10);
            while (acked(tally, 0) == 0 || acked(tally, 1) == 0) && Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(50));
            }
        },
    );
    let secs = started.elapsed().as_secs_f64();
    let (a_ok, a_bad) = summary(&tally, 0);
    let (b_ok, b_bad) = summary(&tally, 1);
    eprintln!(
        "multinode load: {} acknowledged writes in {secs:.1}s ({:.0}/s) — node A {a_ok} ok / {a_bad} failed, node B {b_ok} ok / {b_bad} failed",
        tally.acks.len(),
        tally.acks.len() as f64 / secs
    );
    assert!(
        tally.failures.is_empty(),
        "with both nodes up no write may fail: {:?}",
        &tally.failures[..tally.failures.len().min(5)]
    );
    assert!(
        a_ok > 0 && b_ok > 0,
        "both nodes took writes: A {a_ok}, B {b_ok}"
    );

    // Every acknowledged write is there, readable through either node.
    read_back(
        &[sa.base.clone(), sb.base.clone()],
        &tenant.app,
        &tally.acks,
    );
    all_in_database(&db, &tally.acks);

    sa.stop();
    sb.stop();
    let report = verify_ok(&nodes.a, &db);
    verify_ok(&nodes.b, &db);
    let ctl_line = report
        .lines()
        .find(|l| l.contains(&tenant.controller))
        .unwrap_or_else(|| panic!("no chain for the controller in:\n{report}"));
    let entries: usize = ctl_line
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the entry count in {ctl_line:?}"));
    // Each write and each read-back is one audited operation on the controller's chain.
    assert!(
        entries >= 2 * tally.acks.len(),
        "{entries} entries for {} writes and as many reads",
        tally.acks.len()
    );
}

#[test]
fn kill_9_of_one_node_loses_no_acknowledged_write() {
    let Some(server) = server_url("kill_9_of_one_node_loses_no_acknowledged_write") else {
        return;
    };
    let db = FreshDb::new(&server, "mn_kill");
    let nodes = two_node_setup(&db);
    let sa = serve_on(&nodes.a, &db);
    let mut sb = Some(serve_on(&nodes.b, &db));
    let b_base = sb.as_ref().unwrap().base.clone();
    let tenant = setup_tenant(&sa.api(), &nodes.operator);

    let killed_at = Mutex::new(None);
    let first = load(
        &[(0, sa.base.clone()), (1, b_base)],
        &tenant.app,
        "kill",
        |tally| {
            // Mid-load: once node B has acknowledged writes of its own (its pool warmed up),
            // or after 10 s at most.
            let give_up = Instant::now() + Duration::from_secs(10);
            std::thread::sleep(Duration::from_millis(1000));
            while acked(tally, 1) < 20 && Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(50));
            }
            // Dropping the server sends SIGKILL: no graceful shutdown, no final checkpoint,
            // transactions cut wherever they were.
            drop(sb.take());
            *killed_at.lock().unwrap() = Some(Instant::now());
            // Node A carries the load alone for a while.
            std::thread::sleep(Duration::from_secs(3));
        },
    );
    let killed_at = killed_at.into_inner().unwrap().expect("node B was killed");
    let (a_ok, a_bad) = summary(&first, 0);
    let (b_ok, b_bad) = summary(&first, 1);
    let a_after = first
        .acks
        .iter()
        .filter(|a| a.node == 0 && a.at > killed_at + Duration::from_millis(200))
        .count();
    eprintln!(
        "multinode kill -9: node A {a_ok} ok / {a_bad} failed ({a_after} acknowledged after B died), node B {b_ok} ok / {b_bad} failed"
    );
    assert!(b_ok > 0, "node B took writes before it was killed");
    assert!(a_after > 0, "node A kept answering after node B died");
    let a_failures: Vec<_> = first.failures.iter().filter(|f| f.0 == 0).collect();
    assert!(
        a_failures.is_empty(),
        "node A must not fail because node B died: {:?}",
        &a_failures[..a_failures.len().min(5)]
    );

    // Restart the killed node on the same database; both take writes again.
    let sb = serve_on(&nodes.b, &db);
    let second = load(
        &[(0, sa.base.clone()), (1, sb.base.clone())],
        &tenant.app,
        "after",
        |tally| {
            // At least 2 s, and until the restarted node answered a few (10 s at most).
            std::thread::sleep(Duration::from_secs(2));
            let give_up = Instant::now() + Duration::from_secs(10);
            while acked(tally, 1) < 5 && Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(50));
            }
        },
    );
    let (b2_ok, _) = summary(&second, 1);
    assert!(b2_ok > 0, "the restarted node takes writes");
    assert!(
        second.failures.is_empty(),
        "after the restart no write may fail: {:?}",
        &second.failures[..second.failures.len().min(5)]
    );

    let mut acks = first.acks;
    acks.extend(second.acks);
    read_back(&[sa.base.clone(), sb.base.clone()], &tenant.app, &acks);
    all_in_database(&db, &acks);
    sa.stop();
    sb.stop();
    verify_ok(&nodes.a, &db);
    verify_ok(&nodes.b, &db);
}

// ---------------------------------------------------------------------------------------
// At rest: personal data never reaches a PostgreSQL database in clear.
// ---------------------------------------------------------------------------------------

/// Lower-case ASCII copy, so that one scan finds every capitalisation.
fn lower(b: &[u8]) -> Vec<u8> {
    b.to_ascii_lowercase()
}

/// The first needle (lower-case) found in `hay` (already lower-case).
fn find_any<'n>(hay: &[u8], needles: &'n [Vec<u8>]) -> Option<&'n [u8]> {
    // Two-byte prefilter: only positions starting like some needle are compared.
    let mut first = vec![false; 1 << 16];
    for n in needles {
        assert!(n.len() >= 2);
        first[(n[0] as usize) << 8 | n[1] as usize] = true;
    }
    for i in 0..hay.len().saturating_sub(1) {
        if first[(hay[i] as usize) << 8 | hay[i + 1] as usize] {
            for n in needles {
                if hay[i..].starts_with(n) {
                    return Some(n);
                }
            }
        }
    }
    None
}

/// Every table of the database, dumped with COPY both as text and in binary format (where
/// BYTEA columns come out as raw bytes rather than hex).
fn dump_tables(c: &mut postgres::Client) -> Vec<(String, Vec<u8>)> {
    let tables: Vec<String> = c
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // The dump must cover where sealed fields live (a column of `records`) and the trail.
    assert!(
        tables.iter().any(|t| t == "records") && tables.iter().any(|t| t == "audit_entries"),
        "{tables:?}"
    );
    let sealed_fields_in_records: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = 'records' AND column_name = 'fields'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(sealed_fields_in_records, 1, "records.fields is dumped");
    let mut out = Vec::new();
    for t in tables {
        for (fmt, opts) in [("text", ""), ("binary", " (FORMAT binary)")] {
            let mut bytes = Vec::new();
            c.copy_out(&format!("COPY \"{t}\" TO STDOUT{opts}"))
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
            out.push((format!("COPY {t} ({fmt})"), bytes));
        }
    }
    out
}

/// The files of this database and the server's WAL, when the test knows where the cluster
/// keeps them (`TEST_PGDATA`, set by `scripts/with-postgres`) and may read them.
fn cluster_files(c: &mut postgres::Client) -> Option<Vec<PathBuf>> {
    let pgdata = PathBuf::from(std::env::var_os("TEST_PGDATA")?);
    c.batch_execute("CHECKPOINT").ok()?;
    let oid: u32 = c
        .query_one(
            "SELECT oid FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .ok()?
        .get(0);
    let mut files = Vec::new();
    for dir in [
        pgdata.join("base").join(oid.to_string()),
        pgdata.join("pg_wal"),
    ] {
        for e in std::fs::read_dir(&dir).ok()? {
            let p = e.ok()?.path();
            if p.is_file() {
                files.push(p);
            }
        }
    }
    Some(files)
}

#[test]
fn personal_data_never_reaches_postgres_in_clear() {
    let Some(server) = server_url("personal_data_never_reaches_postgres_in_clear") else {
        return;
    };
    let db = FreshDb::new(&server, "at_rest");
    let sb = Sandbox::new();
    sb.run_ok(&["init", "--database", &db.url]);
    // From here on the database comes from the config file, not a flag.
    let toml = sb.cwd().join("custodian.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(&format!("database = {:?}\n", db.url));
    std::fs::write(&toml, text).unwrap();
    let out = sb.run_ok(&[
        "token",
        "create",
        "--role",
        "operator_admin",
        "--label",
        "canary operator",
        "--days",
        "1",
    ]);
    let operator = out.stdout.trim().to_owned();
    let srv = sb.serve(&[]);
    assert!(
        !sb.db_path().exists(),
        "no SQLite file with a postgres:// database"
    );
    let api = srv.api();
    let tenant = setup_tenant(&api, &operator);

    let name = "Qwxzynthia Brambleworth";
    let email = "Qwxzynthia.Canary@Example.org";
    let phone = "+33 6 98 76 54 32";
    let note = "Qwxzynthia journal: Brambleworth grows parsnips";
    let created = expect(
        api.post(
            "/v1/subjects",
            &tenant.app,
            Some(PURPOSE),
            &json!({
                "category": "customer",
                "record": {
                    "fields": {
                        "name": {"category": "user.name", "value": name},
                        "email": {"category": "user.contact.email", "value": email},
                        "phone": {"category": "user.contact.phone_number", "value": phone},
                        "note": {"category": "user.content.private", "value": note},
                    },
                    "source": "signup form",
                }
            }),
        ),
        201,
    );
    let subject = str_of(&created, "id").to_owned();
    // Stored for real: readable back, and findable by its blinded email.
    let view = expect(
        api.get(
            &format!("/v1/subjects/{subject}"),
            &tenant.app,
            Some(PURPOSE),
        ),
        200,
    );
    assert_eq!(view["records"][0]["fields"]["name"]["value"], name);
    assert_eq!(view["records"][0]["fields"]["note"]["value"], note);
    let found = expect(
        api.post(
            "/v1/lookup",
            &tenant.app,
            Some(PURPOSE),
            &json!({"kind": "email", "value": email}),
        ),
        200,
    );
    assert!(found.to_string().contains(&subject), "{found:#}");

    let canaries: Vec<Vec<u8>> = [
        name,
        "Qwxzynthia",
        "Brambleworth",
        "parsnips",
        email,
        "qwxzynthia.canary",
        phone,
        "+33698765432",
        "33698765432",
    ]
    .iter()
    .map(|c| lower(c.as_bytes()))
    .collect();

    let mut c = db.client();
    let dumps = dump_tables(&mut c);
    let all: Vec<u8> = dumps.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    // The scan sees what is in clear: the pseudonymous subject id is.
    assert!(
        find_any(&lower(&all), &[lower(subject.as_bytes())]).is_some(),
        "the dump does not show the subject id, so it would not show values either"
    );
    for (what, bytes) in &dumps {
        if let Some(n) = find_any(&lower(bytes), &canaries) {
            panic!("{:?} found in clear in {what}", String::from_utf8_lossy(n));
        }
    }
    match cluster_files(&mut c) {
        Some(files) => {
            assert!(!files.is_empty());
            for f in &files {
                let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                if let Some(n) = find_any(&lower(&bytes), &canaries) {
                    panic!(
                        "{:?} found in clear in {}",
                        String::from_utf8_lossy(n),
                        f.display()
                    );
                }
            }
            eprintln!(
                "at rest: {} table dumps and {} cluster files (database and WAL) scanned, no canary",
                dumps.len(),
                files.len()
            );
        }
        None => eprintln!(
            "at rest: {} table dumps scanned, no canary (cluster files not scanned: TEST_PGDATA unset or unreadable)",
            dumps.len()
        ),
    }
    srv.stop();
}

#[test]
fn database_urls_are_rewritten_per_test() {
    assert_eq!(
        with_database("postgres://u:p@127.0.0.1:5/base?sslmode=disable", "x"),
        "postgres://u:p@127.0.0.1:5/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgresql://h/base", "y"),
        "postgresql://h/y"
    );
}
