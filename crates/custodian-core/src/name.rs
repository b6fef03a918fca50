//! Short ASCII names (purposes, field names) without a heap allocation when they are short,
//! as they nearly always are: a bulk read makes, copies and drops one per row and per field.
//! Only the newtypes that validated the text build one.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

/// Names up to this many bytes are held inline. 22 keeps the type at 24 bytes, a
/// `String`'s size: maps keyed by names (a record's fields) keep their nodes in the
/// allocator's small, cached size classes.
const INLINE_LEN: usize = 22;

/// ASCII text; inline when it fits (bytes past `len` are zero), boxed otherwise, always
/// the same way for the same text. Ordered, compared and hashed as its text.
#[derive(Clone)]
pub(crate) enum InlineName {
    Inline { len: u8, bytes: [u8; INLINE_LEN] },
    Boxed(Box<str>),
}

impl InlineName {
    /// `None` when `s` is not ASCII (callers have checked their own, stricter shapes).
    pub(crate) fn new(s: &str) -> Option<Self> {
        if !s.is_ascii() {
            return None;
        }
        Some(if s.len() <= INLINE_LEN {
            let mut bytes = [0; INLINE_LEN];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Self::Inline {
                len: s.len() as u8,
                bytes,
            }
        } else {
            Self::Boxed(s.into())
        })
    }

    /// The text's bytes, without the UTF-8 check `as_str` makes: names are compared
    /// and hashed many times per record of a bulk read.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Boxed(s) => s.as_bytes(),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).expect("names are ASCII")
            }
            Self::Boxed(s) => s,
        }
    }
}

impl std::fmt::Debug for InlineName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for InlineName {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            // Bytes past `len` are zero, so the whole arrays compare as the texts do: a few
            // word compares instead of a call to memcmp, which a bulk read made per field
            // per record when it compared field lists (`Audit::every_record`, 8 % of a
            // GDPRbench processor run's CPU, perf).
            (Self::Inline { len: a, bytes: x }, Self::Inline { len: b, bytes: y }) => {
                a == b && x == y
            }
            _ => self.bytes() == other.bytes(),
        }
    }
}

impl Eq for InlineName {}

impl Ord for InlineName {
    fn cmp(&self, other: &Self) -> Ordering {
        // Byte order is string order.
        self.bytes().cmp(other.bytes())
    }
}

impl PartialOrd for InlineName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Hash for InlineName {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // Exactly as `str` hashes itself, so that the hash agrees with the text's.
        h.write(self.bytes());
        h.write_u8(0xff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_and_compares_as_its_text() {
        let long = "a".repeat(INLINE_LEN + 1);
        let longer = "b".repeat(64);
        let names = ["b", "a", "ab", "a_b", "aa", "z9", "", &long, &longer];
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
        assert_ne!(InlineName::new("ab"), InlineName::new("ac"));
        assert_ne!(InlineName::new(""), InlineName::new("a"));
        assert_eq!(InlineName::new(""), InlineName::new(""));
        let full = "z".repeat(INLINE_LEN);
        let mut near = full.clone();
        near.replace_range(INLINE_LEN - 1.., "y");
        assert_eq!(InlineName::new(&full), InlineName::new(&full));
        assert_ne!(InlineName::new(&full), InlineName::new(&near));
        assert_eq!(InlineName::new(&long), InlineName::new(&long));
        assert!(matches!(InlineName::new(&long), Some(InlineName::Boxed(_))));
        assert!(matches!(
            InlineName::new(&long[1..]),
            Some(InlineName::Inline { .. })
        ));
        let hash = |h: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            h(&mut hasher);
            hasher.finish()
        };
        for s in names {
            let name = InlineName::new(s).unwrap();
            assert_eq!(hash(&|h| name.hash(h)), hash(&|h| s.hash(h)), "{s}");
        }
    }

    #[test]
    fn is_the_size_of_a_string_and_refuses_non_ascii() {
        assert_eq!(
            std::mem::size_of::<InlineName>(),
            std::mem::size_of::<String>()
        );
        assert!(InlineName::new("é").is_none());
    }
}
