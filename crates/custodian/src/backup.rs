//! Encrypted, integrity-checked backups (DPA §10(f)) and restore.
//!
//! A backup is a consistent snapshot of the database (`VACUUM INTO`, taken while the server
//! runs) encrypted in 1 MiB chunks with AES-256-GCM under a key derived from the root key.
//! Each chunk's associated data binds the backup id, its index and whether it is the last,
//! so a reordered, dropped or truncated chunk fails to open. The first sealed block is the
//! manifest (sizes, SHA-256 of the plaintext, chunk count); the file starts with a short
//! clear header naming the format and the backup id.
//!
//! The clear header is bound into the manifest's associated data, so every byte of the
//! file is authenticated.
//!
//! Restore decrypts and checks everything into a temporary file first, re-applies the
//! erasure ledger and the ledger of destructions, appends a "restored" entry to every chain, re-signs checkpoints, and
//! only then renames the file over the live database: it never half-restores.

use crate::config::Config;
use custodian_crypto::hash::Sha256;
use custodian_crypto::keys::{RootKey, open_blob, seal_blob};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 16] = b"CUSTODIAN-BKP-1\n";
const FORMAT: &str = "custodian.backup/v1";
const CHUNK: usize = 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    backup_id: String,
    root_key_version: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub backup_id: String,
    #[serde(with = "custodian_core::rfc3339")]
    pub created_at: time::OffsetDateTime,
    pub database_bytes: u64,
    pub database_sha256: String,
    pub chunks: u64,
    /// Heads of every audit chain at the time of the backup.
    pub chain_heads: Vec<(String, u64)>,
    pub controllers: u64,
    pub subjects: u64,
    pub records: u64,
}

use custodian_core::hex::encode as hex;

fn backup_key(root: &RootKey) -> zeroize::Zeroizing<[u8; 32]> {
    root.derive("backup-encryption")
}

/// The manifest's associated data binds the exact bytes of the clear header, so that no
/// byte of the file goes unauthenticated (a changed format string would otherwise pass).
fn manifest_label(id: &str, header: &[u8]) -> String {
    let mut h = Sha256::default();
    h.update(header);
    format!("{id}/manifest/{}", hex(&h.finish()))
}

fn label(id: &str, index: u64, last: bool) -> String {
    format!("{id}/{index}/{}", if last { "last" } else { "more" })
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    pb
}

fn write_block(out: &mut impl Write, sealed: &[u8]) -> std::io::Result<()> {
    out.write_all(&(sealed.len() as u32).to_be_bytes())?;
    out.write_all(sealed)
}

fn read_block(input: &mut impl Read, max: usize) -> Result<Vec<u8>, String> {
    let mut len = [0u8; 4];
    input
        .read_exact(&mut len)
        .map_err(|_| "the backup is truncated".to_owned())?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err("the backup is malformed (a block is larger than allowed)".into());
    }
    let mut buf = vec![0u8; len];
    input
        .read_exact(&mut buf)
        .map_err(|_| "the backup is truncated".to_owned())?;
    Ok(buf)
}

fn count(conn: &rusqlite::Connection, table: &str) -> u64 {
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap_or(0) as u64
}

/// Takes an online backup of the database into `out`. Returns the manifest.
/// Backups and restores here are of the embedded SQLite database; PostgreSQL has its own
/// (pg_dump, continuous archiving): refused here with a clear message.
fn sqlite_only(cfg: &Config) -> Result<(), String> {
    match cfg.postgres_url() {
        Some(_) => Err("custodian backup and restore work on the embedded SQLite database; for PostgreSQL use its own backups (pg_dump or continuous archiving)".into()),
        None => Ok(()),
    }
}

pub fn backup(cfg: &Config, root: &RootKey, out: &Path, quiet: bool) -> Result<Manifest, String> {
    sqlite_only(cfg)?;
    let db = cfg.database_path();
    if !db.exists() {
        return Err(format!("no database at {}", db.display()));
    }
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // The snapshot is the database in clear (fields stay encrypted, the rest does not):
    // it goes into a private (0700) temporary directory, removed on every path out.
    let snapshot_dir = tempfile::Builder::new()
        .prefix(".custodian-snapshot")
        .tempdir_in(dir)
        .map_err(|e| {
            format!(
                "cannot create a temporary directory in {}: {e}",
                dir.display()
            )
        })?;
    let snapshot = snapshot_dir.path().join("snapshot.db");
    // A separate connection: the snapshot is one read transaction, writers go on.
    let conn = rusqlite::Connection::open(&db)
        .map_err(|e| format!("cannot open {}: {e}", db.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(30)).ok();
    // As the store's own connections: nothing spills to an unlinked temporary file.
    conn.execute_batch("PRAGMA temp_store = MEMORY;")
        .map_err(|e| format!("cannot configure the snapshot's connection: {e}"))?;
    conn.execute("VACUUM INTO ?1", [snapshot.to_string_lossy()])
        .map_err(|e| format!("snapshot failed: {e}"))?;
    let snap = rusqlite::Connection::open(&snapshot).map_err(|e| e.to_string())?;
    let chain_heads: Vec<(String, u64)> = {
        let mut st = snap
            .prepare("SELECT chain, seq FROM audit_heads ORDER BY chain")
            .map_err(|e| e.to_string())?;
        st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?
    };
    let (controllers, subjects, records) = (
        count(&snap, "controllers"),
        count(&snap, "subjects"),
        count(&snap, "records"),
    );
    drop(snap);

    // The snapshot is read twice, a chunk at a time, never whole: once for the size and
    // SHA-256 the manifest (written before the chunks) holds, once to seal it. A database
    // of any size backs up in a few MiB of memory.
    let (database_bytes, database_sha256) = digest_file(&snapshot)?;
    let id = hex(&custodian_crypto::random::id_bytes());
    let chunks = database_bytes.div_ceil(CHUNK as u64).max(1);
    let manifest = Manifest {
        backup_id: id.clone(),
        created_at: time::OffsetDateTime::now_utc(),
        database_bytes,
        database_sha256,
        chunks,
        chain_heads,
        controllers,
        subjects,
        records,
    };
    let key = backup_key(root);
    let tmp_out = out.with_extension("partial");
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp_out)
            .map_err(|e| format!("cannot create {}: {e}", tmp_out.display()))?
    };
    let header = serde_json::to_vec(&Header {
        format: FORMAT.into(),
        backup_id: id.clone(),
        root_key_version: root.version(),
    })
    .expect("serialisable");
    let io = |e: std::io::Error| format!("cannot write the backup: {e}");
    f.write_all(MAGIC).map_err(io)?;
    write_block(&mut f, &header).map_err(io)?;
    write_block(
        &mut f,
        &seal_blob(
            &key,
            &manifest_label(&id, &header),
            &serde_json::to_vec(&manifest).expect("serialisable"),
        ),
    )
    .map_err(io)?;
    let pb = if quiet {
        ProgressBar::hidden()
    } else {
        bar(manifest.database_bytes, "backup")
    };
    let mut input =
        std::fs::File::open(&snapshot).map_err(|e| format!("cannot read the snapshot: {e}"))?;
    let mut buf = vec![0u8; CHUNK];
    let mut sha = Sha256::default();
    // An empty database still makes one (empty) chunk, the last.
    for i in 0..chunks {
        let n = read_chunk(&mut input, &mut buf)
            .map_err(|e| format!("cannot read the snapshot: {e}"))?;
        let chunk = &buf[..n];
        sha.update(chunk);
        let last = i + 1 == chunks;
        write_block(&mut f, &seal_blob(&key, &label(&id, i, last), chunk)).map_err(io)?;
        pb.inc(n as u64);
    }
    pb.finish_and_clear();
    // Nobody else writes the private snapshot; should it change between the two readings
    // anyway, the backup would not restore, so it is refused now.
    if hex(&sha.finish()) != manifest.database_sha256 {
        return Err("the snapshot changed while it was being backed up".into());
    }
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp_out, out).map_err(io)?;
    Ok(manifest)
}

/// The size and SHA-256 of the file at `path`, read a chunk at a time.
fn digest_file(path: &Path) -> Result<(u64, String), String> {
    let read = |e: std::io::Error| format!("cannot read the snapshot: {e}");
    let mut input = std::fs::File::open(path).map_err(read)?;
    let mut buf = vec![0u8; CHUNK];
    let (mut sha, mut bytes) = (Sha256::default(), 0u64);
    loop {
        let n = read_chunk(&mut input, &mut buf).map_err(read)?;
        sha.update(&buf[..n]);
        bytes += n as u64;
        if n < CHUNK {
            return Ok((bytes, hex(&sha.finish())));
        }
    }
}

/// Fills `buf` from `input`; fewer bytes only at the end of the file.
fn read_chunk(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Decrypts and checks a backup into `dest`. Any mismatch is an error and `dest` is removed.
fn unpack(root: &RootKey, file: &Path, dest: &Path, quiet: bool) -> Result<Manifest, String> {
    let result = (|| {
        let mut input = std::io::BufReader::new(
            std::fs::File::open(file)
                .map_err(|e| format!("cannot open {}: {e}", file.display()))?,
        );
        let mut magic = [0u8; 16];
        input
            .read_exact(&mut magic)
            .map_err(|_| "not a Custodian backup (too short)".to_owned())?;
        if &magic != MAGIC {
            return Err("not a Custodian backup (wrong magic bytes)".to_owned());
        }
        let header_bytes = read_block(&mut input, 4096)?;
        let header: Header = serde_json::from_slice(&header_bytes)
            .map_err(|_| "the backup header is malformed".to_owned())?;
        if header.format != FORMAT {
            return Err(format!(
                "the backup header names format {:?}, not {FORMAT:?}: altered, or not a backup this version reads",
                header.format
            ));
        }
        if header.root_key_version != root.version() {
            return Err(format!(
                "the backup was made under root key version {}, this root key is version {}",
                header.root_key_version,
                root.version()
            ));
        }
        let key = backup_key(root);
        let id = header.backup_id;
        let manifest: Manifest = open_blob(
            &key,
            &manifest_label(&id, &header_bytes),
            &read_block(&mut input, 1 << 20)?,
        )
        .map_err(|_| {
            "the backup does not open with this root key, or its header or manifest was altered"
                .to_owned()
        })
        .and_then(|m| {
            serde_json::from_slice(&m).map_err(|_| "the backup manifest is malformed".to_owned())
        })?;
        if manifest.backup_id != id {
            return Err("the manifest belongs to another backup".into());
        }
        let mut out = std::fs::File::create(dest)
            .map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
        let mut sha = Sha256::default();
        let mut bytes = 0u64;
        let pb = if quiet {
            ProgressBar::hidden()
        } else {
            bar(manifest.database_bytes, "restore")
        };
        for i in 0..manifest.chunks {
            let last = i + 1 == manifest.chunks;
            let sealed = read_block(&mut input, CHUNK + 64)?;
            let plain = open_blob(&key, &label(&id, i, last), &sealed)
                .map_err(|_| format!("chunk {i} of the backup fails its authentication tag: altered, reordered or truncated"))?;
            sha.update(&plain);
            bytes += plain.len() as u64;
            out.write_all(&plain).map_err(|e| e.to_string())?;
            pb.inc(plain.len() as u64);
        }
        pb.finish_and_clear();
        let mut rest = [0u8; 1];
        if input.read(&mut rest).map_err(|e| e.to_string())? != 0 {
            return Err("the backup has trailing bytes after its last chunk".into());
        }
        if bytes != manifest.database_bytes || hex(&sha.finish()) != manifest.database_sha256 {
            return Err(
                "the restored database does not match the manifest's size and SHA-256".into(),
            );
        }
        out.sync_all().map_err(|e| e.to_string())?;
        Ok(manifest)
    })();
    if result.is_err() {
        std::fs::remove_file(dest).ok();
    }
    result
}

/// Checks a backup fully without restoring it.
pub fn check(root: &RootKey, file: &Path) -> Result<Manifest, String> {
    let tmp = tempfile::NamedTempFile::new()
        .map_err(|e| e.to_string())?
        .into_temp_path();
    let m = unpack(root, file, &tmp, true)?;
    Ok(m)
}

/// Holds the data directory's lock: one server (or one restore) at a time.
pub struct DataLock(#[allow(dead_code)] std::fs::File);

pub fn lock_data_dir(cfg: &Config) -> Result<DataLock, String> {
    let path = cfg.data_dir.join("custodian.lock");
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| e.to_string())?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    f.try_lock().map_err(|_| {
        format!(
            "{} is locked: a server is running on this data directory; stop it first",
            cfg.data_dir.display()
        )
    })?;
    Ok(DataLock(f))
}

/// Restores `file` over the configured database. The server must be stopped.
pub fn restore(cfg: &Config, root: RootKey, file: &Path, quiet: bool) -> Result<String, String> {
    sqlite_only(cfg)?;
    let _lock = lock_data_dir(cfg)?;
    let db = cfg.database_path();
    let tmp: PathBuf = db.with_extension("restore-tmp");
    std::fs::remove_file(&tmp).ok();
    let manifest = unpack(&root, file, &tmp, quiet)?;
    let prepared = (|| -> Result<String, String> {
        let restored = custodian_store::sqlite::SqliteStore::open(&tmp)
            .map_err(|e| format!("the restored database does not open: {e}"))?;
        restored
            .integrity_check()
            .map_err(|e| format!("the restored database fails its integrity check: {e}"))?;
        // Erasures made since the backup: from the live database's ledger (when it still
        // opens) and from the ledger kept beside the checkpoints.
        let mut ledger = custodian_vault::ledger::read(&cfg.checkpoint_path())
            .map_err(|e| format!("cannot read the erasure ledger: {e}"))?;
        // Destructions likewise: a controller destroyed since the backup stays destroyed.
        let mut destructions =
            custodian_vault::ledger::read_destructions(&cfg.checkpoint_path())
                .map_err(|e| format!("cannot read the ledger of destructions: {e}"))?;
        if db.exists()
            && let Ok(live) = custodian_store::sqlite::SqliteStore::open(&db)
        {
            use custodian_store::Store;
            for c in live.controllers().unwrap_or_default() {
                if let Ok(Some(text)) = live.destruction_certificate(&c.controller.id)
                    && let Ok(cert) = serde_json::from_str(&text)
                {
                    destructions.push(cert);
                }
            }
            if let Ok(entries) = live.erasures() {
                ledger.extend(
                    entries
                        .into_iter()
                        .map(|e| custodian_vault::ledger::LedgerEntry {
                            controller: e.controller,
                            subject: e.subject,
                            record: None,
                            at: e.erased_at,
                        }),
                );
            }
        }
        let vault = custodian_vault::Vault::new(
            std::sync::Arc::new(restored),
            root,
            std::sync::Arc::new(custodian_vault::SystemClock),
            custodian_core::region::Region::defaults(),
            None,
        );
        let destroyed = vault
            .reapply_destructions(&destructions)
            .map_err(|e| format!("re-applying destructions failed: {e}"))?;
        let (subjects, records) = vault
            .reapply_erasures(&ledger)
            .map_err(|e| format!("re-applying erasures failed: {e}"))?;
        vault
            .note_restore(&manifest.backup_id, manifest.created_at)
            .map_err(|e| format!("recording the restore failed: {e}"))?;
        Ok(format!(
            "restored backup {} taken {} ({} controllers, {} subjects, {} records); re-applied {subjects} subject erasure(s) and {records} record erasure(s), and {destroyed} controller destruction(s), from the ledger",
            manifest.backup_id,
            manifest.created_at,
            manifest.controllers,
            manifest.subjects,
            manifest.records
        ))
    })();
    let summary = match prepared {
        Ok(s) => s,
        Err(e) => {
            std::fs::remove_file(&tmp).ok();
            for ext in ["restore-tmp-wal", "restore-tmp-shm"] {
                std::fs::remove_file(db.with_extension(ext)).ok();
            }
            return Err(e);
        }
    };
    // The history after the backup is gone from the database; keep the checkpoints that
    // saw it as evidence, then sign the restored heads.
    let cp = cfg.checkpoint_path();
    if cp.exists() {
        let archive = cp.join(format!(
            "superseded-{}",
            time::OffsetDateTime::now_utc().unix_timestamp()
        ));
        std::fs::create_dir_all(&archive).map_err(|e| e.to_string())?;
        for entry in std::fs::read_dir(&cp).map_err(|e| e.to_string())? {
            let p = entry.map_err(|e| e.to_string())?.path();
            if p.to_string_lossy().ends_with(".checkpoint.json") {
                std::fs::rename(&p, archive.join(p.file_name().expect("file")))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    for ext in ["wal", "shm"] {
        let side = PathBuf::from(format!("{}-{ext}", db.display()));
        std::fs::remove_file(&side).ok();
    }
    std::fs::rename(&tmp, &db)
        .map_err(|e| format!("cannot move the restored database into place: {e}"))?;
    if let Some(dir) = db.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
    }
    let vault = crate::serve::open_vault(cfg)?;
    vault
        .checkpoint()
        .map_err(|e| format!("signing the restored chain heads failed: {e}"))?;
    Ok(summary)
}

/// One scheduled backup into `dir`, then deletes all but the newest `backup_keep`.
pub fn scheduled(cfg: &Config, dir: &Path) -> Result<PathBuf, String> {
    let root = crate::keyfile::load(cfg.root_key.as_ref(), &cfg.root_key_path())?;
    crate::keyfile::private_dir(dir)?;
    let name = format!(
        "custodian-{}.backup",
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    );
    let path = dir.join(name);
    backup(cfg, &root, &path, true)?;
    let mut existing: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("custodian-") && n.ends_with(".backup"))
        })
        .collect();
    existing.sort();
    let excess = existing.len().saturating_sub(cfg.backup_keep.max(1));
    for old in &existing[..excess] {
        std::fs::remove_file(old)
            .map_err(|e| format!("cannot delete old backup {}: {e}", old.display()))?;
    }
    Ok(path)
}
