//! Records: personal data about one subject, as named fields each with its data category,
//! plus the metadata GDPR Art. 15 entitles the subject to know.

use crate::ValidationError;
use crate::category::DataCategory;
use crate::lookup::LookupKind;
use crate::pan::contains_pan;
use serde::{Deserialize, Serialize};
use std::fmt;
use time::OffsetDateTime;

pub const MAX_FIELDS_PER_RECORD: usize = 64;
/// The longest text value, in characters (64 KiB of UTF-8 at most).
pub const MAX_TEXT_CHARS: usize = 16 * 1024;
/// Numbers are smaller than this in magnitude: anything longer (an identifier, an account
/// or card number) goes as text, where JSON keeps every digit and the card check reads it.
pub const MAX_NUMBER_MAGNITUDE: f64 = 1e12;

/// `[a-z][a-z0-9_]{0,63}`: field names go into audit entries, so they must never be able to
/// carry a value; the shape keeps them to identifiers.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FieldName(crate::name::InlineName);

impl FieldName {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        // Names are written to the audit trail and echoed in errors, so they must not be
        // able to carry a value: no long digit runs (card, phone or id numbers). One pass
        // over the bytes: stored field sets parse a name per field.
        let mut ok = (1..=64).contains(&s.len()) && s.as_bytes()[0].is_ascii_lowercase();
        let mut digit_run = 0;
        for b in s.bytes() {
            if !ok {
                break;
            }
            digit_run = if b.is_ascii_digit() { digit_run + 1 } else { 0 };
            ok = (b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') && digit_run <= 4;
        }
        if let Some(name) = ok.then(|| crate::name::InlineName::new(s)).flatten() {
            Ok(Self(name))
        } else {
            Err(ValidationError::new(
                "field name",
                "must be 1-64 characters of a-z, 0-9 and '_', starting with a letter, with at most 4 digits in a row",
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The name's bytes (its ASCII text), without the UTF-8 check `as_str` makes: a bulk
    /// read builds a field's associated data from it for every field it opens.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.bytes()
    }
}
impl TryFrom<String> for FieldName {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<FieldName> for String {
    fn from(n: FieldName) -> String {
        n.as_str().to_owned()
    }
}
impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}
impl fmt::Debug for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// A field's value: personal data. Its `Debug` never shows it, so it cannot reach a log
/// line or a panic message by accident.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl fmt::Debug for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FieldValue(<redacted>)")
    }
}

impl FieldValue {
    /// The bytes that get encrypted: the value's JSON form, so numbers and booleans keep
    /// their type across a round trip.
    pub fn to_plaintext(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a scalar always serialises")
    }

    pub fn from_plaintext(bytes: &[u8]) -> Option<Self> {
        if Self::is_bare_text(bytes) {
            return std::str::from_utf8(&bytes[1..bytes.len() - 1])
                .ok()
                .map(|s| Self::Text(s.to_owned()));
        }
        serde_json::from_slice(bytes).ok()
    }

    /// [`Self::from_plaintext`], taking the buffer as the text's when the value is a
    /// string: a bulk read then decrypts and answers a field in one allocation. Any other
    /// value is parsed and the buffer left to its owner (to wipe).
    pub fn take_plaintext(bytes: &mut Vec<u8>) -> Option<Self> {
        if !Self::is_bare_text(bytes) {
            return serde_json::from_slice(bytes).ok();
        }
        let mut text = std::mem::take(bytes);
        text.pop();
        text.remove(0);
        match String::from_utf8(text) {
            Ok(text) => Some(Self::Text(text)),
            Err(e) => {
                *bytes = e.into_bytes();
                None
            }
        }
    }

    /// A string without escapes is its own text between the quotes, which a bulk read of
    /// thousands of fields then takes without running the JSON parser. Exactly what the
    /// parser would read as that same text (UTF-8 is checked when the text is made).
    fn is_bare_text(bytes: &[u8]) -> bool {
        matches!(bytes, [b'"', inner @ .., b'"'] if !needs_escape(inner))
    }
    /// The text a card number could hide in: the text itself, or an integral number's
    /// digits. A number with a fraction or an exponent below one is no card number (its
    /// mantissa digits would otherwise trip the detector 1 time in 10 per Luhn).
    fn pan_form(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Number(n) => {
                if let Some(u) = n.as_u64() {
                    u.to_string()
                } else if let Some(i) = n.as_i64() {
                    i.to_string()
                } else {
                    match n.as_f64() {
                        Some(f) if f.fract() == 0.0 && f.abs() < 1e20 => format!("{f:.0}"),
                        _ => String::new(),
                    }
                }
            }
            Self::Bool(_) => String::new(),
        }
    }
}

/// Whether `bytes` holds a byte JSON must escape in a string: a quote, a backslash or a
/// control character. Eight bytes at a time (a bulk read checks every text it answers, and
/// a byte at a time was most of taking one), with the usual exact "some byte is zero" and
/// "some byte is below n" word tests.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x;
    let word_needs = |x: u64| {
        let quote = zero_byte(x ^ (ONES * u64::from(b'"')));
        let backslash = zero_byte(x ^ (ONES * u64::from(b'\\')));
        let control = x.wrapping_sub(ONES * 0x20) & !x;
        (quote | backslash | control) & HIGH != 0
    };
    let mut words = bytes.chunks_exact(8);
    if words
        .by_ref()
        .any(|w| word_needs(u64::from_le_bytes(w.try_into().expect("eight bytes"))))
    {
        return true;
    }
    words
        .remainder()
        .iter()
        .any(|&b| b == b'"' || b == b'\\' || b < 0x20)
}

/// One field as a caller submits it. (Its OpenAPI schema is written by hand in `schema.rs`:
/// the value's form depends on the category.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldInput {
    pub category: DataCategory,
    pub value: FieldValue,
}

/// A field that passed validation: its value normalised where its category says how,
/// and the lookup key it feeds, if any.
#[derive(Debug, Clone)]
pub struct ValidField {
    pub name: FieldName,
    pub category: DataCategory,
    pub value: FieldValue,
    pub lookup: Option<(LookupKind, String)>,
}

pub fn validate_field(name: FieldName, input: FieldInput) -> Result<ValidField, ValidationError> {
    let field = |reason: &str| ValidationError::new(format!("fields.{name}"), reason);
    if input.category.is_payment_card() {
        return Err(field(
            "payment card numbers are handled by the payment gateway and are never stored here (DPA §4)",
        ));
    }
    if let FieldValue::Text(s) = &input.value
        && s.chars().count() > MAX_TEXT_CHARS
    {
        return Err(field("is longer than 16384 characters"));
    }
    if let FieldValue::Number(n) = &input.value
        && !n.as_f64().is_some_and(|f| f.abs() < MAX_NUMBER_MAGNITUDE)
    {
        return Err(field(
            "numbers must be smaller than 10^12 in magnitude; send longer numbers as text",
        ));
    }
    let lookup_kind = LookupKind::for_category(&input.category);
    // A phone field must hold an E.164 number (`+` or `00` first), which no card number is;
    // its normaliser below refuses anything else.
    if lookup_kind != Some(LookupKind::Phone) && contains_pan(&input.value.pan_form()) {
        return Err(field(
            "contains a payment card number; cards are handled by the payment gateway and never stored here (DPA §4)",
        ));
    }
    let (value, lookup) = match (lookup_kind, &input.value) {
        (Some(kind), FieldValue::Text(s)) => {
            let normalized = kind
                .normalize(s)
                .map_err(|e| field(&format!("{}: {}", e.field, e.reason)))?;
            let stored = match kind {
                LookupKind::ExternalId => FieldValue::Text(s.trim().to_owned()),
                LookupKind::Email | LookupKind::Phone => FieldValue::Text(normalized.clone()),
            };
            (stored, Some((kind, normalized)))
        }
        (Some(_), _) => return Err(field("must be a string for this category")),
        (None, v) => (v.clone(), None),
    };
    Ok(ValidField {
        name,
        category: input.category,
        value,
        lookup,
    })
}

/// The Art. 15 metadata of a record. It describes the processing, not the person, and is
/// stored in clear so that the controller's records of processing can be generated from it;
/// it is still scanned for card numbers and bounded in size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordMeta {
    /// Where the data came from (Art. 15(1)(g)), e.g. "signup form".
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::source_schema))]
    pub source: Option<String>,
    /// Recipients or categories of recipients the data is shared with (Art. 15(1)(c)).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::recipients_schema))]
    pub recipients: Vec<String>,
    /// The logic of any automated decision taken on this data (Art. 15(1)(h)); none if absent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::decision_schema))]
    pub automated_decision: Option<String>,
}

impl RecordMeta {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let short = |field: &str, s: &str, max: usize| {
            if s.trim().is_empty() || s.chars().count() > max || s.chars().any(char::is_control) {
                Err(ValidationError::new(
                    field,
                    format!("must be 1-{max} printable characters"),
                ))
            } else if contains_pan(s) {
                Err(ValidationError::new(
                    field,
                    "contains a payment card number",
                ))
            } else {
                Ok(())
            }
        };
        if let Some(s) = &self.source {
            short("source", s, 200)?;
        }
        if self.recipients.len() > 32 {
            return Err(ValidationError::new("recipients", "at most 32 recipients"));
        }
        for r in &self.recipients {
            short("recipients", r, 200)?;
        }
        if let Some(a) = &self.automated_decision {
            short("automated_decision", a, 1000)?;
        }
        Ok(())
    }
}

/// A stored record's description, without its field values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordHeader {
    pub purpose: crate::purpose::PurposeName,
    /// Shared: a bulk read answers thousands of records whose metadata it would otherwise
    /// copy (and free) string by string; a change goes through `Arc::make_mut`.
    #[cfg_attr(feature = "openapi", schema(value_type = RecordMeta))]
    pub meta: std::sync::Arc<RecordMeta>,
    #[serde(with = "crate::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "crate::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "crate::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl RecordHeader {
    /// Whether the record's retention has run out at `now`. Such a record is no longer
    /// processed: no read, lookup or alteration sees it, and only the retention sweep (or
    /// an erasure) still touches it, so that the retention a purpose documents holds from
    /// its last instant, not from the next sweep.
    pub fn has_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(cat: &str, v: FieldValue) -> FieldInput {
        FieldInput {
            category: DataCategory::parse(cat).unwrap(),
            value: v,
        }
    }
    fn text(s: &str) -> FieldValue {
        FieldValue::Text(s.into())
    }
    fn name(s: &str) -> FieldName {
        FieldName::parse(s).unwrap()
    }

    #[test]
    fn email_fields_are_validated_normalised_and_indexed() {
        let f = validate_field(
            name("email"),
            input("user.contact.email", text(" Bob@X.org")),
        )
        .unwrap();
        assert_eq!(f.value, text("bob@x.org"));
        assert_eq!(f.lookup, Some((LookupKind::Email, "bob@x.org".into())));
        let err =
            validate_field(name("email"), input("user.contact.email", text("bob"))).unwrap_err();
        assert_eq!(err.field, "fields.email");
        assert!(!err.reason.contains("bob"), "error echoes the value");
    }

    #[test]
    fn cards_are_refused_in_any_field_and_category() {
        assert!(
            validate_field(
                name("note"),
                input("user.content.private", text("4111 1111 1111 1111"))
            )
            .is_err()
        );
        assert!(
            validate_field(
                name("n"),
                input(
                    "user.content",
                    FieldValue::Number(4111111111111111u64.into())
                )
            )
            .is_err()
        );
        assert!(
            validate_field(name("card"), input("user.financial.credit_card", text("x"))).is_err()
        );
        let err = validate_field(
            name("note"),
            input("user.content", text("4242424242424242")),
        )
        .unwrap_err();
        assert!(!err.to_string().contains("4242"));
    }

    #[test]
    fn field_names_cannot_carry_numbers() {
        assert!(FieldName::parse("address2").is_ok());
        assert!(FieldName::parse("phone_2026").is_ok());
        assert!(FieldName::parse("card_4111111111111111").is_err());
        assert!(FieldName::parse("tel_33612").is_err());
        // Runs are counted from each non-digit, and the shape rules still hold around them.
        assert!(FieldName::parse("a1234_1234b1234").is_ok());
        assert!(FieldName::parse("a1234_12345").is_err());
        for bad in ["", "1abc", "_abc", "Abc", "ab-c", "abé", &"a".repeat(65)] {
            assert!(FieldName::parse(bad).is_err(), "{bad}");
        }
        assert!(FieldName::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn values_never_show_in_debug() {
        let f = validate_field(name("name"), input("user.name", text("Zoé Canary"))).unwrap();
        assert!(!format!("{f:?}").contains("Canary"));
    }

    #[test]
    fn plaintext_round_trip_keeps_types() {
        for v in [
            text("é"),
            FieldValue::Number(42.into()),
            FieldValue::Bool(true),
        ] {
            assert_eq!(FieldValue::from_plaintext(&v.to_plaintext()), Some(v));
        }
    }

    #[test]
    fn plaintext_shortcut_reads_what_the_json_parser_reads() {
        let cases: &[&[u8]] = &[
            b"\"\"",
            b"\"plain text\"",
            "\"Zoé ☃\"".as_bytes(),
            b"\"tab\\there\"",
            b"\"quote \\\" inside\"",
            b"\"\\u00e9\"",
            b"\"raw\ttab\"",
            b"\"raw \x01 control\"",
            b"\"\x7f\"",
            b"\"bad \xff utf8\"",
            b"\"unterminated",
            b"\"",
            b" \"padded\" ",
            b"\"a\"\"b\"",
            b"42",
            b"true",
            b"null",
            b"[\"a\"]",
            b"",
        ];
        for bytes in cases {
            let parsed: Option<FieldValue> = serde_json::from_slice(bytes).ok();
            assert_eq!(
                FieldValue::from_plaintext(bytes),
                parsed,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
            let mut owned = bytes.to_vec();
            let taken = FieldValue::take_plaintext(&mut owned);
            assert_eq!(taken, parsed, "{:?}", String::from_utf8_lossy(bytes));
            // Only a string takes the buffer; anything else is left to its owner to wipe.
            match taken {
                Some(FieldValue::Text(_)) if FieldValue::is_bare_text(bytes) => {
                    assert!(owned.is_empty())
                }
                Some(_) => assert_eq!(owned, *bytes),
                None => assert!(!owned.is_empty() || bytes.is_empty()),
            }
        }
    }

    /// The word-at-a-time check agrees with the byte-at-a-time one wherever the byte that
    /// needs escaping falls, whatever the length, beside ASCII and multi-byte text.
    #[test]
    fn a_byte_to_escape_is_found_at_every_position() {
        let plain = |b: &[u8]| !b.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20);
        for len in 0..40 {
            for filler in [b'a', 0x7f, 0xc3, 0xff, 0x20, 0x5b, 0x5d, 0x21, 0x23] {
                let base = vec![filler; len];
                assert_eq!(needs_escape(&base), !plain(&base), "{len} {filler:#x}");
                for at in 0..len {
                    for special in [b'"', b'\\', 0x00, 0x01, 0x1f, 0x20, 0x1e, 0x80] {
                        let mut b = base.clone();
                        b[at] = special;
                        assert_eq!(
                            needs_escape(&b),
                            !plain(&b),
                            "{len} {filler:#x} {at} {special:#x}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn meta_is_bounded() {
        let mut m = RecordMeta::default();
        assert!(m.validate().is_ok());
        m.recipients = vec!["".into()];
        assert!(m.validate().is_err());
        m.recipients = vec!["x".into(); 33];
        assert!(m.validate().is_err());
    }
}
