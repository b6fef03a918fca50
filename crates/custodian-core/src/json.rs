//! Deserialisation helpers that make the server accept exactly what its JSON Schema says:
//! JSON has one number type (`6729.0` is the integer 6729 to JSON Schema), and a schema's
//! `uniqueItems` is a promise that duplicates are refused rather than silently merged.

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;

/// An unsigned integer, accepting any JSON number with an integral value (`60`, `60.0`,
/// `6e1`) that fits `T`, and refusing fractions, negatives and overflow.
pub fn integer<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    struct V<T>(PhantomData<T>);
    impl<T: TryFrom<u64>> Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer in range")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::custom("integer out of range"))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            u64::try_from(v)
                .map_err(|_| E::custom("integer out of range"))
                .and_then(|v| self.visit_u64(v))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            // Exact below 2^53; anything larger is out of range for every use here.
            if v.fract() == 0.0 && (0.0..9_007_199_254_740_992.0).contains(&v) {
                self.visit_u64(v as u64)
            } else {
                Err(E::custom("expected an integer"))
            }
        }
    }
    d.deserialize_any(V(PhantomData))
}

/// A set given as a JSON array in which every item appears once.
pub fn unique_set<'de, D, T>(d: D) -> Result<BTreeSet<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Ord,
{
    struct V<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de> + Ord> Visitor<'de> for V<T> {
        type Value = BTreeSet<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of distinct items")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeSet::new();
            while let Some(item) = seq.next_element::<T>()? {
                if !out.insert(item) {
                    return Err(de::Error::custom("an item is given twice"));
                }
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V(PhantomData))
}

/// [`unique_set`] for an optional set (`null` or absent: `None`).
pub fn unique_set_opt<'de, D, T>(d: D) -> Result<Option<BTreeSet<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Ord,
{
    #[derive(serde::Deserialize)]
    #[serde(bound = "T: Deserialize<'de> + Ord")]
    struct Wrap<T>(#[serde(deserialize_with = "unique_set")] BTreeSet<T>);
    Ok(Option::<Wrap<T>>::deserialize(d)?.map(|w| w.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct T {
        #[serde(deserialize_with = "integer")]
        n: u32,
        #[serde(default, deserialize_with = "unique_set_opt")]
        s: Option<BTreeSet<String>>,
    }

    #[test]
    fn integers_are_json_numbers_with_integral_values() {
        let n = |j: &str| serde_json::from_str::<T>(j).map(|t| t.n);
        assert_eq!(n(r#"{"n":60}"#).unwrap(), 60);
        assert_eq!(n(r#"{"n":60.0}"#).unwrap(), 60);
        assert_eq!(n(r#"{"n":6e1}"#).unwrap(), 60);
        for bad in [
            r#"{"n":60.5}"#,
            r#"{"n":-1}"#,
            r#"{"n":4294967296}"#,
            r#"{"n":1e300}"#,
            r#"{"n":"60"}"#,
        ] {
            assert!(n(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn sets_refuse_duplicates() {
        let s = |j: &str| serde_json::from_str::<T>(j).map(|t| t.s);
        assert_eq!(s(r#"{"n":1,"s":["a","b"]}"#).unwrap().unwrap().len(), 2);
        assert_eq!(s(r#"{"n":1,"s":null}"#).unwrap(), None);
        assert_eq!(s(r#"{"n":1}"#).unwrap(), None);
        assert!(s(r#"{"n":1,"s":["a","a"]}"#).is_err());
    }
}
