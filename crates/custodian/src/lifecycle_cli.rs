//! Lifecycle commands: retention, backups, termination, legal holds, certificates.

use crate::backup;
use crate::config::Config;
use crate::keyfile;
use crate::serve::open_vault;
use clap::Subcommand;
use custodian_core::ids::ControllerId;
use custodian_core::policy::OperatorGrant;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum TerminateCommand {
    /// Starts termination (§14): processing stops; export and destruction become possible.
    Start {
        #[arg(long)]
        controller: String,
    },
    /// Writes the full export for retrieval (subjects.jsonl, audit.jsonl, checkpoints.json,
    /// manifest.json with SHA-256 checksums) into a new directory (mode 0700).
    Export {
        #[arg(long)]
        controller: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Shreds the controller key, deletes its rows, and writes the signed certificate of
    /// destruction. Refused under a legal hold, and before termination started.
    Destroy {
        #[arg(long)]
        controller: String,
        /// Where to write the certificate (default: print it).
        #[arg(long)]
        certificate_out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Places a legal hold (§14): the data is sealed, unprocessable and not destroyable.
    Place {
        #[arg(long)]
        controller: String,
        /// The law or order that forbids destruction.
        #[arg(long)]
        basis: String,
    },
    /// Lifts the hold in force; the controller returns to its previous status.
    Lift {
        #[arg(long)]
        controller: String,
    },
}

fn controller(s: &str) -> Result<ControllerId, String> {
    ControllerId::parse(s).map_err(|e| format!("--controller: {e}"))
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

pub fn retention(
    cfg: &Config,
    sweep: bool,
    controller_filter: Option<&str>,
) -> Result<ExitCode, String> {
    let vault = open_vault(cfg)?;
    if sweep {
        let r = vault.sweep_retention_backlog(1000).map_err(err)?;
        println!(
            "erased {} expired record(s); {} controller(s) held back by a legal hold or termination",
            r.erased_records, r.held_back
        );
        return Ok(ExitCode::SUCCESS);
    }
    let filter = controller_filter.map(controller).transpose()?;
    let schedule = vault.expiry_schedule(filter.as_ref()).map_err(err)?;
    if schedule.is_empty() {
        println!("no records");
    }
    println!(
        "{:<32} {:<24} {:<12} {:>10}",
        "controller", "purpose", "expires on", "records"
    );
    for b in schedule {
        println!(
            "{:<32} {:<24} {:<12} {:>10}",
            b.controller.as_str(),
            b.purpose.as_str(),
            b.day.to_string(),
            b.records
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn backup_cmd(cfg: &Config, out: &std::path::Path, quiet: bool) -> Result<ExitCode, String> {
    let root = keyfile::load(cfg.root_key.as_ref(), &cfg.root_key_path())?;
    let started = std::time::Instant::now();
    let m = backup::backup(cfg, &root, out, quiet)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "backup {} written to {}: {} bytes, {} controllers, {} subjects, {} records, in {:.2}s ({:.1} MB/s)",
        m.backup_id,
        out.display(),
        m.database_bytes,
        m.controllers,
        m.subjects,
        m.records,
        secs,
        m.database_bytes as f64 / 1e6 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn restore_cmd(
    cfg: &Config,
    file: &std::path::Path,
    quiet: bool,
    check_only: bool,
) -> Result<ExitCode, String> {
    let root = keyfile::load(cfg.root_key.as_ref(), &cfg.root_key_path())?;
    if check_only {
        let m = backup::check(&root, file)?;
        println!(
            "backup {} is intact: {} bytes, {} subjects, {} records, taken {}",
            m.backup_id, m.database_bytes, m.subjects, m.records, m.created_at
        );
        return Ok(ExitCode::SUCCESS);
    }
    let started = std::time::Instant::now();
    let summary = backup::restore(cfg, root, file, quiet)?;
    println!("{summary} in {:.2}s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

pub fn terminate(cfg: &Config, cmd: &TerminateCommand) -> Result<ExitCode, String> {
    let vault = open_vault(cfg)?;
    let op = OperatorGrant::local_cli();
    match cmd {
        TerminateCommand::Start { controller: c } => {
            let status = vault
                .start_termination(op.actor(), &controller(c)?)
                .map_err(err)?;
            println!("controller {c} is now {}", status.as_str());
        }
        TerminateCommand::Export { controller: c, out } => {
            let m = vault
                .export_controller(op.actor(), &controller(c)?, out)
                .map_err(err)?;
            println!(
                "exported {} subjects and {} records to {}",
                m.subjects,
                m.records,
                out.display()
            );
            for f in &m.files {
                println!("  {}  {:>10} bytes  sha256 {}", f.name, f.bytes, f.sha256);
            }
        }
        TerminateCommand::Destroy {
            controller: c,
            certificate_out,
        } => {
            let cert = vault
                .destroy_controller(&op, &controller(c)?)
                .map_err(err)?;
            let text = serde_json::to_string_pretty(&cert).expect("serialisable");
            match certificate_out {
                Some(path) => {
                    custodian_vault::lifecycle::save_certificate(path, &cert).map_err(err)?;
                    println!(
                        "destroyed {} subjects and {} records; certificate written to {}",
                        cert.subjects,
                        cert.records,
                        path.display()
                    );
                }
                None => println!("{text}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn legal_hold(cfg: &Config, cmd: &HoldCommand) -> Result<ExitCode, String> {
    let vault = open_vault(cfg)?;
    let op = OperatorGrant::local_cli();
    let status = match cmd {
        HoldCommand::Place {
            controller: c,
            basis,
        } => vault.place_legal_hold(&op, &controller(c)?, basis),
        HoldCommand::Lift { controller: c } => vault.lift_legal_hold(&op, &controller(c)?),
    }
    .map_err(err)?;
    println!("controller status: {}", status.as_str());
    Ok(ExitCode::SUCCESS)
}

/// Checks a certificate of destruction against a trusted public key: the one given, or
/// this deployment's (derived from its root key).
pub fn verify_certificate(
    cfg: &Config,
    file: &std::path::Path,
    public_key: Option<&str>,
) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let cert: custodian_vault::lifecycle::Certificate =
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a certificate of destruction: {e}",
                file.display()
            )
        })?;
    let key = trusted_key(cfg, public_key)?;
    match cert.verify(&key) {
        Ok(()) => {
            println!(
                "certificate ok: controller {} ({}) destroyed at {}: {} subjects, {} records; audit chain head {} at entry {}",
                cert.controller,
                cert.controller_name,
                cert.destroyed_at,
                cert.subjects,
                cert.records,
                cert.audit_chain_head,
                cert.audit_chain_seq
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            println!("certificate INVALID: {why}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Checks a controller export (`terminate export`): the manifest's signature against a
/// trusted public key (the one given, or this deployment's), then every listed file's size
/// and SHA-256. Exit 0 when it holds, 1 when not.
pub fn verify_export(
    cfg: &Config,
    dir: &std::path::Path,
    public_key: Option<&str>,
) -> Result<ExitCode, String> {
    let key = trusted_key(cfg, public_key)?;
    let checked = custodian_vault::lifecycle::read_manifest(dir)
        .map_err(|e| e.to_string())
        .and_then(|m| m.verify(&key).map(|()| m));
    match checked {
        Ok(m) => {
            println!(
                "export ok: controller {} exported at {}: {} subjects, {} records, {} files as listed",
                m.controller,
                m.created_at,
                m.subjects,
                m.records,
                m.files.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            println!("export INVALID: {why}");
            Ok(ExitCode::from(1))
        }
    }
}

/// The public key a signature must be made with: `--public-key` (hex), or this
/// deployment's, derived from its root key.
fn trusted_key(cfg: &Config, public_key: Option<&str>) -> Result<Vec<u8>, String> {
    match public_key {
        Some(h) => custodian_core::hex::decode(h)
            .filter(|k| k.len() == 32)
            .ok_or_else(|| "--public-key must be 64 hex characters".to_owned()),
        None => {
            let root = keyfile::load(cfg.root_key.as_ref(), &cfg.root_key_path()).map_err(|e| {
                format!("{e}\n(or pass --public-key with the deployment's public key)")
            })?;
            Ok(custodian_crypto::sign::Signer::from_root(&root)
                .public_key()
                .to_vec())
        }
    }
}
