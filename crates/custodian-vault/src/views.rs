//! What use cases take and return. With the `openapi` feature these double as the HTTP
//! schemas, so the API document is generated from the very types the code uses.

use custodian_core::category::{DataCategory, SubjectCategory};
use custodian_core::controller::ControllerName;
use custodian_core::ids::{ControllerId, RecordId, SubjectId, TokenId};
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
    #[serde(default)]
    pub purposes: Option<BTreeSet<PurposeName>>,
    /// Operations the token may perform; whatever its role allows when absent.
    #[serde(default)]
    pub operations: Option<BTreeSet<Operation>>,
    /// A note for humans: which application or person holds it. Not personal data.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub label: String,
    /// Lifetime in seconds; at most one year. Never-expiring tokens are not offered.
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
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// Returned once, when a token is issued: the secret is never shown again.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssuedToken {
    #[serde(flatten)]
    pub token: TokenView,
    /// The bearer token. Store it now: only its hash is kept.
    pub secret: String,
}

/// A record as submitted: fields by name, and its Art. 15 metadata.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewRecord {
    /// One to 64 fields.
    #[serde(deserialize_with = "unique_fields")]
    pub fields: BTreeMap<FieldName, FieldInput>,
    #[serde(flatten)]
    pub meta: RecordMeta,
    /// A shorter life than the purpose's retention; capped by it.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewSubject {
    pub category: SubjectCategory,
    /// An optional first record, stored with the subject in one operation.
    #[serde(default)]
    pub record: Option<NewRecord>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FieldUpdate {
    /// One to 64 fields.
    #[serde(deserialize_with = "unique_fields")]
    pub fields: BTreeMap<FieldName, FieldInput>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LookupQuery {
    pub kind: LookupKind,
    /// The email, phone number or external id to look for. Sent in the body, never in a
    /// URL, because URLs end up in access logs.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 320))]
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldView {
    pub category: DataCategory,
    pub value: FieldValue,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordView {
    pub id: RecordId,
    pub subject: SubjectId,
    /// The purpose the record was collected under.
    pub purpose: PurposeName,
    pub fields: BTreeMap<FieldName, FieldView>,
    #[serde(flatten)]
    pub meta: RecordMeta,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When the record is erased by retention.
    #[serde(with = "time::serde::rfc3339")]
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
    #[serde(with = "time::serde::rfc3339")]
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
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    /// An Art. 4(2) operation, or `admin.*` for administrative acts.
    pub action: String,
    pub purpose: Option<PurposeName>,
    pub subject: Option<SubjectId>,
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
    pub format: String,
    pub controller: ControllerId,
    #[serde(with = "time::serde::rfc3339")]
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
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExportedPurpose {
    pub name: PurposeName,
    pub description: String,
    pub lawful_basis: custodian_core::purpose::LawfulBasis,
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
    pub fields: BTreeMap<FieldName, FieldView>,
    /// Where the data came from (Art. 15(1)(g)).
    pub source: Option<String>,
    /// Who it is shared with (Art. 15(1)(c)).
    pub recipients: Vec<String>,
    /// The logic of any automated decision (Art. 15(1)(h)).
    pub automated_decision: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When it will be erased by retention (Art. 15(1)(d)).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A data subject's request, as filed on the public endpoint.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    pub right: custodian_core::dsr::Right,
    /// How to reach the requester (an email address, a phone number, a postal address).
    #[cfg_attr(feature = "openapi", schema(min_length = 3, max_length = 320))]
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
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// One month after receipt (Art. 12(3)), unless extended.
    #[serde(with = "time::serde::rfc3339")]
    pub due_at: OffsetDateTime,
}

/// A request as the controller sees it in its inbox (contact details decrypted).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestView {
    pub id: custodian_core::ids::DsrId,
    pub right: custodian_core::dsr::Right,
    pub state: custodian_core::dsr::RequestState,
    pub contact: String,
    pub message: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub due_at: OffsetDateTime,
    pub overdue: bool,
    pub extended_months: u32,
    pub extension_reason: Option<String>,
    pub subject: Option<SubjectId>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub identity_confirmed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
    pub note: Option<String>,
}

/// What the controller does with a request. Every action is audited.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
