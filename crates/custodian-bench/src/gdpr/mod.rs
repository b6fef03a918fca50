//! GDPRbench (Shastri et al., PVLDB 13(7) 2020), ported as ../shared/bench/GDPRBENCH.md
//! describes it, run against Custodian and two baselines in the same process, on the same
//! disk, in the same run:
//!
//! - `custodian`: the `Vault` library path (see `custodian.rs` for the field mapping);
//! - `custodian-http`: the same deployment behind the real HTTP server, started in this
//!   process on 127.0.0.1, driven by a keep-alive HTTP client per thread (`http.rs`);
//! - `plain-sqlite`: the same engine without Custodian's protections (`plain.rs`);
//! - `postgres`: GDPR-configured PostgreSQL, made fair (`pg.rs`), on `--postgres` or
//!   `TEST_DATABASE_URL`, or else a throwaway cluster the benchmark starts itself
//!   (`throwaway_pg`: its command again under `scripts/with-postgres`); skipped, and said
//!   so, when none can start.
//!
//! Load phase, once per target and thread count: N inserts by that many threads on a fresh
//! target, the TTL sweeper running; then the state is frozen (SQLite: a WAL checkpoint, the
//! database file kept; PostgreSQL: connections closed, the database kept as a template) with
//! the bench's own key maps. Run phase, for each workload: a copy of that load (files copied,
//! or `CREATE DATABASE ... TEMPLATE`, key maps copied), whose clock is set back to the instant
//! the load ended, so that TTLs run out as they would have right after the load; then N/10
//! operations drawn from the workload's mix, keys from the workload's chooser, every
//! generator seeded (so every run of a target starts from the same state and draws the same
//! operations). A TTL sweeper runs every second on every target throughout, as a deployment
//! would run it. The regulator's one-time operations (verify-ttl, read-log) run once, first,
//! before the timed operations: their latency is reported on their own lines and kept out of
//! the throughput, which would otherwise measure verify-ttl's wait for the 30 s TTL to run out.

mod custodian;
mod http;
mod keys;
mod pg;
mod plain;
mod target;

use indicatif::{ProgressBar, ProgressStyle};
use keys::{Discrete, KeyChooser, MetaField, Rng, ScrambledZipfian, Values};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use target::{Loaded, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    VerifyTtl,
    ReadLog,
    Insert,
    Read,
    ReadMetaPurpose,
    ReadMetaUser,
    Update,
    UpdateMetaPurpose,
    UpdateMetaUser,
    Delete,
    DeleteMetaPurpose,
    DeleteMetaUser,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Self::VerifyTtl => "verify-ttl",
            Self::ReadLog => "read-log",
            Self::Insert => "insert",
            Self::Read => "read",
            Self::ReadMetaPurpose => "read-meta-purpose",
            Self::ReadMetaUser => "read-meta-user",
            Self::Update => "update",
            Self::UpdateMetaPurpose => "update-meta-purpose",
            Self::UpdateMetaUser => "update-meta-user",
            Self::Delete => "delete",
            Self::DeleteMetaPurpose => "delete-meta-purpose",
            Self::DeleteMetaUser => "delete-meta-user",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Workload {
    pub name: &'static str,
    pub zipfian: bool,
    pub mix: Vec<(f64, Op)>,
    pub one_time: Vec<Op>,
}

pub fn workloads() -> Vec<Workload> {
    use Op::*;
    vec![
        Workload {
            name: "controller",
            zipfian: false,
            mix: vec![
                (0.25, UpdateMetaPurpose),
                (0.25, UpdateMetaUser),
                (0.25, Delete),
                (0.25, Insert),
            ],
            one_time: vec![],
        },
        Workload {
            name: "customer",
            zipfian: true,
            mix: vec![
                (0.2, Read),
                (0.1, ReadMetaPurpose),
                (0.1, ReadMetaUser),
                (0.2, Update),
                (0.1, UpdateMetaPurpose),
                (0.1, UpdateMetaUser),
                (0.2, Delete),
            ],
            one_time: vec![],
        },
        Workload {
            name: "processor",
            zipfian: false,
            mix: vec![(0.2, Read), (0.4, ReadMetaPurpose), (0.4, ReadMetaUser)],
            one_time: vec![],
        },
        Workload {
            name: "regulator",
            zipfian: true,
            mix: vec![(1.0, ReadMetaPurpose)],
            one_time: vec![ReadLog, VerifyTtl],
        },
        // Every operation once in a while: not a GDPRbench workload, a check that each
        // operation works on every target (delete-meta-* appear in no workload).
        Workload {
            name: "all-ops",
            zipfian: false,
            mix: vec![
                (1.0, Insert),
                (1.0, Read),
                (1.0, ReadMetaPurpose),
                (1.0, ReadMetaUser),
                (1.0, Update),
                (1.0, UpdateMetaPurpose),
                (1.0, UpdateMetaUser),
                (1.0, Delete),
                (0.2, DeleteMetaPurpose),
                (0.2, DeleteMetaUser),
            ],
            one_time: vec![ReadLog, VerifyTtl],
        },
    ]
}

#[derive(Debug, Clone)]
pub struct Config {
    pub records: u64,
    pub operations: u64,
    pub threads: Vec<usize>,
    pub workloads: Vec<String>,
    pub targets: Vec<String>,
    pub seed: u64,
    pub postgres: Option<String>,
    pub json: Option<PathBuf>,
    pub sweep_every: Duration,
    /// MiB of decoded records each Custodian store keeps (`None`: the store's default).
    pub kept_records_mib: Option<usize>,
    pub erasure_purge_delay_ms: Option<u64>,
}

/// Latencies of one operation kind, in nanoseconds.
#[derive(Debug, Default, Clone)]
struct Lat {
    ns: Vec<u64>,
    errors: u64,
    /// Records or fields returned or touched, summed (to see that the work was done).
    items: u64,
}

impl Lat {
    fn pct(&self, p: f64) -> f64 {
        if self.ns.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * (self.ns.len() - 1) as f64).round() as usize;
        self.ns[i] as f64 / 1e3
    }
    fn summary(&mut self) -> serde_json::Value {
        self.ns.sort_unstable();
        json!({
            "count": self.ns.len(),
            "errors": self.errors,
            "items": self.items,
            "p50_us": self.pct(50.0),
            "p95_us": self.pct(95.0),
            "p99_us": self.pct(99.0),
            "max_us": self.ns.last().map_or(0.0, |n| *n as f64 / 1e3),
            "mean_us": if self.ns.is_empty() { 0.0 } else { self.ns.iter().sum::<u64>() as f64 / self.ns.len() as f64 / 1e3 },
        })
    }
}

#[derive(Debug, Default)]
struct Outcome {
    target: &'static str,
    load_secs: f64,
    run_secs: f64,
    ops: u64,
    lat: BTreeMap<Op, Lat>,
    first_error: Option<String>,
    swept: u64,
    /// This process's CPU time over the run, for targets that work in it: steadier than
    /// throughput on a shared machine, so what an A/B reads first.
    cpu_secs: Option<f64>,
}

impl Outcome {
    fn throughput(&self) -> f64 {
        self.ops as f64 / self.run_secs.max(1e-9)
    }

    fn cpu_ms_per_op(&self) -> Option<f64> {
        self.cpu_secs.map(|c| c * 1000.0 / self.ops.max(1) as f64)
    }
}

/// User plus system CPU time of this process, every thread (Linux `/proc/self/stat`, in
/// USER_HZ ticks of 10 ms); `None` where that file is not to be had.
fn process_cpu_secs() -> Option<f64> {
    cpu_secs_of(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn cpu_secs_of(stat: &str) -> Option<f64> {
    // Fields after the command name, which is in parentheses and may hold spaces: the
    // state is field 3, utime and stime fields 14 and 15.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

fn bar(len: u64, prefix: String) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:<44} [{bar:30}] {pos:>7}/{len:7} {per_sec:>12} eta {eta}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    pb.set_prefix(prefix);
    pb
}

#[allow(clippy::too_many_arguments)]
fn do_op(
    t: &dyn Target,
    op: Op,
    chooser: &KeyChooser,
    rng: &mut Rng,
    seed: u64,
    next_key: &AtomicU64,
    last_key: &AtomicU64,
    records: u64,
) -> Result<u64, String> {
    let pick = |rng: &mut Rng| chooser.next(rng, last_key.load(Ordering::Acquire));
    let n = match op {
        Op::Insert => {
            let k = next_key.fetch_add(1, Ordering::AcqRel);
            t.insert(k, &Values::of(k, seed, 0))?;
            last_key.fetch_max(k, Ordering::AcqRel);
            1
        }
        Op::Read => t.read(pick(rng))? as u64,
        Op::ReadMetaPurpose => t.read_meta_purpose(&Values::of(pick(rng), seed, 0))? as u64,
        Op::ReadMetaUser => t.read_meta_user(&Values::of(pick(rng), seed, 0))? as u64,
        Op::Update => {
            let k = pick(rng);
            let version = rng.next_u64() | 1;
            u64::from(t.update(k, &Values::of(k, seed, version))?)
        }
        Op::UpdateMetaPurpose | Op::UpdateMetaUser => {
            let k = pick(rng);
            let field = MetaField::from_index(rng.uniform(1, 8));
            let v = Values::of(k, seed, 0);
            (if op == Op::UpdateMetaPurpose {
                t.update_meta_purpose(&v, field)?
            } else {
                t.update_meta_user(&v, field)?
            }) as u64
        }
        Op::Delete => u64::from(t.delete(pick(rng))?),
        Op::DeleteMetaPurpose => t.delete_meta_purpose(&Values::of(pick(rng), seed, 0))? as u64,
        Op::DeleteMetaUser => t.delete_meta_user(&Values::of(pick(rng), seed, 0))? as u64,
        Op::ReadLog => t.read_log(rng.uniform(1, 1000) as u32)? as u64,
        Op::VerifyTtl => {
            // Wait until the expired records are gone: at most 0.9·N remain.
            let bound = (records as f64 * 0.9) as u64;
            let start = Instant::now();
            loop {
                let c = t.count()?;
                if c <= bound {
                    break c;
                }
                if start.elapsed() > Duration::from_secs(600) {
                    return Err(format!(
                        "verify-ttl: {c} records remain after 600 s (bound {bound})"
                    ));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    Ok(n)
}

/// The TTL sweeper: every target's TTL enforcement, on the same cadence, throughout.
struct Sweeper {
    stop: Arc<AtomicBool>,
    swept: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<()>,
}

impl Sweeper {
    fn start(target: Arc<dyn Target>, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let swept = Arc::new(AtomicU64::new(0));
        let handle = {
            let (stop, swept) = (stop.clone(), swept.clone());
            std::thread::spawn(move || {
                let mut next = Instant::now() + every;
                while !stop.load(Ordering::Acquire) {
                    if Instant::now() >= next {
                        match target.sweep() {
                            Ok(k) => {
                                swept.fetch_add(k, Ordering::Relaxed);
                            }
                            Err(e) => eprintln!("gdpr: {} sweeper: {e}", target.name()),
                        }
                        next = Instant::now() + every;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Self {
            stop,
            swept,
            handle,
        }
    }

    /// Stops it; how many records it erased.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Release);
        let _ = self.handle.join();
        self.swept.load(Ordering::Relaxed)
    }
}

/// One load phase's result: the state every run of this target and thread count starts
/// from a copy of.
struct Load {
    target: &'static str,
    threads: usize,
    secs: f64,
    swept: u64,
    /// When the load ended: each copy's clock is set back to it.
    ended: Instant,
    state: Box<dyn Loaded>,
}

/// The load phase: N inserts by `threads` threads on a fresh target (the sweeper running, as
/// in a run), then the state frozen for copies.
fn load(
    cfg: &Config,
    threads: usize,
    make: &dyn Fn() -> Result<Box<dyn Target>, String>,
) -> Result<Load, String> {
    let target: Arc<dyn Target> = Arc::from(make()?);
    let name = target.name();
    let (n, seed) = (cfg.records, cfg.seed);
    let sweeper = Sweeper::start(target.clone(), cfg.sweep_every);
    let pb = bar(n, format!("load {threads}t {name}"));
    let next = AtomicU64::new(0);
    let errors = Mutex::new(None::<String>);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::AcqRel);
                    if k >= n {
                        break;
                    }
                    if let Err(e) = target.insert(k, &Values::of(k, seed, 0)) {
                        errors
                            .lock()
                            .expect("errors")
                            .get_or_insert(format!("load key{k}: {e}"));
                    }
                    pb.inc(1);
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let ended = Instant::now();
    pb.finish_and_clear();
    let swept = sweeper.finish();
    if let Some(e) = errors.into_inner().expect("errors") {
        return Err(e);
    }
    let state = target.freeze()?;
    Ok(Load {
        target: name,
        threads,
        secs,
        swept,
        ended,
        state,
    })
}

/// One run: the workload's operations on a fresh copy of `load`'s state (in `dir`).
fn run_one(
    cfg: &Config,
    w: &Workload,
    load: &Load,
    dir: &std::path::Path,
    tag: &str,
) -> Result<Outcome, String> {
    let target: Arc<dyn Target> = Arc::from(load.state.copy(dir, tag, load.ended)?);
    let threads = load.threads;
    let name = target.name();
    let mut out = Outcome {
        target: name,
        load_secs: load.secs,
        ..Default::default()
    };
    let n = cfg.records;
    let seed = cfg.seed;
    let sweeper = Sweeper::start(target.clone(), cfg.sweep_every);

    let chooser = if w.zipfian {
        let inserts = w
            .mix
            .iter()
            .filter(|(_, o)| *o == Op::Insert)
            .map(|(p, _)| p / w.mix.iter().map(|(q, _)| q).sum::<f64>())
            .sum::<f64>();
        let expected_new = (cfg.operations as f64 * inserts * 2.0) as u64;
        KeyChooser::Zipfian(ScrambledZipfian::new(n + expected_new + 1))
    } else {
        KeyChooser::Uniform
    };
    let next_key = AtomicU64::new(n);
    let last_key = AtomicU64::new(n - 1);

    // One-time operations, first.
    let mut rng0 = Rng::new(seed ^ 0xA5A5_5A5A);
    for op in &w.one_time {
        let t0 = Instant::now();
        let r = do_op(
            target.as_ref(),
            *op,
            &chooser,
            &mut rng0,
            seed,
            &next_key,
            &last_key,
            n,
        );
        let lat = out.lat.entry(*op).or_default();
        lat.ns.push(t0.elapsed().as_nanos() as u64);
        match r {
            Ok(k) => lat.items += k,
            Err(e) => {
                lat.errors += 1;
                out.first_error.get_or_insert(e);
            }
        }
    }

    // Run phase.
    let mix = Discrete::new(&w.mix);
    let total = cfg.operations;
    let pb = bar(total, format!("{} {}t {name} run", w.name, threads));
    let issued = AtomicU64::new(0);
    type ThreadResult = (BTreeMap<Op, Lat>, Option<String>);
    let per_thread: Mutex<Vec<ThreadResult>> = Mutex::new(Vec::new());
    let cpu_before = target
        .works_in_this_process()
        .then(process_cpu_secs)
        .flatten();
    let start = Instant::now();
    std::thread::scope(|s| {
        for i in 0..threads {
            let (target, chooser, mix, pb, issued, next_key, last_key, per_thread) = (
                &target,
                &chooser,
                &mix,
                &pb,
                &issued,
                &next_key,
                &last_key,
                &per_thread,
            );
            s.spawn(move || {
                let mut rng = Rng::new(
                    seed.wrapping_mul(0x100_0000_01B3) ^ ((i as u64 + 1) * 0x9E37_79B9_7F4A_7C15),
                );
                let mut lat: BTreeMap<Op, Lat> = BTreeMap::new();
                let mut first = None;
                while issued.fetch_add(1, Ordering::AcqRel) < total {
                    let op = mix.next(&mut rng);
                    let t0 = Instant::now();
                    let r = do_op(
                        target.as_ref(),
                        op,
                        chooser,
                        &mut rng,
                        seed,
                        next_key,
                        last_key,
                        n,
                    );
                    let l = lat.entry(op).or_default();
                    l.ns.push(t0.elapsed().as_nanos() as u64);
                    match r {
                        Ok(k) => l.items += k,
                        Err(e) => {
                            l.errors += 1;
                            first.get_or_insert(format!("{}: {e}", op.name()));
                        }
                    }
                    pb.inc(1);
                }
                per_thread.lock().expect("results").push((lat, first));
            });
        }
    });
    // Work the target still owes for what it answered (Custodian: the purge of the last
    // erasures) is the run's too.
    if let Err(e) = target.finish() {
        out.first_error.get_or_insert(format!("finish: {e}"));
    }
    out.run_secs = start.elapsed().as_secs_f64();
    out.cpu_secs = cpu_before.and_then(|b| Some(process_cpu_secs()? - b));
    out.ops = total;
    pb.finish_and_clear();
    out.swept = sweeper.finish();
    for (lat, first) in per_thread.into_inner().expect("results") {
        for (op, l) in lat {
            let e = out.lat.entry(op).or_default();
            e.ns.extend(l.ns);
            e.errors += l.errors;
            e.items += l.items;
        }
        if let Some(f) = first {
            out.first_error.get_or_insert(f);
        }
    }
    Ok(out)
}

fn machine() -> serde_json::Value {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default();
    json!({ "nproc": nproc, "loadavg": load.trim(), "cpu": cpu })
}

fn us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}ms", v / 1e3)
    } else {
        format!("{v:.0}µs")
    }
}

pub fn run(cfg: Config) {
    if let Some(mib) = cfg.kept_records_mib {
        custodian::keep(custodian_store::sqlite::KeptLimits {
            record_bytes: mib.saturating_mul(1 << 20),
            ..Default::default()
        });
    }
    if let Some(ms) = cfg.erasure_purge_delay_ms {
        custodian::purge_within(Duration::from_millis(ms));
    }
    let all = workloads();
    let chosen: Vec<&Workload> = cfg
        .workloads
        .iter()
        .map(|name| {
            all.iter().find(|w| w.name == name).unwrap_or_else(|| {
                eprintln!("gdpr: unknown workload {name} (controller, customer, processor, regulator, all-ops)");
                std::process::exit(2)
            })
        })
        .collect();
    let pg_url = cfg.postgres.clone().or_else(|| {
        std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
    });
    let mut targets: Vec<&str> = Vec::new();
    for t in &cfg.targets {
        let which = match t.as_str() {
            "custodian" => "custodian",
            "custodian-http" | "http" => "custodian-http",
            "plain" | "plain-sqlite" => "plain-sqlite",
            "postgres" => {
                if pg_url.is_none() {
                    println!(
                        "gdpr: postgres SKIPPED (no --postgres URL, TEST_DATABASE_URL unset, and no throwaway cluster could start: install the Debian package postgresql)"
                    );
                    continue;
                }
                "postgres"
            }
            other => {
                eprintln!(
                    "gdpr: unknown target {other} (custodian, custodian-http, plain, postgres)"
                );
                std::process::exit(2)
            }
        };
        if !targets.contains(&which) {
            targets.push(which);
        }
    }
    let dir =
        tempfile::tempdir_in(".").expect("a temporary directory on the working directory's disk");
    let counter = AtomicU64::new(0);
    let make = |which: &str| -> Result<Box<dyn Target>, String> {
        let i = counter.fetch_add(1, Ordering::Relaxed);
        let sub = dir.path().join(format!("{which}-load-{i}"));
        std::fs::create_dir_all(&sub).map_err(|e| e.to_string())?;
        Ok(match which {
            "custodian" => Box::new(custodian::CustodianTarget::open(&sub)?),
            "custodian-http" => Box::new(http::HttpTarget::open(&sub)?),
            "plain-sqlite" => Box::new(plain::PlainTarget::open(&sub)?),
            _ => Box::new(pg::PgTarget::open(
                pg_url.as_deref().expect("checked"),
                &i.to_string(),
            )?),
        })
    };
    let machine_before = machine();
    println!(
        "GDPRbench port: N = {} records, {} operations per run, threads {:?}, seed {}, sweeper every {:?}",
        cfg.records, cfg.operations, cfg.threads, cfg.seed, cfg.sweep_every
    );
    println!(
        "machine: {} cores ({}), load average at start {}",
        machine_before["nproc"],
        machine_before["cpu"].as_str().unwrap_or(""),
        machine_before["loadavg"].as_str().unwrap_or("")
    );
    println!("{START_NOTE}");

    // Load phase: once per target and thread count.
    let described = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let mut loads: BTreeMap<(&str, usize), Load> = BTreeMap::new();
    for (i, &threads) in cfg.threads.iter().enumerate() {
        let mut order = targets.clone();
        order.rotate_left(i % targets.len().max(1));
        for which in order {
            let r = load(&cfg, threads, &|| {
                let t = make(which)?;
                if described.borrow_mut().insert(which) {
                    println!("  {}", t.describe());
                }
                Ok(t)
            });
            match r {
                Ok(l) => {
                    loads.insert((which, threads), l);
                }
                Err(e) => println!("gdpr: load {threads}t {which}: FAILED: {e}"),
            }
        }
    }
    println!();
    println!(
        "load · N={} · {} inserts each, the TTL sweeper running",
        cfg.records, cfg.records
    );
    println!(
        "  {:<16} {:>7} {:>10} {:>12} {:>9}",
        "target", "threads", "seconds", "inserts/s", "swept"
    );
    for ((which, threads), l) in &loads {
        println!(
            "  {:<16} {:>7} {:>10.1} {:>12.1} {:>9}",
            which,
            threads,
            l.secs,
            cfg.records as f64 / l.secs.max(1e-9),
            l.swept
        );
    }

    // Run phase: every workload on a copy of its target's load.
    let mut results = Vec::new();
    let mut combo = 0usize;
    let mut run_id = 0usize;
    for w in &chosen {
        for &threads in &cfg.threads {
            // Rotate the order of the targets from one combination to the next so that
            // drift in the machine's load does not always favour the same one.
            let mut order = targets.clone();
            let len = order.len().max(1);
            order.rotate_left(combo % len);
            combo += 1;
            let mut outcomes: Vec<Outcome> = Vec::new();
            for which in order {
                let Some(l) = loads.get(&(which, threads)) else {
                    continue;
                };
                run_id += 1;
                let sub = dir.path().join(format!("run-{run_id}"));
                let r = run_one(&cfg, w, l, &sub, &run_id.to_string());
                // The copy is done with: its files go now (the target was dropped).
                let _ = std::fs::remove_dir_all(&sub);
                match r {
                    Ok(o) => outcomes.push(o),
                    Err(e) => {
                        println!("gdpr: {} {}t {which}: FAILED: {e}", w.name, threads);
                    }
                }
            }
            outcomes.sort_by_key(|o| targets.iter().position(|t| *t == o.target));
            print_table(&cfg, w, threads, &mut outcomes);
            for mut o in outcomes {
                let ops: serde_json::Map<String, serde_json::Value> = o
                    .lat
                    .iter_mut()
                    .map(|(op, l)| (op.name().to_owned(), l.summary()))
                    .collect();
                results.push(json!({
                    "workload": w.name,
                    "threads": threads,
                    "target": o.target,
                    "records": cfg.records,
                    "operations": o.ops,
                    "load_seconds": o.load_secs,
                    "run_seconds": o.run_secs,
                    "throughput_ops_per_s": o.throughput(),
                    "process_cpu_seconds": o.cpu_secs,
                    "swept_by_ttl": o.swept,
                    "first_error": o.first_error,
                    "ops": ops,
                }));
            }
        }
    }
    let machine_after = machine();
    println!(
        "load average at end {}",
        machine_after["loadavg"].as_str().unwrap_or("")
    );
    if let Some(path) = &cfg.json {
        let doc = json!({
            "benchmark": "gdprbench",
            "at": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "machine": { "before": machine_before, "after": machine_after },
            "seed": cfg.seed,
            "start_of_each_run": START_NOTE,
            "loads": loads.values().map(|l| json!({
                "target": l.target,
                "threads": l.threads,
                "records": cfg.records,
                "seconds": l.secs,
                "swept_by_ttl": l.swept,
            })).collect::<Vec<_>>(),
            "results": results,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc).expect("json"))
            .unwrap_or_else(|e| eprintln!("gdpr: cannot write {}: {e}", path.display()));
        println!("json: {}", path.display());
    }
}

/// How every run starts, said in the output and the JSON.
const START_NOTE: &str = "each run starts from a copy of one load (one load per target and thread count): \
SQLite files copied after a WAL checkpoint, PostgreSQL by CREATE DATABASE ... TEMPLATE, the bench's key maps \
copied, and the copy's clock set back to the instant the load ended (TTLs run out as right after the load)";

fn print_table(cfg: &Config, w: &Workload, threads: usize, outcomes: &mut [Outcome]) {
    let mix = w
        .mix
        .iter()
        .map(|(p, o)| {
            format!(
                "{} {:.0}%",
                o.name(),
                p * 100.0 / w.mix.iter().map(|x| x.0).sum::<f64>()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    println!();
    println!(
        "{} · {} thread{} · N={} · {} ops · {} keys · {} · each target on a copy of its load",
        w.name,
        threads,
        if threads == 1 { "" } else { "s" },
        cfg.records,
        cfg.operations,
        if w.zipfian { "zipfian" } else { "uniform" },
        mix
    );
    print!("  {:<22}", "throughput (ops/s)");
    for o in outcomes.iter() {
        print!(" {:>14} {:>9.1}", o.target, o.throughput());
    }
    println!();
    if outcomes.iter().any(|o| o.cpu_secs.is_some()) {
        print!("  {:<22}", "cpu per op (ms)");
        for o in outcomes.iter() {
            match o.cpu_ms_per_op() {
                Some(ms) => print!(" {:>14} {:>9.2}", o.target, ms),
                None => print!(" {:>14} {:>9}", o.target, "-"),
            }
        }
        println!();
    }
    // Custodian (each path) against each baseline, and the HTTP path against the library's.
    let find = |name: &str| outcomes.iter().find(|o| o.target == name);
    for (ours, theirs) in [
        ("custodian", "plain-sqlite"),
        ("custodian", "postgres"),
        ("custodian-http", "plain-sqlite"),
        ("custodian-http", "postgres"),
        ("custodian-http", "custodian"),
    ] {
        if let (Some(a), Some(b)) = (find(ours), find(theirs)) {
            println!(
                "  ratio {:<29} {:>6.2}x   (load: {} {:.1} s, {} {:.1} s)",
                format!("{ours} / {theirs}"),
                a.throughput() / b.throughput(),
                ours,
                a.load_secs,
                theirs,
                b.load_secs
            );
        }
    }
    println!(
        "  {:<20} {:<14} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "operation", "target", "count", "p50", "p95", "p99", "max"
    );
    let mut ops: Vec<Op> = outcomes
        .iter()
        .flat_map(|o| o.lat.keys().copied())
        .collect();
    ops.sort();
    ops.dedup();
    for op in ops {
        for (i, o) in outcomes.iter_mut().enumerate() {
            if let Some(l) = o.lat.get_mut(&op) {
                l.ns.sort_unstable();
                println!(
                    "  {:<20} {:<14} {:>6} {:>9} {:>9} {:>9} {:>9}{}",
                    if i == 0 { op.name() } else { "" },
                    o.target,
                    l.ns.len(),
                    us(l.pct(50.0)),
                    us(l.pct(95.0)),
                    us(l.pct(99.0)),
                    us(l.ns.last().map_or(0.0, |n| *n as f64 / 1e3)),
                    if l.errors > 0 {
                        format!("  ({} errors)", l.errors)
                    } else {
                        String::new()
                    }
                );
            }
        }
    }
    for o in outcomes.iter() {
        if let Some(e) = &o.first_error {
            println!("  {}: first error: {e}", o.target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (custodian (b) x) S 1 4242 4242 0 -1 4194560 9141 0 0 0 1234 567 0 0 20 0 \
                    9 0 1000 1 1 18446744073709551615";
        assert_eq!(cpu_secs_of(stat), Some(18.01));
        assert_eq!(cpu_secs_of("4242 (custodian) S 1 2"), None);
        assert_eq!(cpu_secs_of("no parentheses"), None);
        // This process has run this test: some CPU time, read from the real file.
        assert!(process_cpu_secs().is_some_and(|s| s >= 0.0));
    }
}
