//! `custodian-bench`: benchmarks that print ratios against a baseline measured in the same
//! process, on the same disk, in the same run (absolute times on shared machines mean little).

mod backends;
mod micro;

use clap::{Parser, Subcommand};

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
    /// ratio PostgreSQL / SQLite. PostgreSQL is skipped (and said so) without a URL.
    Backends {
        /// Operations of each kind per backend.
        #[arg(long, default_value_t = 1000)]
        records: usize,
        /// A PostgreSQL server to use (default: TEST_DATABASE_URL). The benchmark works in a
        /// schema of its own and drops it afterwards.
        #[arg(long)]
        postgres: Option<String>,
    },
}

fn main() {
    match Cli::parse().command {
        Command::Micro { records } => micro::run(records),
        Command::Backends { records, postgres } => backends::run(records, postgres),
    }
}
