//! Fuzz targets for the code that turns outside bytes into values: JSON request bodies
//! (the `custodian_vault::views` types), the lookup normalisers (email, phone, external
//! id), API tokens, stored audit entries, and stored field sets (a record's fields in one
//! column). Each target takes arbitrary bytes, must never panic, and checks the properties
//! the rest of the system relies on.
//!
//! Two drivers call them: cargo-fuzz (coverage-guided libFuzzer, `fuzz/`, run by
//! `scripts/fuzz` for a bounded time), and [`harness`], a seeded, bounded, structure-aware
//! random driver that `cargo test` runs on the stable toolchain.

pub mod harness;

use custodian_core::lookup::{LookupKind, normalize_email, normalize_phone};
use custodian_core::record::{FieldName, validate_field};
use custodian_store::fieldset;
use custodian_store::sqlite::AuditColumns;
use custodian_vault::views;
use secrecy::SecretString;

/// Every request body type: parsing never panics, and what parses re-parses the same way
/// from its own fields (validation is deterministic).
pub fn json_bodies(data: &[u8]) {
    macro_rules! parse {
        ($t:ty) => {
            let _ = serde_json::from_slice::<$t>(data);
        };
    }
    parse!(views::NewController);
    parse!(views::NewToken);
    parse!(views::NewSubject);
    parse!(views::NewRecord);
    parse!(views::FieldUpdate);
    parse!(views::LookupQuery);
    parse!(views::SubjectExport);
    parse!(views::NewRequest);
    parse!(views::RequestAction);
    parse!(custodian_core::purpose::Purpose);
    // Records go on to field validation: it never panics, and a valid field's lookup key
    // is the normalised form of its stored value.
    if let Ok(r) = serde_json::from_slice::<views::NewRecord>(data) {
        for (name, input) in r.fields {
            check_field(name, input);
        }
    }
    if let Ok(u) = serde_json::from_slice::<views::FieldUpdate>(data) {
        for (name, input) in u.fields {
            check_field(name, input);
        }
    }
}

fn check_field(name: FieldName, input: custodian_core::record::FieldInput) {
    if let Ok(v) = validate_field(name, input)
        && let (Some((kind, key)), custodian_core::record::FieldValue::Text(stored)) =
            (&v.lookup, &v.value)
    {
        assert_eq!(
            kind.normalize(stored).as_ref(),
            Ok(key),
            "a stored value must normalise to its own lookup key"
        );
    }
}

/// The normalisers decide what "the same person" means for lookups: they never panic, are
/// idempotent, and what they produce has the documented shape.
pub fn lookup_normalisers(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(e) = normalize_email(s) {
        assert_eq!(normalize_email(&e).as_ref(), Ok(&e), "email is idempotent");
        assert!(e.len() <= 254 && e.contains('@'));
        assert_eq!(e, e.to_lowercase(), "emails are lower-cased");
        assert_eq!(e.trim(), e, "emails are trimmed");
    }
    if let Ok(p) = normalize_phone(s) {
        assert_eq!(normalize_phone(&p).as_ref(), Ok(&p), "phone is idempotent");
        assert!(p.starts_with('+') && !p[1..].starts_with('0'));
        assert!((9..=16).contains(&p.len()), "E.164: + and 8-15 digits");
        assert!(p[1..].bytes().all(|b| b.is_ascii_digit()));
    }
    for kind in LookupKind::ALL {
        if let Ok(n) = kind.normalize(s) {
            assert_eq!(
                kind.normalize(&n).as_ref(),
                Ok(&n),
                "{kind:?} is idempotent"
            );
        }
    }
}

/// Token parsing runs before any database lookup on every request: it never panics, and
/// it accepts exactly the tokens `mint` makes (shape and checksum), hashing what was sent.
pub fn tokens(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((role, hash)) = custodian_crypto::token::parse(&SecretString::from(s.to_owned())) {
        assert!(s.starts_with(&format!("cst_{}_", role.token_tag())));
        assert_eq!(hash, custodian_crypto::hash::sha256(s.as_bytes()));
        // Changing any one character of an accepted token makes it unacceptable or a
        // different token: the checksum catches every single-character typo.
        let mut chars: Vec<char> = s.chars().collect();
        let i = data.len() % chars.len();
        chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        if typo != s {
            assert!(
                custodian_crypto::token::parse(&SecretString::from(typo)).is_err(),
                "a one-character typo of a valid token was accepted"
            );
        }
    }
}

/// Splits bytes into the columns of an audit row.
pub fn audit_columns(data: &[u8]) -> AuditColumns {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{1f}');
    let mut next = || parts.next().unwrap_or("").to_owned();
    let opt = |s: String| (!s.is_empty()).then_some(s);
    let num = |s: String| s.parse::<i64>().unwrap_or(s.len() as i64);
    let chain = next();
    let seq = num(next());
    let at = num(next());
    let actor = next();
    let action = next();
    let purpose = opt(next());
    let subject = opt(next());
    let record = opt(next());
    let fields = next();
    let refused = opt(next());
    let request = opt(next());
    let prev_hash = next().into_bytes();
    let hash = next().into_bytes();
    let subjects = next();
    AuditColumns {
        chain,
        seq,
        at,
        actor,
        action,
        purpose,
        subject,
        record,
        fields,
        refused,
        request,
        prev_hash,
        hash,
        subjects,
    }
}

/// Stored audit entries are decoded on every read and by `verify`: decoding never panics,
/// what decodes re-encodes to columns that decode to the same entry, and two different
/// entries never share canonical bytes (which the hash chain relies on).
pub fn audit_entries(data: &[u8]) {
    let half = data.len() / 2;
    let (a, b) = (
        audit_columns(data).decode(),
        audit_columns(&data[half..]).decode(),
    );
    for e in [&a, &b].into_iter().flatten() {
        let again = AuditColumns::encode(e)
            .decode()
            .expect("an encoded entry decodes");
        assert_eq!(&again, e, "audit entry round trip");
    }
    if let (Ok(a), Ok(b)) = (a, b) {
        let (ua, ub) = (a.unhashed(), b.unhashed());
        if ua != ub && ua.prev_hash == ub.prev_hash {
            assert_ne!(
                ua.canonical_bytes(),
                ub.canonical_bytes(),
                "two different entries encode the same"
            );
        }
    }
}

/// A record's stored field set is decoded on every read of the record: decoding never
/// panics; what decodes re-encodes to exactly the same bytes (the encoding is canonical:
/// names ordered and unique); `count`, which reads only the header, never panics and agrees
/// with the decoded length; and no strict prefix of a valid encoding decodes, in particular
/// none cut at a boundary between fields or inside one.
pub fn field_sets(data: &[u8]) {
    let counted = fieldset::count(data);
    let Ok(rows) = fieldset::decode(data) else {
        return;
    };
    assert!(
        rows.len() <= custodian_core::record::MAX_FIELDS_PER_RECORD,
        "more fields than a record may hold"
    );
    assert_eq!(
        counted,
        Ok(rows.len() as u64),
        "count disagrees with decode"
    );
    assert!(
        fieldset::encode(&rows) == data,
        "a decoded field set re-encodes to different bytes"
    );
    assert!(
        fieldset::encode(&fieldset::merge(rows.clone(), &rows)) == data,
        "merging a field set with itself changed it"
    );
    // Every strict prefix ending at a boundary of the layout (header, each part of each
    // field), one byte either side of it, and the input less its last byte.
    let mut cuts = vec![0, 1, 2, data.len() - 1];
    let mut at = 3;
    for f in &rows {
        for part in [
            1,
            f.name.as_str().len(),
            2,
            f.category.as_str().len(),
            4,
            f.sealed.len(),
        ] {
            cuts.extend([at - 1, at, at + 1]);
            at += part;
        }
    }
    assert_eq!(at, data.len(), "decoded rows account for every byte");
    for cut in cuts.into_iter().filter(|&c| c < data.len()) {
        assert!(
            fieldset::decode(&data[..cut]).is_err(),
            "a strict prefix ({cut} of {} bytes) of a field set decoded",
            data.len()
        );
    }
}
