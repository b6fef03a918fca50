//! Login accounts and password login (DPA §10(b)(c)).
//!
//! An account is a person (a controller's staff, or the processor's own for operator
//! accounts) who signs in with a login name (an email address) and a password, and gets a
//! short-lived session token: an ordinary API token of the account's role and controller,
//! valid [`SESSION_SECONDS`], so everything after the login (scoping, expiry, revocation,
//! auditing) is the token machinery's.
//!
//! - Passwords are hashed with argon2id at OWASP's minimum (`custodian_crypto::password`)
//!   and kept only as PHC strings; login names only as a keyed blind index and sealed.
//! - A login runs exactly one argon2id verification whatever happens: against the account's
//!   hash, or against a dummy hash of the same cost when the login is unknown or the account
//!   disabled; and the caller gets the same [`VaultError::BadCredentials`] for all three.
//! - Every login is audited, allowed or refused. The entry names the account by its id
//!   (never its login name, never the password); a refused login for a name that is no
//!   account's is recorded on the system chain as `anonymous`.
//! - Brute force is the server's to limit (per source address and per login name): this
//!   layer has no memory of failures.

use crate::admin::{chain_of, token_view};
use crate::views::{AccountView, IssuedToken, NewAccount};
use crate::{CallContext, Vault, VaultError};
use custodian_core::ValidationError;
use custodian_core::account::{LoginName, PasswordAttempt};
use custodian_core::audit::{Action, AdminAction, AuditDraft, ChainId};
use custodian_core::ids::{AccountId, ControllerId, TokenId};
use custodian_core::policy::{OperatorGrant, Refusal, authorize_admin};
use custodian_core::principal::{Principal, Role, TokenScope};
use custodian_crypto::password::{login_digest, seal_login};
use custodian_crypto::random::id_bytes;
use custodian_store::StoreError;
use custodian_store::rows::{AccountRow, TokenRow};
use secrecy::ExposeSecret;
use time::Duration;

/// How long a session token from a password login lives: one working day.
pub const SESSION_SECONDS: u32 = 8 * 3600;

/// The reason a refused login is recorded with, whatever the cause (unknown login,
/// disabled account, wrong password): the trail needs no more to show an attack, and the
/// cause would tell a reader of the trail which names are accounts'.
pub const LOGIN_REFUSED: &str = "wrong login or password";

/// How the audit trail names an account: its role and id, like a token's principal.
fn account_actor(role: Role, id: &AccountId) -> String {
    format!("{}:{id}", role.as_str())
}

fn view(row: &AccountRow, login: LoginName) -> AccountView {
    AccountView {
        id: row.id.clone(),
        login,
        role: row.role,
        controller: row.controller.clone(),
        created_at: row.created_at,
        disabled: row.disabled_at.is_some(),
    }
}

impl Vault {
    /// Creates a login account. The operator creates accounts for its own staff (role
    /// `operator_admin`, no controller) and for any controller; a controller admin only in
    /// its own controller, never an operator account. Audited on the account's chain.
    pub fn create_account(
        &self,
        p: &Principal,
        input: NewAccount,
        ctx: &CallContext,
    ) -> Result<AccountView, VaultError> {
        let target = match (p.role, input.role, &input.controller) {
            (Role::OperatorAdmin, Role::OperatorAdmin, None) => None,
            (Role::OperatorAdmin, Role::OperatorAdmin, Some(_)) => {
                return Err(ValidationError::new(
                    "controller",
                    "an operator account belongs to no controller",
                )
                .into());
            }
            (Role::OperatorAdmin, _, None) => {
                return Err(ValidationError::new(
                    "controller",
                    "is required for a controller account",
                )
                .into());
            }
            (Role::OperatorAdmin, _, Some(c)) => {
                let grant = authorize_admin(p, c, true)
                    .map_err(|r| self.refuse_admin(p, AdminAction::AccountCreated, r, ctx))?;
                Some(grant.controller().clone())
            }
            (_, Role::OperatorAdmin, _) => {
                return Err(self.refuse_admin(
                    p,
                    AdminAction::AccountCreated,
                    Refusal::NotOperator,
                    ctx,
                ));
            }
            (_, _, requested) => {
                let own = Self::own_controller(p)?;
                // Another controller's id is answered as if it did not exist.
                if requested.as_ref().is_some_and(|c| c != own) {
                    return Err(VaultError::NotFound);
                }
                let grant = authorize_admin(p, own, false)
                    .map_err(|r| self.refuse_admin(p, AdminAction::AccountCreated, r, ctx))?;
                Some(grant.controller().clone())
            }
        };
        self.insert_account(p.actor(), input, target, ctx)
    }

    /// The command line's way in (`custodian account create`): the operator's authority.
    pub fn create_account_locally(
        &self,
        grant: &OperatorGrant,
        input: NewAccount,
    ) -> Result<AccountView, VaultError> {
        if input.role.is_operator() != input.controller.is_none() {
            return Err(ValidationError::new(
                "controller",
                "operator accounts have no controller; controller accounts need one",
            )
            .into());
        }
        let target = input.controller.clone();
        self.insert_account(
            grant.actor().to_owned(),
            input,
            target,
            &CallContext::default(),
        )
    }

    fn insert_account(
        &self,
        actor: String,
        input: NewAccount,
        controller: Option<ControllerId>,
        ctx: &CallContext,
    ) -> Result<AccountView, VaultError> {
        if let Some(c) = &controller {
            self.store.controller(c)?.ok_or(VaultError::NotFound)?;
        }
        let id = AccountId::from_random(id_bytes());
        let password_hash = self.passwords.hash(input.password.expose())?;
        let now = self.clock.now();
        let row = AccountRow {
            login_digest: login_digest(&self.root, &input.login),
            login_sealed: seal_login(&self.root, &id, &input.login),
            id,
            password_hash,
            role: input.role,
            controller,
            created_at: now,
            disabled_at: None,
        };
        let audit = AuditDraft::new(
            chain_of(row.controller.as_ref()),
            actor,
            Action::Admin(AdminAction::AccountCreated),
        )
        .fields([row.id.as_str()])
        .request(ctx.request.as_ref());
        match self.store.insert_account(&row, audit, now) {
            Ok(_) => Ok(view(&row, input.login)),
            Err(StoreError::Conflict(_)) => Err(VaultError::Conflict(
                "an account with this login name already exists",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Disables an account: its login then fails like an unknown one's. The operator
    /// disables any account; a controller admin those of its own controller (another
    /// controller's answer 404). Session tokens already issued stay valid until they expire
    /// or are revoked.
    pub fn disable_account(
        &self,
        p: &Principal,
        id: &AccountId,
        controller: Option<&ControllerId>,
        ctx: &CallContext,
    ) -> Result<(), VaultError> {
        let scope = match p.role {
            Role::OperatorAdmin => controller,
            _ => {
                let own = Self::own_controller(p)?;
                if controller.is_some_and(|c| c != own) {
                    return Err(VaultError::NotFound);
                }
                authorize_admin(p, own, false)
                    .map_err(|r| self.refuse_admin(p, AdminAction::AccountDisabled, r, ctx))?;
                Some(own)
            }
        };
        let audit = AuditDraft::new(
            chain_of(scope),
            p.actor(),
            Action::Admin(AdminAction::AccountDisabled),
        )
        .fields([id.as_str()])
        .request(ctx.request.as_ref());
        if self
            .store
            .disable_account(scope, id, audit, self.clock.now())?
        {
            Ok(())
        } else {
            Err(VaultError::NotFound)
        }
    }

    /// A password login: a session token for the account's role and controller, valid
    /// [`SESSION_SECONDS`]. Unknown login, disabled account and wrong password all give
    /// [`VaultError::BadCredentials`] after exactly one argon2id verification of the same
    /// cost, and one audit entry. CPU- and memory-heavy by design: run it on a blocking
    /// thread.
    pub fn login(
        &self,
        login: &LoginName,
        password: &PasswordAttempt,
        ctx: &CallContext,
    ) -> Result<IssuedToken, VaultError> {
        let account = self
            .store
            .account_by_login(&login_digest(&self.root, login))?;
        let usable = account.as_ref().filter(|a| a.disabled_at.is_none());
        let matched = self
            .passwords
            .verify_or_dummy(password.expose(), usable.map(|a| a.password_hash.as_str()))?;
        let now = self.clock.now();
        match usable {
            Some(acc) if matched => {
                let minted = custodian_crypto::token::mint(acc.role)?;
                let row = TokenRow {
                    id: TokenId::from_random(id_bytes()),
                    hash: minted.hash,
                    role: acc.role,
                    controller: acc.controller.clone(),
                    scope: TokenScope::default(),
                    label: format!("session of {}", acc.id),
                    created_at: now,
                    expires_at: Some(now + Duration::seconds(i64::from(SESSION_SECONDS))),
                    revoked_at: None,
                };
                // The login's entry is the token's: both commit together or not at all.
                let audit = AuditDraft::new(
                    chain_of(acc.controller.as_ref()),
                    account_actor(acc.role, &acc.id),
                    Action::Admin(AdminAction::Login),
                )
                .fields([row.id.as_str()])
                .request(ctx.request.as_ref());
                self.store.insert_token(&row, audit, now)?;
                Ok(IssuedToken {
                    token: token_view(&row),
                    secret: minted.secret.expose_secret().to_owned(),
                })
            }
            _ => {
                let (chain, actor) = match &account {
                    Some(a) => (
                        chain_of(a.controller.as_ref()),
                        account_actor(a.role, &a.id),
                    ),
                    None => (ChainId::System, "anonymous".to_owned()),
                };
                let draft = AuditDraft::new(chain, actor, Action::Admin(AdminAction::Login))
                    .refused(LOGIN_REFUSED)
                    .request(ctx.request.as_ref());
                // The refusal stands even if it cannot be recorded; the failure is logged.
                if let Err(e) = self.store.append_audit(vec![draft], now) {
                    tracing::error!(error = %e, "could not write a refused login to the audit trail");
                }
                Err(VaultError::BadCredentials)
            }
        }
    }
}
