//! `custodian-bench`: benchmarks that print ratios against a baseline measured in the same
//! process, on the same disk, in the same run (absolute times on shared machines mean little).

mod backends;
mod chain;
mod fixture;
mod gdpr;
mod lifecycle;
mod micro;
mod rawsqlite;
mod rights;
mod throwaway_pg;

use clap::{Parser, Subcommand};

// The allocator the `custodian` binary runs with (see its `main.rs`), so that what is
// measured here is what runs there; every target of a run shares it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "custodian-bench",
    about = "Custodian benchmarks (ratios against same-run baselines)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Per-record cost of Custodian's write path (validate, encrypt, blind-index, purpose
    /// check, hash-chained audit entry, durable commit) against a plain durable SQLite insert.
    Micro {
        /// Records per target.
        #[arg(long, default_value_t = 2000)]
        records: usize,
    },
    /// The same write and read workload on SQLite and on PostgreSQL, side by side, with the
    /// ratio PostgreSQL / SQLite. Without a URL it starts a throwaway PostgreSQL cluster
    /// (`scripts/with-postgres`); PostgreSQL is skipped (and said so) when none can start.
    Backends {
        /// Operations of each kind per backend.
        #[arg(long, default_value_t = 1000)]
        records: usize,
        /// A PostgreSQL server to use (default: TEST_DATABASE_URL, else a throwaway cluster it
        /// starts and removes). The benchmark works in a schema of its own and drops it afterwards.
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Erasure of a subject holding 1, 1,000 and 100,000 records (the key destruction is
    /// one row whatever the size) and export throughput, against plain SQLite doing the
    /// same row work.
    Rights,
    /// GDPRbench (PVLDB 2020) ported: the controller, customer, processor and regulator
    /// workloads on Custodian (Vault library path, and the real HTTP server on 127.0.0.1),
    /// plain SQLite (same engine, no protections, plain audit row) and GDPR-configured
    /// PostgreSQL (`--postgres`, TEST_DATABASE_URL, or a throwaway cluster it starts), with throughput,
    /// latency percentiles and ratios. The N records are loaded once per target and thread
    /// count; each run starts from a copy of that load.
    Gdpr {
        /// Records loaded (10,000 and 100,000; more needs --large).
        #[arg(long, default_value_t = 10_000)]
        records: u64,
        /// Operations per run (default: records / 10, as GDPRbench).
        #[arg(long)]
        operations: Option<u64>,
        /// Client thread counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        threads: Vec<usize>,
        /// Workloads, comma-separated (controller, customer, processor, regulator, all-ops).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "controller,customer,processor,regulator"
        )]
        workloads: Vec<String>,
        /// Targets, comma-separated (custodian, custodian-http, plain, postgres).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "custodian,custodian-http,plain,postgres"
        )]
        targets: Vec<String>,
        /// Seed of every generator.
        #[arg(long, default_value_t = 2020)]
        seed: u64,
        /// A PostgreSQL server (default: TEST_DATABASE_URL, else a throwaway cluster started
        /// through scripts/with-postgres and removed afterwards), as a user with the CREATEDB
        /// privilege: the benchmark works in databases of its own (each run's a copy of its
        /// load's, made with CREATE DATABASE ... TEMPLATE) and drops them afterwards.
        #[arg(long)]
        postgres: Option<String>,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        /// Allow more than 100,000 records (1,000,000 takes hours on a small machine).
        #[arg(long)]
        large: bool,
        /// Milliseconds between two passes of each target's TTL sweeper.
        #[arg(long, default_value_t = 1000)]
        sweep_ms: u64,
        /// MiB of decoded records each Custodian store keeps between reads (the
        /// `kept_records_mib` setting of `custodian serve`; default: its default, 64).
        #[arg(long)]
        kept_records_mib: Option<usize>,
        /// Milliseconds within which each Custodian vault purges what its erasures deleted
        /// (the `erasure_purge_delay_ms` setting of `custodian serve`; default: its default,
        /// 1000; 0: before each erasure answers).
        #[arg(long)]
        erasure_purge_delay_ms: Option<u64>,
    },
    /// Raw durable SQLite insert rate (WAL, synchronous=FULL) with N rows per commit: the
    /// reference bench/http-load.sh compares Custodian's durable HTTP writes against.
    RawSqlite {
        #[arg(long, default_value_t = 64)]
        rows_per_commit: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Fills the database of a `custodian init` data directory with an audit chain of at
    /// least N entries through the real path (consultations), then times `Vault::verify`;
    /// time `custodian verify` on the same directory afterwards.
    AuditChain {
        /// The data directory (holds root.key; the database is custodian.db in it).
        #[arg(long)]
        data_dir: std::path::PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        /// Subjects (one record each): each consultation of the purpose adds this many entries.
        #[arg(long, default_value_t = 10_000)]
        subjects: u64,
    },
    /// Backup and restore throughput (MB/s, records/s) of the real `custodian backup` and
    /// `custodian restore` on a database of N subjects, against a plain durable file copy.
    /// Build the binary first: cargo build --release -p custodian.
    Lifecycle {
        /// Subjects to load (one small record each).
        #[arg(long, default_value_t = 100_000)]
        subjects: usize,
        /// Interleaved rounds of copy, backup and restore; the median is printed.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

fn main() {
    match Cli::parse().command {
        Command::Micro { records } => micro::run(records),
        Command::Backends { records, postgres } => {
            throwaway_pg::rerun_with_cluster_unless(throwaway_pg::url_given(&postgres));
            backends::run(records, postgres)
        }
        Command::Rights => rights::run(),
        Command::AuditChain {
            data_dir,
            entries,
            subjects,
        } => chain::run(&data_dir, entries, subjects.max(1)),
        Command::RawSqlite {
            rows_per_commit,
            seconds,
        } => rawsqlite::run(rows_per_commit.max(1), seconds),
        Command::Gdpr {
            records,
            operations,
            threads,
            workloads,
            targets,
            seed,
            postgres,
            json,
            large,
            sweep_ms,
            kept_records_mib,
            erasure_purge_delay_ms,
        } => {
            if records > 100_000 && !large {
                eprintln!("gdpr: more than 100,000 records needs --large");
                std::process::exit(2);
            }
            if records < 100 || threads.is_empty() || threads.contains(&0) {
                eprintln!("gdpr: need at least 100 records and thread counts of 1 or more");
                std::process::exit(2);
            }
            if targets.iter().any(|t| t == "postgres") {
                throwaway_pg::rerun_with_cluster_unless(throwaway_pg::url_given(&postgres));
            }
            gdpr::run(gdpr::Config {
                records,
                operations: operations.unwrap_or(records / 10).max(1),
                threads,
                workloads,
                targets,
                seed,
                postgres,
                json,
                sweep_every: std::time::Duration::from_millis(sweep_ms.max(10)),
                kept_records_mib,
                erasure_purge_delay_ms,
            })
        }
        Command::Lifecycle { subjects, rounds } => lifecycle::run(subjects, rounds.max(1)),
    }
}
