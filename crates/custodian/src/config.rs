//! Configuration: defaults, then a TOML file, then `CUSTODIAN_*` environment variables,
//! then command-line flags. Unknown settings and missing secrets stop the start with a
//! message that says how to fix them.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_FILE: &str = "custodian.toml";

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the database (SQLite) and the checkpoint copies live.
    pub data_dir: PathBuf,
    /// The database: a SQLite file path (or `sqlite://` path), or a PostgreSQL URL
    /// (`postgres://` or `postgresql://`). Defaults to `<data_dir>/custodian.db`.
    pub database: Option<String>,
    /// The root key file (0600). Ignored when `CUSTODIAN_ROOT_KEY` carries the key itself.
    pub root_key_file: Option<PathBuf>,
    /// The root key itself; meant for the environment (`CUSTODIAN_ROOT_KEY`), never a file
    /// that is checked in.
    #[serde(skip_serializing)]
    pub root_key: Option<SecretString>,
    pub listen: SocketAddr,
    /// A PEM certificate chain: with `tls_key`, the server speaks only HTTPS (TLS 1.2+,
    /// rustls) and sends HSTS.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Where signed checkpoints are copied outside the database. Defaults to
    /// `<data_dir>/checkpoints`; point it at storage the database host cannot rewrite.
    pub checkpoint_dir: Option<PathBuf>,
    pub checkpoint_interval_seconds: u64,
    pub max_body_bytes: usize,
    pub request_timeout_seconds: u64,
    pub max_concurrent_requests: usize,
    /// Requests per minute one address may make to the public data-subject request endpoints.
    pub public_requests_per_minute: u32,
    /// Failed authentication attempts one client address may make per minute; beyond it,
    /// 429 for every token it presents until its budget refills.
    pub auth_failures_per_minute: u32,
    /// Failed password attempts one login name may take per hour (known or not); beyond
    /// it, 429 for every login with that name, the right password too, until it refills.
    pub login_failures_per_hour: u32,
    /// Reverse proxies (addresses, or networks such as `10.0.0.0/8`) whose
    /// `X-Forwarded-For` names the client for the per-address limits above. Empty: the
    /// connection's peer is the client, and `X-Forwarded-For` is ignored.
    pub trusted_proxies: Vec<String>,
    pub metrics: bool,
    /// Seconds between passes of the retention sweeper (0 turns it off).
    pub retention_sweep_seconds: u64,
    /// At most this many expired records are erased per pass, in small transactions; a
    /// sweep runs passes until none that may be erased is left.
    pub retention_batch: u32,
    /// Where scheduled backups go; scheduled backups are off until this is set.
    pub backup_dir: Option<PathBuf>,
    /// Minutes between scheduled backups.
    pub backup_interval_minutes: u64,
    /// How many scheduled backups to keep; older ones are deleted.
    pub backup_keep: usize,
    /// `text` or `json`.
    pub log_format: String,
    /// SQLite: MiB of decoded records kept in memory between reads (0: none).
    pub kept_records_mib: usize,
    /// SQLite: subjects' rows kept in memory between reads (0: none).
    pub kept_subjects: usize,
    /// SQLite: at most this long after an erasure answers, what it deleted is purged from
    /// the database's files (0: before it answers). Erasures within it share one purge.
    pub erasure_purge_delay_ms: u64,
}

/// Shows every setting but the secrets: the root key is never serialised, and a database
/// URL's password is masked.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.clone();
        shown.database = shown
            .database
            .map(|d| custodian_store::postgres::redact_url(&d));
        let text = toml::to_string(&shown).map_err(|_| std::fmt::Error)?;
        write!(f, "Config {{ {} }}", text.trim_end().replace('\n', ", "))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("custodian-data"),
            database: None,
            root_key_file: None,
            root_key: None,
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            tls_cert: None,
            tls_key: None,
            checkpoint_dir: None,
            checkpoint_interval_seconds: 10,
            max_body_bytes: 1024 * 1024,
            request_timeout_seconds: 30,
            max_concurrent_requests: 512,
            public_requests_per_minute: 10,
            auth_failures_per_minute: 30,
            login_failures_per_hour: 10,
            trusted_proxies: Vec::new(),
            metrics: true,
            retention_sweep_seconds: 60,
            retention_batch: 500,
            backup_dir: None,
            backup_interval_minutes: 24 * 60,
            backup_keep: 7,
            log_format: "text".into(),
            kept_records_mib: 64,
            kept_subjects: 100_000,
            erasure_purge_delay_ms: custodian_vault::purger::DEFAULT_DELAY.as_millis() as u64,
        }
    }
}

/// Flags that override the file and the environment.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_interval_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl Config {
    /// `file`: an explicit config file (must exist), else `custodian.toml` if present.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, String> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(f) if !f.exists() => {
                return Err(format!(
                    "config file {} does not exist (create one with `custodian init`)",
                    f.display()
                ));
            }
            Some(f) => fig = fig.merge(Toml::file(f)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                fig = fig.merge(Toml::file(DEFAULT_CONFIG_FILE))
            }
            None => {}
        }
        fig = fig
            .merge(Env::prefixed("CUSTODIAN_").ignore(&["LOG"]))
            .merge(Serialized::defaults(overrides));
        let cfg: Config = fig.extract().map_err(|e| {
            let mut msg = String::new();
            for err in e {
                msg.push_str(&format!(
                    "configuration error: {err}\n  (settings come from {}, CUSTODIAN_* environment variables, and flags; see `custodian serve --help`)\n",
                    file.map_or(DEFAULT_CONFIG_FILE.to_string(), |f| f.display().to_string())
                ));
            }
            msg
        })?;
        if cfg.log_format != "text" && cfg.log_format != "json" {
            return Err("configuration error: log_format must be \"text\" or \"json\"".into());
        }
        if cfg.tls_cert.is_some() != cfg.tls_key.is_some() {
            return Err(
                "configuration error: tls_cert and tls_key go together: set both, or neither"
                    .into(),
            );
        }
        if cfg.max_body_bytes < 1024 {
            return Err("configuration error: max_body_bytes must be at least 1024".into());
        }
        cfg.trusted_proxies()?;
        Ok(cfg)
    }

    /// The reverse proxies whose `X-Forwarded-For` is believed.
    pub fn trusted_proxies(&self) -> Result<custodian_server::client_addr::TrustedProxies, String> {
        custodian_server::client_addr::TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|e| format!("configuration error: trusted_proxies: {e}"))
    }

    /// What the SQLite store keeps in memory between reads.
    pub fn kept_limits(&self) -> custodian_store::sqlite::KeptLimits {
        custodian_store::sqlite::KeptLimits {
            record_bytes: self.kept_records_mib.saturating_mul(1 << 20),
            subject_rows: self.kept_subjects,
        }
    }

    pub fn database_path(&self) -> PathBuf {
        match &self.database {
            Some(d) => PathBuf::from(d.strip_prefix("sqlite://").unwrap_or(d)),
            None => self.data_dir.join("custodian.db"),
        }
    }

    /// The PostgreSQL URL when `database` names one; otherwise the database is the SQLite
    /// file at [`Config::database_path`].
    pub fn postgres_url(&self) -> Option<&str> {
        self.database
            .as_deref()
            .filter(|d| custodian_store::postgres::is_postgres_url(d))
    }

    pub fn root_key_path(&self) -> PathBuf {
        self.root_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("root.key"))
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.checkpoint_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("checkpoints"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn unknown_settings_are_refused_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:9\"\nlisten_adress = \"x\"\n").unwrap();
        let err = Config::load(Some(&f), &Overrides::default()).unwrap_err();
        assert!(err.contains("listen_adress"), "{err}");
        assert!(err.contains("custodian"), "{err}");
    }

    #[test]
    fn a_postgres_url_selects_postgres_and_anything_else_sqlite() {
        let with = |d: &str| Config {
            database: Some(d.to_owned()),
            ..Default::default()
        };
        for url in ["postgres://u:p@db:5432/c", "postgresql://db/c"] {
            assert_eq!(with(url).postgres_url(), Some(url));
        }
        for path in ["sqlite:///var/lib/c.db", "c.db", "/srv/postgres/c.db"] {
            assert_eq!(with(path).postgres_url(), None, "{path}");
        }
        assert_eq!(
            with("sqlite:///var/lib/c.db").database_path(),
            PathBuf::from("/var/lib/c.db")
        );
        assert_eq!(Config::default().postgres_url(), None);
    }

    #[test]
    fn kept_rows_are_sized_by_settings() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        assert_eq!(
            Config::default().kept_limits(),
            custodian_store::sqlite::KeptLimits::default()
        );
        std::fs::write(&f, "kept_records_mib = 8\nkept_subjects = 0\n").unwrap();
        let c = Config::load(Some(&f), &Overrides::default()).unwrap();
        assert_eq!(
            c.kept_limits(),
            custodian_store::sqlite::KeptLimits {
                record_bytes: 8 << 20,
                subject_rows: 0
            }
        );
    }

    #[test]
    fn the_purge_delay_defaults_to_the_vaults_and_is_a_setting() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        assert_eq!(
            std::time::Duration::from_millis(Config::default().erasure_purge_delay_ms),
            custodian_vault::purger::DEFAULT_DELAY
        );
        std::fs::write(&f, "erasure_purge_delay_ms = 0\n").unwrap();
        let c = Config::load(Some(&f), &Overrides::default()).unwrap();
        assert_eq!(c.erasure_purge_delay_ms, 0);
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks_and_anything_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        assert_eq!(
            Config::default().trusted_proxies().unwrap(),
            custodian_server::client_addr::TrustedProxies::default()
        );
        std::fs::write(&f, "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n").unwrap();
        let c = Config::load(Some(&f), &Overrides::default()).unwrap();
        assert_eq!(
            c.trusted_proxies().unwrap(),
            custodian_server::client_addr::TrustedProxies::parse(&["10.0.0.0/8", "::1"]).unwrap()
        );
        std::fs::write(&f, "trusted_proxies = [\"10.0.0.0/8\", \"lb.internal\"]\n").unwrap();
        let e = Config::load(Some(&f), &Overrides::default()).unwrap_err();
        assert!(
            e.contains("trusted_proxies") && e.contains("\"lb.internal\""),
            "{e}"
        );
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:9\"\ndata_dir = \"/x\"\n").unwrap();
        let o = Overrides {
            listen: Some("127.0.0.1:7".parse().unwrap()),
            ..Default::default()
        };
        let c = Config::load(Some(&f), &o).unwrap();
        assert_eq!(c.listen.port(), 7);
        assert_eq!(c.data_dir, PathBuf::from("/x"));
        assert_eq!(c.database_path(), PathBuf::from("/x/custodian.db"));
    }

    #[test]
    fn database_passwords_never_print() {
        let c = Config {
            database: Some("postgres://custodian:hunter2secret@127.0.0.1:5432/db".into()),
            ..Default::default()
        };
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2secret"), "{dbg}");
        assert!(dbg.contains("127.0.0.1:5432"), "{dbg}");
    }

    #[test]
    fn secrets_never_print() {
        let c = Config {
            root_key: Some(SecretString::from(
                "custodian-root-key:v1:1:SECRETSECRET".to_owned(),
            )),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("SECRETSECRET"));
        assert!(!toml::to_string(&c).unwrap().contains("SECRETSECRET"));
        assert!(c.root_key.unwrap().expose_secret().contains("SECRET"));
    }
}
