//! The root key file: created 0600, and refused when group or others can read it.

use custodian_crypto::keys::RootKey;
use secrecy::{ExposeSecret, SecretString};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates (if needed) a directory only the service account can enter. The database holds
/// only ciphertext, but its metadata and the audit trail are still the controllers' business.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot restrict {}: {e}", dir.display()))
}

pub fn create(path: &Path) -> Result<(), String> {
    if path.exists() {
        return Err(format!(
            "{} already exists; refusing to overwrite a root key",
            path.display()
        ));
    }
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        private_dir(dir)?;
    }
    let key = RootKey::generate(1).map_err(|e| e.to_string())?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(key.encode().as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

/// Loads the root key: from the environment when given there, else from the file, which
/// must not be readable by group or others.
pub fn load(from_env: Option<&SecretString>, path: &Path) -> Result<RootKey, String> {
    if let Some(s) = from_env {
        return RootKey::decode(s.expose_secret()).map_err(|e| format!("CUSTODIAN_ROOT_KEY: {e}"));
    }
    let meta = std::fs::metadata(path).map_err(|_| {
        format!(
            "no root key: {} does not exist. Run `custodian init` to create one, or set CUSTODIAN_ROOT_KEY",
            path.display()
        )
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is readable by group or others (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
    );
    RootKey::decode(&text).map_err(|e| format!("{}: {e}", path.display()))
}
