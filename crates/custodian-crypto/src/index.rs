//! Blind indexes: a keyed HMAC-SHA256 of a normalised lookup value, so that the database
//! can answer "which subject has this email?" without holding the email. The key is derived
//! from the controller key, so equal emails at two controllers give unrelated digests and a
//! controller's indexes die with its key.

use aws_lc_rs::hmac;
use custodian_core::lookup::LookupKind;
use std::fmt;

pub struct IndexKey(hmac::Key);

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IndexKey(<redacted>)")
    }
}

impl IndexKey {
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> Self {
        let bytes = zeroize::Zeroizing::new(bytes);
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes.as_ref()))
    }

    /// `normalized` must come from [`LookupKind::normalize`]; the kind is bound in so that an
    /// external id equal to an email address does not collide with it.
    pub fn blind(&self, kind: LookupKind, normalized: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(kind.as_str().as_bytes());
        ctx.update(&[0]);
        ctx.update(normalized.as_bytes());
        ctx.sign().as_ref().try_into().expect("32 bytes")
    }
}

#[cfg(test)]
mod tests {
    use crate::keys::ControllerKey;
    use custodian_core::lookup::LookupKind;

    #[test]
    fn digests_are_keyed_and_kind_separated() {
        let a = ControllerKey::generate().unwrap().index_key();
        let b = ControllerKey::generate().unwrap().index_key();
        let v = "alice@example.fr";
        assert_eq!(a.blind(LookupKind::Email, v), a.blind(LookupKind::Email, v));
        assert_ne!(a.blind(LookupKind::Email, v), b.blind(LookupKind::Email, v));
        assert_ne!(
            a.blind(LookupKind::Email, v),
            a.blind(LookupKind::ExternalId, v)
        );
    }
}
