//! Runs every fuzz target under the seeded random driver, bounded in inputs and time
//! (`CUSTODIAN_FUZZ_ITERS`, default 50 000 per target; `CUSTODIAN_FUZZ_SEED`).

use custodian_fuzz::harness::*;
use std::time::Duration;

fn settings() -> (u64, usize) {
    let seed = std::env::var("CUSTODIAN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED);
    let iters = std::env::var("CUSTODIAN_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    (seed, iters)
}

const BUDGET: Duration = Duration::from_secs(20);

#[test]
fn json_bodies() {
    let (seed, iters) = settings();
    let n = drive(
        seed,
        &json_seeds(),
        iters,
        BUDGET,
        custodian_fuzz::json_bodies,
    );
    println!("fuzz json_bodies: {n} inputs (seed {seed})");
}

#[test]
fn lookup_normalisers() {
    let (seed, iters) = settings();
    let n = drive(
        seed,
        &lookup_seeds(),
        iters,
        BUDGET,
        custodian_fuzz::lookup_normalisers,
    );
    println!("fuzz lookup_normalisers: {n} inputs (seed {seed})");
}

#[test]
fn tokens() {
    let (seed, iters) = settings();
    let n = drive(seed, &token_seeds(), iters, BUDGET, custodian_fuzz::tokens);
    println!("fuzz tokens: {n} inputs (seed {seed})");
}

#[test]
fn audit_entries() {
    let (seed, iters) = settings();
    let n = drive(
        seed,
        &audit_seeds(),
        iters,
        BUDGET,
        custodian_fuzz::audit_entries,
    );
    println!("fuzz audit_entries: {n} inputs (seed {seed})");
}

#[test]
fn field_sets() {
    let (seed, iters) = settings();
    let n = drive(
        seed,
        &field_set_seeds(),
        iters,
        BUDGET,
        custodian_fuzz::field_sets,
    );
    println!("fuzz field_sets: {n} inputs (seed {seed})");
}
