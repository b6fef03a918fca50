//! Who is calling (DPA §10(b)(c)): a principal authenticated by an API token.

use crate::ids::{ControllerId, TokenId};
use crate::operation::Operation;
use crate::purpose::PurposeName;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// The processor's staff: manage controllers, never read personal data.
    OperatorAdmin,
    /// A controller's administrator: documents purposes, issues tokens, exercises rights.
    ControllerAdmin,
    /// A controller's application: stores and reads data within its token's scope.
    ControllerApp,
    /// Read-only access to a controller's data within its token's scope.
    ControllerViewer,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Self::OperatorAdmin,
        Self::ControllerAdmin,
        Self::ControllerApp,
        Self::ControllerViewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OperatorAdmin => "operator_admin",
            Self::ControllerAdmin => "controller_admin",
            Self::ControllerApp => "controller_app",
            Self::ControllerViewer => "controller_viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The short tag a token of this role carries in its prefix, so a leaked token's
    /// power is visible at a glance (and to secret scanners).
    pub fn token_tag(self) -> &'static str {
        match self {
            Self::OperatorAdmin => "op",
            Self::ControllerAdmin => "adm",
            Self::ControllerApp => "app",
            Self::ControllerViewer => "view",
        }
    }

    pub fn from_token_tag(tag: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.token_tag() == tag)
    }

    pub fn is_operator(self) -> bool {
        matches!(self, Self::OperatorAdmin)
    }
}

/// What a token may do beyond its role: `None` means "whatever the role and purposes allow".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenScope {
    pub purposes: Option<BTreeSet<PurposeName>>,
    pub operations: Option<BTreeSet<Operation>>,
}

impl TokenScope {
    pub fn allows_purpose(&self, p: &PurposeName) -> bool {
        self.purposes.as_ref().is_none_or(|set| set.contains(p))
    }
    pub fn allows_operation(&self, op: Operation) -> bool {
        self.operations.as_ref().is_none_or(|set| set.contains(&op))
    }
}

/// An authenticated caller. Built only from a token that was found, unexpired and unrevoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token: TokenId,
    pub role: Role,
    /// The one controller this principal belongs to; `None` for the operator.
    pub controller: Option<ControllerId>,
    pub scope: TokenScope,
}

impl Principal {
    /// How the audit trail names this principal: the token id, never the secret.
    pub fn actor(&self) -> String {
        format!("{}:{}", self.role.as_str(), self.token)
    }
}
