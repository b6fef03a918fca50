//! OpenAPI schemas for the domain's string newtypes (with the `openapi` feature). Each
//! gives the pattern its parser enforces, so generated clients and API fuzzers send what
//! the server accepts, and the document tells the truth about what it refuses.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// Rust's `char::is_control` (Unicode Cc), as a regex class body.
const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";
/// Rust's `char::is_whitespace` (Unicode White_Space) and control characters, as a class body.
const BLANK_OR_CONTROL: &str =
    r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Rust's `char::is_whitespace` (Unicode White_Space), as a class body.
const BLANK: &str = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// A pattern for the server's "printable text" rule: no control character anywhere and at
/// least one character that is not white space (the length is checked on the raw text).
pub fn printable_pattern() -> String {
    format!("^[^{CONTROL}]*[^{BLANK_OR_CONTROL}][^{CONTROL}]*$")
}

/// A pattern for "not blank": at least one character that is not white space.
pub fn not_blank_pattern() -> String {
    format!("[^{BLANK}]")
}

/// Email addresses the lookup normaliser accepts ([`crate::lookup::normalize_email`]): a
/// documented subset (dot-atoms of bounded length, ASCII domain labels, a letters-only
/// top-level domain), so that anything matching it is accepted.
pub const EMAIL_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,16}(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,16}){0,2}@([A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?\.){1,3}[A-Za-z]{2,12}$";

/// Phone numbers the normaliser accepts ([`crate::lookup::normalize_phone`]): `+` or `00`,
/// then 8 to 15 digits, the first not 0, with spaces, dots, dashes and parentheses anywhere.
pub const PHONE_PATTERN: &str = r"^(\+|00)[ .()-]*[1-9]([ .()-]*[0-9]){7,14}[ .()-]*$";

/// Field names ([`crate::record::FieldName`]): a lower-case letter, then letters, digits and
/// `_`, never more than 4 digits in a row.
pub const FIELD_NAME_PATTERN: &str = r"^[a-z][a-z_]*([0-9]{1,4}[a-z_]+)*[0-9]{0,4}$";

/// A schema from its JSON form: for the few schemas that depend on a sibling's value.
pub fn from_json(v: serde_json::Value) -> RefOr<Schema> {
    serde_json::from_value::<Schema>(v)
        .map(RefOr::T)
        .expect("a hand-written schema is valid")
}

/// A text schema for the "printable, 1 to `max` characters" rule.
pub fn printable(max: usize, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(printable_pattern()))
        .min_length(Some(1))
        .max_length(Some(max))
        .description(Some(description.to_owned()))
        .into()
}

/// A text schema for the "not blank, at most `max` characters" rule.
pub fn not_blank(max: usize, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(not_blank_pattern()))
        .min_length(Some(1))
        .max_length(Some(max))
        .description(Some(description.to_owned()))
        .into()
}

/// Data categories a field or a purpose may name: the catalogue without payment cards.
pub fn storable_categories() -> Vec<&'static str> {
    crate::category::DATA_CATEGORIES
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| *k != "user.financial.credit_card")
        .collect()
}

/// The categories of a purpose: one or more storable categories, each once.
pub fn purpose_categories() -> RefOr<Schema> {
    from_json(serde_json::json!({
        "type": "array", "minItems": 1, "uniqueItems": true,
        "items": {"type": "string", "enum": storable_categories()},
        "description": "The data categories this purpose covers (a parent covers its children); never payment cards",
    }))
}

/// The operations of a purpose: one or more, each once.
pub fn purpose_operations() -> RefOr<Schema> {
    from_json(serde_json::json!({
        "type": "array", "minItems": 1, "uniqueItems": true,
        "items": {"$ref": "#/components/schemas/Operation"},
    }))
}

/// One field as submitted: its value's form depends on its category (email, phone and
/// external-id categories feed the blind lookup index and are validated as such).
impl utoipa::PartialSchema for crate::record::FieldInput {
    fn schema() -> RefOr<Schema> {
        use crate::lookup::LookupKind;
        let of = |kind: Option<LookupKind>| -> Vec<&'static str> {
            storable_categories()
                .into_iter()
                .filter(|k| {
                    crate::category::DataCategory::parse(k)
                        .is_ok_and(|c| LookupKind::for_category(&c) == kind)
                })
                .collect()
        };
        let branch = |cats: Vec<&'static str>, value: serde_json::Value| {
            serde_json::json!({
                "type": "object", "required": ["category", "value"], "additionalProperties": false,
                "properties": {"category": {"type": "string", "enum": cats}, "value": value},
            })
        };
        from_json(serde_json::json!({
            "description": "One field: its category (never payment cards) and its value, personal data encrypted at rest. Email, phone and external-id categories take a valid email address, an E.164 number, or 1-256 printable characters.",
            "oneOf": [
                branch(of(Some(LookupKind::Email)), serde_json::json!({"type": "string", "maxLength": 254, "pattern": EMAIL_PATTERN})),
                branch(of(Some(LookupKind::Phone)), serde_json::json!({"type": "string", "maxLength": 64, "pattern": PHONE_PATTERN})),
                branch(of(Some(LookupKind::ExternalId)), serde_json::json!({"type": "string", "maxLength": 256, "pattern": printable_pattern()})),
                branch(of(None), serde_json::json!({"$ref": "#/components/schemas/FieldValue"})),
            ],
        }))
    }
}
impl utoipa::ToSchema for crate::record::FieldInput {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("FieldInput")
    }
}

fn string_schema(
    pattern: Option<&str>,
    min: Option<usize>,
    max: Option<usize>,
    description: &str,
    example: &str,
) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(pattern.map(str::to_owned))
        .min_length(min)
        .max_length(max)
        .description(Some(description.to_owned()))
        .examples([serde_json::Value::String(example.to_owned())])
        .into()
}

macro_rules! string_newtype_schema {
    ($ty:ty, $name:literal, $pattern:expr, $min:expr, $max:expr, $desc:literal, $example:literal) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                string_schema($pattern, $min, $max, $desc, $example)
            }
        }
        impl utoipa::ToSchema for $ty {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($name)
            }
        }
    };
}

const ID: &str = "[0-7][0-9a-hjkmnp-tv-z]{25}";

string_newtype_schema!(
    crate::ids::ControllerId,
    "ControllerId",
    Some(&const_format("ctl_")),
    Some(30),
    Some(30),
    "A controller's id",
    "ctl_01jd2r8k9m4q7s3t5v6w8x0y2z"
);
string_newtype_schema!(
    crate::ids::SubjectId,
    "SubjectId",
    Some(&const_format("sub_")),
    Some(30),
    Some(30),
    "A data subject's pseudonymous id",
    "sub_01jd2r8k9m4q7s3t5v6w8x0y2z"
);
string_newtype_schema!(
    crate::ids::RecordId,
    "RecordId",
    Some(&const_format("rec_")),
    Some(30),
    Some(30),
    "A record's id",
    "rec_01jd2r8k9m4q7s3t5v6w8x0y2z"
);
string_newtype_schema!(
    crate::ids::TokenId,
    "TokenId",
    Some(&const_format("tok_")),
    Some(30),
    Some(30),
    "A token's public id",
    "tok_01jd2r8k9m4q7s3t5v6w8x0y2z"
);
string_newtype_schema!(
    crate::ids::AccountId,
    "AccountId",
    Some(&const_format("acc_")),
    Some(30),
    Some(30),
    "A login account's id",
    "acc_01jd2r8k9m4q7s3t5v6w8x0y2z"
);
string_newtype_schema!(
    crate::ids::DsrId,
    "DsrId",
    Some(&const_format("dsr_")),
    Some(30),
    Some(30),
    "A data-subject request's reference",
    "dsr_01jd2r8k9m4q7s3t5v6w8x0y2z"
);
string_newtype_schema!(
    crate::ids::RequestId,
    "RequestId",
    Some(&const_format("req_")),
    Some(30),
    Some(30),
    "A request id",
    "req_01jd2r8k9m4q7s3t5v6w8x0y2z"
);
string_newtype_schema!(
    crate::purpose::PurposeName,
    "PurposeName",
    Some("^[a-z][a-z0-9_-]{0,63}$"),
    Some(1),
    Some(64),
    "A documented purpose's name",
    "support"
);
string_newtype_schema!(
    crate::record::FieldName,
    "FieldName",
    Some(FIELD_NAME_PATTERN),
    Some(1),
    Some(64),
    "A field's name (at most 4 digits in a row: names are never values)",
    "email"
);
string_newtype_schema!(
    crate::region::RegionId,
    "RegionId",
    Some("^[a-z0-9][a-z0-9-]{0,39}$"),
    Some(1),
    Some(40),
    "A region id",
    "osc-fr1"
);
string_newtype_schema!(
    crate::region::CountryCode,
    "CountryCode",
    Some("^[A-Z]{2}$"),
    Some(2),
    Some(2),
    "ISO 3166-1 alpha-2 country code",
    "FR"
);
string_newtype_schema!(
    crate::controller::ControllerName,
    "ControllerName",
    Some(&printable_pattern()),
    Some(1),
    Some(200),
    "A controller's display name",
    "Acme SAS"
);

string_newtype_schema!(
    crate::account::LoginName,
    "LoginName",
    Some(EMAIL_PATTERN),
    Some(1),
    Some(crate::account::MAX_LOGIN_CHARS),
    "An account's login name: an email address (compared in lower case)",
    "dpo@acme.example"
);

/// Characters a password may hold: anything but control characters (the length is
/// checked on the raw text).
fn password_pattern() -> String {
    format!("^[^{CONTROL}]*$")
}

string_newtype_schema!(
    crate::account::Password,
    "Password",
    Some(&password_pattern()),
    Some(crate::account::MIN_PASSWORD_CHARS),
    Some(crate::account::MAX_PASSWORD_CHARS),
    "A new password: 12 to 128 characters, no control characters. Only its argon2id hash is kept",
    "correct horse battery staple"
);
string_newtype_schema!(
    crate::account::PasswordAttempt,
    "PasswordAttempt",
    None,
    Some(1),
    Some(crate::account::MAX_PASSWORD_CHARS),
    "The account's password",
    "correct horse battery staple"
);

fn const_format(prefix: &str) -> String {
    format!("^{prefix}{ID}$")
}

impl utoipa::PartialSchema for crate::region::MemberState {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(crate::region::EEA_COUNTRIES.iter().copied()))
            .description(Some(
                "The EU/EEA member state whose law governs the agreement (DPA §15)".to_owned(),
            ))
            .into()
    }
}
impl utoipa::ToSchema for crate::region::MemberState {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("MemberState")
    }
}

impl utoipa::PartialSchema for crate::category::DataCategory {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(crate::category::DATA_CATEGORIES.iter().map(|(k, _)| *k)))
            .description(Some(
                "A data category (fideslang keys, extended for DPA §4). A rule on a parent covers its children.".to_owned(),
            ))
            .into()
    }
}
impl utoipa::ToSchema for crate::category::DataCategory {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("DataCategory")
    }
}

impl utoipa::PartialSchema for crate::record::FieldValue {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::OneOfBuilder;
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(crate::record::MAX_TEXT_CHARS)),
            )
            .item(from_json(serde_json::json!({
                "type": "number",
                "exclusiveMinimum": -crate::record::MAX_NUMBER_MAGNITUDE,
                "exclusiveMaximum": crate::record::MAX_NUMBER_MAGNITUDE,
                "description": "Numbers stay below 10^12 in magnitude; longer ones (identifiers) go as text",
            })))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .description(Some(
                "A field's value: personal data, encrypted at rest".to_owned(),
            ))
            .into()
    }
}
impl utoipa::ToSchema for crate::record::FieldValue {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("FieldValue")
    }
}

fn or_null(s: RefOr<Schema>) -> RefOr<Schema> {
    utoipa::openapi::schema::OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(s)
        .into()
}

/// `RecordMeta.source`.
pub fn source_schema() -> RefOr<Schema> {
    or_null(printable(
        200,
        "Where the data came from (Art. 15(1)(g)), e.g. \"signup form\"",
    ))
}

/// `RecordMeta.recipients`.
pub fn recipients_schema() -> RefOr<Schema> {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(printable(200, "A recipient or category of recipients"))
        .max_items(Some(32))
        .description(Some(
            "Recipients or categories of recipients the data is shared with (Art. 15(1)(c)); at most 32"
                .to_owned(),
        ))
        .into()
}

/// `RecordMeta.automated_decision`.
pub fn decision_schema() -> RefOr<Schema> {
    or_null(printable(
        1000,
        "The logic of any automated decision taken on this data (Art. 15(1)(h)); none if absent",
    ))
}
