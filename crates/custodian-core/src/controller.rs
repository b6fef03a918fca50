//! Controllers: the processor's customers, each bound by its own agreement.

use crate::ValidationError;
use crate::ids::ControllerId;
use crate::region::{MemberState, RegionId};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ControllerStatus {
    Active,
    /// §14: termination started; data is being exported before destruction.
    Terminating,
    /// §14: legislation forbids destruction; data is sealed and not processed.
    LegalHold,
    /// §14: keys shredded, rows deleted.
    Destroyed,
}

impl ControllerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Terminating => "terminating",
            Self::LegalHold => "legal_hold",
            Self::Destroyed => "destroyed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Active,
            Self::Terminating,
            Self::LegalHold,
            Self::Destroyed,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
    /// Whether personal data of this controller may be processed at all.
    pub fn allows_processing(self) -> bool {
        matches!(self, Self::Active)
    }
}

/// A controller's display name: not personal data by design (it names a company), but
/// still bounded so it cannot be used to smuggle bulk data in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ControllerName(String);

impl ControllerName {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        // Length and control characters are judged on the text as sent, so that the rule is
        // exactly the one the OpenAPI document states.
        let t = s.trim();
        if t.is_empty() || s.chars().count() > 200 || s.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "name",
                "must be 1-200 printable characters",
            ));
        }
        Ok(Self(t.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for ControllerName {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<ControllerName> for String {
    fn from(n: ControllerName) -> String {
        n.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Controller {
    pub id: ControllerId,
    pub name: ControllerName,
    pub region: RegionId,
    /// §3: the agreement covers data sent from this date.
    pub agreement_effective: Date,
    /// §15: the law governing the agreement.
    pub governing_law: MemberState,
    pub status: ControllerStatus,
    #[serde(with = "crate::rfc3339")]
    pub created_at: OffsetDateTime,
}
