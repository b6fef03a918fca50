//! A record's fields as one column value. Both backends keep them in the record's own row
//! instead of a row per field: reading, writing or erasing a record is then one row of
//! one B-tree, where a row per field cost a second index walk per record and a table row
//! per field (the metadata queries read thousands of records at once).
//!
//! This is layout only. Every field stays sealed on its own under the subject key, its
//! AEAD context naming controller, subject, record and field, so a ciphertext moved to
//! another record or field still fails to open. The encoding holds field names, data
//! categories and ciphertexts; never plaintext.
//!
//! Version 1: the byte `0x01`, the field count (u16 LE), then per field in name order:
//! name length (u8), name, category length (u16 LE), category, ciphertext length (u32 LE),
//! ciphertext. Decoding is where stored bytes (possibly corrupted) become rows, so it is
//! strict (no trailing bytes, names and categories parsed, names unique and ordered) and
//! fuzzed in `crates/custodian-fuzz`.

use crate::rows::FieldRow;
use custodian_core::category::DataCategory;
use custodian_core::record::FieldName;

const VERSION: u8 = 1;

/// Why stored bytes are not a field set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field set: {0}")]
pub struct FieldsetError(&'static str);

/// Encodes `fields` in name order. Names are unique (the last of equal names wins).
pub fn encode(fields: &[FieldRow]) -> Vec<u8> {
    let mut sorted: Vec<&FieldRow> = fields.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    sorted.reverse();
    sorted.dedup_by(|a, b| a.name == b.name);
    sorted.reverse();
    let size: usize = sorted
        .iter()
        .map(|f| 7 + f.name.as_str().len() + f.category.as_str().len() + f.sealed.len())
        .sum();
    let mut out = Vec::with_capacity(3 + size);
    out.push(VERSION);
    // MAX_FIELDS_PER_RECORD (64) keeps the count far below u16::MAX; names are at most 64
    // bytes and catalogue keys far below u16::MAX, a ciphertext below 4 GiB.
    out.extend_from_slice(&(sorted.len() as u16).to_le_bytes());
    for f in sorted {
        let name = f.name.as_str().as_bytes();
        let cat = f.category.as_str().as_bytes();
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.extend_from_slice(&(cat.len() as u16).to_le_bytes());
        out.extend_from_slice(cat);
        out.extend_from_slice(&(f.sealed.len() as u32).to_le_bytes());
        out.extend_from_slice(&f.sealed);
    }
    out
}

/// `fields` with `changes` written over them by name (added where missing), in name order.
pub fn merge(mut fields: Vec<FieldRow>, changes: &[FieldRow]) -> Vec<FieldRow> {
    for c in changes {
        match fields.iter_mut().find(|f| f.name == c.name) {
            Some(f) => *f = c.clone(),
            None => fields.push(c.clone()),
        }
    }
    fields.sort_by(|a, b| a.name.cmp(&b.name));
    fields
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FieldsetError> {
        if self.0.len() < n {
            return Err(FieldsetError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<usize, FieldsetError> {
        Ok(usize::from(self.take(1)?[0]))
    }

    fn u16(&mut self) -> Result<usize, FieldsetError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_le_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Result<usize, FieldsetError> {
        let b = self.take(4)?;
        usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .map_err(|_| FieldsetError("length out of range"))
    }
}

/// Name and category as stored, parsed: the records a bulk read decodes mostly hold the
/// same few fields, so the last pairs parsed (on this thread) are kept and matched by their
/// bytes (a parse each was a third of decoding a field set).
fn parsed(name: &[u8], category: &[u8]) -> Result<(FieldName, DataCategory), FieldsetError> {
    const KEPT: usize = 8;
    type Seen = Vec<(Vec<u8>, Vec<u8>, FieldName, DataCategory)>;
    thread_local! {
        static SEEN: std::cell::RefCell<Seen> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SEEN.with_borrow_mut(|seen| {
        if let Some((_, _, n, c)) = seen.iter().find(|(n, c, _, _)| n == name && c == category) {
            return Ok((n.clone(), c.clone()));
        }
        let text = |b| std::str::from_utf8(b).map_err(|_| FieldsetError("text is not UTF-8"));
        let n = FieldName::parse(text(name)?).map_err(|_| FieldsetError("bad field name"))?;
        let c =
            DataCategory::parse(text(category)?).map_err(|_| FieldsetError("unknown category"))?;
        if seen.len() == KEPT {
            seen.remove(0);
        }
        seen.push((name.to_vec(), category.to_vec(), n.clone(), c.clone()));
        Ok((n, c))
    })
}

/// How many fields the encoded set holds, reading only its header.
pub fn count(bytes: &[u8]) -> Result<u64, FieldsetError> {
    let mut r = Reader(bytes);
    if r.u8()? != usize::from(VERSION) {
        return Err(FieldsetError("unknown version"));
    }
    Ok(r.u16()? as u64)
}

/// The fields `bytes` encodes, in name order.
pub fn decode(bytes: &[u8]) -> Result<Vec<FieldRow>, FieldsetError> {
    let mut r = Reader(bytes);
    if r.u8()? != usize::from(VERSION) {
        return Err(FieldsetError("unknown version"));
    }
    let n = r.u16()?;
    if n > custodian_core::record::MAX_FIELDS_PER_RECORD {
        return Err(FieldsetError("more fields than a record may hold"));
    }
    let mut out: Vec<FieldRow> = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.u8()?;
        let name = r.take(len)?;
        let len = r.u16()?;
        let category = r.take(len)?;
        let (name, category) = parsed(name, category)?;
        if out.last().is_some_and(|prev| prev.name >= name) {
            return Err(FieldsetError("field names out of order or repeated"));
        }
        let len = r.u32()?;
        let sealed = r.take(len)?.to_vec();
        out.push(FieldRow {
            name,
            category,
            sealed,
        });
    }
    if !r.0.is_empty() {
        return Err(FieldsetError("trailing bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, cat: &str, sealed: &[u8]) -> FieldRow {
        FieldRow {
            name: FieldName::parse(name).unwrap(),
            category: DataCategory::parse(cat).unwrap(),
            sealed: sealed.to_vec(),
        }
    }

    fn sample() -> Vec<FieldRow> {
        vec![
            row("phone", "user.contact.phone_number", b"\x00\x01ciphertext"),
            row("email", "user.contact.email", &[7; 300]),
            row("name", "user.name", b""),
        ]
    }

    #[test]
    fn round_trips_in_name_order() {
        let bytes = encode(&sample());
        let back = decode(&bytes).unwrap();
        let names: Vec<&str> = back.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["email", "name", "phone"]);
        assert_eq!(back[0].sealed, vec![7; 300]);
        assert_eq!(back[2].sealed, b"\x00\x01ciphertext");
        assert_eq!(back[2].category.as_str(), "user.contact.phone_number");
        assert_eq!(count(&bytes).unwrap(), 3);
        assert_eq!(decode(&encode(&[])).unwrap().len(), 0);
    }

    #[test]
    fn merge_replaces_by_name_and_adds_the_rest() {
        let merged = merge(
            sample(),
            &[
                row("email", "user.contact.email", b"new"),
                row("city", "user.contact.address", b"c"),
            ],
        );
        let names: Vec<&str> = merged.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["city", "email", "name", "phone"]);
        assert_eq!(merged[1].sealed, b"new");
        assert_eq!(
            encode(&merged),
            encode(&merged.iter().rev().cloned().collect::<Vec<_>>())
        );
    }

    #[test]
    fn every_damage_is_refused() {
        let good = encode(&sample());
        // Names and categories parsed once are remembered: damage must be found after too.
        assert_eq!(decode(&good).unwrap(), {
            let mut s = sample();
            s.sort_by(|a, b| a.name.cmp(&b.name));
            s
        });
        let mut bad: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("version", [&[2u8][..], &good[1..]].concat()),
            ("trailing", [&good[..], &[0u8][..]].concat()),
        ];
        for cut in 1..good.len() {
            bad.push(("truncated", good[..cut].to_vec()));
        }
        // A repeated field: the count says 2, both entries are "email".
        let one = encode(&[row("email", "user.contact.email", b"x")]);
        let mut twice = vec![1u8, 2, 0];
        twice.extend_from_slice(&one[3..]);
        twice.extend_from_slice(&one[3..]);
        bad.push(("repeated", twice));
        // An unknown category, spelled with the right length.
        let mut unknown = one.clone();
        let at = 3 + 1 + "email".len() + 2;
        unknown[at] = b'X';
        bad.push(("category", unknown));
        // A name that is not a field name, or not text, beside a category that is known.
        for byte in [b'E', 0xff] {
            let mut name = one.clone();
            name[3 + 1] = byte;
            bad.push(("name", name));
        }
        for (what, bytes) in bad {
            assert!(decode(&bytes).is_err(), "{what} decoded");
        }
    }
}
