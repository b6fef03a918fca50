use crate::AppState;
use crate::extract::{Auth, Params, blocking};
use crate::openapi::AdminErrors;
use crate::problem::ApiError;
use axum::Json;
use axum::extract::State;
use custodian_core::audit::ChainId;
use custodian_vault::VaultError;
use custodian_vault::verify::VerifyReport;
use custodian_vault::views::AuditPage;
use serde::Deserialize;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Return entries after this sequence number.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    #[serde(default)]
    after: u64,
    /// At most this many entries (1-1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// A page of the caller's controller's audit trail: who did what, when, under which
/// purpose, to which pseudonymous subject and which fields (never values).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = AuditPage), AdminErrors))]
pub async fn audit_page(
    State(state): State<AppState>,
    Auth(p): Auth,
    Params(q): Params<PageQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    check_after(q.after)?;
    let limit = page_limit(q.limit)?;
    Ok(Json(
        blocking(&state.vault, move |v| v.audit_page(&p, q.after, limit)).await?,
    ))
}

/// One subject's history in the caller's controller's audit trail, oldest first: every
/// entry naming it, bulk entries that list it among others included (Art. 15(1)(c) and
/// §10(e): who processed which of its fields, when, under which purpose). 404 for a
/// subject the controller never held.
#[utoipa::path(get, path = "/v1/subjects/{id}/history", tag = "audit", security(("bearer" = [])),
    params(("id" = custodian_core::ids::SubjectId, Path), PageQuery),
    responses((status = 200, body = AuditPage), AdminErrors))]
pub async fn subject_history(
    State(state): State<AppState>,
    Auth(p): Auth,
    axum::extract::Path(id): axum::extract::Path<String>,
    Params(q): Params<PageQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let id = super::path_id(&id, custodian_core::ids::SubjectId::parse)?;
    check_after(q.after)?;
    let limit = page_limit(q.limit)?;
    Ok(Json(
        blocking(&state.vault, move |v| {
            v.subject_history(&p, &id, q.after, limit)
        })
        .await?,
    ))
}

/// Sequence numbers are signed 64-bit in the database.
fn check_after(after: u64) -> Result<(), ApiError> {
    if after > i64::MAX as u64 {
        return Err(ApiError::bad_request(
            "invalid-after",
            "after must be between 0 and 9223372036854775807",
        ));
    }
    Ok(())
}

/// How many entries a page holds: 1-1000, 100 when not said.
fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid-limit",
            "limit must be between 1 and 1000",
        ));
    }
    Ok(limit)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TailQuery {
    /// How many of the latest entries (1-1000; default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// The latest entries of the caller's controller's audit trail, oldest first (GDPRbench's
/// read-log): the same entries as `GET /v1/audit`, counted back from the end.
#[utoipa::path(get, path = "/v1/audit/tail", tag = "audit", security(("bearer" = [])),
    params(TailQuery),
    responses((status = 200, body = AuditPage), AdminErrors))]
pub async fn audit_tail(
    State(state): State<AppState>,
    Auth(p): Auth,
    Params(q): Params<TailQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = page_limit(q.limit)?;
    Ok(Json(
        blocking(&state.vault, move |v| v.audit_tail(&p, limit)).await?,
    ))
}

/// Verifies the hash chain and signed checkpoints: the caller's controller's chain, or,
/// for the operator, every chain.
#[utoipa::path(post, path = "/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = VerifyReport), AdminErrors))]
pub async fn verify(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<VerifyReport>, ApiError> {
    let report = blocking(&state.vault, move |v| {
        let only = match (&p.controller, p.role) {
            (_, custodian_core::principal::Role::OperatorAdmin) => None,
            (Some(c), _) => {
                custodian_core::policy::authorize_audit_read(&p, c)?;
                Some(ChainId::Controller(c.clone()))
            }
            (None, _) => return Err(VaultError::NotFound),
        };
        v.verify(only.as_ref())
    })
    .await?;
    Ok(Json(report))
}
