//! Between PostgreSQL rows and domain values. The column lists and the value helpers
//! (times as nanoseconds, JSON sets, hashes) are SQLite's, so both backends store the same
//! thing; only reading a column out of a row differs. Decoding re-validates everything: a
//! tampered row becomes a `Corrupt` error, never a wrong value.

use crate::rows::*;
use crate::sqlite::codec::{corrupt, from_nanos, recipients_of, to32, unjson};
use crate::{Result, StoreError};
use custodian_core::audit::{Action, AuditDraft, AuditEntry, ChainId, Outcome};
use custodian_core::category::SubjectCategory;
use custodian_core::controller::{Controller, ControllerName, ControllerStatus};
use custodian_core::ids::{ControllerId, RecordId, RequestId, SubjectId, TokenId};
use custodian_core::principal::{Role, TokenScope};
use custodian_core::purpose::{LawfulBasis, Purpose, PurposeName};
use custodian_core::record::{RecordHeader, RecordMeta};
use custodian_core::region::{MemberState, RegionId};
use postgres::Row;
use postgres::error::SqlState;
use postgres::types::FromSql;

/// Maps a driver error: unique violations are conflicts; a lost connection, a server that
/// is shutting down, out of disk or memory, or a lock/serialisation failure are
/// `Unavailable` (retrying later may work); anything else is a backend error.
pub(crate) fn map_err(e: postgres::Error) -> StoreError {
    if let Some(code) = e.code() {
        if *code == SqlState::UNIQUE_VIOLATION {
            return StoreError::Conflict("a row with this key already exists");
        }
        let class = &code.code()[..2];
        let unavailable = matches!(
            class,
            "08" // connection exception
                | "53" // insufficient resources: disk full, out of memory, too many connections
                | "57" // operator intervention: admin/crash shutdown, cannot connect now
                | "58" // system error: I/O error
                | "40" // transaction rollback: serialisation failure, deadlock
        ) || *code == SqlState::LOCK_NOT_AVAILABLE;
        if unavailable {
            return StoreError::Unavailable(e.to_string());
        }
        return StoreError::Backend(e.to_string());
    }
    // No SQLSTATE: the connection itself failed (I/O, closed, timed out).
    StoreError::Unavailable(e.to_string())
}

pub(crate) fn pool_err(e: r2d2::Error) -> StoreError {
    StoreError::Unavailable(format!("no database connection: {e}"))
}

/// Reads column `i` of `r`.
pub(crate) fn get<'a, T: FromSql<'a>>(r: &'a Row, i: usize) -> Result<T> {
    r.try_get(i).map_err(map_err)
}

pub(crate) fn u32_of(v: i64, table: &'static str) -> Result<u32> {
    u32::try_from(v).map_err(|_| corrupt(table, "number out of range"))
}

pub(crate) fn controller_row(r: &Row) -> Result<ControllerRow> {
    let t = "controllers";
    let id: String = get(r, 0)?;
    let name: String = get(r, 1)?;
    let region: String = get(r, 2)?;
    let eff: String = get(r, 3)?;
    let law: String = get(r, 4)?;
    let status: String = get(r, 5)?;
    let created: i64 = get(r, 6)?;
    let wrapped_key: Vec<u8> = get(r, 7)?;
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Ok(ControllerRow {
        controller: Controller {
            id: ControllerId::parse(&id).map_err(|e| corrupt(t, e))?,
            name: ControllerName::parse(&name).map_err(|e| corrupt(t, e))?,
            region: RegionId::parse(&region).map_err(|e| corrupt(t, e))?,
            agreement_effective: time::Date::parse(&eff, &fmt).map_err(|e| corrupt(t, e))?,
            governing_law: MemberState::parse(&law).map_err(|e| corrupt(t, e))?,
            status: ControllerStatus::parse(&status).ok_or_else(|| corrupt(t, "unknown status"))?,
            created_at: from_nanos(created)?,
        },
        wrapped_key,
    })
}

pub(crate) fn token_row(r: &Row) -> Result<TokenRow> {
    let t = "tokens";
    let id: String = get(r, 0)?;
    let hash: Vec<u8> = get(r, 1)?;
    let role: String = get(r, 2)?;
    let controller: Option<String> = get(r, 3)?;
    let purposes: Option<String> = get(r, 4)?;
    let operations: Option<String> = get(r, 5)?;
    let label: String = get(r, 6)?;
    let created: i64 = get(r, 7)?;
    let expires: Option<i64> = get(r, 8)?;
    let revoked: Option<i64> = get(r, 9)?;
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
}

pub(crate) fn account_row(r: &Row) -> Result<AccountRow> {
    let t = "accounts";
    let id: String = get(r, 0)?;
    let digest: Vec<u8> = get(r, 1)?;
    let login_sealed: Vec<u8> = get(r, 2)?;
    let password_hash: String = get(r, 3)?;
    let role: String = get(r, 4)?;
    let controller: Option<String> = get(r, 5)?;
    let created: i64 = get(r, 6)?;
    let disabled: Option<i64> = get(r, 7)?;
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
}

pub(crate) fn purpose_row(r: &Row) -> Result<Purpose> {
    let t = "purposes";
    let name: String = get(r, 0)?;
    let description: String = get(r, 1)?;
    let basis: String = get(r, 2)?;
    let cats: String = get(r, 3)?;
    let ops: String = get(r, 4)?;
    let retention: i64 = get(r, 5)?;
    Ok(Purpose {
        name: PurposeName::parse(&name).map_err(|e| corrupt(t, e))?,
        description,
        lawful_basis: LawfulBasis::parse(&basis)
            .ok_or_else(|| corrupt(t, "unknown lawful basis"))?,
        categories: unjson(&cats, t)?,
        operations: unjson(&ops, t)?,
        retention_days: u32_of(retention, t)?,
    })
}

pub(crate) fn subject_row(r: &Row) -> Result<SubjectRow> {
    let t = "subjects";
    let id: String = get(r, 0)?;
    let cat: String = get(r, 1)?;
    let restricted: bool = get(r, 2)?;
    let wrapped_key: Vec<u8> = get(r, 3)?;
    let created: i64 = get(r, 4)?;
    Ok(SubjectRow {
        id: SubjectId::parse(&id).map_err(|e| corrupt(t, e))?,
        category: SubjectCategory::parse(&cat).map_err(|e| corrupt(t, e))?,
        restricted,
        wrapped_key,
        created_at: from_nanos(created)?,
    })
}

/// A record with its fields (one column, see [`crate::fieldset`]).
pub(crate) fn record_row(r: &Row) -> Result<RecordRow> {
    let t = "records";
    let id: String = get(r, 0)?;
    let subject: String = get(r, 1)?;
    let purpose: String = get(r, 2)?;
    let source: Option<String> = get(r, 3)?;
    let recipients: String = get(r, 4)?;
    let automated: Option<String> = get(r, 5)?;
    let created: i64 = get(r, 6)?;
    let updated: i64 = get(r, 7)?;
    let expires: i64 = get(r, 8)?;
    let fields: &[u8] = get(r, 9)?;
    Ok(RecordRow {
        id: RecordId::parse(&id).map_err(|e| corrupt(t, e))?,
        subject: SubjectId::parse(&subject).map_err(|e| corrupt(t, e))?,
        header: RecordHeader {
            purpose: PurposeName::parse(&purpose).map_err(|e| corrupt(t, e))?,
            meta: RecordMeta {
                source,
                recipients: recipients_of(&recipients, t)?,
                automated_decision: automated,
            }
            .into(),
            created_at: from_nanos(created)?,
            updated_at: from_nanos(updated)?,
            expires_at: from_nanos(expires)?,
        },
        fields: crate::fieldset::decode(fields).map_err(|e| corrupt(t, e))?,
    })
}

pub(crate) fn audit_row(r: &Row) -> Result<AuditEntry> {
    let t = "audit_entries";
    let chain: String = get(r, 0)?;
    let seq: i64 = get(r, 1)?;
    let at: i64 = get(r, 2)?;
    let actor: String = get(r, 3)?;
    let action: String = get(r, 4)?;
    let purpose: Option<String> = get(r, 5)?;
    let subject: Option<String> = get(r, 6)?;
    let record: Option<String> = get(r, 7)?;
    let fields: String = get(r, 8)?;
    let refused: Option<String> = get(r, 9)?;
    let request: Option<String> = get(r, 10)?;
    let prev: Vec<u8> = get(r, 11)?;
    let hash: Vec<u8> = get(r, 12)?;
    let subjects: String = get(r, 13)?;
    Ok(AuditEntry {
        seq: seq as u64,
        at: from_nanos(at)?,
        prev_hash: to32(&prev, t)?,
        hash: to32(&hash, t)?,
        draft: AuditDraft {
            chain: ChainId::parse(&chain).ok_or_else(|| corrupt(t, "unknown chain"))?,
            actor,
            action: Action::parse(&action).ok_or_else(|| corrupt(t, "unknown action"))?,
            purpose: purpose
                .map(|p| PurposeName::parse(&p).map_err(|e| corrupt(t, e)))
                .transpose()?,
            subject: subject
                .map(|s| SubjectId::parse(&s).map_err(|e| corrupt(t, e)))
                .transpose()?,
            subjects: crate::sqlite::codec::decode_subjects(&subjects)?,
            record: record
                .map(|s| RecordId::parse(&s).map_err(|e| corrupt(t, e)))
                .transpose()?,
            fields: unjson(&fields, t)?,
            outcome: match refused {
                None => Outcome::Allowed,
                Some(reason) => Outcome::Refused { reason },
            },
            request: request
                .map(|s| RequestId::parse(&s).map_err(|e| corrupt(t, e)))
                .transpose()?,
        },
    })
}

pub(crate) fn checkpoint_row(r: &Row) -> Result<Checkpoint> {
    let t = "checkpoints";
    let chain: String = get(r, 0)?;
    let seq: i64 = get(r, 1)?;
    let hash: Vec<u8> = get(r, 2)?;
    let signed: i64 = get(r, 3)?;
    let sig: Vec<u8> = get(r, 4)?;
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
}

/// Decodes the `DSR_COLS` columns starting at column `o`.
pub(crate) fn dsr_row_at(r: &Row, o: usize) -> Result<DsrRequestRow> {
    let t = "dsr_requests";
    let id: String = get(r, o)?;
    let right: String = get(r, o + 1)?;
    let state: String = get(r, o + 2)?;
    let sealed: Vec<u8> = get(r, o + 3)?;
    let received: i64 = get(r, o + 4)?;
    let due: i64 = get(r, o + 5)?;
    let extended: i64 = get(r, o + 6)?;
    let reason: Option<String> = get(r, o + 7)?;
    let subject: Option<String> = get(r, o + 8)?;
    let confirmed: Option<i64> = get(r, o + 9)?;
    let closed: Option<i64> = get(r, o + 10)?;
    let note: Option<String> = get(r, o + 11)?;
    Ok(DsrRequestRow {
        id: custodian_core::ids::DsrId::parse(&id).map_err(|e| corrupt(t, e))?,
        right: custodian_core::dsr::Right::parse(&right)
            .ok_or_else(|| corrupt(t, "unknown right"))?,
        state: custodian_core::dsr::RequestState::parse(&state)
            .ok_or_else(|| corrupt(t, "unknown state"))?,
        sealed_details: sealed,
        received_at: from_nanos(received)?,
        due_at: from_nanos(due)?,
        extended_months: u32_of(extended, t)?,
        extension_reason: reason,
        subject: subject
            .map(|s| SubjectId::parse(&s).map_err(|e| corrupt(t, e)))
            .transpose()?,
        identity_confirmed_at: confirmed.map(from_nanos).transpose()?,
        closed_at: closed.map(from_nanos).transpose()?,
        note,
    })
}

pub(crate) fn dsr_row(r: &Row) -> Result<DsrRequestRow> {
    dsr_row_at(r, 0)
}

pub(crate) fn outbox_row(r: &Row) -> Result<OutboxRow> {
    let t = "outbox";
    let id: i64 = get(r, 0)?;
    let controller: String = get(r, 1)?;
    let topic: String = get(r, 2)?;
    let payload: String = get(r, 3)?;
    let created: i64 = get(r, 4)?;
    let attempts: i64 = get(r, 5)?;
    let next: i64 = get(r, 6)?;
    let delivered: Option<i64> = get(r, 7)?;
    Ok(OutboxRow {
        id,
        controller: ControllerId::parse(&controller).map_err(|e| corrupt(t, e))?,
        topic,
        payload,
        created_at: from_nanos(created)?,
        attempts: u32_of(attempts, t)?,
        next_attempt_at: from_nanos(next)?,
        delivered_at: delivered.map(from_nanos).transpose()?,
    })
}
