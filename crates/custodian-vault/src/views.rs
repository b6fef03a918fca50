//! What use cases take and return. With the `openapi` feature these double as the HTTP
//! schemas, so the API document is generated from the very types the code uses.

use custodian_core::account::{LoginName, Password, PasswordAttempt};
use custodian_core::category::{DataCategory, SubjectCategory};
use custodian_core::controller::ControllerName;
use custodian_core::ids::{AccountId, ControllerId, RecordId, SubjectId, TokenId};
use custodian_core::lookup::LookupKind;
use custodian_core::operation::Operation;
use custodian_core::principal::Role;
use custodian_core::purpose::PurposeName;
use custodian_core::record::{FieldInput, FieldName, FieldValue, RecordMeta};
use custodian_core::region::{MemberState, RegionId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use time::{Date, OffsetDateTime};

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewController {
    pub name: ControllerName,
    /// One of the configured regions (default `osc-fr1`, `osc-secnum-fr1`).
    #[cfg_attr(feature = "openapi", schema(schema_with = schemas::region))]
    pub region: RegionId,
    /// DPA §3: the date from which the agreement applies.
    pub agreement_effective: Date,
    /// DPA §15: the member state whose law governs the agreement.
    pub governing_law: MemberState,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub role: Role,
    /// Required when the operator issues a controller token; otherwise the caller's own.
    #[serde(default)]
    pub controller: Option<ControllerId>,
    /// Purposes the token may name; all documented purposes when absent.
    #[serde(default, deserialize_with = "custodian_core::json::unique_set_opt")]
    pub purposes: Option<BTreeSet<PurposeName>>,
    /// Operations the token may perform; whatever its role allows when absent.
    #[serde(default, deserialize_with = "custodian_core::json::unique_set_opt")]
    pub operations: Option<BTreeSet<Operation>>,
    /// A note for humans: which application or person holds it. Not personal data.
    #[cfg_attr(feature = "openapi", schema(schema_with = schemas::label))]
    pub label: String,
    /// Lifetime in seconds; at most one year. Never-expiring tokens are not offered.
    #[serde(deserialize_with = "custodian_core::json::integer")]
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 31_622_400))]
    pub expires_in_seconds: u32,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenView {
    pub id: TokenId,
    pub role: Role,
    pub controller: Option<ControllerId>,
    pub purposes: Option<BTreeSet<PurposeName>>,
    pub operations: Option<BTreeSet<Operation>>,
    pub label: String,
    #[serde(with = "custodian_core::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "custodian_core::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "custodian_core::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// Returned once, when a token is issued: the secret is never shown again (and never in
/// `Debug` output: see the impl below).
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssuedToken {
    #[serde(flatten)]
    pub token: TokenView,
    /// The bearer token. Store it now: only its hash is kept.
    pub secret: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &self.token)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A new login account. The password is hashed (argon2id) before anything is stored; only
/// the hash is kept, and the password never prints (`Debug` is redacted).
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    pub login: LoginName,
    pub password: Password,
    /// The role its session tokens get.
    pub role: Role,
    /// The controller the account belongs to: required when the operator creates a
    /// controller's account, absent for the operator's own staff (`operator_admin`); a
    /// controller admin may only name its own controller (or leave it out).
    #[serde(default)]
    pub controller: Option<ControllerId>,
}

/// A login account as its administrators see it (never its password or hash).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountView {
    pub id: AccountId,
    /// The login name, in lower case.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub login: LoginName,
    pub role: Role,
    pub controller: Option<ControllerId>,
    #[serde(with = "custodian_core::rfc3339")]
    pub created_at: OffsetDateTime,
    pub disabled: bool,
}

/// A password login. Answered with a session token (an API token of the account's role and
/// controller, valid 8 hours), or 401 whether the login is unknown or the password wrong.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    pub login: LoginName,
    pub password: PasswordAttempt,
}

/// A record as submitted: fields by name, and its Art. 15 metadata. (Its OpenAPI schema is
/// written out flat in [`schemas`]: utoipa renders `flatten` as an `allOf` that a strict
/// object cannot satisfy.)
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRecord {
    /// One to 64 fields.
    #[serde(deserialize_with = "unique_fields")]
    pub fields: BTreeMap<FieldName, FieldInput>,
    #[serde(flatten)]
    pub meta: RecordMeta,
    /// A shorter life than the purpose's retention; capped by it.
    #[serde(default, with = "custodian_core::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewSubject {
    pub category: SubjectCategory,
    /// An optional first record, stored with the subject in one operation.
    #[serde(default)]
    pub record: Option<NewRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FieldUpdate {
    /// One to 64 fields.
    #[serde(deserialize_with = "unique_fields")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schemas::fields_map))]
    pub fields: BTreeMap<FieldName, FieldInput>,
}

/// (Its OpenAPI schema, in [`schemas`], gives the value's form for each kind.)
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupQuery {
    pub kind: LookupKind,
    /// The email, phone number or external id to look for. Sent in the body, never in a
    /// URL, because URLs end up in access logs.
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FieldView {
    pub category: DataCategory,
    pub value: FieldValue,
}

/// A record's fields by name, in name order: a map on the wire (a JSON object), held as one
/// sorted vector. A bulk read answers thousands of records of a few fields each, and a
/// `BTreeMap` gave each record a node of room for eleven fields (about a kilobyte) to
/// allocate, fill by search and free again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldMap(Vec<(FieldName, FieldView)>);

impl FieldMap {
    /// From fields already in strictly increasing name order (as a record's field set is
    /// stored); anything else is sorted, the last of equal names kept.
    pub fn from_sorted(fields: Vec<(FieldName, FieldView)>) -> Self {
        if fields.windows(2).all(|w| w[0].0 < w[1].0) {
            Self(fields)
        } else {
            fields.into_iter().collect()
        }
    }

    /// The field named `name` (a `FieldName` or a `str`).
    pub fn get<K: FieldKey + ?Sized>(&self, name: &K) -> Option<&FieldView> {
        let name = name.field_key();
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| &self.0[i].1)
    }

    pub fn contains_key<K: FieldKey + ?Sized>(&self, name: &K) -> bool {
        self.get(name).is_some()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&FieldName, &FieldView)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &FieldName> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &FieldView> {
        self.0.iter().map(|(_, v)| v)
    }
}

/// What a [`FieldMap`] is looked up by.
pub trait FieldKey {
    fn field_key(&self) -> &str;
}

impl FieldKey for FieldName {
    fn field_key(&self) -> &str {
        self.as_str()
    }
}

impl FieldKey for str {
    fn field_key(&self) -> &str {
        self
    }
}

impl<K: FieldKey + ?Sized> std::ops::Index<&K> for FieldMap {
    type Output = FieldView;
    fn index(&self, name: &K) -> &FieldView {
        self.get(name).expect("no field of that name")
    }
}

impl FromIterator<(FieldName, FieldView)> for FieldMap {
    fn from_iter<I: IntoIterator<Item = (FieldName, FieldView)>>(iter: I) -> Self {
        // As a map collects: in name order, the last of equal names kept.
        let map: BTreeMap<FieldName, FieldView> = iter.into_iter().collect();
        Self(map.into_iter().collect())
    }
}

impl IntoIterator for FieldMap {
    type Item = (FieldName, FieldView);
    type IntoIter = std::vec::IntoIter<(FieldName, FieldView)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a FieldMap {
    type Item = (&'a FieldName, &'a FieldView);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (FieldName, FieldView)>,
        fn(&'a (FieldName, FieldView)) -> (&'a FieldName, &'a FieldView),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl Serialize for FieldMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for FieldMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::<FieldName, FieldView>::deserialize(d).map(|m| Self(m.into_iter().collect()))
    }
}

/// (Its OpenAPI schema is written out flat in [`schemas`], as `NewRecord`'s is.)
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordView {
    pub id: RecordId,
    pub subject: SubjectId,
    /// The purpose the record was collected under.
    pub purpose: PurposeName,
    pub fields: FieldMap,
    /// The stored record's, shared (see `RecordHeader::meta`).
    #[serde(flatten)]
    pub meta: std::sync::Arc<RecordMeta>,
    #[serde(with = "custodian_core::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "custodian_core::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When the record is erased by retention.
    #[serde(with = "custodian_core::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubjectView {
    pub id: SubjectId,
    pub category: SubjectCategory,
    /// Art. 18: while restricted, data is only stored (and may be erased).
    pub restricted: bool,
    /// Art. 21: purposes the subject objected to.
    pub objections: Vec<PurposeName>,
    #[serde(with = "custodian_core::rfc3339")]
    pub created_at: OffsetDateTime,
    pub records: Vec<RecordView>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedSubject {
    pub id: SubjectId,
    pub record: Option<RecordId>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErasureReceipt {
    pub subject: SubjectId,
    /// False when the subject had already been erased (erasure is idempotent).
    pub erased_now: bool,
    pub records: u64,
    pub fields: u64,
    pub lookup_entries: u64,
    /// The audit entry that records the erasure.
    pub audit_seq: u64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LookupResult {
    pub subjects: Vec<SubjectId>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntryView {
    pub seq: u64,
    #[serde(with = "custodian_core::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    /// An Art. 4(2) operation, or `admin.*` for administrative acts.
    pub action: String,
    pub purpose: Option<PurposeName>,
    pub subject: Option<SubjectId>,
    /// Every subject of a bulk operation (one entry for the whole set); empty otherwise.
    pub subjects: Vec<SubjectId>,
    pub record: Option<RecordId>,
    /// Names of the fields involved; never their values.
    pub fields: Vec<String>,
    /// `allowed` or `refused`.
    pub outcome: String,
    pub reason: Option<String>,
    pub request: Option<String>,
    /// Hex SHA-256 of the previous entry.
    pub prev_hash: String,
    /// Hex SHA-256 chain hash of this entry.
    pub hash: String,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    pub entries: Vec<AuditEntryView>,
    /// Pass as `after` to get the next page; absent at the end.
    pub next_after: Option<u64>,
}

/// A field map that refuses a name given twice: JSON allows duplicate keys, and silently
/// keeping the last one would store something the caller did not mean.
fn unique_fields<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<FieldName, FieldInput>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = BTreeMap<FieldName, FieldInput>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of fields")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<FieldName, FieldInput>()? {
                if out.contains_key(&k) {
                    return Err(serde::de::Error::custom(format!(
                        "field `{k}` is given twice"
                    )));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Visitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, value: &str) -> (FieldName, FieldView) {
        (
            FieldName::parse(name).unwrap(),
            FieldView {
                category: DataCategory::parse("user.name").unwrap(),
                value: FieldValue::Text(value.into()),
            },
        )
    }

    fn text(v: Option<&FieldView>) -> Option<&str> {
        v.map(|f| match &f.value {
            FieldValue::Text(t) => t.as_str(),
            _ => panic!("text"),
        })
    }

    #[test]
    fn a_field_map_is_in_name_order_and_answers_by_name() {
        let sorted = FieldMap::from_sorted(vec![field("a", "1"), field("b", "2")]);
        // Out of order, and a name given twice: sorted, the last kept (as a map collects).
        let unsorted =
            FieldMap::from_sorted(vec![field("b", "x"), field("a", "1"), field("b", "2")]);
        assert_eq!(sorted, unsorted);
        assert_eq!(
            sorted.keys().map(FieldName::as_str).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(text(sorted.get("b")), Some("2"));
        assert_eq!(text(sorted.get(&FieldName::parse("a").unwrap())), Some("1"));
        assert_eq!(sorted.get("c"), None);
        assert!(!sorted.contains_key("c"));
        assert_eq!(sorted.len(), 2);
        // On the wire, a JSON object in name order, read back the same.
        let json = serde_json::to_string(&sorted).unwrap();
        assert_eq!(
            json,
            r#"{"a":{"category":"user.name","value":"1"},"b":{"category":"user.name","value":"2"}}"#
        );
        assert_eq!(serde_json::from_str::<FieldMap>(&json).unwrap(), sorted);
    }

    #[test]
    fn a_field_given_twice_is_refused() {
        let once = r#"{"fields":{"name":{"category":"user.name","value":"a"}}}"#;
        assert!(serde_json::from_str::<FieldUpdate>(once).is_ok());
        let twice = r#"{"fields":{"name":{"category":"user.name","value":"a"},"name":{"category":"user.name","value":"b"}}}"#;
        let err = serde_json::from_str::<FieldUpdate>(twice)
            .unwrap_err()
            .to_string();
        assert!(err.contains("given twice"), "{err}");
        assert!(
            serde_json::from_str::<NewRecord>(&format!(
                r#"{{"fields":{}}}"#,
                &twice[10..twice.len() - 1]
            ))
            .is_err()
        );
    }
}

/// Everything held on one subject, with the Art. 15 metadata: the access and portability
/// export. Its JSON Schema is published at `/v1/schemas/subject-export.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SubjectExport {
    /// Always `custodian.subject-export/v1`.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^custodian\\.subject-export/v1$")
    )]
    pub format: String,
    pub controller: ControllerId,
    #[serde(with = "custodian_core::rfc3339")]
    pub exported_at: OffsetDateTime,
    pub subject: ExportedSubject,
    /// The purposes the records were collected under: why, on which basis, for how long
    /// (Art. 15(1)(a), (d)).
    pub purposes: Vec<ExportedPurpose>,
    pub records: Vec<ExportedRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExportedSubject {
    pub id: SubjectId,
    pub category: SubjectCategory,
    /// Art. 18: whether processing is restricted.
    pub restricted: bool,
    /// Art. 21: purposes the subject objected to.
    pub objections: Vec<PurposeName>,
    #[serde(with = "custodian_core::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExportedPurpose {
    pub name: PurposeName,
    pub description: String,
    pub lawful_basis: custodian_core::purpose::LawfulBasis,
    #[serde(deserialize_with = "custodian_core::json::integer")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 36525))]
    pub retention_days: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExportedRecord {
    pub id: RecordId,
    pub purpose: PurposeName,
    /// The categories of data in this record (Art. 15(1)(b)).
    pub categories: Vec<DataCategory>,
    #[cfg_attr(feature = "openapi", schema(schema_with = schemas::fields_map))]
    pub fields: FieldMap,
    /// Where the data came from (Art. 15(1)(g)).
    #[cfg_attr(feature = "openapi", schema(schema_with = custodian_core::schema::source_schema))]
    pub source: Option<String>,
    /// Who it is shared with (Art. 15(1)(c)).
    #[cfg_attr(feature = "openapi", schema(schema_with = custodian_core::schema::recipients_schema))]
    pub recipients: Vec<String>,
    /// The logic of any automated decision (Art. 15(1)(h)).
    #[cfg_attr(feature = "openapi", schema(schema_with = custodian_core::schema::decision_schema))]
    pub automated_decision: Option<String>,
    #[serde(with = "custodian_core::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "custodian_core::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When it will be erased by retention (Art. 15(1)(d)).
    #[serde(with = "custodian_core::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A data subject's request, as filed on the public endpoint.
#[derive(Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    pub right: custodian_core::dsr::Right,
    /// How to reach the requester (an email address, a phone number, a postal address).
    #[cfg_attr(feature = "openapi", schema(schema_with = schemas::contact))]
    pub contact: String,
    /// What the requester asks, in their words.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 4000))]
    pub message: Option<String>,
}

/// What the requester gets back: the same whether or not the controller knows them.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestReceipt {
    /// Keep this reference to check the request's status.
    pub reference: custodian_core::ids::DsrId,
    pub right: custodian_core::dsr::Right,
    pub state: custodian_core::dsr::RequestState,
    #[serde(with = "custodian_core::rfc3339")]
    pub received_at: OffsetDateTime,
    /// One month after receipt (Art. 12(3)), unless extended.
    #[serde(with = "custodian_core::rfc3339")]
    pub due_at: OffsetDateTime,
}

/// A request as the controller sees it in its inbox (contact details decrypted).
#[derive(Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestView {
    pub id: custodian_core::ids::DsrId,
    pub right: custodian_core::dsr::Right,
    pub state: custodian_core::dsr::RequestState,
    pub contact: String,
    pub message: Option<String>,
    #[serde(with = "custodian_core::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(with = "custodian_core::rfc3339")]
    pub due_at: OffsetDateTime,
    pub overdue: bool,
    pub extended_months: u32,
    pub extension_reason: Option<String>,
    pub subject: Option<SubjectId>,
    #[serde(with = "custodian_core::rfc3339::option")]
    pub identity_confirmed_at: Option<OffsetDateTime>,
    #[serde(with = "custodian_core::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
    pub note: Option<String>,
}

/// What the controller does with a request. Every action is audited. (Its OpenAPI schema is
/// written out in [`schemas`]: each variant is a closed object.)
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum RequestAction {
    Acknowledge,
    /// The controller confirms who the requester is; the processor does not judge identity.
    ConfirmIdentity,
    /// Links the request to the subject it concerns (find it first with POST /v1/lookup).
    Link {
        subject: SubjectId,
    },
    /// Extends the deadline by one or two further months (Art. 12(3)), with the reason.
    Extend {
        #[serde(deserialize_with = "custodian_core::json::integer")]
        months: u32,
        reason: String,
    },
    Reject {
        reason: String,
    },
    /// Carries the request out with the matching operation, under `purpose`: access and
    /// portability return the export; erasure erases; restriction restricts; objection
    /// records an objection to `objected_purpose`; rectification closes the request once
    /// the corrections were made with PATCH /v1/records/{id}.
    Fulfil {
        purpose: PurposeName,
        #[serde(default)]
        objected_purpose: Option<PurposeName>,
        #[serde(default)]
        note: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestActionResult {
    pub request: RequestView,
    /// For access and portability: what to hand to the requester.
    pub export: Option<SubjectExport>,
    /// For erasure: the receipt.
    pub erasure: Option<ErasureReceipt>,
}

/// The records of a set (`GET /v1/records`): every record collected under the purpose, or
/// one subject's, grouped by subject, oldest first within each.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordList {
    pub records: Vec<RecordView>,
    /// Present when records follow: pass it as `after` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One change applied to every record of a set (`PATCH /v1/records`): the JSON form of
/// [`crate::bulk::RecordChange`], one variant each, tagged by `change`. (Its OpenAPI schema is
/// written out in [`schemas`]: each variant is a closed object.)
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case", deny_unknown_fields)]
pub enum BulkChange {
    /// A new end of retention, capped by the purpose's retention counted from each record's
    /// collection.
    ExpiresAt {
        #[serde(with = "custodian_core::rfc3339")]
        expires_at: OffsetDateTime,
    },
    /// The records are about another subject of the same controller.
    Subject { subject: SubjectId },
    /// Writes one field (added where missing).
    Field { name: FieldName, input: FieldInput },
    /// Recategorises one field where present (its value is validated again).
    Category {
        field: FieldName,
        category: DataCategory,
    },
    /// Art. 15(1)(g); absent or null clears it.
    Source {
        #[serde(default)]
        source: Option<String>,
    },
    /// Art. 15(1)(c).
    Recipients { recipients: Vec<String> },
    /// Art. 15(1)(h); absent or null clears it.
    AutomatedDecision {
        #[serde(default)]
        automated_decision: Option<String>,
    },
}

impl From<BulkChange> for crate::bulk::RecordChange {
    fn from(c: BulkChange) -> Self {
        match c {
            BulkChange::ExpiresAt { expires_at } => Self::ExpiresAt(expires_at),
            BulkChange::Subject { subject } => Self::Subject(subject),
            BulkChange::Field { name, input } => Self::Field { name, input },
            BulkChange::Category { field, category } => Self::Category { field, category },
            BulkChange::Source { source } => Self::Source(source),
            BulkChange::Recipients { recipients } => Self::Recipients(recipients),
            BulkChange::AutomatedDecision { automated_decision } => {
                Self::AutomatedDecision(automated_decision)
            }
        }
    }
}

impl From<crate::bulk::RecordChange> for BulkChange {
    fn from(c: crate::bulk::RecordChange) -> Self {
        use crate::bulk::RecordChange as C;
        match c {
            C::ExpiresAt(expires_at) => Self::ExpiresAt { expires_at },
            C::Subject(subject) => Self::Subject { subject },
            C::Field { name, input } => Self::Field { name, input },
            C::Category { field, category } => Self::Category { field, category },
            C::Source(source) => Self::Source { source },
            C::Recipients(recipients) => Self::Recipients { recipients },
            C::AutomatedDecision(automated_decision) => {
                Self::AutomatedDecision { automated_decision }
            }
        }
    }
}

/// The OpenAPI schemas written by hand: those whose JSON form utoipa cannot derive exactly
/// (flattened structs, closed tagged unions, values whose form depends on a sibling).
#[cfg(feature = "openapi")]
pub mod schemas {
    use custodian_core::schema::{from_json, not_blank, printable, printable_pattern};
    use serde_json::json;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;

    macro_rules! named {
        ($ty:ty, $name:literal, $f:expr) => {
            impl utoipa::PartialSchema for $ty {
                fn schema() -> RefOr<Schema> {
                    $f()
                }
            }
            impl utoipa::ToSchema for $ty {
                fn name() -> std::borrow::Cow<'static, str> {
                    std::borrow::Cow::Borrowed($name)
                }
            }
        };
    }

    fn to_json(s: RefOr<Schema>) -> serde_json::Value {
        serde_json::to_value(s).expect("a schema serialises")
    }

    /// The regions a controller can be pinned to.
    pub fn region() -> RefOr<Schema> {
        let ids: Vec<String> = custodian_core::region::Region::defaults()
            .into_iter()
            .map(|r| r.id.as_str().to_owned())
            .collect();
        from_json(json!({"type": "string", "enum": ids,
            "description": "One of the configured regions (GET /v1/regions)"}))
    }

    pub fn label() -> RefOr<Schema> {
        printable(
            200,
            "A note for humans: which application or person holds it. Not personal data.",
        )
    }

    /// 3 to 320 characters, no control characters, at least 3 once surrounding white space
    /// is trimmed.
    pub fn contact() -> RefOr<Schema> {
        let c = r"\x00-\x1f\x7f-\x9f";
        let b = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
        from_json(json!({"type": "string", "minLength": 3, "maxLength": 320,
            "pattern": format!("^[^{c}]*[^{b}][^{c}]+[^{b}][^{c}]*$"),
            "description": "How to reach the requester (an email address, a phone number, a postal address)"}))
    }

    /// A record's fields: 1 to 64, by name.
    pub fn fields_map() -> RefOr<Schema> {
        let name = to_json(<custodian_core::record::FieldName as utoipa::PartialSchema>::schema());
        from_json(
            json!({"type": "object", "minProperties": 1, "maxProperties": 64,
            "propertyNames": name,
            "additionalProperties": {"$ref": "#/components/schemas/FieldInput"},
            "description": "One to 64 fields, by name"}),
        )
    }

    fn meta_properties() -> serde_json::Value {
        json!({
            "source": to_json(custodian_core::schema::source_schema()),
            "recipients": to_json(custodian_core::schema::recipients_schema()),
            "automated_decision": to_json(custodian_core::schema::decision_schema()),
        })
    }

    fn new_record() -> RefOr<Schema> {
        let mut props = meta_properties();
        props["fields"] = to_json(fields_map());
        props["expires_at"] = json!({"type": ["string", "null"], "format": "date-time",
            "description": "A shorter life than the purpose's retention; capped by it."});
        from_json(
            json!({"type": "object", "required": ["fields"], "additionalProperties": false,
            "properties": props,
            "description": "A record as submitted: fields by name, and its Art. 15 metadata"}),
        )
    }
    named!(super::NewRecord, "NewRecord", new_record);

    fn record_view() -> RefOr<Schema> {
        let mut props = meta_properties();
        let time = json!({"type": "string", "format": "date-time"});
        props["id"] = json!({"$ref": "#/components/schemas/RecordId"});
        props["subject"] = json!({"$ref": "#/components/schemas/SubjectId"});
        props["purpose"] = json!({"$ref": "#/components/schemas/PurposeName"});
        props["fields"] = json!({"type": "object",
            "additionalProperties": {"$ref": "#/components/schemas/FieldView"}});
        props["created_at"] = time.clone();
        props["updated_at"] = time.clone();
        props["expires_at"] = time;
        from_json(json!({"type": "object",
            "required": ["id", "subject", "purpose", "fields", "recipients", "created_at", "updated_at", "expires_at"],
            "properties": props,
            "description": "A record, decrypted, with its Art. 15 metadata"}))
    }
    named!(super::RecordView, "RecordView", record_view);

    fn lookup_query() -> RefOr<Schema> {
        let branch = |kind: &str, value: serde_json::Value| {
            json!({"type": "object", "required": ["kind", "value"], "additionalProperties": false,
                "properties": {"kind": {"type": "string", "enum": [kind]}, "value": value}})
        };
        from_json(json!({
            "description": "What to look for: the value goes in the body, never in a URL (URLs end up in access logs)",
            "oneOf": [
                branch("email", json!({"type": "string", "maxLength": 254, "pattern": custodian_core::schema::EMAIL_PATTERN})),
                branch("phone", json!({"type": "string", "maxLength": 64, "pattern": custodian_core::schema::PHONE_PATTERN})),
                branch("external_id", json!({"type": "string", "maxLength": 256, "pattern": printable_pattern()})),
            ]
        }))
    }
    named!(super::LookupQuery, "LookupQuery", lookup_query);

    fn request_action() -> RefOr<Schema> {
        let text = to_json(not_blank(1000, "1-1000 characters, not blank"));
        let purpose = json!({"$ref": "#/components/schemas/PurposeName"});
        let variant =
            |action: &str, description: &str, props: serde_json::Value, required: &[&str]| {
                let mut p = props;
                p["action"] = json!({"type": "string", "enum": [action]});
                let mut req = vec!["action"];
                req.extend_from_slice(required);
                json!({"type": "object", "description": description, "required": req,
                "additionalProperties": false, "properties": p})
            };
        from_json(json!({
            "description": "What the controller does with a request. Every action is audited.",
            "oneOf": [
                variant("acknowledge", "Acknowledges receipt", json!({}), &[]),
                variant("confirm_identity", "The controller confirms who the requester is; the processor does not judge identity", json!({}), &[]),
                variant("link", "Links the request to the subject it concerns (find it first with POST /v1/lookup)",
                    json!({"subject": {"$ref": "#/components/schemas/SubjectId"}}), &["subject"]),
                variant("extend", "Extends the deadline by one or two further months in all (Art. 12(3)), with the reason",
                    json!({"months": {"type": "integer", "minimum": 1, "maximum": 2}, "reason": text}), &["months", "reason"]),
                variant("reject", "Rejects the request, with the reason", json!({"reason": text}), &["reason"]),
                variant("fulfil", "Carries the request out with the matching operation, under `purpose`: access and portability return the export; erasure erases; restriction restricts; objection records an objection to `objected_purpose`; rectification closes the request once the corrections were made with PATCH /v1/records/{id} (say which in `note`)",
                    json!({"purpose": purpose, "objected_purpose": {"oneOf": [{"type": "null"}, purpose]},
                           "note": {"oneOf": [{"type": "null"}, text]}}), &["purpose"]),
            ]
        }))
    }
    named!(super::RequestAction, "RequestAction", request_action);

    fn bulk_change() -> RefOr<Schema> {
        let name = to_json(<custodian_core::record::FieldName as utoipa::PartialSchema>::schema());
        let variant =
            |change: &str, description: &str, props: serde_json::Value, required: &[&str]| {
                let mut p = props;
                p["change"] = json!({"type": "string", "enum": [change]});
                let mut req = vec!["change"];
                req.extend_from_slice(required);
                json!({"type": "object", "description": description, "required": req,
                "additionalProperties": false, "properties": p})
            };
        from_json(json!({
            "description": "One change applied to every record of the set, in one transaction. Subjects who restricted processing or objected to the purpose are left out.",
            "oneOf": [
                variant("expires_at", "A new end of retention, capped by the purpose's retention counted from each record's collection (a change can shorten a record's life, never stretch it); a time already past: erased by the next retention pass",
                    json!({"expires_at": {"type": "string", "format": "date-time"}}), &["expires_at"]),
                variant("subject", "The records are about another subject of the same controller: their fields are re-encrypted under that subject's key and their lookup entries follow them",
                    json!({"subject": {"$ref": "#/components/schemas/SubjectId"}}), &["subject"]),
                variant("field", "Writes one field on every record (added where missing), validated and encrypted as any field",
                    json!({"name": name, "input": {"$ref": "#/components/schemas/FieldInput"}}), &["name", "input"]),
                variant("category", "Recategorises one field where present: its value is validated again under the new category (409 when a stored value does not fit it; nothing is changed)",
                    json!({"field": name, "category": {"type": "string", "enum": custodian_core::schema::storable_categories()}}), &["field", "category"]),
                variant("source", "Where the data came from (Art. 15(1)(g)); absent or null clears it",
                    json!({"source": to_json(custodian_core::schema::source_schema())}), &[]),
                variant("recipients", "Recipients or categories of recipients (Art. 15(1)(c)); an empty list clears them",
                    json!({"recipients": to_json(custodian_core::schema::recipients_schema())}), &["recipients"]),
                variant("automated_decision", "The logic of any automated decision (Art. 15(1)(h)); absent or null clears it",
                    json!({"automated_decision": to_json(custodian_core::schema::decision_schema())}), &[]),
            ]
        }))
    }
    named!(super::BulkChange, "BulkChange", bulk_change);

    fn bulk_report() -> RefOr<Schema> {
        let count = |d: &str| json!({"type": "integer", "minimum": 0, "description": d});
        from_json(json!({"type": "object",
            "required": ["records", "subjects", "skipped_subjects"],
            "properties": {
                "records": count("Records altered or erased"),
                "subjects": count("Subjects whose records were altered or erased"),
                "skipped_subjects": count("Subjects left out because they restricted processing or objected to the purpose"),
            },
            "description": "What a bulk alteration or erasure did"}))
    }
    named!(crate::bulk::BulkReport, "BulkReport", bulk_report);
}

// Personal data never prints in `Debug` output (a log line or a panic message could carry
// it): lookup values and data subjects' contact details are redacted.
impl std::fmt::Debug for LookupQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupQuery")
            .field("kind", &self.kind)
            .field("value", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Debug for NewRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewRequest")
            .field("right", &self.right)
            .field("contact", &"<redacted>")
            .field("message", &self.message.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl std::fmt::Debug for RequestView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestView")
            .field("id", &self.id)
            .field("right", &self.right)
            .field("state", &self.state)
            .field("contact", &"<redacted>")
            .field("message", &self.message.as_ref().map(|_| "<redacted>"))
            .field("received_at", &self.received_at)
            .field("due_at", &self.due_at)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}
