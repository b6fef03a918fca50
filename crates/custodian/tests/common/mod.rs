//! Helpers for driving the real `custodian` binary: sandboxes, CLI runs with a time limit,
//! a server child process that never outlives its test, and a small synchronous HTTP client.

#![allow(dead_code)] // each test binary uses a different part of the harness

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a CLI command may take before the test gives up on it.
pub const CLI_LIMIT: Duration = Duration::from_secs(60);
/// How long the server may take to print its "listening on" line.
pub const START_LIMIT: Duration = Duration::from_secs(60);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_custodian")
}

/// A fresh temporary tree: `work/` is the (initially empty) current directory of every
/// command, `logs/` receives server stderr so that it never lands in the working directory.
#[derive(Debug)]
pub struct Sandbox {
    root: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let root = tempfile::Builder::new()
            .prefix("custodian-blackbox-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir(root.path().join("work")).expect("work dir");
        std::fs::create_dir(root.path().join("logs")).expect("logs dir");
        Sandbox { root }
    }

    /// The current directory of every command run in this sandbox.
    pub fn cwd(&self) -> PathBuf {
        self.root.path().join("work")
    }

    pub fn logs(&self) -> PathBuf {
        self.root.path().join("logs")
    }

    /// The default data directory (`custodian-data`, relative to the current directory).
    pub fn data_dir(&self) -> PathBuf {
        self.cwd().join("custodian-data")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("custodian.db")
    }

    /// A `custodian` command with the sandbox as its current directory and no inherited
    /// `CUSTODIAN_*` variables.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(args).current_dir(self.cwd());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CUSTODIAN_") {
                cmd.env_remove(&k);
            }
        }
        cmd
    }

    /// Runs a command to completion (killing it past [`CLI_LIMIT`]).
    pub fn run(&self, args: &[&str]) -> Output {
        run_limited(self.command(args), CLI_LIMIT)
            .unwrap_or_else(|| panic!("`custodian {}` did not finish in time", args.join(" ")))
    }

    /// Runs a command that is expected to succeed; returns its output.
    pub fn run_ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_eq!(
            out.code,
            Some(0),
            "`custodian {}` failed:\n{}",
            args.join(" "),
            out.describe()
        );
        out
    }

    /// `custodian init` then `custodian token create --role operator_admin`: the operator secret.
    pub fn init_with_operator(&self) -> String {
        self.run_ok(&["init"]);
        let out = self.run_ok(&[
            "token",
            "create",
            "--role",
            "operator_admin",
            "--label",
            "blackbox operator",
            "--days",
            "1",
        ]);
        let secret = out.stdout.trim().to_owned();
        assert!(secret.starts_with("cst_op_"), "{}", out.describe());
        secret
    }

    /// Starts `custodian serve` with the given extra arguments and waits for its address.
    pub fn serve(&self, extra: &[&str]) -> Server {
        self.serve_env(extra, &[])
    }

    /// [`Sandbox::serve`] with extra environment variables (e.g. `CUSTODIAN_LOG`).
    pub fn serve_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Server::start(self, &args, env)
    }
}

#[derive(Debug)]
pub struct Output {
    /// `None` when the process died of a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn describe(&self) -> String {
        format!(
            "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn wait_limited(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` with piped output; `None` (after killing it) when it outlives `limit`.
pub fn run_limited(mut cmd: Command, limit: Duration) -> Option<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn custodian");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let status = wait_limited(&mut child, limit);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = out.join().expect("stdout reader");
    let stderr = err.join().expect("stderr reader");
    status.map(|s| Output {
        code: s.code(),
        stdout,
        stderr,
    })
}

/// A running `custodian serve`. Killed (SIGKILL) on drop unless already stopped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// Every stdout line up to and including the "listening on" line.
    pub banner: Vec<String>,
    stderr_log: PathBuf,
    stopped: bool,
}

impl Server {
    fn start(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Server {
        let stderr_log = sb.logs().join(format!(
            "serve-{}.stderr.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let log = std::fs::File::create(&stderr_log).expect("server log file");
        let mut cmd = sb.command(args);
        cmd.envs(env.iter().copied());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = cmd.spawn().expect("spawn custodian serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel::<String>();
        // Forwards the banner, then keeps draining stdout so the server never blocks on it.
        std::thread::spawn(move || {
            let mut banner_done = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !banner_done {
                    banner_done = line.contains(" listening on http");
                    if tx.send(line).is_err() {
                        banner_done = true;
                    }
                }
            }
        });
        let mut server = Server {
            child,
            base: String::new(),
            banner: Vec::new(),
            stderr_log,
            stopped: false,
        };
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let found = line
                        .split_once(" listening on ")
                        .map(|(_, url)| url.trim().to_owned());
                    server.banner.push(line);
                    if let Some(url) = found {
                        assert!(
                            url.starts_with("http://127.0.0.1:")
                                || url.starts_with("https://127.0.0.1:"),
                            "{url}"
                        );
                        server.base = url;
                        return server;
                    }
                }
                Err(_) => {
                    let _ = server.child.kill();
                    let _ = server.child.wait();
                    server.stopped = true;
                    panic!(
                        "`custodian {}` never printed its listening line.\nstdout so far:\n{}\nstderr:\n{}",
                        args.join(" "),
                        server.banner.join("\n"),
                        server.stderr()
                    );
                }
            }
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn api(&self) -> Api {
        Api::new(&self.base)
    }

    /// SIGTERM through the `kill` command, then waits for a graceful exit (which signs a
    /// final checkpoint). Panics unless the server exits successfully.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        let exit = wait_limited(&mut self.child, Duration::from_secs(30));
        self.stopped = exit.is_some();
        let exit = exit.unwrap_or_else(|| panic!("server {pid} ignored SIGTERM"));
        assert!(
            exit.success(),
            "server exited with {exit} after SIGTERM; stderr:\n{}",
            self.stderr()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A synchronous JSON client for the API (a private current-thread runtime under reqwest).
#[derive(Debug)]
pub struct Api {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

/// A response: status and body (JSON when it parses, else a JSON string of the text).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// `path` is either absolute (`http://...`) or relative to the server (`/v1/...`).
    pub fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        purpose: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let mut req = self.client.request(method.clone(), &url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(p) = purpose {
            req = req.header("Custodian-Purpose", p);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        self.rt.block_on(async move {
            let resp = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            let status = resp.status().as_u16();
            let text = resp.text().await.expect("response body");
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            Reply { status, body }
        })
    }

    pub fn get(&self, path: &str, token: &str, purpose: Option<&str>) -> Reply {
        self.call(reqwest::Method::GET, path, Some(token), purpose, None)
    }

    pub fn post(&self, path: &str, token: &str, purpose: Option<&str>, body: &Value) -> Reply {
        self.call(
            reqwest::Method::POST,
            path,
            Some(token),
            purpose,
            Some(body),
        )
    }

    pub fn patch(&self, path: &str, token: &str, purpose: Option<&str>, body: &Value) -> Reply {
        self.call(
            reqwest::Method::PATCH,
            path,
            Some(token),
            purpose,
            Some(body),
        )
    }

    pub fn delete(&self, path: &str, token: &str, purpose: Option<&str>) -> Reply {
        self.call(reqwest::Method::DELETE, path, Some(token), purpose, None)
    }
}

/// Asserts the status and returns the body.
#[track_caller]
pub fn expect(reply: Reply, status: u16) -> Value {
    assert_eq!(reply.status, status, "unexpected reply: {:#}", reply.body);
    reply.body
}

#[track_caller]
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {v:#}"))
}

/// File mode bits (permissions only).
pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A controller with a documented `support` purpose and an application token, set up
/// entirely over HTTP from an operator token.
#[derive(Debug)]
pub struct Tenant {
    pub controller: String,
    pub admin: String,
    pub app: String,
}

pub const PURPOSE: &str = "support";

pub fn setup_tenant(api: &Api, operator: &str) -> Tenant {
    let c = expect(
        api.post(
            "/v1/controllers",
            operator,
            None,
            &serde_json::json!({
                "name": "Blackbox Shop SAS",
                "region": "osc-fr1",
                "agreement_effective": "2026-01-01",
                "governing_law": "FR",
            }),
        ),
        201,
    );
    let controller = str_of(&c, "id").to_owned();
    assert!(controller.starts_with("ctl_"), "{c:#}");

    let t = expect(
        api.post(
            "/v1/tokens",
            operator,
            None,
            &serde_json::json!({
                "role": "controller_admin",
                "controller": controller,
                "label": "blackbox admin",
                "expires_in_seconds": 3600,
            }),
        ),
        201,
    );
    let admin = str_of(&t, "secret").to_owned();
    assert!(admin.starts_with("cst_adm_"), "{t:#}");
    assert_eq!(t["role"], "controller_admin");

    let p = expect(
        api.post(
            "/v1/purposes",
            &admin,
            None,
            &serde_json::json!({
                "name": PURPOSE,
                "description": "Answer customers' support requests",
                "lawful_basis": "contract",
                "categories": ["user"],
                "operations": ["collection", "recording", "retrieval", "consultation",
                               "alteration", "erasure", "restriction"],
                "retention_days": 365,
            }),
        ),
        201,
    );
    assert_eq!(p["name"], PURPOSE);

    let t = expect(
        api.post(
            "/v1/tokens",
            &admin,
            None,
            &serde_json::json!({
                "role": "controller_app",
                "label": "blackbox app",
                "expires_in_seconds": 3600,
            }),
        ),
        201,
    );
    let app = str_of(&t, "secret").to_owned();
    assert!(app.starts_with("cst_app_"), "{t:#}");
    assert_eq!(t["controller"].as_str(), Some(controller.as_str()));
    Tenant {
        controller,
        admin,
        app,
    }
}

/// The body of `POST /v1/subjects` with a name and an email.
pub fn person(name: &str, email: &str) -> Value {
    serde_json::json!({
        "category": "customer",
        "record": {
            "fields": {
                "name": {"category": "user.name", "value": name},
                "email": {"category": "user.contact.email", "value": email},
            },
            "source": "signup form",
            "recipients": ["support team"],
        }
    })
}
