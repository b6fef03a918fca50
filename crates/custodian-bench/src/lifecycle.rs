//! Backup and restore throughput: a SQLite database of N subjects (one small record each,
//! loaded through `Vault::create_subject`), backed up and restored by the real `custodian`
//! binary (`custodian backup --out`, `custodian restore`) run as subprocesses against that
//! data directory, against a plain durable copy of the same database file
//! (`std::fs::copy` + fsync) measured in the same run on the same disk.

use custodian_core::category::{DataCategory, SubjectCategory};
use custodian_core::operation::Operation;
use custodian_core::principal::Role;
use custodian_core::purpose::{LawfulBasis, Purpose, PurposeName};
use custodian_core::record::{FieldInput, FieldName, FieldValue, RecordMeta};
use custodian_core::region::Region;
use custodian_crypto::keys::RootKey;
use custodian_store::sqlite::SqliteStore;
use custodian_vault::views::{NewRecord, NewSubject};
use custodian_vault::{CallContext, SystemClock, Vault};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `custodian` binary built beside this one (`cargo build --release -p custodian`).
fn custodian_binary() -> PathBuf {
    let me = std::env::current_exe().expect("own path");
    let bin = me.with_file_name("custodian");
    if !bin.is_file() {
        eprintln!(
            "lifecycle: no custodian binary at {}; build it first: cargo build --release -p custodian",
            bin.display()
        );
        std::process::exit(2);
    }
    bin
}

/// Loads `n` subjects into a fresh database at `db` through the vault, and writes the
/// root key beside it as `custodian init` would. Returns the load time.
fn load(db: &Path, key_file: &Path, n: usize) -> Duration {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let root = RootKey::generate(1).expect("root key");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(key_file)
        .expect("root key file");
    f.write_all(root.encode().as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .expect("write root key");
    let vault = Vault::new(
        Arc::new(SqliteStore::open(db).expect("open")),
        root,
        Arc::new(SystemClock),
        Region::defaults(),
        None,
    );
    let ctx = CallContext::default();
    let c = crate::fixture::controller(&vault, "Bench");
    let admin = crate::fixture::principal(&vault, &c, Role::ControllerAdmin, "bench", 3600);
    let purpose = PurposeName::parse("bench").expect("name");
    vault
        .document_purpose(
            &admin,
            Purpose {
                name: purpose.clone(),
                description: "benchmark".into(),
                lawful_basis: LawfulBasis::Contract,
                categories: [DataCategory::parse("user").expect("cat")].into(),
                operations: [Operation::Collection].into(),
                retention_days: 365,
            },
            &ctx,
        )
        .expect("purpose");
    let app = crate::fixture::principal(&vault, &c, Role::ControllerApp, "bench", 3600);
    let f = |s: &str| FieldName::parse(s).expect("field");
    let text = |c: &str, v: String| FieldInput {
        category: DataCategory::parse(c).expect("cat"),
        value: FieldValue::Text(v),
    };
    let start = Instant::now();
    for i in 0..n {
        let fields = BTreeMap::from([
            (
                f("name"),
                text("user.name", format!("Person {i} Lastname{}", i % 97)),
            ),
            (
                f("email"),
                text("user.contact.email", format!("person{i}@example.org")),
            ),
        ]);
        vault
            .create_subject(
                &app,
                &purpose,
                NewSubject {
                    category: SubjectCategory::Customer,
                    record: Some(NewRecord {
                        fields,
                        meta: RecordMeta::default(),
                        expires_at: None,
                    }),
                },
                &ctx,
            )
            .expect("subject");
        if (i + 1) % 20_000 == 0 {
            eprintln!("  loaded {} subjects", i + 1);
        }
    }
    let took = start.elapsed();
    // Dropping the vault closes the database, which checkpoints and removes the WAL:
    // what is copied, backed up and restored below is one self-contained file.
    drop(vault);
    took
}

/// A `custodian` command against `data_dir`, from `cwd`, with no inherited configuration.
fn custodian(bin: &Path, cwd: &Path, data_dir: &Path, args: &[&str]) -> Duration {
    let mut cmd = Command::new(bin);
    cmd.current_dir(cwd)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CUSTODIAN_") {
            cmd.env_remove(&k);
        }
    }
    let start = Instant::now();
    let out = cmd.output().expect("run custodian");
    let took = start.elapsed();
    if !out.status.success() {
        eprintln!(
            "custodian {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
    took
}

/// The baseline: a plain copy of the database file, made durable.
fn copy(from: &Path, to: &Path) -> Duration {
    let start = Instant::now();
    std::fs::copy(from, to).expect("copy");
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .expect("fsync");
    let took = start.elapsed();
    std::fs::remove_file(to).expect("remove copy");
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn run(subjects: usize, rounds: usize) {
    let bin = custodian_binary();
    let work = tempfile::tempdir_in(".").expect("tempdir on the working directory's disk");
    let data_dir = work.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let db = data_dir.join("custodian.db");

    // The load is preparation, not what is measured: it runs on tmpfs when there is one
    // (one fsync per subject on a disk would take minutes), then the finished database file
    // moves to the working directory's disk, where everything below is measured.
    let staging = Path::new("/dev/shm")
        .is_dir()
        .then(|| tempfile::tempdir_in("/dev/shm").ok())
        .flatten();
    let on_tmpfs = staging.is_some();
    let load_dir = staging
        .as_ref()
        .map_or(data_dir.clone(), |d| d.path().to_path_buf());
    eprintln!(
        "lifecycle: loading {subjects} subjects into {} ...",
        load_dir.display()
    );
    let load_time = load(
        &load_dir.join("custodian.db"),
        &data_dir.join("root.key"),
        subjects,
    );
    if on_tmpfs {
        std::fs::copy(load_dir.join("custodian.db"), &db).expect("move the database to disk");
        std::fs::File::open(&db)
            .and_then(|f| f.sync_all())
            .expect("fsync");
    }
    drop(staging);
    let bytes = std::fs::metadata(&db).expect("database").len();
    let mb = bytes as f64 / 1e6;

    let backup = work.path().join("bench.backup");
    let copy_to = work.path().join("copy.db");
    let b = backup.to_str().expect("utf-8 path");
    let (mut copies, mut backups, mut restores) = (Vec::new(), Vec::new(), Vec::new());
    // Interleaved, so that drift in the machine's load hits all three alike.
    for _ in 0..rounds {
        copies.push(copy(&db, &copy_to));
        std::fs::remove_file(&backup).ok();
        backups.push(custodian(
            &bin,
            work.path(),
            &data_dir,
            &["backup", "--out", b, "--quiet"],
        ));
        restores.push(custodian(
            &bin,
            work.path(),
            &data_dir,
            &["restore", b, "--quiet"],
        ));
    }
    let backup_bytes = std::fs::metadata(&backup).expect("backup").len();
    let (c, bk, rs) = (median(copies), median(backups), median(restores));
    let line = |what: &str, t: Duration| {
        println!(
            "  {what:<52} {:>8.2} s  {:>8.1} MB/s  {:>10.0} records/s",
            t.as_secs_f64(),
            mb / t.as_secs_f64(),
            subjects as f64 / t.as_secs_f64()
        );
    };
    println!(
        "lifecycle: {subjects} subjects (one record of 2 fields each), SQLite database of {mb:.1} MB, backup file {:.1} MB; median of {rounds} interleaved rounds",
        backup_bytes as f64 / 1e6
    );
    println!(
        "  (load through Vault::create_subject: {:.1} s, {:.0} subjects/s{})",
        load_time.as_secs_f64(),
        subjects as f64 / load_time.as_secs_f64(),
        if on_tmpfs { ", on tmpfs" } else { "" }
    );
    line("baseline  plain copy of the database file + fsync", c);
    line("custodian backup --out (snapshot, encrypt, manifest)", bk);
    line("custodian restore (decrypt, check, re-apply, re-sign)", rs);
    println!(
        "  ratio backup / copy: {:.2}x   restore / copy: {:.2}x",
        bk.as_secs_f64() / c.as_secs_f64(),
        rs.as_secs_f64() / c.as_secs_f64()
    );
}
