//! Hardening, over the in-process server on a real SQLite file: failed-authentication rate
//! limits, resource limits (body, page, headers, time, concurrency), storage faults on
//! write, and panics. Each test ends by checking that the server still answers.

mod common;

use common::*;
use custodian_core::policy::OperatorGrant;
use custodian_core::principal::Role;
use custodian_core::region::Region;
use custodian_crypto::keys::RootKey;
use custodian_server::client_addr::TrustedProxies;
use custodian_server::{AppState, Limits};
use custodian_store::sqlite::{FaultSwitch, SqliteStore, WriteFault};
use custodian_vault::{Clock, SystemClock, Vault};
use reqwest::Method;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const PURPOSE: &str = "support";

/// Like `common::spawn_app_with`, but keeps the store's fault switch and always serves
/// with connection info (client addresses), as the real binary does.
async fn spawn(limits: Limits, clock: Option<Arc<dyn Clock>>) -> (TestApp, FaultSwitch) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db_path = dir.path().join("custodian.db");
    let store = SqliteStore::open(&db_path).expect("open the SQLite store");
    let faults = store.fault_switch();
    let vault = Arc::new(Vault::new(
        Arc::new(store),
        RootKey::generate(1).expect("root key"),
        clock.unwrap_or_else(|| Arc::new(SystemClock)),
        Region::defaults(),
        Some(dir.path().join("checkpoints")),
    ));
    let operator = vault
        .issue_token_locally(
            &OperatorGrant::local_cli(),
            Role::OperatorAdmin,
            None,
            "test operator",
            3600,
        )
        .expect("issue the operator token")
        .secret;
    let state = AppState {
        vault: vault.clone(),
        metrics: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let addr = listener.local_addr().expect("local address");
    let app = custodian_server::app(state, &limits);
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("server runs");
    });
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    let app = TestApp {
        addr,
        db_path,
        vault,
        operator,
        client,
        dir,
    };
    (app, faults)
}

async fn support_tenant(app: &TestApp) -> Tenant {
    app.tenant("Hardening SAS", &[(PURPOSE, &["user"], ALL_DATA_OPS)])
        .await
}

fn person(n: usize) -> serde_json::Value {
    subject_body(fields(&[
        ("name", "user.name", &format!("Person {n}")),
        (
            "email",
            "user.contact.email",
            &format!("person{n}@example.org"),
        ),
    ]))
}

#[track_caller]
fn retry_after(r: &Resp) -> u64 {
    r.headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric Retry-After on {}: {}", r.status, r.text))
}

async fn assert_alive(app: &TestApp) {
    let r = app.send(app.client.get(app.url("/healthz"))).await;
    assert_eq!(r.status.as_u16(), 200, "the server stopped answering");
}

// ---------------------------------------------------------------------------------------
// Brute force

#[tokio::test]
async fn failed_tokens_are_rate_limited_per_source_address() {
    const BUDGET: u32 = 5;
    let (app, _) = spawn(
        Limits {
            auth_failures_per_minute: BUDGET,
            ..Default::default()
        },
        None,
    )
    .await;
    // Valid tokens cost nothing.
    for _ in 0..3 * BUDGET {
        app.get("/v1/controllers", &app.operator, None)
            .await
            .expect(200);
    }
    // A made-up token with a valid shape, and garbage: both are failed attempts.
    let fake = format!("cst_op_{}", "a".repeat(59));
    for i in 0..BUDGET {
        let token = if i % 2 == 0 {
            fake.as_str()
        } else {
            "nonsense"
        };
        app.get("/v1/controllers", token, None)
            .await
            .expect_problem(401);
    }
    // The budget is spent: the next attempt is not even checked...
    let r = app.get("/v1/controllers", &fake, None).await;
    r.expect_problem(429);
    let wait = retry_after(&r);
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    // ...and neither is a valid token from the same address, or a right guess would pass.
    let r = app.get("/v1/controllers", &app.operator, None).await;
    r.expect_problem(429);
    retry_after(&r);
    // A request without credentials is not an attempt: still a plain 401.
    app.send(app.client.get(app.url("/v1/controllers")))
        .await
        .expect_problem(401);

    // Another address is not affected (the loopback network is 127/8).
    let other = reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client on 127.0.0.2");
    let ok = other
        .get(app.url("/v1/controllers"))
        .bearer_auth(&app.operator)
        .send()
        .await
        .expect("request from 127.0.0.2");
    assert_eq!(ok.status().as_u16(), 200);
    let refused = other
        .get(app.url("/v1/controllers"))
        .bearer_auth(&fake)
        .send()
        .await
        .expect("request from 127.0.0.2");
    assert_eq!(refused.status().as_u16(), 401);
    assert_alive(&app).await;
}

/// Behind a reverse proxy every connection comes from the proxy: the client is the one its
/// `X-Forwarded-For` names, when the proxy is trusted, and only then.
#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    const BUDGET: u32 = 3;
    let (app, _) = spawn(
        Limits {
            auth_failures_per_minute: BUDGET,
            trusted_proxies: TrustedProxies::parse(&["127.0.0.1"]).unwrap(),
            ..Default::default()
        },
        None,
    )
    .await;
    let fake = format!("cst_op_{}", "a".repeat(59));
    let from = |client: &reqwest::Client, forwarded: &str, token: &str| {
        app.send(
            client
                .get(app.url("/v1/controllers"))
                .bearer_auth(token)
                .header("x-forwarded-for", forwarded),
        )
    };
    for _ in 0..BUDGET {
        from(&app.client, "198.51.100.1", &fake)
            .await
            .expect_problem(401);
    }
    from(&app.client, "198.51.100.1", &fake)
        .await
        .expect_problem(429);
    // Another client behind the same proxy keeps its budget.
    from(&app.client, "198.51.100.2", &fake)
        .await
        .expect_problem(401);
    from(&app.client, "198.51.100.2", &app.operator)
        .await
        .expect(200);

    // A peer that is no proxy (127.0.0.2) names nobody with the header: a new value on
    // every attempt does not buy it a new budget.
    let direct = reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client on 127.0.0.2");
    for i in 0..BUDGET {
        from(&direct, &format!("203.0.113.{i}"), &fake)
            .await
            .expect_problem(401);
    }
    from(&direct, "203.0.113.99", &fake)
        .await
        .expect_problem(429);
    assert_alive(&app).await;
}

const PASSWORD: &str = "Quorvath-canary-passphrase-2209";

/// The operator creates a login account over HTTP; returns its id.
async fn account(app: &TestApp, login: &str, role: &str, controller: Option<&str>) -> String {
    let mut body = json!({ "login": login, "password": PASSWORD, "role": role });
    if let Some(c) = controller {
        body["controller"] = json!(c);
    }
    let r = app
        .post_json("/v1/accounts", &app.operator, None, &body)
        .await
        .expect(201);
    r["id"].as_str().expect("account id").to_owned()
}

/// `POST /v1/sessions` from `client`.
async fn login_from(app: &TestApp, client: &reqwest::Client, login: &str, password: &str) -> Resp {
    app.send(
        client
            .post(app.url("/v1/sessions"))
            .json(&json!({ "login": login, "password": password })),
    )
    .await
}

/// Per login name: once a name spent its budget of failed passwords, every login for it is
/// refused with 429 and `Retry-After`, the right password too, without any password being
/// checked; a name that is no account's is limited exactly alike (no enumeration); other
/// names are unaffected; a success costs no budget.
#[tokio::test]
async fn failed_passwords_are_rate_limited_per_login_name_even_for_the_right_password() {
    const BUDGET: u32 = 3;
    let (app, _) = spawn(
        Limits {
            login_failures_per_hour: BUDGET,
            auth_failures_per_minute: 1000,
            ..Default::default()
        },
        None,
    )
    .await;
    let c = app.create_controller("Lockout SAS").await;
    account(&app, "target@lockout.example", "controller_admin", Some(&c)).await;
    account(
        &app,
        "bystander@lockout.example",
        "controller_admin",
        Some(&c),
    )
    .await;
    let client = app.client.clone();

    // Successes cost nothing.
    for _ in 0..2 * BUDGET {
        login_from(&app, &client, "target@lockout.example", PASSWORD)
            .await
            .expect(201);
    }
    let mut locked = Vec::new();
    for name in ["target@lockout.example", "ghost@lockout.example"] {
        for i in 0..BUDGET {
            login_from(&app, &client, name, &format!("wrong guess number {i}"))
                .await
                .expect_problem(401);
        }
        // Spent: the right password (or any) is refused, and nothing is verified.
        let mark = app.vault.passwords().mark();
        let r = login_from(&app, &client, name, PASSWORD).await;
        r.expect_problem(429);
        let wait = retry_after(&r);
        assert!((1..=3600).contains(&wait), "Retry-After {wait}");
        assert!(
            app.vault.passwords().work_since(mark).is_empty(),
            "a locked-out login still checked a password"
        );
        // However the name is spelt.
        login_from(&app, &client, &name.to_uppercase(), PASSWORD)
            .await
            .expect_problem(429);
        locked.push(r.text);
    }
    assert_eq!(
        locked[0], locked[1],
        "a locked account and a locked unknown name answer alike"
    );
    // Another name, from the same address, is not affected.
    let ok = login_from(&app, &client, "bystander@lockout.example", PASSWORD).await;
    let session = ok.expect(201);
    app.get(
        "/v1/purposes",
        session["secret"].as_str().expect("secret"),
        None,
    )
    .await
    .expect(200);
    assert_alive(&app).await;
}

/// Per source address: failed passwords and failed tokens spend one budget; once it is
/// spent the address gets 429 for the right password and for a valid token alike; another
/// address is not affected.
#[tokio::test]
async fn failed_passwords_are_rate_limited_per_source_address() {
    const BUDGET: u32 = 4;
    let (app, _) = spawn(
        Limits {
            auth_failures_per_minute: BUDGET,
            login_failures_per_hour: 1000,
            ..Default::default()
        },
        None,
    )
    .await;
    let c = app.create_controller("Source SAS").await;
    account(&app, "real@source.example", "controller_admin", Some(&c)).await;
    let client = app.client.clone();
    // Different names each time: only the address's budget is spent.
    for i in 0..BUDGET - 1 {
        login_from(&app, &client, &format!("guess{i}@source.example"), PASSWORD)
            .await
            .expect_problem(401);
    }
    app.get("/v1/controllers", "cst_op_not-a-real-token", None)
        .await
        .expect_problem(401);
    let r = login_from(&app, &client, "real@source.example", PASSWORD).await;
    r.expect_problem(429);
    assert!((1..=60).contains(&retry_after(&r)));
    let r = app.get("/v1/controllers", &app.operator, None).await;
    r.expect_problem(429);
    retry_after(&r);

    let other = reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::from([127, 0, 0, 3]))
        .build()
        .expect("client on 127.0.0.3");
    login_from(&app, &other, "real@source.example", PASSWORD)
        .await
        .expect(201);
    login_from(&app, &other, "guess@source.example", PASSWORD)
        .await
        .expect_problem(401);
    assert_alive(&app).await;
}

/// argon2id runs off the async runtime: on a current-thread runtime (server and client on
/// the test's own thread), every hash and verification the requests caused ran on another
/// thread (tokio's blocking pool), so none of them held up the runtime.
#[tokio::test(flavor = "current_thread")]
async fn password_hashing_runs_off_the_async_runtime() {
    let (app, _) = spawn(Limits::default(), None).await;
    let runtime_thread = std::thread::current().id();
    let c = app.create_controller("Threads SAS").await;
    let mark = app.vault.passwords().mark();
    account(&app, "threads@example.org", "controller_viewer", Some(&c)).await;
    let client = app.client.clone();
    login_from(&app, &client, "threads@example.org", PASSWORD)
        .await
        .expect(201);
    login_from(&app, &client, "threads@example.org", "Quorvath-wrong")
        .await
        .expect_problem(401);
    login_from(&app, &client, "nobody@example.org", PASSWORD)
        .await
        .expect_problem(401);
    let work = app.vault.passwords().work_since(mark);
    let kinds: Vec<_> = work.iter().map(|w| w.kind).collect();
    use custodian_crypto::password::WorkKind::{Hash, Verify};
    assert_eq!(kinds, vec![Hash, Verify, Verify, Verify], "{work:?}");
    for w in &work {
        assert_ne!(
            w.thread, runtime_thread,
            "argon2id ran on the async runtime's thread: {w:?}"
        );
    }
}

/// The password never reaches an answer or the audit trail, on any path that carries it:
/// created, refused (too short, too long, control character, duplicate, not a login, wrong
/// type, malformed JSON), logged in, failed, locked out.
#[tokio::test]
async fn passwords_never_reach_answers_or_the_audit_trail() {
    let (app, _) = spawn(
        Limits {
            login_failures_per_hour: 2,
            ..Default::default()
        },
        None,
    )
    .await;
    let t = support_tenant(&app).await;
    let admin = t.admin.secret.as_str();
    let mut answers = Vec::new();
    let post = |path: &'static str, token: Option<&str>, body: serde_json::Value| {
        let rb = app.req(Method::POST, path, token, None).json(&body);
        app.send(rb)
    };
    for body in [
        json!({"login": "leak@example.org", "password": PASSWORD, "role": "controller_viewer"}),
        json!({"login": "leak@example.org", "password": PASSWORD, "role": "controller_viewer"}),
        json!({"login": "short@example.org", "password": "Quorvath", "role": "controller_viewer"}),
        json!({"login": "ctl@example.org", "password": format!("{PASSWORD}\u{7}"), "role": "controller_viewer"}),
        json!({"login": "long@example.org", "password": PASSWORD.repeat(5), "role": "controller_viewer"}),
        json!({"login": PASSWORD, "password": PASSWORD, "role": "controller_viewer"}),
        json!({"login": "x@example.org", "password": [PASSWORD], "role": "controller_viewer"}),
    ] {
        answers.push(post("/v1/accounts", Some(admin), body).await);
    }
    for (login, password) in [
        ("leak@example.org", PASSWORD),
        ("leak@example.org", "Quorvath-wrong-1"),
        ("leak@example.org", "Quorvath-wrong-2"),
        ("leak@example.org", PASSWORD),
        ("nobody@example.org", PASSWORD),
        (PASSWORD, PASSWORD),
    ] {
        answers.push(
            post(
                "/v1/sessions",
                None,
                json!({"login": login, "password": password}),
            )
            .await,
        );
    }
    let raw = app
        .send(
            app.client
                .post(app.url("/v1/sessions"))
                .header("content-type", "application/json")
                .body(format!(
                    "{{\"login\": \"a@b.example\" \"password\": \"{PASSWORD}\"}}"
                )),
        )
        .await;
    answers.push(raw);
    let statuses: Vec<u16> = answers.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(
        statuses,
        vec![
            201, 409, 422, 422, 422, 422, 422, 201, 401, 401, 429, 401, 422, 400
        ],
        "the paths meant to be exercised"
    );
    for r in &answers {
        r.assert_absent(&["Quorvath".to_owned()], "an answer");
    }
    let trail = serde_json::to_string(&app.audit(&t.admin).await).expect("json");
    assert!(trail.contains("admin.login"), "logins are audited");
    assert!(
        !trail.contains("Quorvath"),
        "the audit trail holds the password"
    );
    let mut system = String::new();
    app.vault
        .store()
        .scan_audit(&custodian_core::audit::ChainId::System, &mut |e| {
            system.push_str(&format!("{e:?}"));
            Ok(())
        })
        .expect("system chain");
    assert!(!system.contains("Quorvath") && !system.contains("nobody@"));
    assert_alive(&app).await;
}

// ---------------------------------------------------------------------------------------
// Resource limits

#[tokio::test]
async fn a_body_over_the_limit_is_413_stores_nothing_and_the_server_stays_up() {
    let (app, _) = spawn(
        Limits {
            max_body_bytes: 4096,
            ..Default::default()
        },
        None,
    )
    .await;
    let t = support_tenant(&app).await;
    let subjects = app.count("subjects");
    let big = subject_body(fields(&[("note", "user.content", &"x".repeat(8192))]));
    let r = app
        .post_json("/v1/subjects", &t.app.secret, Some(PURPOSE), &big)
        .await;
    let p = r.expect_problem(413);
    assert!(!r.text.contains("xxxx"), "the body is echoed: {p}");

    // The same without a Content-Length (chunked): the limit holds while streaming.
    let body = serde_json::to_vec(&big).expect("json");
    let mut raw = format!(
        "POST /v1/subjects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nCustodian-Purpose: {PURPOSE}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        t.app.secret
    )
    .into_bytes();
    for chunk in body.chunks(1000) {
        raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw.extend_from_slice(chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let status = raw_exchange(app.addr, &raw).await;
    assert!(status.starts_with("HTTP/1.1 413"), "chunked: {status}");

    assert_eq!(app.count("subjects"), subjects, "nothing was stored");
    // A body under the limit still works.
    app.post_json("/v1/subjects", &t.app.secret, Some(PURPOSE), &person(1))
        .await
        .expect(201);
    assert_alive(&app).await;
}

#[tokio::test]
async fn pages_are_bounded() {
    let (app, _) = spawn(Limits::default(), None).await;
    let t = support_tenant(&app).await;
    for bad in [
        "/v1/audit?limit=1001",
        "/v1/audit?limit=0",
        "/v1/audit?limit=100000000000",
        "/v1/audit?after=9223372036854775808",
        "/v1/audit?after=-1",
    ] {
        app.get(bad, &t.admin.secret, None)
            .await
            .expect_problem(400);
    }
    let page = app
        .get("/v1/audit?limit=1000", &t.admin.secret, None)
        .await
        .expect(200);
    assert!(page["entries"].as_array().is_some_and(|e| e.len() <= 1000));
    assert_alive(&app).await;
}

/// Sends raw bytes on a new connection and returns the response's status line, or the
/// empty string when the server closed the connection without answering.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let request = request.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        // The server may answer and close before it read everything: ignore write errors.
        let _ = s.write_all(&request);
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = s.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(2).any(|w| w == b"\r\n") {
                break;
            }
        }
        String::from_utf8_lossy(&buf)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    })
    .await
    .expect("raw exchange")
}

#[tokio::test]
async fn huge_headers_are_refused_and_the_server_stays_up() {
    let (app, _) = spawn(Limits::default(), None).await;
    // One header of 1 MiB.
    let mut one = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    one.extend(std::iter::repeat_n(b'a', 1 << 20));
    one.extend_from_slice(b"\r\n\r\n");
    let status = raw_exchange(app.addr, &one).await;
    assert!(
        status.starts_with("HTTP/1.1 431") || status.starts_with("HTTP/1.1 400"),
        "a 1 MiB header was answered {status:?}"
    );
    // A thousand small headers.
    let mut many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..1000 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let status = raw_exchange(app.addr, &many).await;
    assert!(
        status.starts_with("HTTP/1.1 431") || status.starts_with("HTTP/1.1 400"),
        "a thousand headers were answered {status:?}"
    );
    assert_alive(&app).await;
}

/// Holds SQLite's write lock from outside the server, as a long transaction of another
/// process would: the server's writes wait (its busy timeout is 10 s), its reads go on.
fn lock_writes(app: &TestApp) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(&app.db_path).expect("open the database directly");
    c.execute_batch("BEGIN EXCLUSIVE")
        .expect("take the write lock");
    c
}

#[tokio::test]
async fn a_request_over_the_time_limit_gets_408_and_the_server_stays_up() {
    let (app, _) = spawn(
        Limits {
            request_timeout: Duration::from_millis(500),
            ..Default::default()
        },
        None,
    )
    .await;
    let t = support_tenant(&app).await;
    let lock = lock_writes(&app);
    let r = app
        .post_json("/v1/subjects", &t.app.secret, Some(PURPOSE), &person(1))
        .await;
    let p = r.expect_problem(408);
    assert!(
        p["detail"].as_str().unwrap_or("").contains("audit trail"),
        "the 408 says where to find out whether the write happened: {p}"
    );
    // Reads that write nothing go on while the write waits.
    app.get("/v1/purposes", &t.admin.secret, None)
        .await
        .expect(200);
    drop(lock);
    // The abandoned write may complete once the lock is gone: if it did, the audit trail
    // says so, and if it did not, nothing was stored. Either way, data and trail agree.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let created = app.count("subjects");
    let collections = app
        .audit(&t.admin)
        .await
        .into_iter()
        .filter(|e| e["action"] == "collection" && e["outcome"] == "allowed")
        .count() as i64;
    assert_eq!(created, collections, "every stored subject has its entry");
    app.post_json("/v1/subjects", &t.app.secret, Some(PURPOSE), &person(2))
        .await
        .expect(201);
    assert_alive(&app).await;
}

#[tokio::test]
async fn beyond_the_concurrency_cap_requests_get_429_and_the_server_stays_up() {
    const CAP: usize = 2;
    let (app, _) = spawn(
        Limits {
            max_concurrent_requests: CAP,
            ..Default::default()
        },
        None,
    )
    .await;
    let t = support_tenant(&app).await;
    let lock = lock_writes(&app);
    // CAP writes that wait for the lock fill every slot.
    let mut waiting = Vec::new();
    for n in 0..CAP {
        let rb = app
            .req(
                Method::POST,
                "/v1/subjects",
                Some(&t.app.secret),
                Some(PURPOSE),
            )
            .json(&person(n));
        waiting.push(tokio::spawn(async move {
            rb.send().await.map(|r| r.status().as_u16())
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = app.send(app.client.get(app.url("/healthz"))).await;
    r.expect_problem(429);
    retry_after(&r);
    drop(lock);
    for w in waiting {
        assert_eq!(w.await.expect("task").expect("response"), 201);
    }
    assert_eq!(app.count("subjects"), CAP as i64);
    assert_alive(&app).await;
}

// ---------------------------------------------------------------------------------------
// Storage faults

#[tokio::test]
async fn storage_faults_on_write_fail_cleanly_with_503_and_unaudited_reads_go_on() {
    let (app, faults) = spawn(Limits::default(), None).await;
    let t = support_tenant(&app).await;
    let (subject, record) = app
        .create_subject(
            &t.app.secret,
            PURPOSE,
            fields(&[("email", "user.contact.email", "before@example.org")]),
        )
        .await;
    let tables = [
        "subjects",
        "records",
        "fields",
        "lookups",
        "erasures",
        "audit_entries",
        "purposes",
        "tokens",
    ];
    let snapshot = |app: &TestApp| tables.map(|t| (t, app.count(t)));

    for fault in [WriteFault::DiskFull, WriteFault::IoError] {
        let before = snapshot(&app);
        faults.set(Some(fault));
        let writes = [
            app.post_json("/v1/subjects", &t.app.secret, Some(PURPOSE), &person(9))
                .await,
            app.send(
                app.req(
                    Method::PATCH,
                    &format!("/v1/records/{record}"),
                    Some(&t.app.secret),
                    Some(PURPOSE),
                )
                .json(&json!({"fields": {"email": {"category": "user.contact.email", "value": "after@example.org"}}})),
            )
            .await,
            app.send(app.req(
                Method::DELETE,
                &format!("/v1/subjects/{subject}"),
                Some(&t.app.secret),
                Some(PURPOSE),
            ))
            .await,
            app.post_json(
                "/v1/purposes",
                &t.admin.secret,
                None,
                &json!({"name": "billing", "description": "invoices", "lawful_basis": "contract",
                        "categories": ["user.name"], "operations": ["collection"], "retention_days": 30}),
            )
            .await,
            app.post_json(
                "/v1/tokens",
                &t.admin.secret,
                None,
                &json!({"role": "controller_viewer", "label": "x", "expires_in_seconds": 600}),
            )
            .await,
        ];
        for r in &writes {
            let p = r.expect_problem(503);
            assert!(retry_after(r) >= 1, "a retry hint");
            assert!(
                !r.text.contains("disk") && !r.text.contains("I/O"),
                "the cause stays in the log: {p}"
            );
        }
        // A read of personal data needs its audit entry first: it fails closed too,
        // whichever read it is.
        for path in [
            format!("/v1/subjects/{subject}"),
            format!("/v1/records/{record}"),
            format!("/v1/records?subject={subject}"),
        ] {
            app.get(&path, &t.app.secret, Some(PURPOSE))
                .await
                .expect_problem(503);
        }
        // Reads that write nothing keep working.
        app.get("/v1/audit?limit=10", &t.admin.secret, None)
            .await
            .expect(200);
        app.get("/v1/purposes", &t.admin.secret, None)
            .await
            .expect(200);
        app.get(
            &format!("/v1/controllers/{}", t.controller),
            &t.admin.secret,
            None,
        )
        .await
        .expect(200);
        assert_alive(&app).await;
        // Nothing half-written.
        assert_eq!(snapshot(&app), before, "{fault:?} changed stored rows");
        faults.set(None);
    }
    // Once storage recovers, everything works again and the data is as it was.
    let v = app
        .get(
            &format!("/v1/subjects/{subject}"),
            &t.app.secret,
            Some(PURPOSE),
        )
        .await
        .expect(200);
    assert_eq!(
        v["records"][0]["fields"]["email"]["value"],
        "before@example.org"
    );
    app.post_json("/v1/subjects", &t.app.secret, Some(PURPOSE), &person(10))
        .await
        .expect(201);
    let report = app.vault.verify(None).expect("verify runs");
    assert!(
        report.ok(),
        "the audit chains verify after the faults: {:?}",
        report.problems
    );
}

// ---------------------------------------------------------------------------------------
// Panics

const PANIC_CANARY: &str = "canary.panic@example.org";

/// A clock that panics, with personal data in its message, while `armed`.
struct PanickingClock {
    armed: AtomicBool,
}

impl Clock for PanickingClock {
    fn now(&self) -> time::OffsetDateTime {
        if self.armed.load(Ordering::SeqCst) {
            panic!("clock exploded while handling {PANIC_CANARY}");
        }
        time::OffsetDateTime::now_utc()
    }
}

#[tokio::test]
async fn a_panic_answers_500_without_its_message_and_the_server_stays_up() {
    let clock = Arc::new(PanickingClock {
        armed: AtomicBool::new(false),
    });
    let (app, _) = spawn(Limits::default(), Some(clock.clone())).await;
    let t = support_tenant(&app).await;
    clock.armed.store(true, Ordering::SeqCst);
    for r in [
        app.get("/v1/purposes", &t.admin.secret, None).await,
        app.post_json("/v1/subjects", &t.app.secret, Some(PURPOSE), &person(1))
            .await,
    ] {
        r.expect_problem(500);
        assert!(
            !r.text.contains(PANIC_CANARY)
                && !r.text.contains("exploded")
                && !r.text.contains("panicked"),
            "the panic shows through: {}",
            r.text
        );
    }
    clock.armed.store(false, Ordering::SeqCst);
    app.get("/v1/purposes", &t.admin.secret, None)
        .await
        .expect(200);

    // The panic layer's own answer (panics outside the blocking pool) says nothing either.
    let res = custodian_server::problem::panic_response(Box::new(format!(
        "index out of bounds near {PANIC_CANARY}"
    )));
    assert_eq!(res.status().as_u16(), 500);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains(PANIC_CANARY), "{text}");
    assert_alive(&app).await;
}

// ---------------------------------------------------------------------------------------
// Secrets

#[tokio::test]
async fn secrets_never_print_in_debug_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = RootKey::generate(1).expect("root key");
    let encoded = root.encode().to_string();
    let key_part = encoded.rsplit(':').next().expect("key text").to_owned();
    let vault = Arc::new(Vault::new(
        Arc::new(SqliteStore::open(dir.path().join("custodian.db")).expect("store")),
        root,
        Arc::new(SystemClock),
        Region::defaults(),
        None,
    ));
    let issued = vault
        .issue_token_locally(
            &OperatorGrant::local_cli(),
            Role::OperatorAdmin,
            None,
            "debug test",
            3600,
        )
        .expect("token");
    let secret = issued.secret.clone();
    let principal = vault
        .authenticate(&secrecy::SecretString::from(secret.clone()))
        .expect("authenticate");
    let state = AppState {
        vault: vault.clone(),
        metrics: None,
    };
    let limits = Limits::default();
    // Personal data in request types prints redacted too.
    let lookup: custodian_vault::views::LookupQuery =
        serde_json::from_value(json!({"kind": "email", "value": PANIC_CANARY})).expect("lookup");
    let request: custodian_vault::views::NewRequest = serde_json::from_value(
        json!({"right": "access", "contact": PANIC_CANARY, "message": PANIC_CANARY}),
    )
    .expect("request");
    for text in [format!("{lookup:?}"), format!("{request:?}")] {
        assert!(!text.contains(PANIC_CANARY), "{text}");
    }
    for (what, text) in [
        ("vault", format!("{vault:?}")),
        ("app state", format!("{state:?}")),
        ("issued token", format!("{issued:?}")),
        ("principal", format!("{principal:?}")),
        ("limits", format!("{limits:?}")),
    ] {
        assert!(
            !text.contains(&key_part),
            "{what} prints the root key: {text}"
        );
        let body = secret.rsplit('_').next().expect("token body");
        assert!(
            !text.contains(body),
            "{what} prints the token secret: {text}"
        );
    }
}
