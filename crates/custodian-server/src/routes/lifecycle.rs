use super::path_id;
use crate::AppState;
use crate::extract::{Auth, Ctx, blocking};
use crate::openapi::AdminErrors;
use crate::problem::ApiError;
use axum::Json;
use axum::extract::{Path, State};
use custodian_core::audit::AdminAction;
use custodian_core::controller::ControllerStatus;
use custodian_core::ids::ControllerId;
use custodian_core::policy::authorize_admin;
use custodian_core::purpose::PurposeName;
use custodian_vault::lifecycle::Certificate;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusView {
    pub controller: ControllerId,
    pub status: ControllerStatus,
}

/// Starts termination (DPA §14): processing stops; the full export (`custodian terminate
/// export`) and destruction become possible. The operator or the controller's admin.
#[utoipa::path(post, path = "/v1/controllers/{id}/termination", tag = "lifecycle", security(("bearer" = [])),
    params(("id" = ControllerId, Path)),
    responses((status = 200, body = StatusView), AdminErrors))]
pub async fn start_termination(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<StatusView>, ApiError> {
    let id = path_id(&id, ControllerId::parse)?;
    let c = id.clone();
    let status = blocking(&state.vault, move |v| {
        let grant = authorize_admin(&p, &c, true)?;
        v.start_termination(grant.actor(), &c)
    })
    .await?;
    Ok(Json(StatusView {
        controller: id,
        status,
    }))
}

/// Destroys a terminating controller's data: its key is shredded and its rows deleted. Answers
/// the signed certificate of destruction. Refused under a legal hold. Operator only.
#[utoipa::path(post, path = "/v1/controllers/{id}/destruction", tag = "lifecycle", security(("bearer" = [])),
    params(("id" = ControllerId, Path)),
    responses((status = 200, body = Certificate), AdminErrors))]
pub async fn destroy(
    State(state): State<AppState>,
    Auth(p): Auth,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<Certificate>, ApiError> {
    let id = path_id(&id, ControllerId::parse)?;
    Ok(Json(
        blocking(&state.vault, move |v| {
            let grant = v.operator_grant(&p, AdminAction::TerminationStarted, &ctx)?;
            v.destroy_controller(&grant, &id)
        })
        .await?,
    ))
}

/// The certificate of destruction of a destroyed controller. Operator only.
#[utoipa::path(get, path = "/v1/controllers/{id}/certificate", tag = "lifecycle", security(("bearer" = [])),
    params(("id" = ControllerId, Path)),
    responses((status = 200, body = Certificate), AdminErrors))]
pub async fn certificate(
    State(state): State<AppState>,
    Auth(p): Auth,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<Certificate>, ApiError> {
    let id = path_id(&id, ControllerId::parse)?;
    Ok(Json(
        blocking(&state.vault, move |v| {
            v.operator_grant(&p, AdminAction::TerminationStarted, &ctx)?;
            v.certificate(&id)
        })
        .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    /// The law or order that forbids destruction: 1-500 printable characters.
    #[schema(schema_with = hold_basis)]
    pub basis: String,
}

impl crate::body::Audited for HoldBody {
    const ACTION: custodian_core::audit::Action =
        custodian_core::audit::Action::Admin(AdminAction::LegalHoldPlaced);
}

/// Places a legal hold (DPA §14): the data is sealed (no processing) and cannot be destroyed.
#[utoipa::path(put, path = "/v1/controllers/{id}/legal-hold", tag = "lifecycle", security(("bearer" = [])),
    params(("id" = ControllerId, Path)),
    request_body = HoldBody,
    responses((status = 200, body = StatusView), AdminErrors, crate::openapi::BodyErrors))]
pub async fn place_hold(
    State(state): State<AppState>,
    Auth(p): Auth,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    crate::body::Body(body): crate::body::Body<HoldBody>,
) -> Result<Json<StatusView>, ApiError> {
    let id = path_id(&id, ControllerId::parse)?;
    let c = id.clone();
    let status = blocking(&state.vault, move |v| {
        let grant = v.operator_grant(&p, AdminAction::LegalHoldPlaced, &ctx)?;
        v.place_legal_hold(&grant, &c, &body.basis)
    })
    .await?;
    Ok(Json(StatusView {
        controller: id,
        status,
    }))
}

/// Lifts the legal hold in force.
#[utoipa::path(delete, path = "/v1/controllers/{id}/legal-hold", tag = "lifecycle", security(("bearer" = [])),
    params(("id" = ControllerId, Path)),
    responses((status = 200, body = StatusView), AdminErrors))]
pub async fn lift_hold(
    State(state): State<AppState>,
    Auth(p): Auth,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<StatusView>, ApiError> {
    let id = path_id(&id, ControllerId::parse)?;
    let c = id.clone();
    let status = blocking(&state.vault, move |v| {
        let grant = v.operator_grant(&p, AdminAction::LegalHoldLifted, &ctx)?;
        v.lift_legal_hold(&grant, &c)
    })
    .await?;
    Ok(Json(StatusView {
        controller: id,
        status,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExpiryView {
    pub controller: ControllerId,
    pub purpose: PurposeName,
    pub day: time::Date,
    pub records: u64,
}

/// What expires when: records per purpose and day. A controller's admin sees its own; the
/// operator sees every controller's.
#[utoipa::path(get, path = "/v1/retention", tag = "lifecycle", security(("bearer" = [])),
    responses((status = 200, body = Vec<ExpiryView>), AdminErrors))]
pub async fn retention(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<Vec<ExpiryView>>, ApiError> {
    let buckets = blocking(&state.vault, move |v| {
        let only = match &p.controller {
            Some(c) => {
                authorize_admin(&p, c, false)?;
                Some(c.clone())
            }
            None => None,
        };
        v.expiry_schedule(only.as_ref())
    })
    .await?;
    Ok(Json(
        buckets
            .into_iter()
            .map(|b| ExpiryView {
                controller: b.controller,
                purpose: b.purpose,
                day: b.day,
                records: b.records,
            })
            .collect(),
    ))
}

fn hold_basis() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    custodian_core::schema::printable(500, "The law or order that forbids destruction")
}
