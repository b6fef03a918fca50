//! `custodian serve`: opens the vault, binds, serves until SIGINT/SIGTERM, checkpointing
//! the audit chains on a timer and once more on the way out.

use crate::config::Config;
use crate::keyfile;
use custodian_core::region::Region;
use custodian_server::{AppState, Limits};
use custodian_store::Store;
use custodian_store::postgres::PostgresStore;
use custodian_store::sqlite::SqliteStore;
use custodian_vault::{SystemClock, Vault};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

pub fn open_vault(cfg: &Config) -> Result<Vault, String> {
    let root = keyfile::load(cfg.root_key.as_ref(), &cfg.root_key_path())?;
    let store: Arc<dyn Store> = match cfg.postgres_url() {
        Some(url) => Arc::new(PostgresStore::open(url).map_err(|e| {
            format!(
                "cannot open the database {}: {e}",
                custodian_store::postgres::redact_url(url)
            )
        })?),
        None => Arc::new(open_sqlite(cfg)?),
    };
    Ok(Vault::new(
        store,
        root,
        Arc::new(SystemClock),
        Region::defaults(),
        Some(cfg.checkpoint_path()),
    )
    .with_purge_delay(Duration::from_millis(cfg.erasure_purge_delay_ms)))
}

/// Where the database is and which backend holds it, without any password.
pub fn describe_database(cfg: &Config) -> String {
    match cfg.postgres_url() {
        Some(url) => format!(
            "{}   (backend postgres)",
            custodian_store::postgres::redact_url(url)
        ),
        None => format!("{}   (backend sqlite)", cfg.database_path().display()),
    }
}

fn open_sqlite(cfg: &Config) -> Result<SqliteStore, String> {
    let db = cfg.database_path();
    if let Some(dir) = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        keyfile::private_dir(dir)?;
    }
    SqliteStore::open_with(&db, cfg.kept_limits())
        .map_err(|e| format!("cannot open the database {}: {e}", db.display()))
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CUSTODIAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if cfg.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub fn run(cfg: Config, demo: bool) -> Result<ExitCode, String> {
    init_logging(&cfg);
    // The default hook prints a panic's message to stderr, and a message could hold anything
    // a handler had in hand: log where it happened, never what it said.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(location = %at, "a thread panicked (its message is withheld)");
    }));
    if demo && cfg.root_key.is_none() && !cfg.root_key_path().exists() {
        keyfile::create(&cfg.root_key_path())?;
        eprintln!(
            "demo: created a root key at {}",
            cfg.root_key_path().display()
        );
    }
    // One server per SQLite data directory: `restore` takes the same lock. (PostgreSQL
    // nodes share the database, not a directory.)
    let is_postgres = cfg
        .database
        .as_deref()
        .is_some_and(|d| d.starts_with("postgres://") || d.starts_with("postgresql://"));
    let _lock = if is_postgres {
        None
    } else {
        Some(crate::backup::lock_data_dir(&cfg)?)
    };
    let vault = Arc::new(open_vault(&cfg)?);
    if is_postgres {
        tracing::warn!(
            "on PostgreSQL, erased and destroyed data stays in the database's files (old row versions, WAL) until overwritten, decryptable with the root key; erasure reaches the disk on SQLite only (README, \"Running on PostgreSQL\")"
        );
    }
    // Before the first request: what deleted data an earlier process may have left (one that
    // crashed between an erasure and its purge; on SQLite, bytes of deleted cells in pages it
    // rebuilt) goes now, and not during the first erasure, which would wait for the first
    // purge to read every page (ARCHITECTURE.md, "Erasure, keys and what remains").
    let started = std::time::Instant::now();
    vault.store().purge_deleted();
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        "purged what earlier processes left of deleted data"
    );
    // The dummy password hash (what a login for an unknown account is checked against) is
    // made now, before the first login, so that no login costs more than another.
    custodian_crypto::password::Passwords::warm_up();
    let metrics = if cfg.metrics {
        Some(
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .map_err(|e| format!("cannot start metrics: {e}"))?,
        )
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(cert), Some(key)) => Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .map_err(|e| format!("cannot load the TLS certificate or key: {e}"))?,
            ),
            _ => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        if demo {
            let v = vault.clone();
            let seeded = tokio::task::spawn_blocking(move || crate::demo::seed(&v, addr))
                .await
                .map_err(|e| e.to_string())??;
            println!("{seeded}");
        }
        println!(
            "custodian {} listening on {scheme}://{addr}",
            env!("CARGO_PKG_VERSION")
        );
        println!("  API docs: {scheme}://{addr}/docs   OpenAPI: {scheme}://{addr}/openapi.json");
        println!("  database: {}", describe_database(&cfg));
        println!("  first operator token: custodian token create --role operator_admin --label me");
        use std::io::Write;
        let _ = std::io::stdout().flush();

        let limits = Limits {
            max_body_bytes: cfg.max_body_bytes,
            request_timeout: Duration::from_secs(cfg.request_timeout_seconds),
            max_concurrent_requests: cfg.max_concurrent_requests,
            public_requests_per_minute: cfg.public_requests_per_minute,
            auth_failures_per_minute: cfg.auth_failures_per_minute,
            login_failures_per_hour: cfg.login_failures_per_hour,
            trusted_proxies: cfg.trusted_proxies()?,
        };
        let app = custodian_server::app(
            AppState {
                vault: vault.clone(),
                metrics,
            },
            &limits,
        );

        let checkpointer = {
            let v = vault.clone();
            let every = Duration::from_secs(cfg.checkpoint_interval_seconds.max(1));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    let v = v.clone();
                    match tokio::task::spawn_blocking(move || v.checkpoint()).await {
                        Ok(Err(e)) => tracing::error!(error = %e, "checkpoint failed"),
                        Err(e) => tracing::error!(error = %e, "checkpoint task failed"),
                        Ok(Ok(_)) => {}
                    }
                }
            })
        };
        let sweeper = (cfg.retention_sweep_seconds > 0).then(|| {
            let v = vault.clone();
            let every = Duration::from_secs(cfg.retention_sweep_seconds);
            let batch = cfg.retention_batch.max(1);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    let v = v.clone();
                    // Every expired record that may go, in passes of `batch` records: a
                    // backlog (after downtime or a restore) is not left for later ticks.
                    match tokio::task::spawn_blocking(move || v.sweep_retention_backlog(batch))
                        .await
                    {
                        Ok(Ok(r)) if r.erased_records > 0 => {
                            tracing::info!(
                                erased = r.erased_records,
                                more = r.more_pending,
                                "retention pass"
                            )
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::error!(error = %e, "retention pass failed"),
                        Err(e) => tracing::error!(error = %e, "retention task failed"),
                    }
                }
            })
        });
        let backups = cfg.backup_dir.clone().map(|dir| {
            let cfg = cfg.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(
                    cfg.backup_interval_minutes.max(1) * 60,
                ));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let (cfg, dir) = (cfg.clone(), dir.clone());
                    match tokio::task::spawn_blocking(move || crate::backup::scheduled(&cfg, &dir))
                        .await
                    {
                        Ok(Ok(path)) => {
                            tracing::info!(file = %path.display(), "scheduled backup written")
                        }
                        Ok(Err(e)) => tracing::error!(error = %e, "scheduled backup failed"),
                        Err(e) => tracing::error!(error = %e, "backup task failed"),
                    }
                }
            })
        });
        let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        match tls {
            None => axum::serve(listener, service)
                .with_graceful_shutdown(shutdown_signal())
                .await
                .map_err(|e| format!("server error: {e}"))?,
            Some(tls) => {
                let handle = axum_server::Handle::new();
                let h = handle.clone();
                tokio::spawn(async move {
                    shutdown_signal().await;
                    h.graceful_shutdown(Some(Duration::from_secs(10)));
                });
                let std_listener = listener.into_std().map_err(|e| e.to_string())?;
                axum_server::from_tcp_rustls(std_listener, tls)
                    .handle(handle)
                    .serve(service)
                    .await
                    .map_err(|e| format!("server error: {e}"))?;
            }
        }
        checkpointer.abort();
        if let Some(t) = sweeper {
            t.abort();
        }
        if let Some(t) = backups {
            t.abort();
        }
        let v = vault.clone();
        let _ = tokio::task::spawn_blocking(move || {
            // Erasures of the last second leave the files before the process does.
            v.purge_erased_now();
            v.checkpoint()
        })
        .await;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
