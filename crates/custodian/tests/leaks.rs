//! No leaks: canary personal data flows through every data route of the real binary (run
//! with `CUSTODIAN_LOG=trace`, every level of every crate), and is then searched for in everything that is not a
//! response to an authorised read: the server's stderr (access log and application log),
//! `/metrics`, every error body, and the audit trail.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::cell::RefCell;

/// Canaries: distinctive values that must never appear outside an authorised answer.
const NAME: &str = "Zyxcanary Quorvath";
const EMAIL: &str = "zyx.canary.7@example.org";
const EMAIL2: &str = "quorvath.canary.8@example.org";
const PHONE: &str = "+33 6 98 76 54 32";
const PHONE_DIGITS: &str = "698765432";
const EXTERNAL: &str = "CANARY-EXT-424242";
const NOTE: &str = "canary-note-5150-quorvath";
const CONTACT: &str = "zyx.requester.9@example.org";
const MESSAGE: &str = "canary-request-message-6060";
const BAD_EMAIL: &str = "canary-not-an-email-7070";
/// A login account's password and login name (personal data of the controller's staff).
const PASSWORD: &str = "Pw-canary-Xerthul-9090";
const ACCOUNT: &str = "xerthul.dpo@example.org";

fn needles() -> Vec<String> {
    [
        NAME,
        "Zyxcanary",
        "Quorvath",
        "quorvath",
        EMAIL,
        "zyx.canary",
        EMAIL2,
        PHONE,
        PHONE_DIGITS,
        EXTERNAL,
        NOTE,
        CONTACT,
        "zyx.requester",
        MESSAGE,
        BAD_EMAIL,
        PASSWORD,
        "xerthul",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn leaks_in(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    needles()
        .into_iter()
        .filter(|n| lower.contains(&n.to_lowercase()))
        .collect()
}

/// An error path: what, method, path, token, purpose, body.
type BadCall<'a> = (
    &'a str,
    Method,
    String,
    Option<&'a str>,
    Option<&'a str>,
    Option<Value>,
);

/// Every response whose status is not 2xx, kept to be searched.
struct Errors(RefCell<Vec<(String, u16, String)>>);

impl Errors {
    fn keep(&self, what: &str, r: &Reply) {
        if !(200..300).contains(&r.status) {
            self.0
                .borrow_mut()
                .push((what.to_owned(), r.status, r.body.to_string()));
        }
    }
}

#[test]
fn canaries_never_reach_logs_metrics_errors_or_the_audit_trail() {
    let sb = Sandbox::new();
    let operator = sb.init_with_operator();
    let server = sb.serve_env(&[], &[("CUSTODIAN_LOG", "trace")]);
    let api = server.api();
    let t = setup_tenant(&api, &operator);
    let errors = Errors(RefCell::new(Vec::new()));
    let call = |what: &str,
                method: Method,
                path: &str,
                token: Option<&str>,
                purpose: Option<&str>,
                body: Option<&Value>| {
        let r = api.call(method, path, token, purpose, body);
        errors.keep(what, &r);
        r
    };
    let ok = |r: Reply, status: u16| expect(r, status);
    let p = Some(PURPOSE);
    let app = Some(t.app.as_str());
    let admin = Some(t.admin.as_str());

    // Every operation the data routes offer, under one purpose.
    ok(
        call(
            "document purpose",
            Method::POST,
            "/v1/purposes",
            admin,
            None,
            Some(&json!({
                "name": PURPOSE,
                "description": "Answer customers' support requests",
                "lawful_basis": "contract",
                "categories": ["user"],
                "operations": ["collection", "recording", "retrieval", "consultation",
                               "alteration", "erasure", "restriction", "disclosure"],
                "retention_days": 365,
            })),
        ),
        201,
    );
    let fields = json!({
        "name": {"category": "user.name", "value": NAME},
        "email": {"category": "user.contact.email", "value": EMAIL},
        "phone": {"category": "user.contact.phone_number", "value": PHONE},
        "customer": {"category": "user.unique_id", "value": EXTERNAL},
        "note": {"category": "user.content.private", "value": NOTE},
    });
    let created = ok(
        call(
            "create subject",
            Method::POST,
            "/v1/subjects",
            app,
            p,
            Some(&json!({"category": "customer",
                "record": {"fields": fields, "source": "signup form"}})),
        ),
        201,
    );
    let subject = str_of(&created, "id").to_owned();
    let record = str_of(&created, "record").to_owned();
    let s = format!("/v1/subjects/{subject}");
    let r = format!("/v1/records/{record}");
    let got = ok(call("get subject", Method::GET, &s, app, p, None), 200);
    assert!(got.to_string().contains(NAME), "the authorised read works");
    let second = ok(
        call(
            "add record",
            Method::POST,
            &format!("{s}/records"),
            app,
            p,
            Some(
                &json!({"fields": {"billing": {"category": "user.financial.billing_email", "value": EMAIL2}}}),
            ),
        ),
        201,
    );
    ok(
        call(
            "get record",
            Method::GET,
            &format!("{r}?fields=name,email"),
            app,
            p,
            None,
        ),
        200,
    );
    ok(
        call(
            "update record",
            Method::PATCH,
            &r,
            app,
            p,
            Some(
                &json!({"fields": {"note": {"category": "user.content.private", "value": format!("{NOTE} v2")}}}),
            ),
        ),
        200,
    );
    for (kind, value) in [
        ("email", EMAIL),
        ("phone", PHONE),
        ("external_id", EXTERNAL),
    ] {
        let found = ok(
            call(
                "lookup",
                Method::POST,
                "/v1/lookup",
                app,
                p,
                Some(&json!({"kind": kind, "value": value})),
            ),
            200,
        );
        assert_eq!(found["subjects"][0], subject.as_str(), "lookup by {kind}");
    }
    let export = ok(
        call("export", Method::GET, &format!("{s}/export"), app, p, None),
        200,
    );
    let csv = call(
        "export csv",
        Method::GET,
        &format!("{s}/export?format=csv"),
        app,
        p,
        None,
    );
    assert_eq!(csv.status, 200);
    let imported = ok(
        call(
            "import",
            Method::POST,
            "/v1/subjects/import",
            app,
            p,
            Some(&export),
        ),
        201,
    );
    for m in [Method::PUT, Method::DELETE] {
        ok(
            call(
                "restriction",
                m.clone(),
                &format!("{s}/restriction"),
                app,
                p,
                None,
            ),
            204,
        );
        ok(
            call(
                "objection",
                m,
                &format!("{s}/objections/{PURPOSE}"),
                app,
                p,
                None,
            ),
            204,
        );
    }
    // A data subject's request, through the controller's inbox.
    let receipt = ok(
        call(
            "public request",
            Method::POST,
            &format!("/v1/public/controllers/{}/requests", t.controller),
            None,
            None,
            Some(&json!({"right": "access", "contact": CONTACT, "message": MESSAGE})),
        ),
        202,
    );
    let dsr = str_of(&receipt, "reference").to_owned();
    ok(
        call(
            "request status",
            Method::GET,
            &format!("/v1/public/requests/{dsr}"),
            None,
            None,
            None,
        ),
        200,
    );
    let inbox = ok(
        call("inbox", Method::GET, "/v1/requests", admin, None, None),
        200,
    );
    assert!(
        inbox.to_string().contains(CONTACT),
        "the controller reads it"
    );
    for action in [
        json!({"action": "acknowledge"}),
        json!({"action": "link", "subject": subject}),
        json!({"action": "confirm_identity"}),
        json!({"action": "fulfil", "purpose": PURPOSE}),
    ] {
        ok(
            call(
                "request action",
                Method::POST,
                &format!("/v1/requests/{dsr}/actions"),
                admin,
                None,
                Some(&action),
            ),
            200,
        );
    }

    // A login account, and a password login with it.
    ok(
        call(
            "create account",
            Method::POST,
            "/v1/accounts",
            admin,
            None,
            Some(&json!({"login": ACCOUNT, "password": PASSWORD, "role": "controller_viewer"})),
        ),
        201,
    );
    let session = ok(
        call(
            "login",
            Method::POST,
            "/v1/sessions",
            None,
            None,
            Some(&json!({"login": ACCOUNT, "password": PASSWORD})),
        ),
        201,
    );
    assert_eq!(session["controller"], t.controller.as_str());

    // Error paths that carry canaries in every place a client can put them.
    let bad: Vec<BadCall<'_>> = vec![
        (
            "invalid lookup",
            Method::POST,
            "/v1/lookup".into(),
            app,
            p,
            Some(json!({"kind": "email", "value": BAD_EMAIL})),
        ),
        (
            "unknown field named with a canary",
            Method::POST,
            "/v1/subjects".into(),
            app,
            p,
            Some(json!({"category": "customer", EMAIL: NAME})),
        ),
        (
            // Shaped like a name (letters and a dot, or a capital): still a value.
            "unknown fields named like identifiers with a canary",
            Method::POST,
            "/v1/subjects".into(),
            app,
            p,
            Some(json!({"category": "customer", "zyxcanary.quorvath": 1, "Quorvath": 2})),
        ),
        (
            "canary as a field name",
            Method::POST,
            "/v1/subjects".into(),
            app,
            p,
            Some(
                json!({"category": "customer", "record": {"fields": {EMAIL: {"category": "user.name", "value": NAME}}}}),
            ),
        ),
        (
            "canary of the wrong type",
            Method::POST,
            "/v1/subjects".into(),
            app,
            p,
            Some(json!({"category": NAME})),
        ),
        (
            "canary in a bad email field",
            Method::POST,
            "/v1/subjects".into(),
            app,
            p,
            Some(
                json!({"category": "customer", "record": {"fields": {"email": {"category": "user.contact.email", "value": BAD_EMAIL}}}}),
            ),
        ),
        (
            "canary outside the purpose",
            Method::POST,
            "/v1/subjects".into(),
            app,
            Some("marketing"),
            Some(
                json!({"category": "customer", "record": {"fields": {"name": {"category": "user.name", "value": NAME}}}}),
            ),
        ),
        (
            "canary in the path",
            Method::GET,
            format!("/v1/subjects/{EMAIL}"),
            app,
            p,
            None,
        ),
        (
            "canary in the query",
            Method::GET,
            format!("/v1/records/{record}?fields={EMAIL}"),
            app,
            p,
            None,
        ),
        (
            "canary in an unknown query parameter",
            Method::GET,
            format!("/v1/audit?{}=1", "quorvath"),
            admin,
            None,
            None,
        ),
        (
            "canary as the token",
            Method::GET,
            s.clone(),
            Some(EMAIL),
            p,
            None,
        ),
        (
            "canary as the purpose",
            Method::GET,
            s.clone(),
            app,
            Some(NAME),
            None,
        ),
        (
            "wrong password",
            Method::POST,
            "/v1/sessions".into(),
            None,
            None,
            Some(json!({"login": ACCOUNT, "password": format!("{PASSWORD}-wrong")})),
        ),
        (
            "unknown login",
            Method::POST,
            "/v1/sessions".into(),
            None,
            None,
            Some(json!({"login": "xerthul.nobody@example.org", "password": PASSWORD})),
        ),
        (
            "password of the wrong type",
            Method::POST,
            "/v1/sessions".into(),
            None,
            None,
            Some(json!({"login": ACCOUNT, "password": [PASSWORD]})),
        ),
        (
            "password too short",
            Method::POST,
            "/v1/accounts".into(),
            admin,
            None,
            Some(
                json!({"login": "xerthul.short@example.org", "password": "Xerthul-1", "role": "controller_viewer"}),
            ),
        ),
        (
            "account taken",
            Method::POST,
            "/v1/accounts".into(),
            admin,
            None,
            Some(json!({"login": ACCOUNT, "password": PASSWORD, "role": "controller_viewer"})),
        ),
        (
            "canary in a public request that is too long",
            Method::POST,
            format!("/v1/public/controllers/{}/requests", t.controller),
            None,
            None,
            Some(json!({"right": "erasure", "contact": CONTACT, "message": MESSAGE.repeat(200)})),
        ),
    ];
    for (what, m, path, token, purpose, body) in bad {
        let r = call(what, m, &path, token, purpose, body.as_ref());
        assert!(r.status >= 400, "{what}: {}", r.status);
    }
    // Malformed JSON holding a canary, sent as raw text.
    let raw = api_raw(
        &server.base,
        &t.app,
        &format!("{{\"category\": \"customer\" \"x\": \"{NAME}\"}}"),
    );
    errors
        .0
        .borrow_mut()
        .push(("malformed json".into(), 400, raw));
    // A request id made of a canary is replaced, never echoed.
    let echoed = header_echo(&server.base, EMAIL);
    assert!(leaks_in(&echoed).is_empty(), "request id echoed: {echoed}");

    // Erasure, last: of a record, of the subject, of the imported copy.
    let second_id = str_of(&second, "id").to_owned();
    ok(
        call(
            "delete record",
            Method::DELETE,
            &format!("/v1/records/{second_id}"),
            app,
            p,
            None,
        ),
        204,
    );
    ok(call("erase", Method::DELETE, &s, app, p, None), 200);
    let imported_id = str_of(&imported, "id").to_owned();
    ok(
        call(
            "erase import",
            Method::DELETE,
            &format!("/v1/subjects/{imported_id}"),
            app,
            p,
            None,
        ),
        200,
    );
    // Reading erased data answers 410, without the data.
    let gone = call("read erased", Method::GET, &s, app, p, None);
    assert_eq!(gone.status, 410);

    // Now search everything that is not an authorised answer.
    let errors = errors.0.into_inner();
    assert!(
        errors.len() >= 12,
        "error paths were exercised: {}",
        errors.len()
    );
    for (what, status, body) in &errors {
        let found = leaks_in(body);
        assert!(
            found.is_empty(),
            "{what} ({status}) leaks {found:?}: {body}"
        );
    }

    let metrics = api.call(Method::GET, "/metrics", None, None, None);
    assert_eq!(metrics.status, 200);
    let text = metrics.body.as_str().unwrap_or_default().to_owned();
    assert!(text.contains("http_"), "metrics were rendered: {text}");
    assert!(
        leaks_in(&text).is_empty(),
        "metrics leak {:?}",
        leaks_in(&text)
    );

    let mut audit = String::new();
    let mut after = 0;
    loop {
        let page = expect(
            api.get(
                &format!("/v1/audit?after={after}&limit=1000"),
                &t.admin,
                None,
            ),
            200,
        );
        audit.push_str(&page.to_string());
        match page["next_after"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    assert!(audit.contains("collection"), "the audit trail was read");
    assert!(
        leaks_in(&audit).is_empty(),
        "the audit trail leaks {:?}",
        leaks_in(&audit)
    );

    server.stop();
    if std::env::var_os("LEAKS_SHOW_LOG").is_some() {
        for e in std::fs::read_dir(sb.logs()).expect("logs") {
            println!(
                "{}",
                std::fs::read_to_string(e.expect("entry").path()).unwrap_or_default()
            );
        }
    }
    let log = std::fs::read_to_string(
        std::fs::read_dir(sb.logs())
            .expect("logs")
            .next()
            .expect("a server log")
            .expect("entry")
            .path(),
    )
    .expect("read the server log");
    assert!(
        log.contains("served") && log.lines().count() > 40,
        "the debug log was captured ({} lines)",
        log.lines().count()
    );
    let found = leaks_in(&log);
    assert!(
        found.is_empty(),
        "the server log leaks {found:?}:\n{}",
        log.lines()
            .filter(|l| !leaks_in(l).is_empty())
            .take(10)
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!(
        "leaks: {} error bodies, {} bytes of metrics, {} bytes of audit trail, {} log lines searched: no canary",
        errors.len(),
        text.len(),
        audit.len(),
        log.lines().count()
    );
}

/// POSTs `body` as-is (not JSON-encoded) and returns the response text.
fn api_raw(base: &str, token: &str, body: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .post(format!("{base}/v1/subjects"))
            .bearer_auth(token)
            .header("Custodian-Purpose", PURPOSE)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 400);
        r.text().await.expect("body")
    })
}

/// Sends a request id and returns every response header, as text.
fn header_echo(base: &str, request_id: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .get(format!("{base}/healthz"))
            .header("X-Request-Id", request_id)
            .send()
            .await
            .expect("send");
        format!("{:?}", r.headers())
    })
}
