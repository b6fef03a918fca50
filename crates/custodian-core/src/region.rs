//! Regions (DPA §8): where a controller's data lives. Each controller is pinned to one.

use crate::ValidationError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// EU member states and the three further EEA states, as ISO 3166-1 alpha-2 codes.
pub const EEA_COUNTRIES: &[&str] = &[
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
];

/// A short lowercase name such as `osc-fr1`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegionId(String);

impl RegionId {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = (1..=40).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new(
                "region",
                "must be 1-40 characters of a-z, 0-9 and '-'",
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for RegionId {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<RegionId> for String {
    fn from(r: RegionId) -> String {
        r.0
    }
}
impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ISO 3166-1 alpha-2 country code.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CountryCode(String);

impl CountryCode {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        if s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new(
                "country",
                "must be an ISO 3166-1 alpha-2 code in capitals, such as FR",
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is_eea(&self) -> bool {
        EEA_COUNTRIES.contains(&self.0.as_str())
    }
}
impl TryFrom<String> for CountryCode {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<CountryCode> for String {
    fn from(c: CountryCode) -> String {
        c.0
    }
}
impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The member state whose law governs a controller's agreement (DPA §15): the one in which
/// the customer is established, so it must be an EEA state.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MemberState(CountryCode);

impl MemberState {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let code =
            CountryCode::parse(s).map_err(|e| ValidationError::new("governing_law", e.reason))?;
        if code.is_eea() {
            Ok(Self(code))
        } else {
            Err(ValidationError::new(
                "governing_law",
                "must be an EU or EEA member state (DPA §15)",
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}
impl TryFrom<String> for MemberState {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<MemberState> for String {
    fn from(m: MemberState) -> String {
        m.0.0
    }
}
impl fmt::Debug for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Region {
    pub id: RegionId,
    pub country: CountryCode,
    /// Whether the region lies in the EEA. Derived from the country unless configured.
    pub eea: bool,
    pub provider: String,
    pub description: String,
}

impl Region {
    /// The regions the DPA §8 names: both in France, operated by Outscale.
    pub fn defaults() -> Vec<Region> {
        let fr = CountryCode::parse("FR").expect("valid code");
        vec![
            Region {
                id: RegionId::parse("osc-fr1").expect("valid id"),
                country: fr.clone(),
                eea: true,
                provider: "Outscale".into(),
                description: "Outscale eu-west-2, Paris-Pantin & Magny-les-Hameaux".into(),
            },
            Region {
                id: RegionId::parse("osc-secnum-fr1").expect("valid id"),
                country: fr,
                eea: true,
                provider: "Outscale".into(),
                description:
                    "Outscale cloudgouv-eu-west-1 (SecNumCloud), Paris-Pantin & Magny-les-Hameaux"
                        .into(),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_french_and_in_the_eea() {
        let r = Region::defaults();
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|r| r.eea && r.country.as_str() == "FR"));
        assert_eq!(r[0].id.as_str(), "osc-fr1");
        assert_eq!(r[1].id.as_str(), "osc-secnum-fr1");
    }

    #[test]
    fn governing_law_must_be_an_eea_state() {
        assert!(MemberState::parse("FR").is_ok());
        assert!(MemberState::parse("NO").is_ok());
        assert!(MemberState::parse("US").is_err());
        assert!(MemberState::parse("fr").is_err());
        assert!(MemberState::parse("FRA").is_err());
    }

    #[test]
    fn region_ids_are_restricted() {
        assert!(RegionId::parse("osc-fr1").is_ok());
        assert!(RegionId::parse("Osc").is_err());
        assert!(RegionId::parse("").is_err());
        assert!(RegionId::parse("-x").is_err());
    }
}
