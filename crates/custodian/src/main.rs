//! `custodian`: one binary for serving, administration and verification.

mod backup;
mod config;
mod demo;
mod keyfile;
mod lifecycle_cli;
mod serve;

use clap::{Args, Parser, Subcommand};
use config::{Config, Overrides};
use custodian_core::account::{LoginName, Password};
use custodian_core::ids::ControllerId;
use custodian_core::policy::OperatorGrant;
use custodian_core::principal::Role;
use custodian_vault::views::NewAccount;
use secrecy::SecretString;
use std::path::PathBuf;
use std::process::ExitCode;

// mimalloc rather than the C library's allocator: a bulk read allocates a value per field
// it decrypts on one thread and frees it on another, which glibc's arenas pay for most
// (ARCHITECTURE.md, "Allocation"; custodian-bench uses the same).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "custodian",
    version,
    about = "Your DPA, enforced and provable: a vault for the personal data a processor holds for its controllers."
)]
struct Cli {
    /// Configuration file (default: ./custodian.toml when present).
    #[arg(long, global = true, env = "CUSTODIAN_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (database, root key, checkpoints), overriding the config.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Database: a SQLite file path (the default: <data_dir>/custodian.db) or a
    /// postgres://user:password@host:port/database URL.
    #[arg(long, global = true)]
    database: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates the data directory, a root key file (0600) and a config file.
    Init {
        /// Where to write the config file.
        #[arg(long, default_value = config::DEFAULT_CONFIG_FILE)]
        write_config: PathBuf,
    },
    /// Runs the HTTP API.
    Serve(ServeArgs),
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Login accounts (password login for a session token).
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Checks every audit chain and its signed checkpoints. Exit 0 when all hold;
    /// otherwise exit 1, naming the first bad entry of each broken chain.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Signs the current head of every audit chain now.
    Checkpoint,
    /// Shows what expires when (per controller and purpose), or erases what has expired.
    Retention {
        /// Erase expired records now (the server also does this on a timer).
        #[arg(long)]
        sweep: bool,
        /// Only this controller.
        #[arg(long)]
        controller: Option<String>,
    },
    /// Takes an encrypted, integrity-checked backup while the server runs.
    Backup {
        /// The backup file to write.
        #[arg(long)]
        out: PathBuf,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Restores a backup over the database (stop the server first). Erasures made since
    /// the backup are re-applied from the erasure ledger. Refuses a damaged backup whole.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// Only check the backup (checksums, authentication tags), restore nothing.
        #[arg(long)]
        check: bool,
        #[arg(long)]
        quiet: bool,
    },
    /// Termination of a controller (DPA §14): start, export, destroy.
    Terminate {
        #[command(subcommand)]
        command: lifecycle_cli::TerminateCommand,
    },
    /// Legal holds (DPA §14): data sealed, neither processed nor destroyed.
    LegalHold {
        #[command(subcommand)]
        command: lifecycle_cli::HoldCommand,
    },
    /// Checks a certificate of destruction's signature. Exit 0 when valid, 1 when not.
    VerifyCertificate {
        file: PathBuf,
        /// The deployment's public key (hex); default: derived from this root key.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Checks a controller export (`terminate export`): its manifest's signature and every
    /// listed file's checksum. Exit 0 when it holds, 1 when not.
    VerifyExport {
        dir: PathBuf,
        /// The exporting deployment's public key (hex); default: derived from this root key.
        #[arg(long)]
        public_key: Option<String>,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the chosen one is printed).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Seed a demo controller with synthetic people, initialising ./custodian-demo if needed.
    #[arg(long)]
    demo: bool,
    /// Seconds between checkpoints of the audit chains.
    #[arg(long)]
    checkpoint_interval_seconds: Option<u64>,
    /// PEM certificate chain: serve HTTPS only (with --tls-key).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long)]
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Issues a token directly against the database (for the first operator token, or
    /// a controller's first admin token). Prints the secret once.
    Create {
        /// operator_admin, controller_admin, controller_app or controller_viewer.
        #[arg(long, default_value = "operator_admin")]
        role: String,
        /// The controller, for controller roles.
        #[arg(long)]
        controller: Option<String>,
        /// Who or what holds the token.
        #[arg(long, default_value = "created with custodian token create")]
        label: String,
        /// Lifetime in days (1-366).
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
}

#[derive(Debug, Subcommand)]
enum AccountCommand {
    /// Creates a login account directly against the database. The password is read from
    /// standard input (one line; never from the command line, where other users and shell
    /// history would see it), e.g. `read -rs PW && printf '%s' "$PW" | custodian account
    /// create --login dpo@acme.example --role controller_admin --controller ctl_...`.
    /// Prints the account id.
    Create {
        /// The login name: an email address (compared in lower case).
        #[arg(long)]
        login: String,
        /// operator_admin (the processor's staff, no --controller), controller_admin,
        /// controller_app or controller_viewer.
        #[arg(long)]
        role: String,
        /// The controller, for controller roles.
        #[arg(long)]
        controller: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = |listen, interval| Overrides {
        data_dir: cli.data_dir.clone(),
        database: cli.database.clone(),
        listen,
        checkpoint_interval_seconds: interval,
        ..Default::default()
    };
    let result = match &cli.command {
        Command::Init { write_config } => {
            init(cli.config.as_deref(), &overrides(None, None), write_config)
        }
        Command::Serve(args) => {
            let mut o = overrides(args.listen, args.checkpoint_interval_seconds);
            o.tls_cert = args.tls_cert.clone();
            o.tls_key = args.tls_key.clone();
            if args.demo
                && cli.data_dir.is_none()
                && cli.config.is_none()
                && !std::path::Path::new(config::DEFAULT_CONFIG_FILE).exists()
            {
                o.data_dir = Some(PathBuf::from("custodian-demo"));
            }
            Config::load(cli.config.as_deref(), &o).and_then(|cfg| serve::run(cfg, args.demo))
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    role,
                    controller,
                    label,
                    days,
                },
        } => Config::load(cli.config.as_deref(), &overrides(None, None))
            .and_then(|cfg| token_create(&cfg, role, controller.as_deref(), label, *days)),
        Command::Account {
            command:
                AccountCommand::Create {
                    login,
                    role,
                    controller,
                },
        } => Config::load(cli.config.as_deref(), &overrides(None, None))
            .and_then(|cfg| account_create(&cfg, login, role, controller.as_deref())),
        Command::Verify { json } => Config::load(cli.config.as_deref(), &overrides(None, None))
            .and_then(|cfg| verify(&cfg, *json)),
        Command::Checkpoint => Config::load(cli.config.as_deref(), &overrides(None, None))
            .and_then(|cfg| {
                let vault = serve::open_vault(&cfg)?;
                let made = vault
                    .checkpoint()
                    .map_err(|e| format!("checkpoint failed: {e}"))?;
                println!("signed {} checkpoint(s)", made.len());
                Ok(ExitCode::SUCCESS)
            }),
        _ => lifecycle(&cli),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("custodian: {}", msg.trim_end());
            ExitCode::from(2)
        }
    }
}

fn lifecycle(cli: &Cli) -> Result<ExitCode, String> {
    let cfg = Config::load(
        cli.config.as_deref(),
        &Overrides {
            data_dir: cli.data_dir.clone(),
            database: cli.database.clone(),
            ..Default::default()
        },
    )?;
    match &cli.command {
        Command::Retention { sweep, controller } => {
            lifecycle_cli::retention(&cfg, *sweep, controller.as_deref())
        }
        Command::Backup { out, quiet } => lifecycle_cli::backup_cmd(&cfg, out, *quiet),
        Command::Restore { file, check, quiet } => {
            lifecycle_cli::restore_cmd(&cfg, file, *quiet, *check)
        }
        Command::Terminate { command } => lifecycle_cli::terminate(&cfg, command),
        Command::LegalHold { command } => lifecycle_cli::legal_hold(&cfg, command),
        Command::VerifyCertificate { file, public_key } => {
            lifecycle_cli::verify_certificate(&cfg, file, public_key.as_deref())
        }
        Command::VerifyExport { dir, public_key } => {
            lifecycle_cli::verify_export(&cfg, dir, public_key.as_deref())
        }
        Command::Init { .. }
        | Command::Serve(_)
        | Command::Token { .. }
        | Command::Account { .. }
        | Command::Verify { .. }
        | Command::Checkpoint => {
            unreachable!("handled in main")
        }
    }
}

fn init(
    config_file: Option<&std::path::Path>,
    o: &Overrides,
    write_config: &std::path::Path,
) -> Result<ExitCode, String> {
    let cfg = Config::load(config_file, o)?;
    keyfile::private_dir(&cfg.data_dir)?;
    let key_path = cfg.root_key_path();
    keyfile::create(&key_path)?;
    if !write_config.exists() {
        let text = format!(
            "# Custodian configuration. Every setting can also come from a CUSTODIAN_<NAME>\n\
             # environment variable or a command-line flag, which win over this file.\n\
             data_dir = {:?}\nroot_key_file = {:?}\nlisten = \"{}\"\ncheckpoint_interval_seconds = {}\n",
            cfg.data_dir.display().to_string(),
            key_path.display().to_string(),
            cfg.listen,
            cfg.checkpoint_interval_seconds
        );
        std::fs::write(write_config, text)
            .map_err(|e| format!("cannot write {}: {e}", write_config.display()))?;
        println!("wrote {}", write_config.display());
    }
    // Creating the database now runs its migrations and proves the setup works.
    serve::open_vault(&cfg)?;
    println!(
        "root key written to {} (mode 0600). Back it up apart from the database: without it the data cannot be decrypted.",
        key_path.display()
    );
    println!(
        "next: custodian token create --role operator_admin --label me   then   custodian serve"
    );
    Ok(ExitCode::SUCCESS)
}

fn token_create(
    cfg: &Config,
    role: &str,
    controller: Option<&str>,
    label: &str,
    days: u32,
) -> Result<ExitCode, String> {
    let role = Role::parse(role).ok_or(
        "--role must be operator_admin, controller_admin, controller_app or controller_viewer",
    )?;
    let controller = controller
        .map(|c| ControllerId::parse(c).map_err(|e| format!("--controller: {e}")))
        .transpose()?;
    if !(1..=366).contains(&days) {
        return Err("--days must be between 1 and 366".into());
    }
    let vault = serve::open_vault(cfg)?;
    let issued = vault
        .issue_token_locally(
            &OperatorGrant::local_cli(),
            role,
            controller,
            label,
            days * 86_400,
        )
        .map_err(|e| format!("cannot issue the token: {e}"))?;
    eprintln!(
        "issued {} token {} (expires {}); the secret below is shown once:",
        role.as_str(),
        issued.token.id,
        issued
            .token
            .expires_at
            .map(|t| t.to_string())
            .unwrap_or_default()
    );
    println!("{}", issued.secret);
    Ok(ExitCode::SUCCESS)
}

/// The password for `account create`: one line of standard input, never a terminal (it
/// would echo), never an argument.
fn read_password() -> Result<Password, String> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err("the password is read from standard input, which must not be a terminal \
             (it would be shown as typed): e.g. `read -rs PW && printf '%s' \"$PW\" | custodian account create ...`"
            .into());
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|_| "cannot read the password from standard input".to_owned())?;
    let text = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    Password::parse(SecretString::from(text.to_owned())).map_err(|e| e.to_string())
}

fn account_create(
    cfg: &Config,
    login: &str,
    role: &str,
    controller: Option<&str>,
) -> Result<ExitCode, String> {
    let login = LoginName::parse(login).map_err(|e| format!("--{e}"))?;
    let role = Role::parse(role).ok_or(
        "--role must be operator_admin, controller_admin, controller_app or controller_viewer",
    )?;
    let controller = controller
        .map(|c| ControllerId::parse(c).map_err(|e| format!("--controller: {e}")))
        .transpose()?;
    let password = read_password()?;
    let vault = serve::open_vault(cfg)?;
    let account = vault
        .create_account_locally(
            &OperatorGrant::local_cli(),
            NewAccount {
                login,
                password,
                role,
                controller,
            },
        )
        .map_err(|e| format!("cannot create the account: {e}"))?;
    eprintln!(
        "created {} account {}; sign in with POST /v1/sessions",
        role.as_str(),
        account.id
    );
    println!("{}", account.id);
    Ok(ExitCode::SUCCESS)
}

fn verify(cfg: &Config, json: bool) -> Result<ExitCode, String> {
    let vault = serve::open_vault(cfg)?;
    let started = std::time::Instant::now();
    let report = vault
        .verify(None)
        .map_err(|e| format!("cannot verify: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serialisable")
        );
    } else {
        for c in &report.chains {
            println!(
                "chain {}: {} entries, {} checkpoint(s) matched, head {}",
                c.chain,
                c.entries,
                c.checkpoints_checked,
                &c.head[..16]
            );
        }
        for p in &report.problems {
            match p.seq {
                Some(seq) => println!("FAIL chain {} at entry {seq}: {}", p.chain, p.what),
                None => println!("FAIL chain {}: {}", p.chain, p.what),
            }
        }
        println!(
            "{} entries in {} chain(s) checked in {:.3}s ({:.0} entries/s); public key {}",
            report.entries,
            report.chains.len(),
            secs,
            report.entries as f64 / secs.max(1e-9),
            custodian_core::hex::encode(&vault.public_key())
        );
    }
    if report.ok() {
        println!("verify: ok");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("verify: FAILED");
        Ok(ExitCode::from(1))
    }
}
