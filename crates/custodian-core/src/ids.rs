//! Identifiers. Each is a type prefix plus 26 characters of Crockford base32 encoding
//! 128 random bits (so a subject id carries no information about the person: it is a
//! pseudonym in the sense of GDPR Art. 4(5)). The randomness comes from the caller.

use crate::ValidationError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const BODY_LEN: usize = 26;

const PREFIX_LEN: usize = 4;
const ID_LEN: usize = PREFIX_LEN + BODY_LEN;

/// An id's text, held inline: ids are made, cloned and dropped for every row a bulk
/// operation touches, and a heap string each time added to its allocator's share.
fn encode(prefix: &str, bytes: [u8; 16]) -> [u8; ID_LEN] {
    let mut out = [0u8; ID_LEN];
    out[..PREFIX_LEN].copy_from_slice(prefix.as_bytes());
    let mut n = u128::from_be_bytes(bytes);
    for slot in out[PREFIX_LEN..].iter_mut().rev() {
        *slot = ALPHABET[(n & 31) as usize];
        n >>= 5;
    }
    out
}

/// The text of an inline id; every constructor stores ASCII only.
fn text(id: &[u8; ID_LEN]) -> &str {
    std::str::from_utf8(id).expect("ids are ASCII")
}

/// `IN_ALPHABET[b]`: whether byte `b` is a digit of [`ALPHABET`] (a table, not a search:
/// ids are parsed for every audit entry `verify` reads).
const IN_ALPHABET: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        t[ALPHABET[i] as usize] = true;
        i += 1;
    }
    t
};

fn valid_body(body: &[u8]) -> bool {
    body.len() == BODY_LEN
        && body.iter().all(|&b| IN_ALPHABET[b as usize])
        // 26 base32 digits hold 130 bits; the first may only carry the top 3 bits.
        && body[0] <= b'7'
}

macro_rules! random_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        // Ordered and hashed as its text (equal lengths: byte order is string order).
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
        pub struct $name([u8; ID_LEN]);

        const _: () = assert!($prefix.len() == PREFIX_LEN);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// Builds an id from 128 random bits supplied by the caller.
            pub fn from_random(bytes: [u8; 16]) -> Self {
                Self(encode($prefix, bytes))
            }

            pub fn parse(s: &str) -> Result<Self, ValidationError> {
                Self::parse_bytes(s.as_bytes())
            }

            /// [`Self::parse`] of text given as bytes, as a database answers it: an id is
            /// ASCII, so checking its digits checks the text too, and a cold bulk read,
            /// which parses two ids a row, needs no UTF-8 check of them first.
            pub fn parse_bytes(s: &[u8]) -> Result<Self, ValidationError> {
                match s.strip_prefix($prefix.as_bytes()) {
                    Some(body) if valid_body(body) => {
                        Ok(Self(s.try_into().expect("prefix and body lengths")))
                    }
                    _ => Err(ValidationError::new(
                        stringify!($name),
                        concat!("must be '", $prefix, "' followed by 26 base32 characters"),
                    )),
                }
            }

            pub fn as_str(&self) -> &str {
                text(&self.0)
            }

            /// The id's bytes (its ASCII text), without the UTF-8 check `as_str` makes:
            /// for building keys and associated data thousands of times per bulk read.
            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }
        }

        impl std::hash::Hash for $name {
            /// As `str` hashes its text, without `as_str`'s UTF-8 check (the bytes are
            /// ASCII by construction).
            fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
                h.write(&self.0);
                h.write_u8(0xff);
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

random_id!(
    /// A controller (tenant): one customer of the processor, bound by its own DPA.
    ControllerId,
    "ctl_"
);
random_id!(
    /// A data subject's pseudonym within one controller.
    SubjectId,
    "sub_"
);
random_id!(
    /// One record of personal data about one subject.
    RecordId,
    "rec_"
);
random_id!(
    /// The public half of an API token, used to list and revoke it.
    TokenId,
    "tok_"
);
random_id!(
    /// A login account (a person: a controller's staff or the processor's): named in the
    /// audit trail instead of its login name, which is personal data.
    AccountId,
    "acc_"
);
random_id!(
    /// A data-subject request filed with the processor; doubles as the reference the
    /// requester keeps to check its status (128 random bits: unguessable).
    DsrId,
    "dsr_"
);
random_id!(
    /// Correlates an HTTP request with its audit entries and log lines.
    RequestId,
    "req_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_malformed() {
        let id = SubjectId::from_random([0xff; 16]);
        assert_eq!(SubjectId::parse(id.as_str()).unwrap(), id);
        let zero = SubjectId::from_random([0; 16]);
        assert_eq!(zero.as_str(), "sub_00000000000000000000000000");
        for bad in [
            "",
            "sub_",
            "rec_00000000000000000000000000",
            "sub_0000000000000000000000000u",
            "sub_000000000000000000000000000",
            "sub_80000000000000000000000000",
            "sub_../../etc/passwd0000000000",
        ] {
            assert!(SubjectId::parse(bad).is_err(), "{bad} accepted");
            assert!(
                SubjectId::parse_bytes(bad.as_bytes()).is_err(),
                "{bad} accepted"
            );
        }
        assert_eq!(SubjectId::parse_bytes(id.as_bytes()).unwrap(), id);
        // Bytes that are not text at all: a high byte in the body, or in the prefix.
        let mut high = id.as_bytes().to_vec();
        high[10] = 0xff;
        assert!(SubjectId::parse_bytes(&high).is_err());
        high = id.as_bytes().to_vec();
        high[0] = 0xf3;
        assert!(SubjectId::parse_bytes(&high).is_err());
    }

    #[test]
    fn distinct_random_inputs_give_distinct_ids() {
        let a = RecordId::from_random([1; 16]);
        let b = RecordId::from_random([2; 16]);
        assert_ne!(a, b);
    }
}
