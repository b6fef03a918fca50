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
use custodian_vault::paging::{MAX_PAGE, Page, PageCursor};
use custodian_vault::views::{BulkChange, RecordList};
use custodian_vault::{Vault, VaultError};
use serde::Deserialize;

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
        set_of(self.subject)
    }
}

fn set_of(subject: Option<String>) -> Result<RecordSet, ApiError> {
    match subject {
        None => Ok(RecordSet::Purpose),
        Some(s) => path_id(&s, SubjectId::parse).map(RecordSet::Subject),
    }
}

/// The set, and which page of it (`GET /v1/records`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecordPageQuery {
    /// Only this subject's records under the purpose; every record of the purpose when absent.
    #[param(value_type = Option<SubjectId>)]
    subject: Option<String>,
    /// At most this many records in the answer, 1 to 10,000 (the default).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// The `next` of the page before: the answer starts after it.
    #[param(
        pattern = "^sub_[0-7][0-9a-hjkmnp-tv-z]{25}~(0|[1-9][0-9]{0,18})~rec_[0-7][0-9a-hjkmnp-tv-z]{25}$"
    )]
    after: Option<String>,
}

impl RecordPageQuery {
    fn parse(self) -> Result<(RecordSet, Page), ApiError> {
        let after = match self.after.as_deref() {
            None => None,
            Some(text) => Some(PageCursor::parse(text).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid-cursor",
                    "`after` must be the `next` of an earlier page, unchanged".to_owned(),
                )
            })?),
        };
        let limit = self.limit.unwrap_or(MAX_PAGE);
        let page = Page::new(after, limit).ok_or_else(|| {
            ApiError::bad_request(
                "invalid-limit",
                format!("`limit` must be from 1 to {MAX_PAGE}"),
            )
        })?;
        Ok((set_of(self.subject)?, page))
    }
}

/// Consultation: the records of the purpose (or of one subject under it), decrypted, a page
/// at a time: subjects by id, each one's records oldest first; `next`, when present, asks
/// for the page after. Only the page's records are decrypted and named in the audit entry.
#[utoipa::path(get, path = "/v1/records", tag = "records", security(("bearer" = [])),
    params(crate::openapi::PurposeParam, RecordPageQuery),
    responses((status = 200, body = RecordList), DataErrors,
        (status = 400, description = "Bad request: missing or invalid Custodian-Purpose, `invalid-limit` (not 1 to 10,000) or `invalid-cursor` (`after` is not an earlier page's `next`)",
            body = Problem, content_type = "application/problem+json")))]
pub async fn list_records(
    State(state): State<AppState>,
    Auth(p): Auth,
    Purpose(purpose): Purpose,
    Ctx(ctx): Ctx,
    Params(q): Params<RecordPageQuery>,
) -> Result<Json<RecordList>, ApiError> {
    let (set, page) = q.parse()?;
    let one_subject = matches!(set, RecordSet::Subject(_));
    // One subject's records are few, like a subject read; a whole purpose's may be thousands.
    let read = move |v: &Vault| v.purpose_records_page_pending(&p, &purpose, &set, &page, &ctx);
    let page = if one_subject {
        audited_read(&state.vault, read).await?
    } else {
        audited_bulk_read(&state.vault, read).await?
    };
    Ok(Json(RecordList {
        records: page.records,
        next: page.next.as_ref().map(PageCursor::encode),
    }))
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
        // A time already past means "now": the records are out of reach at once, and the
        // next retention pass erases them.
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
