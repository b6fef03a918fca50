//! The PostgreSQL server of the benchmarks that compare against one, started by the benchmark
//! itself when none is named: the benchmark runs its own command again under
//! `scripts/with-postgres`, the helper the test suite uses, which starts a cluster on
//! 127.0.0.1 (random port and password, `fsync`, `synchronous_commit` and `full_page_writes`
//! on), hands it over as `TEST_DATABASE_URL`, and stops and removes it when the run ends,
//! however it ends. One helper for both, so the benchmark's server is the tests' server.

use std::path::Path;
use std::process::Command;

/// Set in the environment of the run under the helper, so that it does not start another
/// cluster when the helper found no PostgreSQL binaries (it then runs without a URL, and the
/// PostgreSQL target says it is skipped and why).
const UNDER_HELPER: &str = "BENCH_UNDER_WITH_POSTGRES";

/// Runs this command again under `scripts/with-postgres` and exits with its status, unless a
/// server is already named (`url_given`) or this already is that run.
pub fn rerun_with_cluster_unless(url_given: bool) {
    if url_given || std::env::var_os(UNDER_HELPER).is_some() {
        return;
    }
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/with-postgres");
    let exe = match std::env::current_exe() {
        Ok(exe) if helper.is_file() => exe,
        _ => {
            println!(
                "postgres: no --postgres URL, TEST_DATABASE_URL unset, and no scripts/with-postgres at {} to start a throwaway cluster with",
                helper.display()
            );
            return;
        }
    };
    println!(
        "postgres: no --postgres URL and TEST_DATABASE_URL unset: starting a throwaway cluster (scripts/with-postgres)"
    );
    let status = Command::new("bash")
        .arg(&helper)
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(UNDER_HELPER, "1")
        .status();
    match status {
        Ok(s) => std::process::exit(s.code().unwrap_or(1)),
        Err(e) => {
            eprintln!("postgres: could not run {}: {e}", helper.display());
            std::process::exit(1)
        }
    }
}

/// Whether a PostgreSQL server is named: `--postgres` or a non-empty `TEST_DATABASE_URL`.
pub fn url_given(flag: &Option<String>) -> bool {
    flag.is_some()
        || std::env::var("TEST_DATABASE_URL")
            .ok()
            .is_some_and(|u| !u.is_empty())
}
