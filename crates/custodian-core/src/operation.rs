//! The processing operations of GDPR Art. 4(2), which the DPA §2(e) repeats. Every API
//! operation maps to exactly one of them, and that one is what the audit trail records.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Operation {
    Collection,
    Recording,
    Organisation,
    Structuring,
    Storage,
    Alteration,
    Retrieval,
    Consultation,
    Use,
    Disclosure,
    Dissemination,
    Alignment,
    Restriction,
    Erasure,
    Destruction,
}

impl Operation {
    pub const ALL: [Operation; 15] = [
        Self::Collection,
        Self::Recording,
        Self::Organisation,
        Self::Structuring,
        Self::Storage,
        Self::Alteration,
        Self::Retrieval,
        Self::Consultation,
        Self::Use,
        Self::Disclosure,
        Self::Dissemination,
        Self::Alignment,
        Self::Restriction,
        Self::Erasure,
        Self::Destruction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Collection => "collection",
            Self::Recording => "recording",
            Self::Organisation => "organisation",
            Self::Structuring => "structuring",
            Self::Storage => "storage",
            Self::Alteration => "alteration",
            Self::Retrieval => "retrieval",
            Self::Consultation => "consultation",
            Self::Use => "use",
            Self::Disclosure => "disclosure",
            Self::Dissemination => "dissemination",
            Self::Alignment => "alignment",
            Self::Restriction => "restriction",
            Self::Erasure => "erasure",
            Self::Destruction => "destruction",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// Operations that only read personal data. A viewer principal may do these and no other.
    pub fn is_read(self) -> bool {
        matches!(self, Self::Retrieval | Self::Consultation | Self::Use)
    }

    /// What a restricted subject's data may still undergo (GDPR Art. 18(2)): being stored,
    /// and being erased; restriction itself can be lifted.
    pub fn allowed_while_restricted(self) -> bool {
        matches!(self, Self::Storage | Self::Erasure | Self::Restriction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_parse() {
        for op in Operation::ALL {
            assert_eq!(Operation::parse(op.as_str()), Some(op));
            let json = serde_json::to_string(&op).unwrap();
            assert_eq!(json, format!("\"{}\"", op.as_str()));
        }
        assert_eq!(Operation::parse("reading"), None);
    }
}
