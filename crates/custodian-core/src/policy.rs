//! The authorisation rules. Each check returns a *grant*: a value that can only be built
//! here, after the check passed, and that the vault must hand to the store to touch data.
//! Code that skips the check has no grant and does not compile.

use crate::category::DataCategory;
use crate::controller::{Controller, ControllerStatus};
use crate::ids::ControllerId;
use crate::operation::Operation;
use crate::principal::{Principal, Role};
use crate::purpose::{Purpose, PurposeName};
use serde::Serialize;
use std::fmt;

/// Why an operation was refused. The text is shown to the caller and written to the audit
/// trail, so it names purposes, operations, categories and field names, never values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Refusal {
    /// The object does not exist for this principal (another tenant's objects look absent).
    NotFound,
    RoleForbids {
        role: Role,
        operation: Operation,
    },
    NotOperator,
    NotControllerAdmin,
    TokenPurposeOutOfScope {
        purpose: PurposeName,
    },
    TokenOperationOutOfScope {
        operation: Operation,
    },
    PurposeNotDocumented {
        purpose: PurposeName,
    },
    PurposeForbidsOperation {
        purpose: PurposeName,
        operation: Operation,
    },
    PurposeForbidsCategories {
        purpose: PurposeName,
        fields: Vec<String>,
    },
    SubjectRestricted {
        operation: Operation,
    },
    SubjectObjected {
        purpose: PurposeName,
    },
    ControllerNotActive {
        status: ControllerStatus,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => write!(f, "not found"),
            Self::RoleForbids { role, operation } => write!(
                f,
                "role {} may not perform {}",
                role.as_str(),
                operation.as_str()
            ),
            Self::NotOperator => write!(f, "only the operator may do this"),
            Self::NotControllerAdmin => write!(f, "only a controller admin may do this"),
            Self::TokenPurposeOutOfScope { purpose } => {
                write!(f, "this token is not scoped to purpose {purpose}")
            }
            Self::TokenOperationOutOfScope { operation } => write!(
                f,
                "this token is not scoped to operation {}",
                operation.as_str()
            ),
            Self::PurposeNotDocumented { purpose } => {
                write!(f, "purpose {purpose} is not documented by this controller")
            }
            Self::PurposeForbidsOperation { purpose, operation } => {
                write!(f, "purpose {purpose} does not allow {}", operation.as_str())
            }
            Self::PurposeForbidsCategories { purpose, fields } => write!(
                f,
                "purpose {purpose} does not cover the category of field(s) {}",
                fields.join(", ")
            ),
            Self::SubjectRestricted { operation } => write!(
                f,
                "processing of this subject is restricted (Art. 18); {} is not allowed",
                operation.as_str()
            ),
            Self::SubjectObjected { purpose } => {
                write!(
                    f,
                    "the subject objected to processing for purpose {purpose} (Art. 21)"
                )
            }
            Self::ControllerNotActive { status } => write!(
                f,
                "this controller's data is not processable (status {})",
                status.as_str()
            ),
        }
    }
}

/// Why a unit of work inside a transaction stopped: the transaction rolls back and, for a
/// refusal, the refusal alone is written to the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    NotFound,
    /// The subject was erased: it existed, and is gone for good (HTTP 410).
    Gone,
    Refused(Refusal),
    Invalid(crate::ValidationError),
}

impl From<Refusal> for Denial {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotFound => Denial::NotFound,
            other => Denial::Refused(other),
        }
    }
}

impl From<crate::ValidationError> for Denial {
    fn from(e: crate::ValidationError) -> Self {
        Denial::Invalid(e)
    }
}

/// Permission to perform one processing operation on one controller's data under one
/// documented purpose. Field categories and the subject's state are checked against it
/// once the data is in hand ([`DataGrant::check_fields`], [`DataGrant::check_subject`]).
#[derive(Debug, Clone)]
pub struct DataGrant {
    controller: ControllerId,
    actor: String,
    purpose: Purpose,
    operation: Operation,
}

impl DataGrant {
    pub fn controller(&self) -> &ControllerId {
        &self.controller
    }
    pub fn actor(&self) -> &str {
        &self.actor
    }
    pub fn purpose(&self) -> &Purpose {
        &self.purpose
    }
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// Every field's category must be covered by the purpose; the refusal names the fields.
    pub fn check_fields<'a, N: std::fmt::Display>(
        &self,
        fields: impl IntoIterator<Item = (N, &'a DataCategory)>,
    ) -> Result<(), Refusal> {
        // Names become text only for a refusal: a bulk read checks thousands of fields.
        let outside: Vec<String> = fields
            .into_iter()
            .filter(|(_, c)| !self.purpose.covers(c))
            .map(|(name, _)| name.to_string())
            .collect();
        if outside.is_empty() {
            Ok(())
        } else {
            Err(Refusal::PurposeForbidsCategories {
                purpose: self.purpose.name.clone(),
                fields: outside,
            })
        }
    }

    /// A restricted subject's data may only be stored or erased (Art. 18); an objection
    /// (Art. 21) stops processing under the objected purpose, erasure excepted.
    pub fn check_subject(&self, restricted: bool, objected: bool) -> Result<(), Refusal> {
        if restricted && !self.operation.allowed_while_restricted() {
            return Err(Refusal::SubjectRestricted {
                operation: self.operation,
            });
        }
        if objected && !matches!(self.operation, Operation::Erasure | Operation::Restriction) {
            return Err(Refusal::SubjectObjected {
                purpose: self.purpose.name.clone(),
            });
        }
        Ok(())
    }
}

/// Decides whether `principal` may perform `op` on `controller`'s data under `purpose_name`.
/// `documented` is the controller's purpose of that name, if it has one.
pub fn authorize_data(
    principal: &Principal,
    controller: &Controller,
    purpose_name: &PurposeName,
    documented: Option<&Purpose>,
    op: Operation,
) -> Result<DataGrant, Refusal> {
    if principal.controller.as_ref() != Some(&controller.id) {
        return Err(Refusal::NotFound);
    }
    if !controller.status.allows_processing() {
        return Err(Refusal::ControllerNotActive {
            status: controller.status,
        });
    }
    let role_ok = match principal.role {
        Role::OperatorAdmin => false,
        Role::ControllerAdmin | Role::ControllerApp => true,
        Role::ControllerViewer => op.is_read(),
    };
    if !role_ok {
        return Err(Refusal::RoleForbids {
            role: principal.role,
            operation: op,
        });
    }
    if !principal.scope.allows_purpose(purpose_name) {
        return Err(Refusal::TokenPurposeOutOfScope {
            purpose: purpose_name.clone(),
        });
    }
    if !principal.scope.allows_operation(op) {
        return Err(Refusal::TokenOperationOutOfScope { operation: op });
    }
    let purpose = documented.ok_or_else(|| Refusal::PurposeNotDocumented {
        purpose: purpose_name.clone(),
    })?;
    if !purpose.allows(op) {
        return Err(Refusal::PurposeForbidsOperation {
            purpose: purpose_name.clone(),
            operation: op,
        });
    }
    Ok(DataGrant {
        controller: controller.id.clone(),
        actor: principal.actor(),
        purpose: purpose.clone(),
        operation: op,
    })
}

/// Permission to administer one controller: document purposes, issue and revoke its
/// tokens, read its audit trail. Held by that controller's admins and, for issuing the
/// first admin token and reading nothing personal, by the operator.
#[derive(Debug, Clone)]
pub struct AdminGrant {
    controller: ControllerId,
    actor: String,
    by_operator: bool,
}

impl AdminGrant {
    pub fn controller(&self) -> &ControllerId {
        &self.controller
    }
    pub fn actor(&self) -> &str {
        &self.actor
    }
    pub fn by_operator(&self) -> bool {
        self.by_operator
    }
}

pub fn authorize_admin(
    principal: &Principal,
    controller: &ControllerId,
    operator_may: bool,
) -> Result<AdminGrant, Refusal> {
    match principal.role {
        Role::OperatorAdmin if operator_may => Ok(AdminGrant {
            controller: controller.clone(),
            actor: principal.actor(),
            by_operator: true,
        }),
        Role::ControllerAdmin if principal.controller.as_ref() == Some(controller) => {
            Ok(AdminGrant {
                controller: controller.clone(),
                actor: principal.actor(),
                by_operator: false,
            })
        }
        _ if principal
            .controller
            .as_ref()
            .is_some_and(|c| c != controller) =>
        {
            Err(Refusal::NotFound)
        }
        _ => Err(Refusal::NotControllerAdmin),
    }
}

/// Permission to read (not decrypt) a controller's audit trail: its admins and viewers.
pub fn authorize_audit_read(
    principal: &Principal,
    controller: &ControllerId,
) -> Result<AdminGrant, Refusal> {
    match principal.role {
        Role::ControllerAdmin | Role::ControllerViewer
            if principal.controller.as_ref() == Some(controller) =>
        {
            Ok(AdminGrant {
                controller: controller.clone(),
                actor: principal.actor(),
                by_operator: false,
            })
        }
        _ if principal
            .controller
            .as_ref()
            .is_some_and(|c| c != controller) =>
        {
            Err(Refusal::NotFound)
        }
        _ => Err(Refusal::NotControllerAdmin),
    }
}

/// Permission for the processor's own administration (controllers, regions).
#[derive(Debug, Clone)]
pub struct OperatorGrant {
    actor: String,
}

impl OperatorGrant {
    pub fn actor(&self) -> &str {
        &self.actor
    }
    /// The command line acts with the operator's authority: whoever holds the root key
    /// and the database files is the operator.
    pub fn local_cli() -> Self {
        Self {
            actor: "operator_admin:cli".into(),
        }
    }
}

pub fn authorize_operator(principal: &Principal) -> Result<OperatorGrant, Refusal> {
    if principal.role.is_operator() {
        Ok(OperatorGrant {
            actor: principal.actor(),
        })
    } else {
        Err(Refusal::NotOperator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::ControllerName;
    use crate::ids::TokenId;
    use crate::principal::TokenScope;
    use crate::purpose::LawfulBasis;
    use crate::region::{MemberState, RegionId};
    use time::OffsetDateTime;

    fn controller(n: u8) -> Controller {
        Controller {
            id: ControllerId::from_random([n; 16]),
            name: ControllerName::parse("Acme").unwrap(),
            region: RegionId::parse("osc-fr1").unwrap(),
            agreement_effective: time::macros::date!(2026 - 01 - 01),
            governing_law: MemberState::parse("FR").unwrap(),
            status: ControllerStatus::Active,
            created_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn principal(role: Role, c: &Controller) -> Principal {
        Principal {
            token: TokenId::from_random([9; 16]),
            role,
            controller: (!role.is_operator()).then(|| c.id.clone()),
            scope: TokenScope::default(),
        }
    }

    fn purpose(cats: &[&str], ops: &[Operation]) -> Purpose {
        Purpose {
            name: PurposeName::parse("support").unwrap(),
            description: "answer tickets".into(),
            lawful_basis: LawfulBasis::Contract,
            categories: cats
                .iter()
                .map(|c| DataCategory::parse(c).unwrap())
                .collect(),
            operations: ops.iter().copied().collect(),
            retention_days: 10,
        }
    }

    fn name() -> PurposeName {
        PurposeName::parse("support").unwrap()
    }

    #[test]
    fn financial_field_under_contact_purpose_is_refused_naming_the_field() {
        let c = controller(1);
        let p = purpose(&["user.contact"], &[Operation::Retrieval]);
        let grant = authorize_data(
            &principal(Role::ControllerApp, &c),
            &c,
            &name(),
            Some(&p),
            Operation::Retrieval,
        )
        .unwrap();
        let email = DataCategory::parse("user.contact.email").unwrap();
        let iban = DataCategory::parse("user.financial.bank_account").unwrap();
        assert!(grant.check_fields([("email", &email)]).is_ok());
        let err = grant
            .check_fields([("email", &email), ("iban", &iban)])
            .unwrap_err();
        assert_eq!(
            err,
            Refusal::PurposeForbidsCategories {
                purpose: name(),
                fields: vec!["iban".into()]
            }
        );
    }

    #[test]
    fn data_checks_in_order() {
        let a = controller(1);
        let b = controller(2);
        let p = purpose(&["user"], &[Operation::Retrieval]);
        let app = principal(Role::ControllerApp, &a);
        let check = |pr: &Principal, c: &Controller, doc: Option<&Purpose>, op| {
            authorize_data(pr, c, &name(), doc, op).map(|_| ())
        };
        assert_eq!(
            check(&app, &b, Some(&p), Operation::Retrieval),
            Err(Refusal::NotFound)
        );
        assert_eq!(
            check(&app, &a, None, Operation::Retrieval),
            Err(Refusal::PurposeNotDocumented { purpose: name() })
        );
        assert_eq!(
            check(&app, &a, Some(&p), Operation::Erasure),
            Err(Refusal::PurposeForbidsOperation {
                purpose: name(),
                operation: Operation::Erasure
            })
        );
        let op = principal(Role::OperatorAdmin, &a);
        assert_eq!(
            check(&op, &a, Some(&p), Operation::Retrieval),
            Err(Refusal::NotFound)
        );
        let viewer = principal(Role::ControllerViewer, &a);
        assert!(check(&viewer, &a, Some(&p), Operation::Retrieval).is_ok());
        assert!(matches!(
            check(&viewer, &a, Some(&p), Operation::Erasure),
            Err(Refusal::RoleForbids { .. })
        ));
        let mut scoped = app.clone();
        scoped.scope.purposes = Some([PurposeName::parse("other").unwrap()].into());
        assert!(matches!(
            check(&scoped, &a, Some(&p), Operation::Retrieval),
            Err(Refusal::TokenPurposeOutOfScope { .. })
        ));
        let mut scoped = app.clone();
        scoped.scope.operations = Some([Operation::Recording].into());
        assert!(matches!(
            check(&scoped, &a, Some(&p), Operation::Retrieval),
            Err(Refusal::TokenOperationOutOfScope { .. })
        ));
        let mut held = a.clone();
        held.status = ControllerStatus::LegalHold;
        assert!(matches!(
            check(&app, &held, Some(&p), Operation::Retrieval),
            Err(Refusal::ControllerNotActive { .. })
        ));
    }

    #[test]
    fn restriction_allows_only_storage_and_erasure() {
        let c = controller(1);
        let p = purpose(&["user"], &Operation::ALL);
        let app = principal(Role::ControllerApp, &c);
        for op in Operation::ALL {
            let g = authorize_data(&app, &c, &name(), Some(&p), op).unwrap();
            let r = g.check_subject(true, false);
            assert_eq!(r.is_ok(), op.allowed_while_restricted(), "{op:?}");
        }
    }

    #[test]
    fn objection_stops_processing_but_not_erasure() {
        let c = controller(1);
        let p = purpose(&["user"], &Operation::ALL);
        let app = principal(Role::ControllerApp, &c);
        let read = authorize_data(&app, &c, &name(), Some(&p), Operation::Retrieval).unwrap();
        assert!(matches!(
            read.check_subject(false, true),
            Err(Refusal::SubjectObjected { .. })
        ));
        let erase = authorize_data(&app, &c, &name(), Some(&p), Operation::Erasure).unwrap();
        assert!(erase.check_subject(false, true).is_ok());
    }

    #[test]
    fn admin_grants_are_tenant_bound() {
        let a = controller(1);
        let b = controller(2);
        let admin = principal(Role::ControllerAdmin, &a);
        assert!(authorize_admin(&admin, &a.id, false).is_ok());
        assert_eq!(
            authorize_admin(&admin, &b.id, false).unwrap_err(),
            Refusal::NotFound
        );
        let app = principal(Role::ControllerApp, &a);
        assert_eq!(
            authorize_admin(&app, &a.id, false).unwrap_err(),
            Refusal::NotControllerAdmin
        );
        let op = principal(Role::OperatorAdmin, &a);
        assert!(authorize_admin(&op, &b.id, true).unwrap().by_operator());
        assert!(authorize_admin(&op, &b.id, false).is_err());
        assert!(authorize_operator(&op).is_ok());
        assert!(authorize_operator(&admin).is_err());
        assert!(authorize_audit_read(&app, &a.id).is_err());
    }
}
