//! Short ASCII names held inline (purposes, field names): a bulk read makes, copies and
//! drops one per row and per field, and a heap string each time was a measurable share of
//! it. Only the newtypes that validated the text build one.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

pub(crate) const MAX_NAME_LEN: usize = 64;

/// Up to [`MAX_NAME_LEN`] bytes of ASCII; the bytes past `len` are zero, so two equal
/// names are equal arrays. Ordered and hashed as its text, as the `String` it replaces.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct InlineName {
    len: u8,
    bytes: [u8; MAX_NAME_LEN],
}

impl InlineName {
    /// `None` when `s` is longer than [`MAX_NAME_LEN`] or not ASCII (callers have checked
    /// their own, stricter shapes before).
    pub(crate) fn new(s: &str) -> Option<Self> {
        if s.len() > MAX_NAME_LEN || !s.is_ascii() {
            return None;
        }
        let mut bytes = [0; MAX_NAME_LEN];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(Self {
            len: s.len() as u8,
            bytes,
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).expect("names are ASCII")
    }
}

impl std::fmt::Debug for InlineName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Ord for InlineName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for InlineName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Hash for InlineName {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_and_compares_as_its_text() {
        let names = ["b", "a", "ab", "a_b", "aa", "z9", ""];
        let mut inline: Vec<InlineName> =
            names.iter().map(|s| InlineName::new(s).unwrap()).collect();
        let mut text: Vec<&str> = names.to_vec();
        inline.sort();
        text.sort();
        assert_eq!(
            inline.iter().map(InlineName::as_str).collect::<Vec<_>>(),
            text
        );
        assert_eq!(InlineName::new("ab"), InlineName::new("ab"));
        assert_ne!(InlineName::new("ab"), InlineName::new("abc"));
    }

    #[test]
    fn refuses_what_does_not_fit() {
        assert!(InlineName::new(&"a".repeat(MAX_NAME_LEN)).is_some());
        assert!(InlineName::new(&"a".repeat(MAX_NAME_LEN + 1)).is_none());
        assert!(InlineName::new("é").is_none());
    }
}
