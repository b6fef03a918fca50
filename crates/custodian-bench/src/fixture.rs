//! The set-up every Custodian benchmark repeats: a controller in `osc-fr1` under French law,
//! and principals of it, made through the vault's real administration path.

use custodian_core::controller::ControllerName;
use custodian_core::ids::ControllerId;
use custodian_core::policy::OperatorGrant;
use custodian_core::principal::{Principal, Role};
use custodian_core::region::{MemberState, RegionId};
use custodian_vault::views::NewController;
use custodian_vault::{CallContext, Vault};

/// Creates a controller named `name` (as the local operator would from the CLI).
pub fn controller(vault: &Vault, name: &str) -> ControllerId {
    vault
        .create_controller(
            &OperatorGrant::local_cli(),
            NewController {
                name: ControllerName::parse(name).expect("name"),
                region: RegionId::parse("osc-fr1").expect("region"),
                agreement_effective: time::macros::date!(2026 - 01 - 01),
                governing_law: MemberState::parse("FR").expect("FR"),
            },
            &CallContext::default(),
        )
        .expect("controller")
        .id
}

/// A principal of `role` in `controller`, authenticated from a freshly issued token.
pub fn principal(
    vault: &Vault,
    controller: &ControllerId,
    role: Role,
    label: &str,
    ttl_seconds: u32,
) -> Principal {
    let t = vault
        .issue_token_locally(
            &OperatorGrant::local_cli(),
            role,
            Some(controller.clone()),
            label,
            ttl_seconds,
        )
        .expect("token");
    vault.authenticate(&t.secret.into()).expect("auth")
}
