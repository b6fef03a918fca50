//! The processor's and the controllers' administration: controllers, purposes, tokens.

use crate::views::*;
use crate::{CallContext, Vault, VaultError};
use custodian_core::ValidationError;
use custodian_core::audit::{Action, AdminAction, AuditDraft, ChainId};
use custodian_core::controller::{Controller, ControllerStatus};
use custodian_core::ids::{ControllerId, TokenId};
use custodian_core::policy::{OperatorGrant, Refusal, authorize_admin, authorize_operator};
use custodian_core::principal::{Principal, Role, TokenScope};
use custodian_core::purpose::Purpose;
use custodian_crypto::keys::ControllerKey;
use custodian_crypto::random::id_bytes;
use custodian_store::rows::{ControllerRow, TokenRow};
use secrecy::ExposeSecret;
use time::Duration;

pub const MAX_TOKEN_LIFETIME_SECONDS: u32 = 31_622_400;

pub(crate) fn token_view(r: &TokenRow) -> TokenView {
    TokenView {
        id: r.id.clone(),
        role: r.role,
        controller: r.controller.clone(),
        purposes: r.scope.purposes.clone(),
        operations: r.scope.operations.clone(),
        label: r.label.clone(),
        created_at: r.created_at,
        expires_at: r.expires_at,
        revoked_at: r.revoked_at,
    }
}

pub(crate) fn chain_of(controller: Option<&ControllerId>) -> ChainId {
    controller
        .cloned()
        .map_or(ChainId::System, ChainId::Controller)
}

impl Vault {
    /// Checks the operator role, auditing a refusal.
    pub fn operator_grant(
        &self,
        p: &Principal,
        action: AdminAction,
        ctx: &CallContext,
    ) -> Result<OperatorGrant, VaultError> {
        authorize_operator(p).map_err(|r| self.refuse_admin(p, action, r, ctx))
    }

    pub(crate) fn refuse_admin(
        &self,
        p: &Principal,
        action: AdminAction,
        r: Refusal,
        ctx: &CallContext,
    ) -> VaultError {
        if r != Refusal::NotFound {
            self.audit_refusal(
                p,
                AuditDraft::new(ChainId::System, p.actor(), Action::Admin(action))
                    .refused(r.to_string())
                    .request(ctx.request.as_ref()),
            );
        }
        r.into()
    }

    pub fn create_controller(
        &self,
        grant: &OperatorGrant,
        input: NewController,
        ctx: &CallContext,
    ) -> Result<Controller, VaultError> {
        if !self.regions.iter().any(|r| r.id == input.region) {
            return Err(
                ValidationError::new("region", "is not one of the configured regions").into(),
            );
        }
        let now = self.clock.now();
        let controller = Controller {
            id: ControllerId::from_random(id_bytes()),
            name: input.name,
            region: input.region,
            agreement_effective: input.agreement_effective,
            governing_law: input.governing_law,
            status: ControllerStatus::Active,
            created_at: now,
        };
        let key = ControllerKey::generate()?;
        let row = ControllerRow {
            wrapped_key: self.root.wrap_controller_key(&controller.id, &key),
            controller: controller.clone(),
        };
        let audit = AuditDraft::new(
            ChainId::System,
            grant.actor(),
            Action::Admin(AdminAction::ControllerCreated),
        )
        .fields([controller.id.as_str()])
        .request(ctx.request.as_ref());
        self.store.insert_controller(&row, audit, now)?;
        Ok(controller)
    }

    pub fn list_controllers(&self, _grant: &OperatorGrant) -> Result<Vec<Controller>, VaultError> {
        Ok(self
            .store
            .controllers()?
            .into_iter()
            .map(|r| r.controller)
            .collect())
    }

    /// A controller is visible to the operator and to its own principals.
    pub fn get_controller(
        &self,
        p: &Principal,
        id: &ControllerId,
    ) -> Result<Controller, VaultError> {
        if !p.role.is_operator() && p.controller.as_ref() != Some(id) {
            return Err(VaultError::NotFound);
        }
        self.store
            .controller(id)?
            .map(|r| r.controller)
            .ok_or(VaultError::NotFound)
    }

    pub(crate) fn own_controller(p: &Principal) -> Result<&ControllerId, VaultError> {
        p.controller
            .as_ref()
            .ok_or(VaultError::Refused(Refusal::NotControllerAdmin))
    }

    pub fn document_purpose(
        &self,
        p: &Principal,
        purpose: Purpose,
        ctx: &CallContext,
    ) -> Result<Purpose, VaultError> {
        let controller = Self::own_controller(p)?;
        let grant = authorize_admin(p, controller, false)
            .map_err(|r| self.refuse_admin(p, AdminAction::PurposeDocumented, r, ctx))?;
        if let Err(e) = purpose.validate() {
            self.audit_refusal(
                p,
                AuditDraft::new(
                    ChainId::System,
                    p.actor(),
                    Action::Admin(AdminAction::PurposeDocumented),
                )
                .purpose(&purpose.name)
                .refused(format!("invalid input: {e}"))
                .request(ctx.request.as_ref()),
            );
            return Err(e.into());
        }
        let audit = AuditDraft::new(
            chain_of(Some(grant.controller())),
            grant.actor(),
            Action::Admin(AdminAction::PurposeDocumented),
        )
        .purpose(&purpose.name)
        .request(ctx.request.as_ref());
        self.store
            .upsert_purpose(grant.controller(), &purpose, audit, self.clock.now())?;
        Ok(purpose)
    }

    pub fn list_purposes(&self, p: &Principal) -> Result<Vec<Purpose>, VaultError> {
        let controller = p
            .controller
            .as_ref()
            .ok_or(VaultError::Refused(Refusal::NotControllerAdmin))?;
        Ok(self.store.purposes(controller)?)
    }

    /// Issues a token. The operator issues operator tokens and the first admin token of a
    /// controller; a controller admin issues any token of its own controller. A token can
    /// never be wider than its role.
    pub fn issue_token(
        &self,
        p: &Principal,
        input: NewToken,
        ctx: &CallContext,
    ) -> Result<IssuedToken, VaultError> {
        let target = match (p.role, input.role, &input.controller) {
            (Role::OperatorAdmin, Role::OperatorAdmin, None) => None,
            (Role::OperatorAdmin, Role::OperatorAdmin, Some(_)) => {
                return Err(ValidationError::new(
                    "controller",
                    "an operator token belongs to no controller",
                )
                .into());
            }
            (Role::OperatorAdmin, _, None) => {
                return Err(ValidationError::new(
                    "controller",
                    "is required for a controller token",
                )
                .into());
            }
            (Role::OperatorAdmin, Role::ControllerAdmin, Some(c)) => Some(c.clone()),
            (Role::OperatorAdmin, _, Some(_)) => {
                return Err(self.refuse_admin(
                    p,
                    AdminAction::TokenIssued,
                    Refusal::NotControllerAdmin,
                    ctx,
                ));
            }
            (_, Role::OperatorAdmin, _) => {
                return Err(self.refuse_admin(
                    p,
                    AdminAction::TokenIssued,
                    Refusal::NotOperator,
                    ctx,
                ));
            }
            (_, _, requested) => {
                let own = Self::own_controller(p)?;
                if requested.as_ref().is_some_and(|c| c != own) {
                    return Err(VaultError::NotFound);
                }
                authorize_admin(p, own, false)
                    .map_err(|r| self.refuse_admin(p, AdminAction::TokenIssued, r, ctx))?;
                Some(own.clone())
            }
        };
        if let Some(c) = &target {
            self.store.controller(c)?.ok_or(VaultError::NotFound)?;
        }
        let label = input.label.trim();
        if label.is_empty()
            || input.label.chars().count() > 200
            || input.label.chars().any(char::is_control)
        {
            return Err(ValidationError::new("label", "must be 1-200 printable characters").into());
        }
        if !(60..=MAX_TOKEN_LIFETIME_SECONDS).contains(&input.expires_in_seconds) {
            return Err(ValidationError::new(
                "expires_in_seconds",
                "must be between 60 seconds and one year",
            )
            .into());
        }
        self.mint_token(
            p.actor(),
            input.role,
            target,
            TokenScope {
                purposes: input.purposes,
                operations: input.operations,
            },
            label,
            input.expires_in_seconds,
            ctx,
        )
    }

    /// The command line's way in: whoever holds the root key and the database is the operator.
    pub fn issue_token_locally(
        &self,
        grant: &OperatorGrant,
        role: Role,
        controller: Option<ControllerId>,
        label: &str,
        lifetime_seconds: u32,
    ) -> Result<IssuedToken, VaultError> {
        if role.is_operator() != controller.is_none() {
            return Err(ValidationError::new(
                "controller",
                "operator tokens have no controller; controller tokens need one",
            )
            .into());
        }
        if let Some(c) = &controller {
            self.store.controller(c)?.ok_or(VaultError::NotFound)?;
        }
        self.mint_token(
            grant.actor().to_owned(),
            role,
            controller,
            TokenScope::default(),
            label,
            lifetime_seconds,
            &CallContext::default(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn mint_token(
        &self,
        actor: String,
        role: Role,
        controller: Option<ControllerId>,
        scope: TokenScope,
        label: &str,
        lifetime_seconds: u32,
        ctx: &CallContext,
    ) -> Result<IssuedToken, VaultError> {
        let minted = custodian_crypto::token::mint(role)?;
        let now = self.clock.now();
        let row = TokenRow {
            id: TokenId::from_random(id_bytes()),
            hash: minted.hash,
            role,
            controller: controller.clone(),
            scope,
            label: label.to_owned(),
            created_at: now,
            expires_at: Some(now + Duration::seconds(i64::from(lifetime_seconds))),
            revoked_at: None,
        };
        let audit = AuditDraft::new(
            chain_of(controller.as_ref()),
            actor,
            Action::Admin(AdminAction::TokenIssued),
        )
        .fields([row.id.as_str()])
        .request(ctx.request.as_ref());
        self.store.insert_token(&row, audit, now)?;
        Ok(IssuedToken {
            token: token_view(&row),
            secret: minted.secret.expose_secret().to_owned(),
        })
    }

    /// The operator sees operator tokens; a controller admin sees its controller's.
    pub fn list_tokens(
        &self,
        p: &Principal,
        ctx: &CallContext,
    ) -> Result<Vec<TokenView>, VaultError> {
        let scope = match p.role {
            Role::OperatorAdmin => None,
            _ => {
                let own = Self::own_controller(p)?;
                authorize_admin(p, own, false)
                    .map_err(|r| self.refuse_admin(p, AdminAction::TokenIssued, r, ctx))?;
                Some(own)
            }
        };
        Ok(self.store.tokens(scope)?.iter().map(token_view).collect())
    }

    pub fn revoke_token(
        &self,
        p: &Principal,
        id: &TokenId,
        ctx: &CallContext,
    ) -> Result<(), VaultError> {
        let scope = match p.role {
            Role::OperatorAdmin => None,
            _ => {
                let own = Self::own_controller(p)?;
                authorize_admin(p, own, false)
                    .map_err(|r| self.refuse_admin(p, AdminAction::TokenRevoked, r, ctx))?;
                Some(own)
            }
        };
        let audit = AuditDraft::new(
            chain_of(scope),
            p.actor(),
            Action::Admin(AdminAction::TokenRevoked),
        )
        .fields([id.as_str()])
        .request(ctx.request.as_ref());
        let revoked = self.store.revoke_token(scope, id, audit, self.clock.now());
        self.tokens_changed();
        if revoked? {
            Ok(())
        } else {
            Err(VaultError::NotFound)
        }
    }
}
