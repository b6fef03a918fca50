//! The records collection: sets of records at once (GDPRbench's "metadata queries").
//! A set is every record collected under the purpose the call names, or, with
//! `?subject=sub_…`, that subject's records under it. Each call is one Art. 4(2) operation
//! under that purpose, done in one transaction whose audit entry commits with it. Subjects
//! who restricted processing or objected to the purpose are left out of consultation and
//! alteration; erasure, which neither stops (Art. 17, 18(1)), reaches their records too.

use super::path_id;
use crate::AppState;
use crate::body::Body;
use crate::extract::{Auth, Ctx, Params, Purpose, audited_bulk_read, audited_read, blocking};
use crate::openapi::{BodyErrors, DataErrors};
use crate::problem::{ApiError, Problem};
use axum::Json;
use axum::extract::State;
use custodian_core::ids::SubjectId;
use custodian_vault::bulk::{BulkReport, RecordChange, RecordSet};
use custodian_vault::views::{BulkChange, RecordList};
use custodian_vault::{Vault, VaultError};
use serde::Deserialize;

/// The most records one `GET /v1/records` answers with. A larger set is refused (400
/// `too-many-records`): narrow it to one subject with `?subject=`. (At GDPRbench's 100,000
/// records over 25 purposes, a purpose holds 4,000.)
pub const MAX_LISTED_RECORDS: usize = 10_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecordSetQuery {
    /// Only this subject's records under the purpose; every record of the purpose when absent.
    #[param(value_type = Option<SubjectId>)]
    subject: Option<String>,
}

impl RecordSetQuery {
    /// A malformed subject id answers 404, as it does in a path: there is no such subject.
    fn set(self) -> Result<RecordSet, ApiError> {
        match self.subject {
            None => Ok(RecordSet::Purpose),
            Some(s) => path_id(&s, SubjectId::parse).map(RecordSet::Subject),
        }
    }
}

/// Consultation: every record of the purpose (or of one subject under it), decrypted, at
/// most 10,000 in one answer.
#[utoipa::path(get, path = "/v1/records", tag = "records", security(("bearer" = [])),
    params(crate::openapi::PurposeParam, RecordSetQuery),
    responses((status = 200, body = RecordList), DataErrors,
        (status = 400, description = "Bad request: missing or invalid Custodian-Purpose, or `too-many-records` (more than 10,000 in the set: narrow it with `subject`)",
            body = Problem, content_type = "application/problem+json")))]
pub async fn list_records(
    State(state): State<AppState>,
    Auth(p): Auth,
    Purpose(purpose): Purpose,
    Ctx(ctx): Ctx,
    Params(q): Params<RecordSetQuery>,
) -> Result<Json<RecordList>, ApiError> {
    let set = q.set()?;
    let one_subject = matches!(set, RecordSet::Subject(_));
    // One subject's records are few, like a subject read; a whole purpose's may be thousands.
    let read = move |v: &Vault| v.purpose_records_pending(&p, &purpose, &set, &ctx);
    let records = if one_subject {
        audited_read(&state.vault, read).await?
    } else {
        audited_bulk_read(&state.vault, read).await?
    };
    // The store has no page of a purpose's records to ask for, so the set was read (and its
    // consultation audited) whole; a set too large to send is refused rather than cut.
    if records.len() > MAX_LISTED_RECORDS {
        return Err(ApiError::bad_request(
            "too-many-records",
            format!(
                "the set holds {} records, more than the {MAX_LISTED_RECORDS} one answer carries; ask for one subject's with ?subject=",
                records.len()
            ),
        ));
    }
    Ok(Json(RecordList { records }))
}

/// Alteration: one change applied to every record of the purpose (or of one subject under
/// it), in one transaction.
#[utoipa::path(patch, path = "/v1/records", tag = "records", security(("bearer" = [])),
    params(crate::openapi::PurposeParam, RecordSetQuery),
    request_body = BulkChange,
    responses((status = 200, body = BulkReport), DataErrors, BodyErrors))]
pub async fn alter_records(
    State(state): State<AppState>,
    Auth(p): Auth,
    Purpose(purpose): Purpose,
    Ctx(ctx): Ctx,
    Params(q): Params<RecordSetQuery>,
    Body(change): Body<BulkChange>,
) -> Result<Json<BulkReport>, ApiError> {
    let set = q.set()?;
    // A recategorisation is refused when a value already stored does not fit the new
    // category: the request was well formed, the stored data conflicts with it.
    let recategorises =
        matches!(&change, BulkChange::Category { category, .. } if !category.is_payment_card());
    let mut change = RecordChange::from(change);
    if let RecordChange::ExpiresAt(t) = &mut change {
        // A time already past means "now": the next retention pass erases the records.
        *t = (*t).max(state.vault.now());
    }
    Ok(Json(
        blocking(&state.vault, move |v| {
            v.alter_records(&p, &purpose, &set, &change, &ctx)
                .map_err(|e| match e {
                    VaultError::Invalid(_) if recategorises => VaultError::Conflict(
                        "a value stored in that field does not fit the new category; nothing was changed",
                    ),
                    e => e,
                })
        })
        .await?,
    ))
}

/// Erasure: every record of the purpose (or of one subject under it), in one transaction.
/// The subjects stay. Without `subject`, this erases all the purpose's records.
#[utoipa::path(delete, path = "/v1/records", tag = "records", security(("bearer" = [])),
    params(crate::openapi::PurposeParam, RecordSetQuery),
    responses((status = 200, body = BulkReport), DataErrors))]
pub async fn erase_records(
    State(state): State<AppState>,
    Auth(p): Auth,
    Purpose(purpose): Purpose,
    Ctx(ctx): Ctx,
    Params(q): Params<RecordSetQuery>,
) -> Result<Json<BulkReport>, ApiError> {
    let set = q.set()?;
    Ok(Json(
        blocking(&state.vault, move |v| {
            v.erase_records(&p, &purpose, &set, &ctx)
        })
        .await?,
    ))
}
