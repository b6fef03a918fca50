//! The test harness: a real server on a random local port, over a real SQLite file in a
//! temporary directory, driven through HTTP only (zero2prod style). The vault handle and the
//! database path are there for set-up shortcuts and for looking behind the API's back.

#![allow(dead_code)]

use custodian_core::policy::OperatorGrant;
use custodian_core::principal::Role;
use custodian_core::region::Region;
use custodian_crypto::keys::RootKey;
use custodian_server::{AppState, Limits};
use custodian_store::sqlite::SqliteStore;
use custodian_vault::{Clock, SystemClock, Vault};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Data-processing operations a purpose may allow, as the API spells them.
pub const ALL_DATA_OPS: &[&str] = &[
    "collection",
    "recording",
    "alteration",
    "retrieval",
    "consultation",
    "erasure",
    "restriction",
];

/// The metrics recorder is process-global: install it once for every test in this binary.
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("install the Prometheus recorder")
        })
        .clone()
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub db_path: PathBuf,
    pub vault: Arc<Vault>,
    /// An operator_admin token secret.
    pub operator: String,
    pub client: reqwest::Client,
    /// Kept alive for the test's duration; deleted on drop.
    pub dir: tempfile::TempDir,
}

/// A bearer token as issued by the API.
#[derive(Debug, Clone)]
pub struct Token {
    pub id: String,
    pub secret: String,
}

/// One controller with an admin token and an application token.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub controller: String,
    pub admin: Token,
    pub app: Token,
}

/// A response, read in full.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text))
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts the exact status and returns the JSON body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        self.json()
    }

    /// Asserts an RFC 9457 problem document with the exact status; returns it.
    #[track_caller]
    pub fn expect_problem(&self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        self.assert_problem()
    }

    /// Asserts the response is a problem document whose `status` member matches the
    /// HTTP status; returns it.
    #[track_caller]
    pub fn assert_problem(&self) -> Value {
        assert_eq!(
            self.content_type(),
            PROBLEM_JSON,
            "not problem+json; status {} body: {}",
            self.status,
            self.text
        );
        let p = self.json();
        assert_eq!(
            p["status"].as_u64(),
            Some(u64::from(self.status.as_u16())),
            "problem status member: {p}"
        );
        assert!(
            p["type"].as_str().is_some_and(|t| !t.is_empty()),
            "problem type: {p}"
        );
        assert!(p["title"].is_string(), "problem title: {p}");
        assert!(p["detail"].is_string(), "problem detail: {p}");
        p
    }

    /// Asserts that none of `needles` occurs in the body.
    #[track_caller]
    pub fn assert_absent(&self, needles: &[String], what: &str) {
        for n in needles {
            assert!(
                !self.text.contains(n.as_str()),
                "{what}: the response (status {}) contains {n:?}: {}",
                self.status,
                self.text
            );
        }
    }
}

/// How to start the server, for tests that need more than the defaults.
#[derive(Default)]
pub struct Options {
    pub limits: Limits,
    /// The vault's clock; the system clock when absent.
    pub clock: Option<Arc<dyn Clock>>,
    /// Serve with connection info, so that handlers see the client's address (per-address
    /// rate limits), as the real binary does.
    pub connect_info: bool,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let db_path = dir.path().join("custodian.db");
    let store = SqliteStore::open(&db_path).expect("open the SQLite store");
    let vault = Arc::new(Vault::new(
        Arc::new(store),
        RootKey::generate(1).expect("root key"),
        options.clock.unwrap_or_else(|| Arc::new(SystemClock)),
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
        metrics: Some(metrics_handle()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let addr = listener.local_addr().expect("local address");
    let app = custodian_server::app(state, &options.limits);
    if options.connect_info {
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .expect("server runs");
        });
    } else {
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("server runs");
        });
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .expect("HTTP client");
    TestApp {
        addr,
        db_path,
        vault,
        operator,
        client,
        dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A request with an optional bearer token and an optional purpose header.
    pub fn req(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        purpose: Option<&str>,
    ) -> RequestBuilder {
        let mut rb = self.client.request(method, self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(p) = purpose {
            rb = rb.header("Custodian-Purpose", p);
        }
        rb
    }

    pub async fn send(&self, rb: RequestBuilder) -> Resp {
        let res = rb.send().await.expect("the request reaches the server");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("read the body");
        Resp {
            status,
            headers,
            text,
        }
    }

    pub async fn get(&self, path: &str, token: &str, purpose: Option<&str>) -> Resp {
        self.send(self.req(Method::GET, path, Some(token), purpose))
            .await
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: &str,
        purpose: Option<&str>,
        body: &Value,
    ) -> Resp {
        self.send(
            self.req(Method::POST, path, Some(token), purpose)
                .json(body),
        )
        .await
    }

    /// `POST /v1/lookup` of one value.
    pub async fn lookup(&self, token: &str, purpose: &str, kind: &str, value: &str) -> Resp {
        self.post_json(
            "/v1/lookup",
            token,
            Some(purpose),
            &json!({ "kind": kind, "value": value }),
        )
        .await
    }

    pub async fn create_controller(&self, name: &str) -> String {
        let r = self
            .post_json(
                "/v1/controllers",
                &self.operator,
                None,
                &json!({
                    "name": name,
                    "region": "osc-fr1",
                    "agreement_effective": "2026-01-01",
                    "governing_law": "FR",
                }),
            )
            .await;
        let c = r.expect(201);
        c["id"].as_str().expect("controller id").to_owned()
    }

    /// The operator issues a controller's first admin token.
    pub async fn issue_admin(&self, controller: &str) -> Token {
        let r = self
            .post_json(
                "/v1/tokens",
                &self.operator,
                None,
                &json!({
                    "role": "controller_admin",
                    "controller": controller,
                    "label": "x",
                    "expires_in_seconds": 3600,
                }),
            )
            .await;
        token_of(&r.expect(201))
    }

    /// A controller admin issues a token of its own controller.
    pub async fn issue_token(&self, admin: &Token, role: &str) -> Token {
        let r = self
            .post_json(
                "/v1/tokens",
                &admin.secret,
                None,
                &json!({ "role": role, "label": "x", "expires_in_seconds": 3600 }),
            )
            .await;
        token_of(&r.expect(201))
    }

    pub async fn document_purpose(
        &self,
        admin: &Token,
        name: &str,
        categories: &[&str],
        operations: &[&str],
    ) -> Value {
        let r = self
            .post_json(
                "/v1/purposes",
                &admin.secret,
                None,
                &json!({
                    "name": name,
                    "description": format!("{name}: why this data is processed"),
                    "lawful_basis": "contract",
                    "categories": categories,
                    "operations": operations,
                    "retention_days": 30,
                }),
            )
            .await;
        r.expect(201)
    }

    /// A controller with its admin, one purpose per `(name, categories, operations)` and an
    /// application token.
    pub async fn tenant(&self, name: &str, purposes: &[(&str, &[&str], &[&str])]) -> Tenant {
        let controller = self.create_controller(name).await;
        let admin = self.issue_admin(&controller).await;
        for (p, cats, ops) in purposes {
            self.document_purpose(&admin, p, cats, ops).await;
        }
        let app = self.issue_token(&admin, "controller_app").await;
        Tenant {
            controller,
            admin,
            app,
        }
    }

    /// Creates a subject with a first record of `fields`; returns (subject id, record id).
    pub async fn create_subject(
        &self,
        token: &str,
        purpose: &str,
        fields: Value,
    ) -> (String, String) {
        let r = self
            .post_json("/v1/subjects", token, Some(purpose), &subject_body(fields))
            .await;
        let v = r.expect(201);
        (
            v["id"].as_str().expect("subject id").to_owned(),
            v["record"].as_str().expect("record id").to_owned(),
        )
    }

    /// The controller's whole audit trail (as its admin sees it).
    pub async fn audit(&self, admin: &Token) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0u64;
        loop {
            let r = self
                .get(
                    &format!("/v1/audit?after={after}&limit=1000"),
                    &admin.secret,
                    None,
                )
                .await;
            let page = r.expect(200);
            out.extend(page["entries"].as_array().expect("entries").iter().cloned());
            match page["next_after"].as_u64() {
                Some(n) => after = n,
                None => return out,
            }
        }
    }

    pub async fn refused_entries(&self, admin: &Token) -> Vec<Value> {
        self.audit(admin)
            .await
            .into_iter()
            .filter(|e| e["outcome"] == "refused")
            .collect()
    }

    /// A direct connection to the database, behind the API's back.
    pub fn sql(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(&self.db_path).expect("open the database directly");
        c.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        c
    }

    /// Rows of `table`; for `fields`, the fields every record holds (a record's fields are
    /// one column of its row, `custodian_store::fieldset`).
    pub fn count(&self, table: &str) -> i64 {
        let c = self.sql();
        if table == "fields" {
            return custodian_store::sqlite::stored_fields(&c, "1", [])
                .expect("fields")
                .len() as i64;
        }
        c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .expect("count rows")
    }
}

pub fn token_of(v: &Value) -> Token {
    Token {
        id: v["id"].as_str().expect("token id").to_owned(),
        secret: v["secret"].as_str().expect("token secret").to_owned(),
    }
}

/// `POST /v1/subjects` body: a customer with one record of `fields`.
pub fn subject_body(fields: Value) -> Value {
    json!({
        "category": "customer",
        "record": { "fields": fields, "source": "signup" },
    })
}

/// `{"name": {"category": .., "value": ..}}` from pairs.
pub fn fields(pairs: &[(&str, &str, &str)]) -> Value {
    let mut m = serde_json::Map::new();
    for (name, category, value) in pairs {
        m.insert(
            (*name).to_owned(),
            json!({ "category": category, "value": value }),
        );
    }
    Value::Object(m)
}

/// Every `(METHOD, path)` the router in `src/routes/mod.rs` declares, read from the source,
/// so a route added there without a test here makes the coverage checks fail.
pub fn declared_routes() -> Vec<(String, String)> {
    let src = include_str!("../../src/routes/mod.rs");
    let body = src
        .split("pub fn router()")
        .nth(1)
        .expect("routes/mod.rs has a router() function");
    let body = body.split("\n}\n").next().unwrap_or(body);
    let mut out = Vec::new();
    for chunk in body.split(".route(").skip(1) {
        let path = chunk
            .split('"')
            .nth(1)
            .expect("a route starts with its path literal");
        // The handler expression ends where the route call does, before any next `.route(`.
        let methods_src = chunk.split_once(',').map_or("", |(_, rest)| rest);
        let bytes = methods_src.as_bytes();
        for method in ["get", "post", "put", "patch", "delete"] {
            let needle = format!("{method}(");
            let mut from = 0;
            while let Some(pos) = methods_src[from..].find(&needle) {
                let at = from + pos;
                let prev = if at == 0 { b' ' } else { bytes[at - 1] };
                if !(prev.is_ascii_alphanumeric() || prev == b'_') {
                    out.push((method.to_ascii_uppercase(), path.to_owned()));
                }
                from = at + needle.len();
            }
        }
    }
    assert!(
        out.len() >= 20,
        "could not read the routes from routes/mod.rs: {out:?}"
    );
    out.sort();
    out.dedup();
    out
}
