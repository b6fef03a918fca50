//! Between rows and domain values. Decoding re-validates everything (ids, categories,
//! names): a tampered row becomes a `Corrupt` error, never a wrong value.

use crate::rows::*;
use crate::{Result, StoreError};
use custodian_core::audit::{Action, AuditDraft, AuditEntry, ChainId, Outcome};
use custodian_core::category::SubjectCategory;
use custodian_core::controller::{Controller, ControllerName, ControllerStatus};
use custodian_core::ids::{ControllerId, RecordId, RequestId, SubjectId, TokenId};
use custodian_core::principal::{Role, TokenScope};
use custodian_core::purpose::{LawfulBasis, Purpose, PurposeName};
use custodian_core::record::{RecordHeader, RecordMeta};
use custodian_core::region::{MemberState, RegionId};
use rusqlite::{ErrorCode, Row};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use time::OffsetDateTime;

pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        match f.code {
            ErrorCode::DiskFull | ErrorCode::SystemIoFailure | ErrorCode::CannotOpen => {
                return StoreError::Unavailable(e.to_string());
            }
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                return StoreError::Unavailable(e.to_string());
            }
            ErrorCode::ConstraintViolation
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
            {
                return StoreError::Conflict("a row with this key already exists");
            }
            _ => {}
        }
    }
    StoreError::Backend(e.to_string())
}

/// Nanoseconds since 1970 as stored. Instants outside what 64 bits hold (before 1677,
/// after 2262) are clamped to the nearest one that fits, never wrapped: an expiry in 1600
/// stays in the past, one in 3000 stays in the future.
pub(crate) fn nanos(t: OffsetDateTime) -> i64 {
    let n = t.unix_timestamp_nanos();
    i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
}

pub(crate) fn from_nanos(n: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(n)).map_err(|_| StoreError::Corrupt {
        table: "(time)",
        reason: "time out of range".into(),
    })
}

pub(crate) fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}

pub(crate) fn unjson<T: DeserializeOwned>(s: &str, table: &'static str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| corrupt(table, e))
}

/// A record's recipients, stored as a JSON array of strings (as [`json`] wrote it). A bulk
/// read decodes thousands, nearly all `[]` or a few plain names: in an array written
/// without spaces whose text has no backslash and no control character, every `"` is a
/// delimiter, so splitting it on `","` is exact; anything else goes through the JSON parser.
pub(crate) fn recipients_of(s: &str, table: &'static str) -> Result<Vec<String>> {
    if s == "[]" {
        return Ok(Vec::new());
    }
    let plain = s
        .strip_prefix("[\"")
        .and_then(|rest| rest.strip_suffix("\"]"))
        .filter(|inner| !inner.bytes().any(|b| b == b'\\' || b < 0x20));
    if let Some(inner) = plain {
        let names: Vec<&str> = inner.split("\",\"").collect();
        if names.iter().all(|n| !n.contains('"')) {
            return Ok(names.into_iter().map(str::to_owned).collect());
        }
    }
    unjson(s, table)
}

pub(crate) fn corrupt(table: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table,
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    /// The split and the JSON parser agree on every stored text, whichever path reads it;
    /// texts that are not an array of strings are corrupt either way.
    #[test]
    fn recipients_read_as_the_json_parser_reads_them() {
        let written: Vec<Vec<String>> = vec![
            vec![],
            vec!["".into()],
            vec!["support".into()],
            vec!["a".into(), "b".into(), "c d".into()],
            vec!["a\",\"b".into()],
            vec!["quote \" inside".into(), "back\\slash".into()],
            vec!["tab\there".into(), "ünï".into(), "/".into()],
        ];
        for list in &written {
            let text = super::json(list);
            assert_eq!(&super::recipients_of(&text, "t").unwrap(), list, "{text}");
        }
        for text in [r#"["a", "b"]"#, r#"[ "a" ]"#, r#"["a","b" ]"#] {
            let parsed: Vec<String> = serde_json::from_str(text).unwrap();
            assert_eq!(super::recipients_of(text, "t").unwrap(), parsed, "{text}");
        }
        for bad in [r#"["]"#, r#"["a"#, r#"["a","]"#, "[\"a\u{1}\"]", "null", ""] {
            assert!(super::recipients_of(bad, "t").is_err(), "{bad:?}");
        }
    }

    /// Columns are read as stored bytes: whichever path decodes a row (one record, or a
    /// query's rows sharing metadata and purpose), it reads the same record, and a column
    /// whose bytes are not its type's (text that is not UTF-8, a malformed id or purpose)
    /// is a `Corrupt` error, also where the bytes differ from a row decoded just before.
    #[test]
    fn stored_bytes_decode_alike_on_both_paths_and_damage_is_corrupt() {
        use super::{RECORD_COLS, SharedMeta};
        use crate::rows::RecordRow;
        use crate::{Result, StoreError};
        use rusqlite::types::Value;
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE records (n INTEGER, id, subject_id, purpose, source, recipients,
               automated_decision, created_at, updated_at, expires_at, fields)",
        )
        .unwrap();
        let id = custodian_core::ids::RecordId::from_random([1; 16]);
        let subject = custodian_core::ids::SubjectId::from_random([2; 16]);
        let text = |s: &str| Value::Text(s.into());
        let good: Vec<Value> = vec![
            text(id.as_str()),
            text(subject.as_str()),
            text("billing"),
            text("crm"),
            text(r#"["support"]"#),
            Value::Null,
            Value::Integer(1),
            Value::Integer(2),
            Value::Integer(3),
            Value::Blob(crate::fieldset::encode(&[])),
        ];
        let damaged: Vec<(usize, Value)> = vec![
            (0, text("rec_not-an-id")),
            (0, Value::Blob(vec![0xff; 30])),
            (1, text(id.as_str())),
            (2, text("Billing")),
            (2, Value::Blob(b"bill\xffing".to_vec())),
            (3, Value::Blob(vec![b'c', 0xff])),
            (4, Value::Blob(vec![b'[', 0xff, b']'])),
            (4, text("support")),
            (5, Value::Blob(vec![0xc3])),
        ];
        let insert = |n: usize, row: &[Value]| {
            let mut values = vec![Value::Integer(n as i64)];
            values.extend_from_slice(row);
            c.execute(
                "INSERT INTO records VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                rusqlite::params_from_iter(values),
            )
            .unwrap();
        };
        insert(0, &good);
        for (n, (col, value)) in damaged.iter().enumerate() {
            // The good row first, then its damaged copy: what the shared path kept of the
            // good row must not answer for the damaged one.
            insert(2 * n + 1, &good);
            let mut row = good.clone();
            row[*col] = value.clone();
            insert(2 * n + 2, &row);
        }
        let mut st = c
            .prepare(&format!("SELECT {RECORD_COLS} FROM records WHERE n = ?1"))
            .unwrap();
        let mut one = |n: usize| -> Result<RecordRow> {
            st.query_row([n as i64], super::record_row).unwrap()
        };
        let first = one(0).unwrap();
        assert_eq!((&first.id, &first.subject), (&id, &subject));
        assert_eq!(first.header.purpose.as_str(), "billing");
        assert_eq!(first.header.meta.source.as_deref(), Some("crm"));
        assert_eq!(first.header.meta.recipients, ["support"]);
        for (n, damage) in damaged.iter().enumerate() {
            assert!(
                matches!(one(2 * n + 2), Err(StoreError::Corrupt { .. })),
                "{damage:?} read"
            );
        }
        let mut all = c
            .prepare(&format!("SELECT {RECORD_COLS} FROM records ORDER BY n"))
            .unwrap();
        let mut shared = SharedMeta::default();
        let rows: Vec<Result<RecordRow>> = all
            .query_map([], |r| super::record_row_sharing(r, Some(&mut shared)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        for (n, row) in rows.into_iter().enumerate() {
            if n == 0 || n % 2 == 1 {
                assert_eq!(row.unwrap(), first);
            } else {
                assert!(
                    matches!(row, Err(StoreError::Corrupt { .. })),
                    "row {n} read"
                );
            }
        }
    }

    #[test]
    fn out_of_range_instants_clamp_instead_of_wrapping() {
        let past = time::macros::datetime!(1600-01-01 0:00 UTC);
        let future = time::macros::datetime!(3000-01-01 0:00 UTC);
        assert_eq!(super::nanos(past), i64::MIN);
        assert_eq!(super::nanos(future), i64::MAX);
        let now = time::OffsetDateTime::now_utc();
        assert_eq!(super::nanos(now) as i128, now.unix_timestamp_nanos());
    }
}

pub(crate) fn to32(b: &[u8], table: &'static str) -> Result<[u8; 32]> {
    b.try_into()
        .map_err(|_| corrupt(table, "hash is not 32 bytes"))
}

// Each table's columns as a macro as well as a constant, so that the statements
// naming them are literals (`concat!`) and not a `format!` on every call.
macro_rules! controller_cols {
    () => {
        "id, name, region, agreement_effective, governing_law, status, created_at, wrapped_key"
    };
}
pub(crate) use controller_cols;
pub(crate) const CONTROLLER_COLS: &str = controller_cols!();

pub(crate) fn controller_row(r: &Row<'_>) -> rusqlite::Result<Result<ControllerRow>> {
    let t = "controllers";
    let id: String = r.get(0)?;
    let name: String = r.get(1)?;
    let region: String = r.get(2)?;
    let eff: String = r.get(3)?;
    let law: String = r.get(4)?;
    let status: String = r.get(5)?;
    let created: i64 = r.get(6)?;
    let wrapped_key: Vec<u8> = r.get(7)?;
    Ok((|| {
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        Ok(ControllerRow {
            controller: Controller {
                id: ControllerId::parse(&id).map_err(|e| corrupt(t, e))?,
                name: ControllerName::parse(&name).map_err(|e| corrupt(t, e))?,
                region: RegionId::parse(&region).map_err(|e| corrupt(t, e))?,
                agreement_effective: time::Date::parse(&eff, &fmt).map_err(|e| corrupt(t, e))?,
                governing_law: MemberState::parse(&law).map_err(|e| corrupt(t, e))?,
                status: ControllerStatus::parse(&status)
                    .ok_or_else(|| corrupt(t, "unknown status"))?,
                created_at: from_nanos(created)?,
            },
            wrapped_key,
        })
    })())
}

macro_rules! token_cols {
    () => {
        "id, secret_hash, role, controller_id, purposes, operations, label, created_at, expires_at, revoked_at"
    };
}
pub(crate) use token_cols;
pub(crate) const TOKEN_COLS: &str = token_cols!();

pub(crate) fn token_row(r: &Row<'_>) -> rusqlite::Result<Result<TokenRow>> {
    let t = "tokens";
    let id: String = r.get(0)?;
    let hash: Vec<u8> = r.get(1)?;
    let role: String = r.get(2)?;
    let controller: Option<String> = r.get(3)?;
    let purposes: Option<String> = r.get(4)?;
    let operations: Option<String> = r.get(5)?;
    let label: String = r.get(6)?;
    let created: i64 = r.get(7)?;
    let expires: Option<i64> = r.get(8)?;
    let revoked: Option<i64> = r.get(9)?;
    Ok((|| {
        Ok(TokenRow {
            id: TokenId::parse(&id).map_err(|e| corrupt(t, e))?,
            hash: to32(&hash, t)?,
            role: Role::parse(&role).ok_or_else(|| corrupt(t, "unknown role"))?,
            controller: controller
                .map(|c| ControllerId::parse(&c).map_err(|e| corrupt(t, e)))
                .transpose()?,
            scope: TokenScope {
                purposes: purposes.map(|p| unjson(&p, t)).transpose()?,
                operations: operations.map(|o| unjson(&o, t)).transpose()?,
            },
            label,
            created_at: from_nanos(created)?,
            expires_at: expires.map(from_nanos).transpose()?,
            revoked_at: revoked.map(from_nanos).transpose()?,
        })
    })())
}

macro_rules! account_cols {
    () => {
        "id, login_digest, login_sealed, password_hash, role, controller_id, created_at, disabled_at"
    };
}
pub(crate) use account_cols;
pub(crate) const ACCOUNT_COLS: &str = account_cols!();

pub(crate) fn account_row(r: &Row<'_>) -> rusqlite::Result<Result<AccountRow>> {
    let t = "accounts";
    let id: String = r.get(0)?;
    let digest: Vec<u8> = r.get(1)?;
    let login_sealed: Vec<u8> = r.get(2)?;
    let password_hash: String = r.get(3)?;
    let role: String = r.get(4)?;
    let controller: Option<String> = r.get(5)?;
    let created: i64 = r.get(6)?;
    let disabled: Option<i64> = r.get(7)?;
    Ok((|| {
        Ok(AccountRow {
            id: custodian_core::ids::AccountId::parse(&id).map_err(|e| corrupt(t, e))?,
            login_digest: to32(&digest, t)?,
            login_sealed,
            password_hash,
            role: Role::parse(&role).ok_or_else(|| corrupt(t, "unknown role"))?,
            controller: controller
                .map(|c| ControllerId::parse(&c).map_err(|e| corrupt(t, e)))
                .transpose()?,
            created_at: from_nanos(created)?,
            disabled_at: disabled.map(from_nanos).transpose()?,
        })
    })())
}

macro_rules! purpose_cols {
    () => {
        "name, description, lawful_basis, categories, operations, retention_days"
    };
}
pub(crate) use purpose_cols;
pub(crate) const PURPOSE_COLS: &str = purpose_cols!();

pub(crate) fn purpose_row(r: &Row<'_>) -> rusqlite::Result<Result<Purpose>> {
    let t = "purposes";
    let name: String = r.get(0)?;
    let description: String = r.get(1)?;
    let basis: String = r.get(2)?;
    let cats: String = r.get(3)?;
    let ops: String = r.get(4)?;
    let retention: u32 = r.get(5)?;
    Ok((|| {
        Ok(Purpose {
            name: PurposeName::parse(&name).map_err(|e| corrupt(t, e))?,
            description,
            lawful_basis: LawfulBasis::parse(&basis)
                .ok_or_else(|| corrupt(t, "unknown lawful basis"))?,
            categories: unjson(&cats, t)?,
            operations: unjson(&ops, t)?,
            retention_days: retention,
        })
    })())
}

macro_rules! subject_cols {
    () => {
        "id, category, restricted, wrapped_key, created_at"
    };
}
pub(crate) use subject_cols;
pub(crate) const SUBJECT_COLS: &str = subject_cols!();

pub(crate) fn subject_row(r: &Row<'_>) -> rusqlite::Result<Result<SubjectRow>> {
    let t = "subjects";
    let id: String = r.get(0)?;
    let cat: String = r.get(1)?;
    let restricted: bool = r.get(2)?;
    let wrapped_key: Vec<u8> = r.get(3)?;
    let created: i64 = r.get(4)?;
    Ok((|| {
        Ok(SubjectRow {
            id: SubjectId::parse(&id).map_err(|e| corrupt(t, e))?,
            category: SubjectCategory::parse(&cat).map_err(|e| corrupt(t, e))?,
            restricted,
            wrapped_key,
            created_at: from_nanos(created)?,
        })
    })())
}

macro_rules! record_cols {
    () => {
        "id, subject_id, purpose, source, recipients, automated_decision, created_at, updated_at, expires_at, fields"
    };
}
pub(crate) use record_cols;
pub(crate) const RECORD_COLS: &str = record_cols!();

/// A record with its fields (one column, see [`crate::fieldset`]).
pub(crate) fn record_row(r: &Row<'_>) -> rusqlite::Result<Result<RecordRow>> {
    record_row_sharing(r, None)
}

/// The metadata of the last rows a query decoded, handed to the rows after them that hold
/// the same: most of a purpose's records share one source, one list of recipients and one
/// decision, and a bulk read built, copied and freed one `RecordMeta` (three to five
/// allocations) per row; now a handful per query, which the kept rows and the answer's
/// views share as well. The last purpose parsed is kept the same way (a purpose's records
/// all name it). Stored bytes are compared as they are; only what is new is checked as text
/// and parsed.
#[derive(Default)]
struct SharedMeta {
    recent: Vec<SeenMeta>,
    purpose: Option<(Vec<u8>, PurposeName)>,
}

struct SeenMeta {
    source: Option<Vec<u8>>,
    recipients: Vec<u8>,
    automated: Option<Vec<u8>>,
    meta: Arc<RecordMeta>,
}

/// A stored text column's bytes as text.
fn utf8<'b>(bytes: &'b [u8], table: &'static str) -> Result<&'b str> {
    std::str::from_utf8(bytes).map_err(|_| corrupt(table, "text is not UTF-8"))
}

/// A record's metadata from its stored columns.
fn record_meta(
    source: Option<&[u8]>,
    recipients: &[u8],
    automated: Option<&[u8]>,
) -> Result<RecordMeta> {
    let t = "records";
    Ok(RecordMeta {
        source: source.map(|s| utf8(s, t).map(str::to_owned)).transpose()?,
        recipients: recipients_of(utf8(recipients, t)?, t)?,
        automated_decision: automated
            .map(|s| utf8(s, t).map(str::to_owned))
            .transpose()?,
    })
}

fn purpose_of(bytes: &[u8]) -> Result<PurposeName> {
    let t = "records";
    PurposeName::parse(utf8(bytes, t)?).map_err(|e| corrupt(t, e))
}

impl SharedMeta {
    /// Distinct metadata remembered per query: enough for the usual handful, and a
    /// query whose rows all differ pays a few comparisons per row, not a growing search.
    const KEEP: usize = 8;

    fn meta(
        &mut self,
        source: Option<&[u8]>,
        recipients: &[u8],
        automated: Option<&[u8]>,
    ) -> Result<Arc<RecordMeta>> {
        if let Some(seen) = self.recent.iter().find(|m| {
            m.recipients == recipients
                && m.source.as_deref() == source
                && m.automated.as_deref() == automated
        }) {
            return Ok(seen.meta.clone());
        }
        let meta = Arc::new(record_meta(source, recipients, automated)?);
        if self.recent.len() == Self::KEEP {
            self.recent.remove(0);
        }
        self.recent.push(SeenMeta {
            source: source.map(<[u8]>::to_vec),
            recipients: recipients.to_vec(),
            automated: automated.map(<[u8]>::to_vec),
            meta: meta.clone(),
        });
        Ok(meta)
    }

    fn purpose(&mut self, bytes: &[u8]) -> Result<PurposeName> {
        match &self.purpose {
            Some((seen, name)) if seen == bytes => Ok(name.clone()),
            _ => {
                let name = purpose_of(bytes)?;
                self.purpose = Some((bytes.to_vec(), name.clone()));
                Ok(name)
            }
        }
    }
}

/// Every record `st` answers for `params`, in its order, the metadata of rows that hold the
/// same shared (see [`SharedMeta`]).
pub(crate) fn record_rows(
    st: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<RecordRow>> {
    let mut shared = SharedMeta::default();
    st.query_map(params, |r| record_row_sharing(r, Some(&mut shared)))
        .map_err(map_err)?
        .map(|r| r.map_err(map_err)?)
        .collect()
}

/// [`record_row`], its metadata shared with earlier rows of the same query through `shared`.
fn record_row_sharing(
    r: &Row<'_>,
    shared: Option<&mut SharedMeta>,
) -> rusqlite::Result<Result<RecordRow>> {
    let t = "records";
    // Columns are borrowed from the row as bytes and parsed straight into their types: a
    // bulk read decodes thousands of rows, and an owned copy of each text first was a third
    // of it. Ids are ASCII by their shape, so their parse checks the text as well.
    let bytes = |i: usize| -> rusqlite::Result<&[u8]> {
        r.get_ref(i)?.as_bytes().map_err(rusqlite::Error::from)
    };
    let maybe_bytes = |i: usize| -> rusqlite::Result<Option<&[u8]>> {
        r.get_ref(i)?
            .as_bytes_or_null()
            .map_err(rusqlite::Error::from)
    };
    let id = bytes(0)?;
    let subject = bytes(1)?;
    let purpose = bytes(2)?;
    let source = maybe_bytes(3)?;
    let recipients = bytes(4)?;
    let automated = maybe_bytes(5)?;
    let created: i64 = r.get(6)?;
    let updated: i64 = r.get(7)?;
    let expires: i64 = r.get(8)?;
    let fields = r.get_ref(9)?.as_blob().map_err(rusqlite::Error::from)?;
    let fields = crate::fieldset::decode(fields).map_err(|e| corrupt(t, e));
    Ok((|| {
        let (purpose, meta) = match shared {
            Some(shared) => (
                shared.purpose(purpose)?,
                shared.meta(source, recipients, automated)?,
            ),
            None => (
                purpose_of(purpose)?,
                Arc::new(record_meta(source, recipients, automated)?),
            ),
        };
        Ok(RecordRow {
            id: RecordId::parse_bytes(id).map_err(|e| corrupt(t, e))?,
            subject: SubjectId::parse_bytes(subject).map_err(|e| corrupt(t, e))?,
            header: RecordHeader {
                purpose,
                meta,
                created_at: from_nanos(created)?,
                updated_at: from_nanos(updated)?,
                expires_at: from_nanos(expires)?,
            },
            fields: fields?,
        })
    })())
}

macro_rules! audit_cols {
    () => {
        "chain, seq, at, actor, action, purpose, subject_id, record_id, fields, refused, request_id, prev_hash, hash, subjects"
    };
}
pub(crate) use audit_cols;
pub(crate) const AUDIT_COLS: &str = audit_cols!();

/// One audit entry as the database holds it: the columns of `audit_entries`, in order.
/// Decoding is where stored bytes (possibly corrupted or tampered with) become an entry,
/// so it is a pure function, fuzzed in `crates/custodian-fuzz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditColumns {
    pub chain: String,
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub purpose: Option<String>,
    pub subject: Option<String>,
    pub record: Option<String>,
    pub fields: String,
    pub refused: Option<String>,
    pub request: Option<String>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    /// JSON array of the subjects of a bulk entry (`[]` otherwise).
    pub subjects: String,
}

impl AuditColumns {
    pub fn encode(e: &AuditEntry) -> Self {
        let d = &e.draft;
        AuditColumns {
            chain: d.chain.as_string(),
            seq: e.seq as i64,
            at: nanos(e.at),
            actor: d.actor.clone(),
            action: d.action.as_string(),
            purpose: d.purpose.as_ref().map(|p| p.as_str().to_owned()),
            subject: d.subject.as_ref().map(|s| s.as_str().to_owned()),
            record: d.record.as_ref().map(|r| r.as_str().to_owned()),
            fields: json(&d.fields),
            refused: match &d.outcome {
                Outcome::Allowed => None,
                Outcome::Refused { reason } => Some(reason.clone()),
            },
            request: d.request.as_ref().map(|r| r.as_str().to_owned()),
            prev_hash: e.prev_hash.to_vec(),
            hash: e.hash.to_vec(),
            subjects: json(&d.subjects),
        }
    }

    /// The entry these columns hold, or `Corrupt` naming what is wrong.
    pub fn decode(self) -> Result<AuditEntry> {
        let t = "audit_entries";
        let c = self;
        Ok(AuditEntry {
            seq: u64::try_from(c.seq).map_err(|_| corrupt(t, "negative sequence number"))?,
            at: from_nanos(c.at)?,
            prev_hash: to32(&c.prev_hash, t)?,
            hash: to32(&c.hash, t)?,
            draft: AuditDraft {
                chain: ChainId::parse(&c.chain).ok_or_else(|| corrupt(t, "unknown chain"))?,
                actor: c.actor,
                action: Action::parse(&c.action).ok_or_else(|| corrupt(t, "unknown action"))?,
                purpose: c
                    .purpose
                    .map(|p| PurposeName::parse(&p).map_err(|e| corrupt(t, e)))
                    .transpose()?,
                subject: c
                    .subject
                    .map(|s| SubjectId::parse(&s).map_err(|e| corrupt(t, e)))
                    .transpose()?,
                subjects: decode_subjects(&c.subjects)?,
                record: c
                    .record
                    .map(|s| RecordId::parse(&s).map_err(|e| corrupt(t, e)))
                    .transpose()?,
                fields: unjson(&c.fields, t)?,
                outcome: match c.refused {
                    None => Outcome::Allowed,
                    Some(reason) => Outcome::Refused { reason },
                },
                request: c
                    .request
                    .map(|s| RequestId::parse(&s).map_err(|e| corrupt(t, e)))
                    .transpose()?,
            },
        })
    }
}

pub(crate) fn audit_row(r: &Row<'_>) -> rusqlite::Result<Result<AuditEntry>> {
    Ok(AuditColumns {
        chain: r.get(0)?,
        seq: r.get(1)?,
        at: r.get(2)?,
        actor: r.get(3)?,
        action: r.get(4)?,
        purpose: r.get(5)?,
        subject: r.get(6)?,
        record: r.get(7)?,
        fields: r.get(8)?,
        refused: r.get(9)?,
        request: r.get(10)?,
        prev_hash: r.get(11)?,
        hash: r.get(12)?,
        subjects: r.get(13)?,
    }
    .decode())
}

/// The columns of an audit row, borrowed from the database's row.
pub(crate) struct RawColumns<'a> {
    pub chain: &'a str,
    pub seq: i64,
    pub at: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub purpose: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub record: Option<&'a str>,
    pub fields: &'a str,
    pub refused: Option<&'a str>,
    pub request: Option<&'a str>,
    pub prev_hash: &'a [u8],
    pub hash: &'a [u8],
    pub subjects: &'a str,
}

/// A JSON array of strings, borrowed where it has no escapes.
fn str_list<'a>(raw: &'a str, owned: &'a mut Vec<String>) -> Result<Vec<&'a str>> {
    if raw == "[]" {
        return Ok(Vec::new());
    }
    if let Ok(v) = serde_json::from_str::<Vec<&str>>(raw) {
        return Ok(v);
    }
    *owned = unjson(raw, "audit_entries")?;
    Ok(owned.iter().map(String::as_str).collect())
}

impl<'a> RawColumns<'a> {
    /// Hands `visit` the entry with its canonical bytes, encoded into `buf`.
    pub(crate) fn visit(
        &self,
        buf: &mut Vec<u8>,
        visit: &mut dyn FnMut(&crate::RawEntry<'_>) -> Result<()>,
    ) -> Result<()> {
        let t = "audit_entries";
        let (mut f_owned, mut s_owned) = (Vec::new(), Vec::new());
        let fields = str_list(self.fields, &mut f_owned)?;
        let subjects = str_list(self.subjects, &mut s_owned)?;
        let seq = u64::try_from(self.seq).map_err(|_| corrupt(t, "negative sequence number"))?;
        buf.clear();
        custodian_core::audit::StoredParts {
            chain: self.chain,
            seq,
            at_nanos: i128::from(self.at),
            actor: self.actor,
            action: self.action,
            purpose: self.purpose,
            subject: self.subject,
            record: self.record,
            fields: &fields,
            refused: self.refused,
            request: self.request,
            subjects: &subjects,
        }
        .encode_into(buf);
        visit(&crate::RawEntry {
            seq,
            chain: self.chain,
            prev_hash: to32(self.prev_hash, t)?,
            hash: to32(self.hash, t)?,
            canonical: buf,
        })
    }
}

/// The `subjects` column: a JSON array of subject ids.
pub(crate) fn decode_subjects(raw: &str) -> Result<Vec<SubjectId>> {
    let t = "audit_entries";
    // Nearly every entry has none: `verify` decodes every entry, so skip the parser.
    if raw == "[]" {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = unjson(raw, t)?;
    ids.iter()
        .map(|s| SubjectId::parse(s).map_err(|e| corrupt(t, e)))
        .collect()
}

pub(crate) fn insert_audit_row(tx: &rusqlite::Connection, e: &AuditEntry) -> Result<()> {
    let c = AuditColumns::encode(e);
    tx.prepare_cached(&format!(
        "INSERT INTO audit_entries ({AUDIT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))
    .map_err(map_err)?
    .execute(rusqlite::params![
        c.chain, c.seq, c.at, c.actor, c.action, c.purpose, c.subject, c.record, c.fields,
        c.refused, c.request, c.prev_hash, c.hash, c.subjects,
    ])
    .map_err(map_err)?;
    Ok(())
}

pub(crate) fn checkpoint_row(r: &Row<'_>) -> rusqlite::Result<Result<Checkpoint>> {
    let t = "checkpoints";
    let chain: String = r.get(0)?;
    let seq: i64 = r.get(1)?;
    let hash: Vec<u8> = r.get(2)?;
    let signed: i64 = r.get(3)?;
    let sig: Vec<u8> = r.get(4)?;
    Ok((|| {
        Ok(Checkpoint {
            chain: ChainId::parse(&chain).ok_or_else(|| corrupt(t, "unknown chain"))?,
            seq: seq as u64,
            hash: to32(&hash, t)?,
            signed_at: from_nanos(signed)?,
            signature: sig
                .as_slice()
                .try_into()
                .map_err(|_| corrupt(t, "signature is not 64 bytes"))?,
        })
    })())
}

macro_rules! dsr_cols {
    () => {
        "id, right_kind, state, sealed_details, received_at, due_at, extended_months, extension_reason, subject_id, identity_confirmed_at, closed_at, note"
    };
}
pub(crate) use dsr_cols;
pub(crate) const DSR_COLS: &str = dsr_cols!();

pub(crate) fn dsr_row(r: &Row<'_>) -> rusqlite::Result<Result<DsrRequestRow>> {
    dsr_row_at(r, 0)
}

/// Decodes the `DSR_COLS` columns starting at column `o`.
pub(crate) fn dsr_row_at(r: &Row<'_>, o: usize) -> rusqlite::Result<Result<DsrRequestRow>> {
    let t = "dsr_requests";
    let id: String = r.get(o)?;
    let right: String = r.get(o + 1)?;
    let state: String = r.get(o + 2)?;
    let sealed: Vec<u8> = r.get(o + 3)?;
    let received: i64 = r.get(o + 4)?;
    let due: i64 = r.get(o + 5)?;
    let extended: u32 = r.get(o + 6)?;
    let reason: Option<String> = r.get(o + 7)?;
    let subject: Option<String> = r.get(o + 8)?;
    let confirmed: Option<i64> = r.get(o + 9)?;
    let closed: Option<i64> = r.get(o + 10)?;
    let note: Option<String> = r.get(o + 11)?;
    Ok((|| {
        Ok(DsrRequestRow {
            id: custodian_core::ids::DsrId::parse(&id).map_err(|e| corrupt(t, e))?,
            right: custodian_core::dsr::Right::parse(&right)
                .ok_or_else(|| corrupt(t, "unknown right"))?,
            state: custodian_core::dsr::RequestState::parse(&state)
                .ok_or_else(|| corrupt(t, "unknown state"))?,
            sealed_details: sealed,
            received_at: from_nanos(received)?,
            due_at: from_nanos(due)?,
            extended_months: extended,
            extension_reason: reason,
            subject: subject
                .map(|s| SubjectId::parse(&s).map_err(|e| corrupt(t, e)))
                .transpose()?,
            identity_confirmed_at: confirmed.map(from_nanos).transpose()?,
            closed_at: closed.map(from_nanos).transpose()?,
            note,
        })
    })())
}

pub(crate) fn outbox_row(r: &Row<'_>) -> rusqlite::Result<Result<OutboxRow>> {
    let t = "outbox";
    let id: i64 = r.get(0)?;
    let controller: String = r.get(1)?;
    let topic: String = r.get(2)?;
    let payload: String = r.get(3)?;
    let created: i64 = r.get(4)?;
    let attempts: u32 = r.get(5)?;
    let next: i64 = r.get(6)?;
    let delivered: Option<i64> = r.get(7)?;
    Ok((|| {
        Ok(OutboxRow {
            id,
            controller: ControllerId::parse(&controller).map_err(|e| corrupt(t, e))?,
            topic,
            payload,
            created_at: from_nanos(created)?,
            attempts,
            next_attempt_at: from_nanos(next)?,
            delivered_at: delivered.map(from_nanos).transpose()?,
        })
    })())
}

/// `record_counts_of_purpose` counted from (subject, record) pairs as either database
/// answers them, ids parsed once per subject.
#[derive(Default)]
pub(crate) struct RecordCounts(std::collections::HashMap<String, RecordCount>);

impl RecordCounts {
    pub(crate) fn add(&mut self, subject: &str, record: &str) -> Result<()> {
        if let Some(c) = self.0.get_mut(subject) {
            c.records += 1;
            if record < c.first.as_str() {
                c.first = RecordId::parse(record).map_err(|e| corrupt("records", e))?;
            }
            return Ok(());
        }
        let count = RecordCount {
            subject: SubjectId::parse(subject).map_err(|e| corrupt("records", e))?,
            records: 1,
            first: RecordId::parse(record).map_err(|e| corrupt("records", e))?,
        };
        self.0.insert(subject.to_owned(), count);
        Ok(())
    }

    pub(crate) fn into_vec(self) -> Vec<RecordCount> {
        self.0.into_values().collect()
    }
}
