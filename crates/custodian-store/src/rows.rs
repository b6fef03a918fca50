//! What the store keeps, as plain data. Personal data appears here only sealed.

use custodian_core::audit::ChainId;
use custodian_core::category::{DataCategory, SubjectCategory};
use custodian_core::controller::Controller;
use custodian_core::ids::{AccountId, ControllerId, RecordId, SubjectId, TokenId};
use custodian_core::lookup::LookupKind;
use custodian_core::principal::{Principal, Role, TokenScope};
use custodian_core::record::{FieldName, RecordHeader};
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerRow {
    pub controller: Controller,
    /// The controller key, wrapped by the root key.
    pub wrapped_key: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: TokenId,
    /// SHA-256 of the token; the token itself is never stored.
    pub hash: [u8; 32],
    pub role: Role,
    pub controller: Option<ControllerId>,
    pub scope: TokenScope,
    pub label: String,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl TokenRow {
    /// The principal this token authenticates, if it is usable at `now`.
    pub fn principal_at(&self, now: OffsetDateTime) -> Option<Principal> {
        if self.revoked_at.is_some() || self.expires_at.is_some_and(|e| e <= now) {
            return None;
        }
        Some(Principal {
            token: self.id.clone(),
            role: self.role,
            controller: self.controller.clone(),
            scope: self.scope.clone(),
        })
    }
}

/// A login account. Its login name (an email address: personal data) is kept only as a
/// keyed blind index, for finding the account at login, and sealed under a key derived from
/// the root key; its password only as an argon2id PHC string.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub id: AccountId,
    /// HMAC-SHA256 of the normalised login name; unique.
    pub login_digest: [u8; 32],
    /// The login name, encrypted and bound to the account id.
    pub login_sealed: Vec<u8>,
    /// `$argon2id$v=19$m=...,t=...,p=...$salt$hash`.
    pub password_hash: String,
    pub role: Role,
    /// `None` for the processor's own staff (operator accounts), otherwise the one
    /// controller the account belongs to.
    pub controller: Option<ControllerId>,
    pub created_at: OffsetDateTime,
    pub disabled_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for AccountRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountRow")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("controller", &self.controller)
            .field("created_at", &self.created_at)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectRow {
    pub id: SubjectId,
    pub category: SubjectCategory,
    pub restricted: bool,
    /// The subject key, wrapped by the controller key.
    pub wrapped_key: Vec<u8>,
    pub created_at: OffsetDateTime,
}

#[derive(Clone, PartialEq, Eq)]
pub struct FieldRow {
    pub name: FieldName,
    pub category: DataCategory,
    /// nonce || AES-256-GCM ciphertext || tag, under the subject key.
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for FieldRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FieldRow({}, {}, {} sealed bytes)",
            self.name,
            self.category,
            self.sealed.len()
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRow {
    pub id: RecordId,
    pub subject: SubjectId,
    pub header: RecordHeader,
    pub fields: Vec<FieldRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupRow {
    pub kind: LookupKind,
    /// HMAC-SHA256 of the normalised value under the controller's index key.
    pub digest: [u8; 32],
    pub subject: SubjectId,
    pub record: RecordId,
    pub field: FieldName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ErasedCounts {
    pub records: u64,
    pub fields: u64,
    pub lookups: u64,
}

/// A signed statement of a chain's head at one point in time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    pub chain: ChainId,
    pub seq: u64,
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
    #[serde(with = "custodian_core::rfc3339")]
    pub signed_at: OffsetDateTime,
    #[serde(with = "hex64")]
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// The bytes the signature covers.
    pub fn message(
        chain: &ChainId,
        seq: u64,
        hash: &[u8; 32],
        signed_at: OffsetDateTime,
    ) -> Vec<u8> {
        let mut m = b"custodian/checkpoint/v1\0".to_vec();
        m.extend_from_slice(chain.as_string().as_bytes());
        m.push(0);
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(hash);
        m.extend_from_slice(&signed_at.unix_timestamp_nanos().to_be_bytes());
        m
    }
}

macro_rules! hex_array {
    ($name:ident, $n:expr) => {
        pub mod $name {
            use serde::{Deserialize, Deserializer, Serializer};
            pub fn serialize<S: Serializer>(v: &[u8; $n], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&custodian_core::hex::encode(v))
            }
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; $n], D::Error> {
                let s = String::deserialize(d)?;
                let bytes = custodian_core::hex::decode(&s)
                    .ok_or_else(|| serde::de::Error::custom("bad hex"))?;
                bytes
                    .try_into()
                    .map_err(|_| serde::de::Error::custom("wrong length"))
            }
        }
    };
}
hex_array!(hex32, 32);
hex_array!(hex64, 64);

/// A data-subject request as stored. `sealed_details` holds the requester's contact and
/// message, sealed under the controller key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsrRequestRow {
    pub id: custodian_core::ids::DsrId,
    pub right: custodian_core::dsr::Right,
    pub state: custodian_core::dsr::RequestState,
    pub sealed_details: Vec<u8>,
    pub received_at: OffsetDateTime,
    pub due_at: OffsetDateTime,
    pub extended_months: u32,
    pub extension_reason: Option<String>,
    pub subject: Option<SubjectId>,
    pub identity_confirmed_at: Option<OffsetDateTime>,
    pub closed_at: Option<OffsetDateTime>,
    pub note: Option<String>,
}

/// What the public may learn about a request from its reference: no personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsrStatus {
    pub controller: ControllerId,
    pub right: custodian_core::dsr::Right,
    pub state: custodian_core::dsr::RequestState,
    pub received_at: OffsetDateTime,
    pub due_at: OffsetDateTime,
}

/// A notification waiting in the durable outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub controller: ControllerId,
    pub topic: String,
    /// JSON; never personal data.
    pub payload: String,
    pub created_at: OffsetDateTime,
    pub attempts: u32,
    pub next_attempt_at: OffsetDateTime,
    pub delivered_at: Option<OffsetDateTime>,
}

/// A record whose retention ran out, as the sweeper sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredRecord {
    pub controller: ControllerId,
    pub record: RecordId,
    pub subject: SubjectId,
    pub purpose: custodian_core::purpose::PurposeName,
    pub expires_at: OffsetDateTime,
}

/// How many records of one purpose expire on one day (UTC).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExpiryBucket {
    pub controller: ControllerId,
    pub purpose: custodian_core::purpose::PurposeName,
    pub day: time::Date,
    pub records: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalHoldRow {
    pub controller: ControllerId,
    pub placed_at: OffsetDateTime,
    pub basis: String,
    pub previous_status: custodian_core::controller::ControllerStatus,
    pub lifted_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct DestroyedCounts {
    pub subjects: u64,
    pub records: u64,
    pub fields: u64,
    pub requests: u64,
}

/// An erasure noted in the ledger (pseudonymous id only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErasureEntry {
    pub controller: ControllerId,
    pub subject: SubjectId,
    #[serde(with = "custodian_core::rfc3339")]
    pub erased_at: OffsetDateTime,
}

/// How many of a purpose's records one subject holds (`DataTx::record_counts_of_purpose`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordCount {
    pub subject: SubjectId,
    pub records: u64,
    /// The smallest of the subject's record ids under the purpose.
    pub first: RecordId,
}
