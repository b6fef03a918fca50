//! The audit trail (DPA §2(e), §10(e)): one append-only, hash-chained sequence of entries
//! per controller, plus one for the processor's own administration. An entry names the
//! actor, the operation, the purpose, the subject's pseudonym and the *names* of the fields
//! involved, never their values.
//!
//! The hash of entry n is SHA-256(hash of entry n-1 || canonical bytes of entry n); the
//! canonical encoding is defined here so that every backend and `verify` agree on it.

use crate::ids::{ControllerId, RecordId, RequestId, SubjectId};
use crate::operation::Operation;
use crate::purpose::PurposeName;
use serde::{Deserialize, Serialize};
use std::fmt;
use time::OffsetDateTime;

/// Which chain an entry belongs to.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ChainId {
    /// The processor's own administration: controllers created, operator tokens issued.
    System,
    Controller(ControllerId),
}

impl ChainId {
    pub fn as_string(&self) -> String {
        match self {
            Self::System => "system".into(),
            Self::Controller(c) => c.to_string(),
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        if s == "system" {
            Some(Self::System)
        } else {
            ControllerId::parse(s).ok().map(Self::Controller)
        }
    }
}
impl TryFrom<String> for ChainId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s).ok_or_else(|| "not a chain id".to_owned())
    }
}
impl From<ChainId> for String {
    fn from(c: ChainId) -> String {
        c.as_string()
    }
}
impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_string())
    }
}
impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_string())
    }
}

/// What an entry records: a processing operation on personal data, or an administrative act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminAction {
    ControllerCreated,
    PurposeDocumented,
    TokenIssued,
    TokenRevoked,
    RequestReceived,
    RequestsRead,
    RequestAcknowledged,
    RequestIdentityConfirmed,
    RequestLinked,
    RequestExtended,
    RequestFulfilled,
    RequestRejected,
    TerminationStarted,
    TerminationExported,
    LegalHoldPlaced,
    LegalHoldLifted,
    Restored,
    /// A login account was created (the entry names its id, never its login name).
    AccountCreated,
    AccountDisabled,
    /// A password login: allowed (a session token was issued) or refused.
    Login,
}

impl AdminAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ControllerCreated => "controller_created",
            Self::PurposeDocumented => "purpose_documented",
            Self::TokenIssued => "token_issued",
            Self::TokenRevoked => "token_revoked",
            Self::RequestReceived => "request_received",
            Self::RequestsRead => "requests_read",
            Self::RequestAcknowledged => "request_acknowledged",
            Self::RequestIdentityConfirmed => "request_identity_confirmed",
            Self::RequestLinked => "request_linked",
            Self::RequestExtended => "request_extended",
            Self::RequestFulfilled => "request_fulfilled",
            Self::RequestRejected => "request_rejected",
            Self::TerminationStarted => "termination_started",
            Self::TerminationExported => "termination_exported",
            Self::LegalHoldPlaced => "legal_hold_placed",
            Self::LegalHoldLifted => "legal_hold_lifted",
            Self::Restored => "restored_from_backup",
            Self::AccountCreated => "account_created",
            Self::AccountDisabled => "account_disabled",
            Self::Login => "login",
        }
    }
    const ALL: [AdminAction; 20] = [
        Self::TerminationStarted,
        Self::TerminationExported,
        Self::LegalHoldPlaced,
        Self::LegalHoldLifted,
        Self::Restored,
        Self::ControllerCreated,
        Self::PurposeDocumented,
        Self::TokenIssued,
        Self::TokenRevoked,
        Self::RequestReceived,
        Self::RequestsRead,
        Self::RequestAcknowledged,
        Self::RequestIdentityConfirmed,
        Self::RequestLinked,
        Self::RequestExtended,
        Self::RequestFulfilled,
        Self::RequestRejected,
        Self::AccountCreated,
        Self::AccountDisabled,
        Self::Login,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Processing(Operation),
    Admin(AdminAction),
}

impl Action {
    /// Processing operations are written bare (`retrieval`); administrative acts carry an
    /// `admin.` prefix so the two can never be confused.
    pub fn as_string(self) -> String {
        match self {
            Self::Processing(op) => op.as_str().to_owned(),
            Self::Admin(a) => format!("admin.{}", a.as_str()),
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(rest) = s.strip_prefix("admin.") {
            AdminAction::ALL
                .into_iter()
                .find(|a| a.as_str() == rest)
                .map(Self::Admin)
        } else {
            Operation::parse(s).map(Self::Processing)
        }
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_string())
    }
}
impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom("unknown action"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Allowed,
    Refused { reason: String },
}

/// An entry before the store gives it its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    pub chain: ChainId,
    pub actor: String,
    pub action: Action,
    pub purpose: Option<PurposeName>,
    pub subject: Option<SubjectId>,
    /// Every subject an entry is about when it is about more than one (a bulk operation
    /// records one entry for the whole set, `subject` then empty); each stays findable
    /// by subject through the store's per-subject index.
    pub subjects: Vec<SubjectId>,
    pub record: Option<RecordId>,
    /// Names of the fields involved; never values.
    pub fields: Vec<String>,
    pub outcome: Outcome,
    pub request: Option<RequestId>,
}

impl AuditDraft {
    pub fn new(chain: ChainId, actor: impl Into<String>, action: Action) -> Self {
        Self {
            chain,
            actor: actor.into(),
            action,
            purpose: None,
            subject: None,
            subjects: Vec::new(),
            record: None,
            fields: Vec::new(),
            outcome: Outcome::Allowed,
            request: None,
        }
    }
    pub fn purpose(mut self, p: &PurposeName) -> Self {
        self.purpose = Some(p.clone());
        self
    }
    pub fn subject(mut self, s: &SubjectId) -> Self {
        self.subject = Some(s.clone());
        self
    }
    /// The subjects of a bulk operation (see [`AuditDraft::subjects`]).
    pub fn subjects(mut self, s: Vec<SubjectId>) -> Self {
        self.subjects = s;
        self
    }
    pub fn record(mut self, r: &RecordId) -> Self {
        self.record = Some(r.clone());
        self
    }
    pub fn fields<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.fields = names.into_iter().map(|n| n.as_ref().to_owned()).collect();
        self
    }
    pub fn refused(mut self, reason: impl Into<String>) -> Self {
        self.outcome = Outcome::Refused {
            reason: reason.into(),
        };
        self
    }
    pub fn request(mut self, r: Option<&RequestId>) -> Self {
        self.request = r.cloned();
        self
    }

    /// Places the draft in its chain.
    pub fn seal(self, seq: u64, at: OffsetDateTime, prev_hash: [u8; 32]) -> UnhashedEntry {
        UnhashedEntry {
            seq,
            at,
            prev_hash,
            draft: self,
        }
    }
}

/// An entry with its place in the chain, waiting for its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnhashedEntry {
    pub seq: u64,
    pub at: OffsetDateTime,
    pub prev_hash: [u8; 32],
    pub draft: AuditDraft,
}

/// An entry as stored, borrowed as text: everything its canonical bytes cover. `verify`
/// hashes stored rows through this without decoding them into an [`AuditEntry`], and the
/// write path goes through it too, so the two cannot encode differently.
#[derive(Debug, Clone, Copy)]
pub struct StoredParts<'a> {
    pub chain: &'a str,
    pub seq: u64,
    pub at_nanos: i128,
    pub actor: &'a str,
    pub action: &'a str,
    pub purpose: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub record: Option<&'a str>,
    pub fields: &'a [&'a str],
    /// The reason of a refusal; `None` when the operation was allowed.
    pub refused: Option<&'a str>,
    pub request: Option<&'a str>,
    pub subjects: &'a [&'a str],
}

impl StoredParts<'_> {
    /// Appends the canonical bytes to `out` (see [`UnhashedEntry::canonical_bytes`]).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // Entries about at most one subject keep the first layout, so chains written before
        // bulk entries existed still verify.
        out.push(if self.subjects.is_empty() {
            CANONICAL_V1
        } else {
            CANONICAL_V2
        });
        put(out, self.chain.as_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.at_nanos.to_be_bytes());
        put(out, self.actor.as_bytes());
        put(out, self.action.as_bytes());
        put_opt(out, self.purpose);
        put_opt(out, self.subject);
        put_opt(out, self.record);
        out.extend_from_slice(&(self.fields.len() as u32).to_be_bytes());
        for f in self.fields {
            put(out, f.as_bytes());
        }
        match self.refused {
            None => out.push(0),
            Some(reason) => {
                out.push(1);
                put(out, reason.as_bytes());
            }
        }
        put_opt(out, self.request);
        if !self.subjects.is_empty() {
            out.extend_from_slice(&(self.subjects.len() as u32).to_be_bytes());
            for s in self.subjects {
                put(out, s.as_bytes());
            }
        }
    }
}

/// The canonical encoding an entry's hash covers (see [`UnhashedEntry::canonical_bytes`]).
fn canonical(d: &AuditDraft, seq: u64, at: OffsetDateTime) -> Vec<u8> {
    let chain = d.chain.as_string();
    let action = d.action.as_string();
    let fields: Vec<&str> = d.fields.iter().map(String::as_str).collect();
    let subjects: Vec<&str> = d.subjects.iter().map(SubjectId::as_str).collect();
    let mut out = Vec::with_capacity(256 + 32 * subjects.len());
    StoredParts {
        chain: &chain,
        seq,
        at_nanos: at.unix_timestamp_nanos(),
        actor: &d.actor,
        action: &action,
        purpose: d.purpose.as_ref().map(PurposeName::as_str),
        subject: d.subject.as_ref().map(SubjectId::as_str),
        record: d.record.as_ref().map(RecordId::as_str),
        fields: &fields,
        refused: match &d.outcome {
            Outcome::Allowed => None,
            Outcome::Refused { reason } => Some(reason),
        },
        request: d.request.as_ref().map(RequestId::as_str),
        subjects: &subjects,
    }
    .encode_into(&mut out);
    out
}

/// Version of the canonical encoding; bumped if the layout ever changes.
const CANONICAL_V1: u8 = 1;
/// Version 1 followed by the list of subjects of a bulk entry.
const CANONICAL_V2: u8 = 2;

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put(out, s.as_bytes());
        }
    }
}

impl UnhashedEntry {
    /// Length-prefixed, fixed-order bytes: two different entries can never encode the same.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        canonical(&self.draft, self.seq, self.at)
    }

    pub fn with_hash(self, hash: [u8; 32]) -> AuditEntry {
        AuditEntry {
            seq: self.seq,
            at: self.at,
            prev_hash: self.prev_hash,
            hash,
            draft: self.draft,
        }
    }
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: OffsetDateTime,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
    pub draft: AuditDraft,
}

impl AuditEntry {
    /// The bytes this entry's hash covers, as [`UnhashedEntry::canonical_bytes`] gives them,
    /// without copying the entry (`verify` computes it for every entry).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        canonical(&self.draft, self.seq, self.at)
    }

    pub fn unhashed(&self) -> UnhashedEntry {
        UnhashedEntry {
            seq: self.seq,
            at: self.at,
            prev_hash: self.prev_hash,
            draft: self.draft.clone(),
        }
    }
}

/// The hash a chain starts from: entry 1's `prev_hash`.
pub const GENESIS: [u8; 32] = [0; 32];

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> AuditDraft {
        AuditDraft::new(
            ChainId::Controller(ControllerId::from_random([1; 16])),
            "controller_app:tok_x",
            Action::Processing(Operation::Retrieval),
        )
        .fields(["email", "name"])
    }

    #[test]
    fn canonical_bytes_separate_every_field() {
        let base = draft().seal(1, OffsetDateTime::UNIX_EPOCH, GENESIS);
        let mut moved = base.clone();
        moved.draft.fields = vec!["emailname".into()];
        assert_ne!(base.canonical_bytes(), moved.canonical_bytes());
        let mut refused = base.clone();
        refused.draft.outcome = Outcome::Refused { reason: "x".into() };
        assert_ne!(base.canonical_bytes(), refused.canonical_bytes());
        let mut later = base.clone();
        later.seq = 2;
        assert_ne!(base.canonical_bytes(), later.canonical_bytes());
        let mut bulk = base.clone();
        bulk.draft.subjects = vec![SubjectId::from_random([2; 16])];
        assert_ne!(base.canonical_bytes(), bulk.canonical_bytes());
        let mut other = bulk.clone();
        other.draft.subjects = vec![SubjectId::from_random([3; 16])];
        assert_ne!(bulk.canonical_bytes(), other.canonical_bytes());
    }

    #[test]
    fn entries_without_a_subject_list_keep_the_first_layout() {
        // Chains written before bulk entries existed must still verify.
        let e = draft().seal(1, OffsetDateTime::UNIX_EPOCH, GENESIS);
        assert_eq!(e.canonical_bytes()[0], CANONICAL_V1);
        let mut bulk = e.clone();
        bulk.draft.subjects = vec![SubjectId::from_random([2; 16])];
        let bytes = bulk.canonical_bytes();
        assert_eq!(bytes[0], CANONICAL_V2);
        assert_eq!(
            bytes[1..e.canonical_bytes().len()],
            e.canonical_bytes()[1..]
        );
    }

    #[test]
    fn an_entry_hashes_the_bytes_of_its_unhashed_form() {
        let e = draft()
            .seal(7, OffsetDateTime::UNIX_EPOCH, GENESIS)
            .with_hash([1; 32]);
        assert_eq!(e.canonical_bytes(), e.unhashed().canonical_bytes());
    }

    #[test]
    fn actions_round_trip() {
        for a in [
            Action::Processing(Operation::Erasure),
            Action::Admin(AdminAction::TokenIssued),
        ] {
            assert_eq!(Action::parse(&a.as_string()), Some(a));
        }
        assert_eq!(Action::parse("admin.erasure"), None);
    }

    #[test]
    fn chain_ids_round_trip() {
        let c = ChainId::Controller(ControllerId::from_random([3; 16]));
        assert_eq!(ChainId::parse(&c.as_string()), Some(c));
        assert_eq!(ChainId::parse("system"), Some(ChainId::System));
        assert_eq!(ChainId::parse("nope"), None);
    }
}
