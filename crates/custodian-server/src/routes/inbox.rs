use super::path_id;
use crate::AppState;
use crate::body::Body;
use crate::client_addr::ClientAddr;
use crate::extract::{Auth, Ctx, Params, blocking};
use crate::openapi::{AdminErrors, BodyErrors};
use crate::problem::ApiError;
use crate::ratelimit::RateLimiter;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use custodian_core::dsr::{RequestState, Right};
use custodian_core::ids::{ControllerId, DsrId};
use custodian_vault::views::{
    NewRequest, RequestAction, RequestActionResult, RequestReceipt, RequestView,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use time::OffsetDateTime;

/// Files a data-subject request with a controller (no account needed). The answer is the
/// same whether or not the controller holds data on the requester. Rate-limited per address.
#[utoipa::path(post, path = "/v1/public/controllers/{id}/requests", tag = "inbox",
    params(("id" = ControllerId, Path)),
    request_body = NewRequest,
    responses(
        (status = 202, body = RequestReceipt),
        (status = 404, description = "No such controller", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests from this address", body = crate::problem::Problem, content_type = "application/problem+json"),
        BodyErrors,
    ))]
pub async fn submit(
    State(state): State<AppState>,
    axum::Extension(limiter): axum::Extension<Arc<RateLimiter>>,
    ClientAddr(ip): ClientAddr,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    Body(req): Body<NewRequest>,
) -> Result<(StatusCode, Json<RequestReceipt>), ApiError> {
    if !limiter.allow(ip) {
        return Err(ApiError::too_many(
            "too many requests from this address; try again in a minute",
        ));
    }
    let id = path_id(&id, ControllerId::parse)?;
    let receipt = blocking(&state.vault, move |v| v.submit_request(&id, req, &ctx)).await?;
    Ok((StatusCode::ACCEPTED, Json(receipt)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestStatusView {
    pub reference: DsrId,
    pub right: Right,
    pub state: RequestState,
    #[serde(with = "custodian_core::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(with = "custodian_core::rfc3339")]
    pub due_at: OffsetDateTime,
}

/// Where a request stands, by its reference. Reveals no personal data.
#[utoipa::path(get, path = "/v1/public/requests/{reference}", tag = "inbox",
    params(("reference" = DsrId, Path)),
    responses(
        (status = 200, body = RequestStatusView),
        (status = 404, description = "No such request", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests from this address", body = crate::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn status(
    State(state): State<AppState>,
    axum::Extension(limiter): axum::Extension<Arc<RateLimiter>>,
    ClientAddr(ip): ClientAddr,
    Path(reference): Path<String>,
) -> Result<Json<RequestStatusView>, ApiError> {
    if !limiter.allow(ip) {
        return Err(ApiError::too_many(
            "too many requests from this address; try again in a minute",
        ));
    }
    let reference = path_id(&reference, DsrId::parse)?;
    let r = reference.clone();
    let s = blocking(&state.vault, move |v| v.request_status(&r)).await?;
    Ok(Json(RequestStatusView {
        reference,
        right: s.right,
        state: s.state,
        received_at: s.received_at,
        due_at: s.due_at,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InboxFilter {
    /// `open` (default), `overdue` or `all`.
    #[param(pattern = "^(open|overdue|all)$")]
    state: Option<String>,
}

/// The controller's inbox of data-subject requests, soonest due first.
#[utoipa::path(get, path = "/v1/requests", tag = "inbox", security(("bearer" = [])),
    params(InboxFilter),
    responses((status = 200, body = Vec<RequestView>), AdminErrors))]
pub async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
    Ctx(ctx): Ctx,
    Params(f): Params<InboxFilter>,
) -> Result<Json<Vec<RequestView>>, ApiError> {
    let (open, overdue) = match f.state.as_deref() {
        None | Some("open") => (true, false),
        Some("overdue") => (true, true),
        Some("all") => (false, false),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid-state",
                "state must be open, overdue or all",
            ));
        }
    };
    Ok(Json(
        blocking(&state.vault, move |v| {
            v.list_requests(&p, open, overdue, &ctx)
        })
        .await?,
    ))
}

/// Acts on a request: acknowledge, confirm identity, link to a subject, extend, reject, fulfil.
#[utoipa::path(post, path = "/v1/requests/{id}/actions", tag = "inbox", security(("bearer" = [])),
    params(("id" = DsrId, Path)),
    request_body = RequestAction,
    responses((status = 200, body = RequestActionResult), AdminErrors, BodyErrors))]
pub async fn act(
    State(state): State<AppState>,
    Auth(p): Auth,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    Body(action): Body<RequestAction>,
) -> Result<Json<RequestActionResult>, ApiError> {
    let id = path_id(&id, DsrId::parse)?;
    Ok(Json(
        blocking(&state.vault, move |v| {
            v.act_on_request(&p, &id, action, &ctx)
        })
        .await?,
    ))
}
