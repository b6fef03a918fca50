//! Signed checkpoints of every chain's head, kept in the database *and* written to a
//! directory outside it. Someone who rewrites the database (dropping the last entries and
//! moving the head back) cannot also forge the signature, and cannot reach the copy
//! outside; `verify` compares the chain against both.

use crate::{Vault, VaultError};
use custodian_core::audit::ChainId;
use custodian_crypto::sign::verify as verify_sig;
use custodian_store::rows::Checkpoint;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file form of a checkpoint: self-describing, with the public key that checks it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckpointFile {
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
    /// Hex Ed25519 public key.
    pub public_key: String,
}

pub fn file_name(chain: &ChainId) -> String {
    format!("{}.checkpoint.json", chain.as_string())
}

use custodian_core::hex::encode as hex;

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // Unique per process and call: several nodes may share the directory.
    let tmp: PathBuf = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("checkpoint"),
        std::process::id(),
        u64::from_be_bytes(
            custodian_crypto::random::id_bytes()[..8]
                .try_into()
                .expect("8 bytes")
        )
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

pub fn read_external(dir: &Path) -> std::io::Result<Vec<CheckpointFile>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(".checkpoint.json") {
            let bytes = std::fs::read(&path)?;
            let cp: CheckpointFile = serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            out.push(cp);
        }
    }
    out.sort_by(|a, b| a.checkpoint.chain.cmp(&b.checkpoint.chain));
    Ok(out)
}

impl Vault {
    /// Signs the head of every chain that moved since its last checkpoint.
    pub fn checkpoint(&self) -> Result<Vec<Checkpoint>, VaultError> {
        let mut made = Vec::new();
        for chain in self.store.audit_chains()? {
            let Some((seq, hash)) = self.store.audit_head(&chain)? else {
                continue;
            };
            let last = self.store.last_checkpoint(&chain)?.map_or(0, |c| c.seq);
            if last >= seq {
                continue;
            }
            let signed_at = self.clock.now();
            let signature = self
                .signer
                .sign(&Checkpoint::message(&chain, seq, &hash, signed_at));
            let cp = Checkpoint {
                chain: chain.clone(),
                seq,
                hash,
                signed_at,
                signature,
            };
            self.store.insert_checkpoint(&cp)?;
            if let Some(dir) = &self.checkpoint_dir {
                std::fs::create_dir_all(dir)
                    .map_err(|e| VaultError::Unavailable(format!("checkpoint directory: {e}")))?;
                let file = CheckpointFile {
                    checkpoint: cp.clone(),
                    public_key: hex(&self.signer.public_key()),
                };
                let bytes = serde_json::to_vec_pretty(&file).expect("plain data serialises");
                write_atomically(&dir.join(file_name(&chain)), &bytes)
                    .map_err(|e| VaultError::Unavailable(format!("checkpoint file: {e}")))?;
            }
            made.push(cp);
        }
        Ok(made)
    }
}

pub(crate) fn signature_holds(public_key: &[u8; 32], cp: &Checkpoint) -> bool {
    verify_sig(
        public_key,
        &Checkpoint::message(&cp.chain, cp.seq, &cp.hash, cp.signed_at),
        &cp.signature,
    )
}
