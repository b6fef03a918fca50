//! Password login (DPA §10(b)(c)), at the vault: accounts, argon2id hashes, session tokens,
//! one error and one verification for every failed login, tenant isolation, and no password
//! or login name anywhere it does not belong. Each test states the promise it checks.
//!
//! Equal work is proven by counting, never by timing: the vault's `Passwords` logs every
//! argon2id computation (kind, parameters, thread), and each failed login must add exactly
//! one verification at the current parameters.

use custodian_core::account::{LoginName, Password, PasswordAttempt};
use custodian_core::audit::{AuditEntry, ChainId};
use custodian_core::controller::ControllerName;
use custodian_core::ids::ControllerId;
use custodian_core::policy::{OperatorGrant, Refusal};
use custodian_core::principal::{Principal, Role};
use custodian_core::region::{MemberState, Region, RegionId};
use custodian_crypto::keys::RootKey;
use custodian_crypto::password::{Cost, Passwords, WorkKind};
use custodian_store::sqlite::SqliteStore;
use custodian_vault::accounts::{LOGIN_REFUSED, SESSION_SECONDS};
use custodian_vault::views::{AccountView, NewAccount, NewController};
use custodian_vault::{CallContext, SystemClock, Vault, VaultError};
use secrecy::SecretString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const PASSWORD: &str = "Quorvath-canary-passphrase-7781";
const LOGIN: &str = "zyx.dpo.canary@acme.example";

struct Env {
    _dir: tempfile::TempDir,
    db: PathBuf,
    vault: Vault,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("custodian.db");
        let vault = Vault::new(
            Arc::new(SqliteStore::open(&db).expect("open the store")),
            RootKey::generate(1).expect("root key"),
            Arc::new(SystemClock),
            Region::defaults(),
            None,
        );
        // The dummy hash is made once per process; make it before anything is counted.
        Passwords::warm_up();
        Self {
            _dir: dir,
            db,
            vault,
        }
    }

    fn controller(&self, name: &str) -> ControllerId {
        self.vault
            .create_controller(
                &OperatorGrant::local_cli(),
                NewController {
                    name: ControllerName::parse(name).expect("name"),
                    region: RegionId::parse("osc-fr1").expect("region"),
                    agreement_effective: time::macros::date!(2026 - 01 - 01),
                    governing_law: MemberState::parse("FR").expect("law"),
                },
                &CallContext::default(),
            )
            .expect("create controller")
            .id
    }

    /// A principal from a token issued on the command line.
    fn principal(&self, role: Role, controller: Option<&ControllerId>) -> Principal {
        let issued = self
            .vault
            .issue_token_locally(
                &OperatorGrant::local_cli(),
                role,
                controller.cloned(),
                "test",
                3600,
            )
            .expect("issue token");
        self.vault
            .authenticate(&SecretString::from(issued.secret))
            .expect("authenticate")
    }

    fn create_locally(
        &self,
        login: &str,
        role: Role,
        controller: Option<&ControllerId>,
    ) -> AccountView {
        self.vault
            .create_account_locally(
                &OperatorGrant::local_cli(),
                new_account(login, role, controller),
            )
            .expect("create account")
    }

    fn login(&self, login: &str, password: &str) -> Result<String, VaultError> {
        self.vault
            .login(
                &LoginName::parse(login).expect("login name"),
                &attempt(password),
                &CallContext::default(),
            )
            .map(|t| t.secret)
    }

    fn trail(&self, chain: ChainId) -> Vec<AuditEntry> {
        self.vault
            .store()
            .audit_page(&chain, 0, 10_000)
            .expect("audit page")
    }
}

fn new_account(login: &str, role: Role, controller: Option<&ControllerId>) -> NewAccount {
    NewAccount {
        login: LoginName::parse(login).expect("login name"),
        password: Password::parse(SecretString::from(PASSWORD.to_owned())).expect("password"),
        role,
        controller: controller.cloned(),
    }
}

fn attempt(p: &str) -> PasswordAttempt {
    PasswordAttempt::parse(SecretString::from(p.to_owned())).expect("attempt")
}

/// The error of a failed login, and the argon2 work it did.
fn failed_login(env: &Env, login: &str, password: &str) -> (String, Vec<(WorkKind, Cost)>) {
    let mark = env.vault.passwords().mark();
    let err = env.login(login, password).expect_err("the login must fail");
    assert!(matches!(err, VaultError::BadCredentials), "{err:?}");
    let work = env
        .vault
        .passwords()
        .work_since(mark)
        .into_iter()
        .map(|w| (w.kind, w.cost))
        .collect();
    (err.to_string(), work)
}

#[test]
fn a_right_password_opens_a_session_for_the_accounts_role_and_controller() {
    let env = Env::new();
    let c = env.controller("Acme SAS");
    let created = env.create_locally(LOGIN, Role::ControllerAdmin, Some(&c));
    assert_eq!(created.login.as_str(), LOGIN);
    assert_eq!(created.controller.as_ref(), Some(&c));
    assert!(!created.disabled);

    // The login name is compared in lower case, as it was normalised when created.
    let before = env.vault.now();
    let secret = env
        .login(&LOGIN.to_uppercase(), PASSWORD)
        .expect("login with the right password");
    let p = env
        .vault
        .authenticate(&SecretString::from(secret.clone()))
        .expect("the session token authenticates");
    assert_eq!(p.role, Role::ControllerAdmin);
    assert_eq!(p.controller.as_ref(), Some(&c));
    let tokens = env
        .vault
        .list_tokens(&p, &CallContext::default())
        .expect("tokens");
    let session = tokens
        .iter()
        .find(|t| t.id == p.token)
        .expect("the session token");
    let lifetime = session.expires_at.expect("expires") - before;
    assert!(
        lifetime <= time::Duration::seconds(i64::from(SESSION_SECONDS) + 5)
            && lifetime >= time::Duration::seconds(i64::from(SESSION_SECONDS) - 5),
        "a session lasts 8 hours: {lifetime}"
    );
    assert_eq!(session.label, format!("session of {}", created.id));

    // Creation and login are on the controller's chain, naming the account by id only.
    let trail = env.trail(ChainId::Controller(c.clone()));
    let created_entry = trail
        .iter()
        .find(|e| e.draft.action.as_string() == "admin.account_created")
        .expect("account creation audited");
    assert_eq!(created_entry.draft.fields, vec![created.id.to_string()]);
    let login_entry = trail.last().expect("login audited");
    assert_eq!(login_entry.draft.action.as_string(), "admin.login");
    assert_eq!(
        login_entry.draft.actor,
        format!("controller_admin:{}", created.id)
    );
    assert_eq!(login_entry.draft.fields, vec![p.token.to_string()]);
    assert_eq!(
        login_entry.draft.outcome,
        custodian_core::audit::Outcome::Allowed
    );

    // Operator staff: an account of no controller, and an operator session.
    env.create_locally("ops@processor.example", Role::OperatorAdmin, None);
    let op = env
        .vault
        .authenticate(&SecretString::from(
            env.login("ops@processor.example", PASSWORD)
                .expect("operator login"),
        ))
        .expect("operator session");
    assert_eq!((op.role, op.controller), (Role::OperatorAdmin, None));

    // The new entries chain and verify like any other.
    let _ = env.login("nobody@acme.example", PASSWORD);
    let report = env.vault.verify(None).expect("verify");
    assert!(report.ok(), "{report:?}");
}

/// An unknown login, a disabled account and a wrong password are one error, with the same
/// text, each after exactly one argon2id verification at the current parameters (the
/// unknown and disabled ones against the dummy hash), on the caller's thread.
#[test]
fn unknown_disabled_and_wrong_are_one_error_after_one_verification_each() {
    let env = Env::new();
    let c = env.controller("Acme SAS");
    let acc = env.create_locally(LOGIN, Role::ControllerAdmin, Some(&c));
    let off_id = env
        .create_locally("off@acme.example", Role::ControllerViewer, Some(&c))
        .id;
    env.login("off@acme.example", PASSWORD)
        .expect("it works until disabled");
    let admin = env.principal(Role::ControllerAdmin, Some(&c));
    env.vault
        .disable_account(&admin, &off_id, Some(&c), &CallContext::default())
        .expect("disable");

    let one_verification = vec![(WorkKind::Verify, Cost::current())];
    let (unknown, w_unknown) = failed_login(&env, "nobody@acme.example", PASSWORD);
    let (wrong, w_wrong) = failed_login(&env, LOGIN, "not the password at all");
    let (disabled, w_disabled) = failed_login(&env, "off@acme.example", PASSWORD);
    let (empty_ish, w_short) = failed_login(&env, LOGIN, "x");
    assert_eq!(w_unknown, one_verification, "unknown login");
    assert_eq!(w_wrong, one_verification, "wrong password");
    assert_eq!(w_disabled, one_verification, "disabled account");
    assert_eq!(w_short, one_verification, "short attempt");
    assert!(Cost::current().meets_owasp_minimum());
    for e in [&wrong, &disabled, &empty_ish] {
        assert_eq!(e, &unknown);
    }
    // The vault runs the verification where it is called (the server calls it on a
    // blocking thread: see crates/custodian-server/tests/hardening.rs).
    let mark = env.vault.passwords().mark();
    let _ = env.login("nobody@acme.example", PASSWORD);
    let work = env.vault.passwords().work_since(mark);
    assert_eq!(work[0].thread, std::thread::current().id());

    // Each refusal is audited once, with one reason whatever the cause; the unknown name
    // is not recorded anywhere.
    let system = env.trail(ChainId::System);
    let anon: Vec<_> = system
        .iter()
        .filter(|e| e.draft.action.as_string() == "admin.login")
        .collect();
    assert_eq!(anon.len(), 2, "two unknown-login refusals");
    for e in &anon {
        assert_eq!(e.draft.actor, "anonymous");
        assert!(e.draft.fields.is_empty());
        assert_eq!(
            e.draft.outcome,
            custodian_core::audit::Outcome::Refused {
                reason: LOGIN_REFUSED.into()
            }
        );
    }
    let ctl = env.trail(ChainId::Controller(c.clone()));
    let refused: Vec<_> = ctl
        .iter()
        .filter(|e| {
            e.draft.action.as_string() == "admin.login"
                && e.draft.outcome != custodian_core::audit::Outcome::Allowed
        })
        .map(|e| e.draft.actor.clone())
        .collect();
    assert_eq!(
        refused,
        vec![
            format!("controller_admin:{}", acc.id),
            format!("controller_viewer:{off_id}"),
            format!("controller_admin:{}", acc.id),
        ]
    );
}

/// The stored hash is argon2id at or above OWASP's minimum, in PHC format; neither the
/// password nor the login name is in the database files.
#[test]
fn the_database_holds_an_owasp_grade_phc_hash_and_no_password_or_login_name() {
    let env = Env::new();
    let c = env.controller("Acme SAS");
    let acc = env.create_locally(LOGIN, Role::ControllerAdmin, Some(&c));
    env.login(LOGIN, PASSWORD).expect("login");
    let _ = env.login(LOGIN, "Quorvath-wrong-passphrase");
    let _ = env.login("zyx.unknown.canary@acme.example", PASSWORD);

    let sql = rusqlite::Connection::open(&env.db).expect("open the database");
    let phc: String = sql
        .query_row(
            "SELECT password_hash FROM accounts WHERE id = ?1",
            [acc.id.as_str()],
            |r| r.get(0),
        )
        .expect("the account row");
    assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
    let cost = Cost::of(&phc).expect("a PHC string");
    assert!(
        cost.argon2id && cost.m_kib >= 19_456 && cost.t >= 2 && cost.p == 1,
        "{cost:?}"
    );
    assert!(cost.meets_owasp_minimum());
    drop(sql);

    for needle in [
        PASSWORD,
        "Quorvath",
        "quorvath",
        LOGIN,
        "zyx.dpo",
        "zyx.unknown",
        "acme.example",
    ] {
        let found = files_holding(&env.db, needle.as_bytes());
        assert!(found.is_empty(), "{needle:?} is in {found:?}");
    }
}

/// Neither the password nor the login name reaches the audit trail, an error, or `Debug`
/// output, on any path: created, refused creation, login, failed logins.
#[test]
fn passwords_and_login_names_never_reach_the_trail_errors_or_debug_output() {
    let env = Env::new();
    let c = env.controller("Acme SAS");
    let admin = env.principal(Role::ControllerAdmin, Some(&c));
    let ctx = CallContext::default();
    let input = new_account(LOGIN, Role::ControllerViewer, None);
    let mut texts = vec![format!("{input:?}")];
    let created = env
        .vault
        .create_account(&admin, input, &ctx)
        .expect("create");
    texts.push(format!("{created:?}"));
    let dup = env
        .vault
        .create_account(
            &admin,
            new_account(LOGIN, Role::ControllerViewer, None),
            &ctx,
        )
        .expect_err("a login name is taken once");
    assert!(matches!(dup, VaultError::Conflict(_)), "{dup:?}");
    texts.push(format!("{dup} {dup:?}"));
    let weak = serde_json::from_value::<NewAccount>(serde_json::json!({
        "login": LOGIN, "password": "Quorvath", "role": "controller_viewer",
    }))
    .expect_err("a short password");
    texts.push(weak.to_string());
    texts.push(format!("{:?}", attempt(PASSWORD)));
    for (l, p) in [
        (LOGIN, "Quorvath-wrong"),
        ("zyx.none@acme.example", PASSWORD),
    ] {
        let e = env.login(l, p).expect_err("fails");
        texts.push(format!("{e} {e:?}"));
    }
    let session = env.login(LOGIN, PASSWORD).expect("login");
    for chain in [ChainId::System, ChainId::Controller(c.clone())] {
        for e in env.trail(chain) {
            texts.push(format!("{e:?}"));
        }
    }
    assert!(texts.len() > 8);
    for t in &texts {
        for needle in [PASSWORD, "Quorvath", LOGIN, "zyx.", &session[8..]] {
            assert!(!t.contains(needle), "{needle:?} in {t}");
        }
    }
}

/// Tenant isolation: a controller admin creates accounts only in its own controller and
/// never an operator account; an application or viewer creates none; another controller's
/// accounts cannot be disabled. The operator creates any.
#[test]
fn a_controller_admin_creates_and_disables_accounts_only_in_its_own_controller() {
    let env = Env::new();
    let a = env.controller("Alpha SAS");
    let b = env.controller("Beta SAS");
    let ctx = CallContext::default();
    let admin_b = env.principal(Role::ControllerAdmin, Some(&b));
    let app_b = env.principal(Role::ControllerApp, Some(&b));
    let operator = env.principal(Role::OperatorAdmin, None);

    let into_a = env
        .vault
        .create_account(
            &admin_b,
            new_account("x@beta.example", Role::ControllerAdmin, Some(&a)),
            &ctx,
        )
        .expect_err("B's admin in A");
    assert!(matches!(into_a, VaultError::NotFound), "{into_a:?}");
    let staff = env
        .vault
        .create_account(
            &admin_b,
            new_account("y@beta.example", Role::OperatorAdmin, None),
            &ctx,
        )
        .expect_err("B's admin makes operator staff");
    assert!(
        matches!(staff, VaultError::Refused(Refusal::NotOperator)),
        "{staff:?}"
    );
    let by_app = env
        .vault
        .create_account(
            &app_b,
            new_account("z@beta.example", Role::ControllerViewer, None),
            &ctx,
        )
        .expect_err("an application creates accounts");
    assert!(matches!(by_app, VaultError::Refused(_)), "{by_app:?}");
    // None of them was created: their logins are unknown.
    for l in ["x@beta.example", "y@beta.example", "z@beta.example"] {
        assert!(matches!(
            env.login(l, PASSWORD),
            Err(VaultError::BadCredentials)
        ));
    }
    // The refusals are audited on B's chain.
    let refusals = env
        .trail(ChainId::Controller(b.clone()))
        .into_iter()
        .filter(|e| e.draft.action.as_string() == "admin.account_created")
        .count();
    assert_eq!(refusals, 2, "the two 403s are audited");

    // Within its own controller, B's admin may.
    let own = env
        .vault
        .create_account(
            &admin_b,
            new_account("dpo@beta.example", Role::ControllerAdmin, None),
            &ctx,
        )
        .expect("B's admin in B");
    assert_eq!(own.controller.as_ref(), Some(&b));

    // The operator: any controller, or its own staff; roles and controllers must match.
    let in_a = env
        .vault
        .create_account(
            &operator,
            new_account("dpo@alpha.example", Role::ControllerAdmin, Some(&a)),
            &ctx,
        )
        .expect("operator in A");
    for bad in [
        new_account("q@x.example", Role::ControllerAdmin, None),
        new_account("q@x.example", Role::OperatorAdmin, Some(&a)),
    ] {
        let e = env
            .vault
            .create_account(&operator, bad, &ctx)
            .expect_err("mismatch");
        assert!(matches!(e, VaultError::Invalid(_)), "{e:?}");
    }
    let ghost = ControllerId::from_random([7; 16]);
    let e = env
        .vault
        .create_account(
            &operator,
            new_account("q@x.example", Role::ControllerAdmin, Some(&ghost)),
            &ctx,
        )
        .expect_err("no such controller");
    assert!(matches!(e, VaultError::NotFound), "{e:?}");

    // B cannot disable A's account, by naming A or its own controller.
    for scope in [Some(&a), Some(&b)] {
        let e = env
            .vault
            .disable_account(&admin_b, &in_a.id, scope, &ctx)
            .expect_err("B disables A's account");
        assert!(matches!(e, VaultError::NotFound), "{e:?}");
    }
    env.login("dpo@alpha.example", PASSWORD)
        .expect("A's account still works");
}

// ---------------------------------------------------------------------------------------
// Byte scanning (as in tests/vault.rs)

fn files_holding(db: &Path, needle: &[u8]) -> Vec<PathBuf> {
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", db.display())))
        .filter(|p| p.exists())
        .filter(|f| {
            let hay = std::fs::read(f).expect("read a database file");
            hay.windows(needle.len()).any(|w| w == needle)
        })
        .collect()
}
