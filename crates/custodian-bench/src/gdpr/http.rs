//! Custodian, HTTP path (`custodian-http`): the real server (`custodian_server::app`, as
//! `custodian serve` builds it: default limits but a 10-minute request timeout, metrics on,
//! connection info) started in this process on 127.0.0.1:0, over the same deployment as the library path (`custodian.rs`:
//! embedded SQLite, same configuration, same controller, purposes and tokens), and driven
//! through HTTP/1.1 by a blocking keep-alive client (ureq), one connection per client thread,
//! with the controller application's bearer token. Each operation is the HTTP call of the
//! very `Vault` use case the library path calls, with the very inputs (`Mapping`), sent as
//! JSON; answers are read in full and parsed, as a client would.
//!
//! | operation | call |
//! |---|---|
//! | insert | `POST /v1/subjects` (the user's first record) or `POST /v1/subjects/{id}/records` |
//! | read | `GET /v1/records/{id}` |
//! | read-meta-purpose | `GET /v1/records` |
//! | read-meta-user | `GET /v1/subjects/{id}` |
//! | update | `PATCH /v1/records/{id}` |
//! | update-meta-purpose, -user | `PATCH /v1/records`, `PATCH /v1/records?subject={id}` |
//! | delete | `DELETE /v1/records/{id}` |
//! | delete-meta-purpose, -user | `DELETE /v1/records`, `DELETE /v1/records?subject={id}` |
//! | read-log | `GET /v1/audit/tail?limit=L` (admin token) |
//! | verify-ttl's count | `GET /v1/retention` (admin token) |
//!
//! The TTL sweeper is the server's own retention pass (`Vault::sweep_retention`, which
//! `custodian serve` runs in the background), called in process on the bench's cadence.

use super::custodian::{Deployment, Ids, Mapping};
use super::keys::{MetaField, Values};
use super::target::{Loaded, Res, Target};
use custodian_core::ids::{RecordId, SubjectId};
use custodian_core::purpose::PurposeName;
use custodian_vault::views::BulkChange;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use ureq::Agent;

pub struct HttpTarget {
    d: Deployment,
    map: Mapping,
    ids: Ids,
    base: String,
    app: String,
    admin: String,
    /// Idle clients, each with its keep-alive connection: a client thread takes one for a
    /// call and puts it back, so there are as many connections as threads calling at once.
    agents: Mutex<Vec<Agent>>,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The metrics recorder `custodian serve` installs (it is process-wide: once).
fn metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("install the Prometheus recorder")
        })
        .clone()
}

/// An answer: its status and its body, read in full.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Res<Value> {
        serde_json::from_slice(&self.body).map_err(|e| format!("answer is not JSON: {e}"))
    }

    /// The answer's JSON on success; None for 404 and 410 (a deleted key is an answer).
    fn found(self, what: &str) -> Res<Option<Value>> {
        match self.status {
            200..=299 => {
                if self.body.is_empty() {
                    Ok(Some(Value::Null))
                } else {
                    self.json().map(Some)
                }
            }
            404 | 410 => Ok(None),
            _ => Err(self.failure(what)),
        }
    }

    fn failure(&self, what: &str) -> String {
        format!(
            "{what}: HTTP {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
                .chars()
                .take(300)
                .collect::<String>()
        )
    }

    /// How many items the answer's `records` array holds (None for 404 and 410), read
    /// without building the answer's tree: the client still parses every byte, as one
    /// deserialising into its own types would, but allocates nothing per record (the
    /// baselines parse nothing at all, and this client shares the server's cores).
    fn records(self, what: &str) -> Res<Option<usize>> {
        Ok(self.page(what)?.map(|(n, _)| n))
    }

    /// [`Self::records`], and the answer's `next` page, if it names one.
    fn page(self, what: &str) -> Res<Option<(usize, Option<String>)>> {
        #[derive(serde::Deserialize)]
        struct Records {
            records: Vec<serde::de::IgnoredAny>,
            next: Option<String>,
        }
        match self.status {
            200..=299 => serde_json::from_slice::<Records>(&self.body)
                .map(|r| Some((r.records.len(), r.next)))
                .map_err(|e| format!("{what}: the answer is not a list of records: {e}")),
            404 | 410 => Ok(None),
            _ => Err(self.failure(what)),
        }
    }

    fn ok(self, what: &str) -> Res<Value> {
        match self.found(what)? {
            Some(v) => Ok(v),
            None => Err(format!("{what}: not found")),
        }
    }
}

fn count(v: &Value, key: &str) -> usize {
    v[key].as_u64().unwrap_or(0) as usize
}

fn len(v: &Value, key: &str) -> usize {
    v[key].as_array().map_or(0, Vec::len)
}

impl HttpTarget {
    pub fn open(dir: &Path) -> Res<Self> {
        let map = Mapping::new();
        let d = Deployment::create(dir, &map)?;
        Self::start(d, Ids::new())
    }

    /// Starts the server over `d`.
    pub fn start(d: Deployment, ids: Ids) -> Res<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let app = custodian_server::app(
            custodian_server::AppState {
                vault: d.vault.clone(),
                metrics: Some(metrics()),
            },
            &custodian_server::Limits {
                // A bulk operation queued behind 15 others on the one writer can take longer
                // than the default 30 s: measure it to its end, as the library path does,
                // rather than count a 408 while it still runs.
                request_timeout: Duration::from_secs(600),
                ..custodian_server::Limits::default()
            },
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, service)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            base: format!("http://{addr}"),
            app: format!("Bearer {}", d.app_token),
            admin: format!("Bearer {}", d.admin_token),
            d,
            map: Mapping::new(),
            ids,
            agents: Mutex::new(Vec::new()),
            runtime: Some(runtime),
            stop: Some(stop),
        })
    }

    fn agent() -> Agent {
        Agent::new_with_config(
            Agent::config_builder()
                .http_status_as_error(false)
                .proxy(None)
                .max_idle_connections(1)
                .max_idle_connections_per_host(1)
                .timeout_global(Some(Duration::from_secs(900)))
                .build(),
        )
    }

    /// One call: `method` on `path` with the app's (or the admin's) token, the purpose
    /// header when given, and a JSON body when given.
    fn call(
        &self,
        method: &str,
        path: &str,
        admin: bool,
        purpose: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Res<Answer> {
        let popped = self.agents.lock().expect("agents").pop();
        let agent = popped.unwrap_or_else(Self::agent);
        let url = format!("{}{path}", self.base);
        let token = if admin { &self.admin } else { &self.app };
        macro_rules! headers {
            ($rb:expr) => {{
                let rb = $rb.header("Authorization", token.as_str());
                match purpose {
                    Some(p) => rb.header("Custodian-Purpose", p),
                    None => rb,
                }
            }};
        }
        let sent = match (method, body) {
            ("GET", _) => headers!(agent.get(&url)).call(),
            ("DELETE", _) => headers!(agent.delete(&url)).call(),
            (m, body) => {
                let rb = match m {
                    "POST" => agent.post(&url),
                    _ => agent.patch(&url),
                };
                headers!(rb)
                    .header("Content-Type", "application/json")
                    .send(body.unwrap_or_default())
            }
        };
        let mut res = sent.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = res.status().as_u16();
        let body = res
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_vec()
            .map_err(|e| format!("{method} {path}: reading the answer: {e}"))?;
        self.agents.lock().expect("agents").push(agent);
        Ok(Answer { status, body })
    }

    /// A data call: the app's token, under `purpose`.
    fn data(
        &self,
        method: &str,
        path: &str,
        purpose: &PurposeName,
        body: Option<Vec<u8>>,
    ) -> Res<Answer> {
        self.call(method, path, false, Some(purpose.as_str()), body)
    }

    /// A call on key k's record; None when there is none (the bench holds no id for k, or
    /// the server answers 404 or 410).
    fn on_record(
        &self,
        method: &str,
        k: u64,
        purpose: &PurposeName,
        body: Option<Vec<u8>>,
    ) -> Res<Option<Value>> {
        let Some(id) = self.ids.record(k) else {
            return Ok(None);
        };
        self.data(method, &format!("/v1/records/{id}"), purpose, body)?
            .found(method)
    }

    /// A read by the controller's admin.
    fn admin_get(&self, path: &str) -> Res<Value> {
        self.call("GET", path, true, None, None)?.ok(path)
    }

    fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
        serde_json::to_vec(v).expect("inputs serialise")
    }

    fn alter(&self, v: &Values, field: MetaField, query: &str) -> Res<usize> {
        let now = self.d.vault.now();
        let Some(change) = self.map.change(v, field, self.ids.subject(v), now) else {
            return Ok(0);
        };
        let body = Self::json(&BulkChange::from(change));
        let a = self.data(
            "PATCH",
            &format!("/v1/records{query}"),
            self.map.purpose(v),
            Some(body),
        )?;
        Ok(a.found("update-meta")?.map_or(0, |r| count(&r, "records")))
    }

    fn erase(&self, v: &Values, query: &str) -> Res<usize> {
        let a = self.data(
            "DELETE",
            &format!("/v1/records{query}"),
            self.map.purpose(v),
            None,
        )?;
        Ok(a.found("delete-meta")?.map_or(0, |r| count(&r, "records")))
    }

    fn subject_query(&self, v: &Values) -> Option<String> {
        self.ids.subject(v).map(|s| format!("?subject={s}"))
    }
}

impl Drop for HttpTarget {
    fn drop(&mut self) {
        self.agents.lock().expect("agents").clear();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl Target for HttpTarget {
    fn name(&self) -> &'static str {
        "custodian-http"
    }

    fn finish(&self) -> Res<()> {
        self.d.vault.purge_erased_now();
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "custodian-http: the same deployment behind the real HTTP server in process ({}, default limits \
             but a 10-minute request timeout, metrics on), HTTP/1.1 keep-alive client per thread (ureq), JSON in and out",
            self.base
        )
    }

    fn insert(&self, k: u64, v: &Values) -> Res<()> {
        let purpose = self.map.purpose(v);
        let now = self.d.vault.now();
        let id = |v: &Value, key: &str| {
            v[key]
                .as_str()
                .ok_or_else(|| format!("insert: no {key} in the answer"))
                .map(str::to_owned)
        };
        self.ids.insert(
            k,
            v,
            |s: &SubjectId| {
                let body = Self::json(&self.map.record(v, now));
                let path = format!("/v1/subjects/{s}/records");
                let r = self
                    .data("POST", &path, purpose, Some(body))?
                    .ok("insert")?;
                RecordId::parse(&id(&r, "id")?).map_err(|e| e.to_string())
            },
            || {
                let body = Self::json(&self.map.subject(v, now));
                let c = self
                    .data("POST", "/v1/subjects", purpose, Some(body))?
                    .ok("insert")?;
                let s = SubjectId::parse(&id(&c, "id")?).map_err(|e| e.to_string())?;
                let r = RecordId::parse(&id(&c, "record")?).map_err(|e| e.to_string())?;
                Ok((s, r))
            },
        )
    }

    fn read(&self, k: u64) -> Res<usize> {
        let r = self.on_record("GET", k, self.map.key_purpose(k), None)?;
        // Its three fields and the record's description: all ten GDPRbench fields.
        Ok(r.map_or(0, |r| if len_map(&r["fields"]) == 0 { 0 } else { 10 }))
    }

    /// Every page of the purpose's records (one at N = 100,000: a page holds 10,000).
    fn read_meta_purpose(&self, v: &Values) -> Res<usize> {
        let (mut total, mut path) = (0, "/v1/records".to_owned());
        loop {
            let a = self.data("GET", &path, self.map.purpose(v), None)?;
            let (n, next) = a
                .page("read-meta-purpose")?
                .ok_or_else(|| "read-meta-purpose: not found".to_owned())?;
            total += n;
            match next {
                Some(cursor) => path = format!("/v1/records?after={cursor}"),
                None => return Ok(total),
            }
        }
    }

    fn read_meta_user(&self, v: &Values) -> Res<usize> {
        let Some(s) = self.ids.subject(v) else {
            return Ok(0);
        };
        let a = self.data(
            "GET",
            &format!("/v1/subjects/{s}"),
            self.map.purpose(v),
            None,
        )?;
        Ok(a.records("read-meta-user")?.unwrap_or(0))
    }

    fn update(&self, k: u64, v: &Values) -> Res<bool> {
        let body = Self::json(&self.map.update(v));
        Ok(self
            .on_record("PATCH", k, self.map.purpose(v), Some(body))?
            .is_some())
    }

    fn update_meta_purpose(&self, v: &Values, field: MetaField) -> Res<usize> {
        self.alter(v, field, "")
    }

    fn update_meta_user(&self, v: &Values, field: MetaField) -> Res<usize> {
        match self.subject_query(v) {
            Some(q) => self.alter(v, field, &q),
            None => Ok(0),
        }
    }

    fn delete(&self, k: u64) -> Res<bool> {
        Ok(self
            .on_record("DELETE", k, self.map.key_purpose(k), None)?
            .is_some())
    }

    fn delete_meta_purpose(&self, v: &Values) -> Res<usize> {
        self.erase(v, "")
    }

    fn delete_meta_user(&self, v: &Values) -> Res<usize> {
        match self.subject_query(v) {
            Some(q) => self.erase(v, &q),
            None => Ok(0),
        }
    }

    fn count(&self) -> Res<u64> {
        let buckets = self.admin_get("/v1/retention")?;
        Ok(buckets.as_array().map_or(0, |b| {
            b.iter().map(|x| x["records"].as_u64().unwrap_or(0)).sum()
        }))
    }

    fn read_log(&self, l: u32) -> Res<usize> {
        let page = self.admin_get(&format!("/v1/audit/tail?limit={l}"))?;
        Ok(len(&page, "entries"))
    }

    fn sweep(&self) -> Res<u64> {
        self.d.sweep()
    }

    fn freeze(&self) -> Res<Box<dyn Loaded>> {
        self.d.freeze(&self.ids, true)
    }
}

fn len_map(v: &Value) -> usize {
    v.as_object().map_or(0, serde_json::Map::len)
}
