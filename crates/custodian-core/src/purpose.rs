//! Purposes: the controller's documented instructions (DPA §5(a)). Every data call names
//! one, and nothing outside what the named purpose documents is processed.

use crate::ValidationError;
use crate::category::DataCategory;
use crate::operation::Operation;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use time::{Duration, OffsetDateTime};

/// `[a-z0-9_-]{1,64}`, starting with a letter: safe in URLs, headers and logs.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PurposeName(crate::name::InlineName);

impl PurposeName {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = (1..=64).contains(&s.len())
            && s.as_bytes()[0].is_ascii_lowercase()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if let Some(name) = ok.then(|| crate::name::InlineName::new(s)).flatten() {
            Ok(Self(name))
        } else {
            Err(ValidationError::new(
                "purpose",
                "must be 1-64 characters of a-z, 0-9, '_' and '-', starting with a letter",
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}
impl TryFrom<String> for PurposeName {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<PurposeName> for String {
    fn from(p: PurposeName) -> String {
        p.as_str().to_owned()
    }
}
impl fmt::Display for PurposeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}
impl fmt::Debug for PurposeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// The lawful basis the controller states for a purpose (GDPR Art. 6(1)). The processor
/// does not judge it (DPA §6); it records it so the records of processing can show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LawfulBasis {
    Consent,
    Contract,
    LegalObligation,
    VitalInterests,
    PublicTask,
    LegitimateInterests,
}

impl LawfulBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consent => "consent",
            Self::Contract => "contract",
            Self::LegalObligation => "legal_obligation",
            Self::VitalInterests => "vital_interests",
            Self::PublicTask => "public_task",
            Self::LegitimateInterests => "legitimate_interests",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Consent,
            Self::Contract,
            Self::LegalObligation,
            Self::VitalInterests,
            Self::PublicTask,
            Self::LegitimateInterests,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
    }
}

/// The longest retention a purpose may document: 100 years. Beyond that it is a typo.
pub const MAX_RETENTION_DAYS: u32 = 36_525;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Purpose {
    pub name: PurposeName,
    /// Why the data is processed: 1 to 2000 characters, not blank.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 2000,
            pattern = "[^\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
        )
    )]
    pub description: String,
    pub lawful_basis: LawfulBasis,
    #[serde(deserialize_with = "crate::json::unique_set")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::purpose_categories))]
    pub categories: BTreeSet<DataCategory>,
    #[serde(deserialize_with = "crate::json::unique_set")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::purpose_operations))]
    pub operations: BTreeSet<Operation>,
    /// How long records collected under this purpose are kept: 1 to 36525 days.
    #[serde(deserialize_with = "crate::json::integer")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 36525))]
    pub retention_days: u32,
}

impl Purpose {
    /// Checks the parts a type cannot: a purpose must say why (description), cover at least
    /// one category and one operation, never cover payment cards, and keep data a bounded time.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let d = self.description.trim();
        if d.is_empty() || self.description.chars().count() > 2000 {
            return Err(ValidationError::new(
                "description",
                "must be 1-2000 characters saying why the data is processed",
            ));
        }
        if self.categories.is_empty() {
            return Err(ValidationError::new(
                "categories",
                "must name at least one data category",
            ));
        }
        if self.categories.iter().any(DataCategory::is_payment_card) {
            return Err(ValidationError::new(
                "categories",
                "payment card numbers are the payment gateway's (DPA §4) and cannot be a purpose's category",
            ));
        }
        if self.operations.is_empty() {
            return Err(ValidationError::new(
                "operations",
                "must name at least one processing operation",
            ));
        }
        if self.retention_days == 0 || self.retention_days > MAX_RETENTION_DAYS {
            return Err(ValidationError::new(
                "retention_days",
                "must be between 1 and 36525 days",
            ));
        }
        Ok(())
    }

    pub fn covers(&self, category: &DataCategory) -> bool {
        self.categories.iter().any(|c| c.covers(category))
    }

    pub fn allows(&self, op: Operation) -> bool {
        self.operations.contains(&op)
    }

    pub fn retention(&self) -> Duration {
        Duration::days(i64::from(self.retention_days))
    }

    /// When data collected now under this purpose must be gone, given an optional shorter
    /// expiry asked for by the caller. A longer one is capped: the purpose is the instruction.
    pub fn expiry(&self, now: OffsetDateTime, requested: Option<OffsetDateTime>) -> OffsetDateTime {
        let limit = now + self.retention();
        match requested {
            Some(r) if r < limit => r,
            _ => limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn purpose(cats: &[&str], ops: &[Operation]) -> Purpose {
        Purpose {
            name: PurposeName::parse("billing").unwrap(),
            description: "send invoices".into(),
            lawful_basis: LawfulBasis::Contract,
            categories: cats
                .iter()
                .map(|c| DataCategory::parse(c).unwrap())
                .collect(),
            operations: ops.iter().copied().collect(),
            retention_days: 30,
        }
    }

    #[test]
    fn names_are_restricted() {
        assert!(PurposeName::parse("billing").is_ok());
        assert!(PurposeName::parse("a-b_c9").is_ok());
        for bad in ["", "Billing", "9x", "a b", "a/b", &"x".repeat(65)] {
            assert!(PurposeName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_rejects_empty_and_card_purposes() {
        let ok = purpose(&["user.contact"], &[Operation::Retrieval]);
        assert!(ok.validate().is_ok());
        assert!(purpose(&[], &[Operation::Retrieval]).validate().is_err());
        assert!(purpose(&["user.contact"], &[]).validate().is_err());
        assert!(
            purpose(&["user.financial.credit_card"], &[Operation::Retrieval])
                .validate()
                .is_err()
        );
        let mut long = ok.clone();
        long.retention_days = 0;
        assert!(long.validate().is_err());
    }

    #[test]
    fn expiry_is_capped_by_retention() {
        let p = purpose(&["user"], &[Operation::Recording]);
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(p.expiry(now, None), now + Duration::days(30));
        assert_eq!(
            p.expiry(now, Some(now + Duration::days(1))),
            now + Duration::days(1)
        );
        assert_eq!(
            p.expiry(now, Some(now + Duration::days(99))),
            now + Duration::days(30)
        );
    }
}
