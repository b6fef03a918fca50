//! Lookup keys: the fields by which a controller finds a subject again (email, phone,
//! external id). They are never stored in clear: the store keeps a keyed blind index
//! (HMAC-SHA256) of the *normalised* value, so equal values must normalise equally.
//!
//! Normalisation, documented because it decides what "equal" means:
//! - email: surrounding white space trimmed, the whole address lower-cased (the local part
//!   too: providers treat it case-insensitively in practice); no other rewriting (no
//!   dot or plus-tag folding, which is provider-specific).
//! - phone: E.164. Spaces, dots, dashes and parentheses dropped, a leading `00` read as `+`;
//!   the result must be `+` then 8 to 15 digits, the first not 0.
//! - external id: trimmed, compared exactly (case-sensitive), 1 to 256 characters.

use crate::ValidationError;
use crate::category::DataCategory;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LookupKind {
    Email,
    Phone,
    ExternalId,
}

impl LookupKind {
    pub const ALL: [LookupKind; 3] = [Self::Email, Self::Phone, Self::ExternalId];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::ExternalId => "external_id",
        }
    }

    /// Which lookup kind a field of `category` feeds, if any.
    pub fn for_category(category: &DataCategory) -> Option<Self> {
        match category.as_str() {
            "user.contact.email" | "user.financial.billing_email" => Some(Self::Email),
            "user.contact.phone_number" => Some(Self::Phone),
            "user.unique_id" => Some(Self::ExternalId),
            _ => None,
        }
    }

    pub fn normalize(self, value: &str) -> Result<String, ValidationError> {
        match self {
            Self::Email => normalize_email(value),
            Self::Phone => normalize_phone(value),
            Self::ExternalId => {
                let t = value.trim();
                if t.is_empty()
                    || value.chars().count() > 256
                    || value.chars().any(char::is_control)
                {
                    Err(ValidationError::new(
                        "external_id",
                        "must be 1-256 printable characters",
                    ))
                } else {
                    Ok(t.to_owned())
                }
            }
        }
    }
}

pub fn normalize_email(value: &str) -> Result<String, ValidationError> {
    let bad = || ValidationError::new("email", "is not a valid email address");
    let v = value.trim().to_lowercase();
    if v.len() > 254 || value.chars().count() > 254 {
        return Err(bad());
    }
    let (local, domain) = v.rsplit_once('@').ok_or_else(bad)?;
    let local_ok = (1..=64).contains(&local.len())
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    if local_ok && domain_ok {
        Ok(v)
    } else {
        Err(bad())
    }
}

pub fn normalize_phone(value: &str) -> Result<String, ValidationError> {
    let bad = || {
        ValidationError::new(
            "phone",
            "must be an international number: + and 8-15 digits (E.164)",
        )
    };
    let mut out = String::with_capacity(16);
    if value.chars().count() > 64 {
        return Err(bad());
    }
    let t = value.trim();
    let rest = if let Some(r) = t.strip_prefix('+') {
        r
    } else if let Some(r) = t.strip_prefix("00") {
        r
    } else {
        return Err(bad());
    };
    out.push('+');
    for c in rest.chars() {
        match c {
            '0'..='9' => out.push(c),
            ' ' | '.' | '-' | '(' | ')' => {}
            _ => return Err(bad()),
        }
    }
    let digits = out.len() - 1;
    if (8..=15).contains(&digits) && !out[1..].starts_with('0') {
        Ok(out)
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_normalise_and_validate() {
        assert_eq!(
            normalize_email("  Alice.Martin+news@Example.FR ").unwrap(),
            "alice.martin+news@example.fr"
        );
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.fr",
            "alice@example",
            "al ice@example.fr",
            "alice@exa_mple.fr",
            "alice@-example.fr",
            ".alice@example.fr",
            "alice..b@example.fr",
            "alice@example.f1",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn phones_normalise_to_e164() {
        assert_eq!(
            normalize_phone("+33 6 12 34 56 78").unwrap(),
            "+33612345678"
        );
        assert_eq!(
            normalize_phone("0033 (6) 12-34-56-78").unwrap(),
            "+33612345678"
        );
        assert_eq!(normalize_phone("+1.415.555.0100").unwrap(), "+14155550100");
        for bad in [
            "0612345678",
            "+33",
            "+0123456789",
            "+33 6 12 34 56 7a",
            "+1234567890123456",
        ] {
            assert!(normalize_phone(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn categories_map_to_lookup_kinds() {
        let c = |s| DataCategory::parse(s).unwrap();
        assert_eq!(
            LookupKind::for_category(&c("user.contact.email")),
            Some(LookupKind::Email)
        );
        assert_eq!(
            LookupKind::for_category(&c("user.contact.phone_number")),
            Some(LookupKind::Phone)
        );
        assert_eq!(LookupKind::for_category(&c("user.name")), None);
    }
}
