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
    let limit = q.limit.unwrap_or(100);
    // Sequence numbers are signed 64-bit in the database.
    if q.after > i64::MAX as u64 {
        return Err(ApiError::bad_request(
            "invalid-after",
            "after must be between 0 and 9223372036854775807",
        ));
    }
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid-limit",
            "limit must be between 1 and 1000",
        ));
    }
    Ok(Json(
        blocking(&state.vault, move |v| v.audit_page(&p, q.after, limit)).await?,
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
