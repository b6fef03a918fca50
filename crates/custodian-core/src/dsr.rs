//! Data-subject requests reaching the processor (DPA §5(d), §7): the processor passes them
//! on to the controller and tracks the deadline; the controller decides and acts.

use crate::ValidationError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The rights a data subject can exercise (GDPR Art. 15-18, 20, 21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Right {
    Access,
    Rectification,
    Erasure,
    Restriction,
    Portability,
    Objection,
}

impl Right {
    pub const ALL: [Right; 6] = [
        Self::Access,
        Self::Rectification,
        Self::Erasure,
        Self::Restriction,
        Self::Portability,
        Self::Objection,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Rectification => "rectification",
            Self::Erasure => "erasure",
            Self::Restriction => "restriction",
            Self::Portability => "portability",
            Self::Objection => "objection",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Where a request stands. `Received` → `Acknowledged` → (`IdentityConfirmed`) →
/// `Fulfilled`, or `Rejected` from any open state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Received,
    Acknowledged,
    /// The controller confirmed who the requester is (the processor does not judge identity).
    IdentityConfirmed,
    Fulfilled,
    Rejected,
}

impl RequestState {
    pub const ALL: [RequestState; 5] = [
        Self::Received,
        Self::Acknowledged,
        Self::IdentityConfirmed,
        Self::Fulfilled,
        Self::Rejected,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Acknowledged => "acknowledged",
            Self::IdentityConfirmed => "identity_confirmed",
            Self::Fulfilled => "fulfilled",
            Self::Rejected => "rejected",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
    pub fn is_open(self) -> bool {
        !matches!(self, Self::Fulfilled | Self::Rejected)
    }
}

/// A transition the controller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Acknowledge,
    ConfirmIdentity,
    Fulfil,
    Reject,
    Extend,
    Link,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Acknowledge => "acknowledge",
            Self::ConfirmIdentity => "confirm identity",
            Self::Fulfil => "fulfil",
            Self::Reject => "reject",
            Self::Extend => "extend",
            Self::Link => "link to a subject",
        })
    }
}

/// The state after `t`, or why `t` is not allowed from `from`. Fulfilment needs a
/// confirmed identity: the API makes that step explicit.
pub fn next_state(from: RequestState, t: Transition) -> Result<RequestState, ValidationError> {
    use RequestState::*;
    use Transition::*;
    let refuse = |why: &str| {
        Err(ValidationError::new(
            "state",
            format!("cannot {t} a request that is {}: {why}", from.as_str()),
        ))
    };
    if !from.is_open() {
        return refuse("it is closed");
    }
    match (from, t) {
        (Received, Acknowledge) => Ok(Acknowledged),
        (_, Acknowledge) => refuse("it was already acknowledged"),
        (Received | Acknowledged, ConfirmIdentity) => Ok(IdentityConfirmed),
        (_, ConfirmIdentity) => refuse("identity is already confirmed"),
        (IdentityConfirmed, Fulfil) => Ok(Fulfilled),
        (_, Fulfil) => refuse("confirm the requester's identity first"),
        (_, Reject) => Ok(Rejected),
        (s, Extend | Link) => Ok(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RequestState::*;
    use Transition::*;

    #[test]
    fn fulfilment_requires_confirmed_identity() {
        assert!(next_state(Received, Fulfil).is_err());
        assert!(next_state(Acknowledged, Fulfil).is_err());
        assert_eq!(
            next_state(Acknowledged, ConfirmIdentity).unwrap(),
            IdentityConfirmed
        );
        assert_eq!(next_state(IdentityConfirmed, Fulfil).unwrap(), Fulfilled);
    }

    #[test]
    fn closed_requests_stay_closed() {
        for t in [Acknowledge, ConfirmIdentity, Fulfil, Reject, Extend, Link] {
            assert!(next_state(Fulfilled, t).is_err());
            assert!(next_state(Rejected, t).is_err());
        }
        assert_eq!(next_state(Received, Reject).unwrap(), Rejected);
        assert_eq!(next_state(Received, Acknowledge).unwrap(), Acknowledged);
        assert!(next_state(Acknowledged, Acknowledge).is_err());
    }

    #[test]
    fn names_round_trip() {
        for r in Right::ALL {
            assert_eq!(Right::parse(r.as_str()), Some(r));
        }
        for s in RequestState::ALL {
            assert_eq!(RequestState::parse(s.as_str()), Some(s));
        }
    }
}
