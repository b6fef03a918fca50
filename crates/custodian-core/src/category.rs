//! The catalogue of data categories (DPA §4) and data-subject categories.
//!
//! Keys follow the fideslang taxonomy where one fits; the DPA needs a few more, added under
//! the parent they belong to (marked "extension" below). A category is hierarchical: a rule
//! on `user.contact` covers `user.contact.email`.

use crate::ValidationError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Every data category Custodian knows, with the DPA §4 group it belongs to.
pub const DATA_CATEGORIES: &[(&str, &str)] = &[
    ("user", "all personal data"),
    ("user.name", "contact information: name"),
    ("user.contact", "contact information"),
    ("user.contact.email", "contact information: email address"),
    (
        "user.contact.phone_number",
        "contact information: telephone or mobile number",
    ),
    ("user.contact.address", "contact information: home address"),
    ("user.authorization", "credentials"),
    (
        "user.authorization.password",
        "contact information: passwords",
    ),
    ("user.unique_id", "an identifier the controller assigns"),
    ("user.financial", "financial information"),
    (
        "user.financial.credit_card",
        "card numbers: refused, they belong to the payment gateway",
    ),
    (
        "user.financial.bank_account",
        "financial information: bank account",
    ),
    ("user.financial.tax_id", "billing: tax id (extension)"),
    (
        "user.financial.vat_number",
        "billing: VAT number of the payer (extension)",
    ),
    (
        "user.financial.billing_address",
        "billing: address (extension)",
    ),
    (
        "user.financial.billing_email",
        "billing: email where invoices are sent (extension)",
    ),
    (
        "user.workplace",
        "employment: employer name and business contact details",
    ),
    ("user.job_title", "employment: job title and function"),
    ("user.content", "services data stored by users"),
    ("user.content.private", "services data: private content"),
    ("user.content.public", "services data: public content"),
    (
        "user.content.application_log",
        "services data: application logs (extension)",
    ),
    ("user.device", "device data"),
    ("user.device.ip_address", "connection logs: IP address"),
    (
        "user.device.connection_log",
        "connection logs: request, browser, pages (extension)",
    ),
    ("user.behavior", "behavioural data"),
    (
        "user.behavior.browsing_history",
        "connection logs: pages viewed, clicks",
    ),
    (
        "user.behavior.timeline_event",
        "timeline event logs (extension)",
    ),
    ("user.demographic", "demographic data"),
    ("system", "data about the system, not a person"),
    ("system.operations", "operational data"),
];

/// A data category from the catalogue. Parsing refuses keys the catalogue does not hold,
/// so a typo cannot silently create a category that no purpose covers.
#[derive(Clone, PartialOrd, Ord)]
pub struct DataCategory(&'static str);

impl PartialEq for DataCategory {
    fn eq(&self, other: &Self) -> bool {
        // A parsed category points into the catalogue, so the same key is mostly the same
        // pointer, and a bulk read compares a category per field per record.
        std::ptr::eq(self.0, other.0) || self.0 == other.0
    }
}

impl Eq for DataCategory {}

impl std::hash::Hash for DataCategory {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.hash(h);
    }
}

impl DataCategory {
    pub fn parse(key: &str) -> Result<Self, ValidationError> {
        // Stored field sets parse a category per field (thousands per bulk read), so the
        // catalogue is searched through a sorted copy of its keys rather than in order.
        static SORTED: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
        let sorted = SORTED.get_or_init(|| {
            let mut keys: Vec<&'static str> = DATA_CATEGORIES.iter().map(|(k, _)| *k).collect();
            keys.sort_unstable();
            keys
        });
        sorted
            .binary_search(&key)
            .map(|i| DataCategory(sorted[i]))
            .map_err(|_| ValidationError::new("category", "is not in the data-category catalogue"))
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }

    /// True when a rule on `self` applies to `other` (equal, or an ancestor of it).
    pub fn covers(&self, other: &DataCategory) -> bool {
        other.0 == self.0
            || (other.0.len() > self.0.len()
                && other.0.starts_with(self.0)
                && other.0.as_bytes()[self.0.len()] == b'.')
    }

    /// Payment card numbers are the payment gateway's (DPA §4); Custodian never stores them.
    pub fn is_payment_card(&self) -> bool {
        self.0 == "user.financial.credit_card"
    }
}

impl fmt::Display for DataCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}
impl fmt::Debug for DataCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}
impl Serialize for DataCategory {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}
impl<'de> Deserialize<'de> for DataCategory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Categories of data subjects (DPA §4), fideslang keys where they exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SubjectCategory {
    /// The customer's representatives (extension).
    Representative,
    /// End users of the customer's services (extension).
    EndUser,
    Employee,
    JobApplicant,
    /// Contractors (extension; fideslang has `consultant`).
    Contractor,
    /// Collaborators (extension).
    Collaborator,
    /// Partners (extension).
    Partner,
    Customer,
    /// People attempting to communicate or transfer personal data to users of the services.
    Correspondent,
}

impl SubjectCategory {
    pub const ALL: [SubjectCategory; 9] = [
        Self::Representative,
        Self::EndUser,
        Self::Employee,
        Self::JobApplicant,
        Self::Contractor,
        Self::Collaborator,
        Self::Partner,
        Self::Customer,
        Self::Correspondent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Representative => "representative",
            Self::EndUser => "end_user",
            Self::Employee => "employee",
            Self::JobApplicant => "job_applicant",
            Self::Contractor => "contractor",
            Self::Collaborator => "collaborator",
            Self::Partner => "partner",
            Self::Customer => "customer",
            Self::Correspondent => "correspondent",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| ValidationError::new("subject category", "is not a known category"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(s: &str) -> DataCategory {
        DataCategory::parse(s).unwrap()
    }

    #[test]
    fn parent_covers_children_but_not_siblings_or_prefixes() {
        assert!(cat("user.contact").covers(&cat("user.contact.email")));
        assert!(cat("user").covers(&cat("user.financial.tax_id")));
        assert!(cat("user.contact.email").covers(&cat("user.contact.email")));
        assert!(!cat("user.contact.email").covers(&cat("user.contact")));
        assert!(!cat("user.contact").covers(&cat("user.financial")));
        assert!(!cat("user.content").covers(&cat("user.contact.email")));
        assert!(!cat("system").covers(&cat("user.name")));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(DataCategory::parse("user.contacts").is_err());
        assert!(DataCategory::parse("").is_err());
        assert!(DataCategory::parse("user.").is_err());
        for (key, _) in DATA_CATEGORIES {
            assert_eq!(DataCategory::parse(key).map(|c| c.as_str()), Ok(*key));
        }
    }

    #[test]
    fn catalogue_parents_exist() {
        for (key, _) in DATA_CATEGORIES {
            if let Some((parent, _)) = key.rsplit_once('.') {
                assert!(DataCategory::parse(parent).is_ok(), "{key} has no parent");
            }
        }
    }

    #[test]
    fn subject_categories_round_trip() {
        for c in SubjectCategory::ALL {
            assert_eq!(SubjectCategory::parse(c.as_str()).unwrap(), c);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
    }
}
