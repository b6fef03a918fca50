use super::path_id;
use crate::AppState;
use crate::body::Body;
use crate::extract::{Auth, Ctx, blocking};
use crate::openapi::{AdminErrors, BodyErrors};
use crate::problem::ApiError;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use custodian_core::audit::AdminAction;
use custodian_core::controller::Controller;
use custodian_core::ids::{ControllerId, TokenId};
use custodian_core::purpose::Purpose;
use custodian_core::region::Region;
use custodian_vault::views::{IssuedToken, NewController, NewToken, TokenView};

/// The regions controllers can be pinned to (DPA §8).
#[utoipa::path(get, path = "/v1/regions", tag = "controllers", security(("bearer" = [])),
    responses((status = 200, body = Vec<Region>), AdminErrors))]
pub async fn list_regions(
    State(state): State<AppState>,
    Auth(_principal): Auth,
) -> Json<Vec<Region>> {
    Json(state.vault.regions().to_vec())
}

/// Registers a controller (operator only).
#[utoipa::path(post, path = "/v1/controllers", tag = "controllers", security(("bearer" = [])),
    request_body = NewController,
    responses((status = 201, body = Controller), AdminErrors, BodyErrors))]
pub async fn create_controller(
    State(state): State<AppState>,
    Auth(p): Auth,
    Ctx(ctx): Ctx,
    Body(input): Body<NewController>,
) -> Result<(StatusCode, Json<Controller>), ApiError> {
    let c = blocking(&state.vault, move |v| {
        let grant = v.operator_grant(&p, AdminAction::ControllerCreated, &ctx)?;
        v.create_controller(&grant, input, &ctx)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(c)))
}

/// Every controller (operator only).
#[utoipa::path(get, path = "/v1/controllers", tag = "controllers", security(("bearer" = [])),
    responses((status = 200, body = Vec<Controller>), AdminErrors))]
pub async fn list_controllers(
    State(state): State<AppState>,
    Auth(p): Auth,
    Ctx(ctx): Ctx,
) -> Result<Json<Vec<Controller>>, ApiError> {
    let list = blocking(&state.vault, move |v| {
        let grant = v.operator_grant(&p, AdminAction::ControllerCreated, &ctx)?;
        v.list_controllers(&grant)
    })
    .await?;
    Ok(Json(list))
}

/// One controller: visible to the operator and to that controller's own principals.
#[utoipa::path(get, path = "/v1/controllers/{id}", tag = "controllers", security(("bearer" = [])),
    params(("id" = ControllerId, Path)),
    responses((status = 200, body = Controller), AdminErrors))]
pub async fn get_controller(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<Controller>, ApiError> {
    let id = path_id(&id, ControllerId::parse)?;
    Ok(Json(
        blocking(&state.vault, move |v| v.get_controller(&p, &id)).await?,
    ))
}

/// Documents (or updates) a purpose: the controller's instruction (DPA §5(a)).
#[utoipa::path(post, path = "/v1/purposes", tag = "purposes", security(("bearer" = [])),
    request_body = Purpose,
    responses((status = 201, body = Purpose), AdminErrors, BodyErrors))]
pub async fn document_purpose(
    State(state): State<AppState>,
    Auth(p): Auth,
    Ctx(ctx): Ctx,
    Body(purpose): Body<Purpose>,
) -> Result<(StatusCode, Json<Purpose>), ApiError> {
    let saved = blocking(&state.vault, move |v| v.document_purpose(&p, purpose, &ctx)).await?;
    Ok((StatusCode::CREATED, Json(saved)))
}

/// The caller's controller's documented purposes.
#[utoipa::path(get, path = "/v1/purposes", tag = "purposes", security(("bearer" = [])),
    responses((status = 200, body = Vec<Purpose>), AdminErrors))]
pub async fn list_purposes(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<Vec<Purpose>>, ApiError> {
    Ok(Json(
        blocking(&state.vault, move |v| v.list_purposes(&p)).await?,
    ))
}

/// Issues an API token. The secret is in this response only.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", security(("bearer" = [])),
    request_body = NewToken,
    responses((status = 201, body = IssuedToken), AdminErrors, BodyErrors))]
pub async fn issue_token(
    State(state): State<AppState>,
    Auth(p): Auth,
    Ctx(ctx): Ctx,
    Body(input): Body<NewToken>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let t = blocking(&state.vault, move |v| v.issue_token(&p, input, &ctx)).await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// Tokens the caller administers (never their secrets).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", security(("bearer" = [])),
    responses((status = 200, body = Vec<TokenView>), AdminErrors))]
pub async fn list_tokens(
    State(state): State<AppState>,
    Auth(p): Auth,
    Ctx(ctx): Ctx,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    Ok(Json(
        blocking(&state.vault, move |v| v.list_tokens(&p, &ctx)).await?,
    ))
}

/// Revokes a token: refused from then on by the node that revoked it, within one second by the
/// others (each remembers a token it checked for one second).
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", security(("bearer" = [])),
    params(("id" = TokenId, Path)),
    responses((status = 204, description = "revoked"), AdminErrors))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Auth(p): Auth,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id, TokenId::parse)?;
    blocking(&state.vault, move |v| v.revoke_token(&p, &id, &ctx)).await?;
    Ok(StatusCode::NO_CONTENT)
}
