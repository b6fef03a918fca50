//! OpenAPI schemas for the domain's string newtypes (with the `openapi` feature). Each
//! gives the pattern its parser enforces, so generated clients and API fuzzers send what
//! the server accepts, and the document tells the truth about what it refuses.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

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
    Some("^[a-z][a-z0-9_]{0,63}$"),
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
    None,
    Some(1),
    Some(200),
    "A controller's display name",
    "Acme SAS"
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
                    .max_length(Some(crate::record::MAX_TEXT_BYTES)),
            )
            .item(ObjectBuilder::new().schema_type(Type::Number))
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
