use super::path_id;
use crate::AppState;
use crate::body::Body;
use crate::extract::{Auth, Ctx, Params, Purpose, blocking};
use crate::openapi::{BodyErrors, DataErrors};
use crate::problem::ApiError;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use custodian_core::ids::SubjectId;
use custodian_core::purpose::PurposeName;
use custodian_vault::views::{CreatedSubject, SubjectExport};
use serde::Deserialize;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportFormat {
    /// `json` (default; schema at /v1/schemas/subject-export.json) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
}

/// Access (Art. 15) and portability (Art. 20): everything held on the subject, with the
/// Art. 15 metadata, as JSON or CSV. A disclosure: refused while the subject is restricted.
#[utoipa::path(get, path = "/v1/subjects/{id}/export", tag = "rights", security(("bearer" = [])),
    params(("id" = SubjectId, Path), crate::openapi::PurposeParam, ExportFormat),
    responses(
        (status = 200, description = "the export", content(
            (SubjectExport = "application/json"),
            (String = "text/csv"),
        )),
        DataErrors,
    ))]
pub async fn export_subject(
    State(state): State<AppState>,
    Auth(p): Auth,
    Purpose(purpose): Purpose,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    Params(fmt): Params<ExportFormat>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, SubjectId::parse)?;
    let csv = match fmt.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid-format",
                "format must be json or csv",
            ));
        }
    };
    let export = blocking(&state.vault, move |v| {
        v.export_subject(&p, &purpose, &id, &ctx)
    })
    .await?;
    Ok(if csv {
        (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            custodian_vault::rights::export_csv(&export),
        )
            .into_response()
    } else {
        Json(export).into_response()
    })
}

/// Portability, receiving end: imports an export as a new subject of this controller.
/// Every record's purpose must be documented here.
#[utoipa::path(post, path = "/v1/subjects/import", tag = "rights", security(("bearer" = [])),
    params(crate::openapi::PurposeParam),
    request_body = SubjectExport,
    responses((status = 201, body = CreatedSubject), DataErrors, BodyErrors))]
pub async fn import_subject(
    State(state): State<AppState>,
    Auth(p): Auth,
    Purpose(purpose): Purpose,
    Ctx(ctx): Ctx,
    Body(export): Body<SubjectExport>,
) -> Result<(StatusCode, Json<CreatedSubject>), ApiError> {
    let out = blocking(&state.vault, move |v| {
        v.import_subject(&p, &purpose, export, &ctx)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Objection (Art. 21): processing of the subject under `objected` is refused from now on.
#[utoipa::path(put, path = "/v1/subjects/{id}/objections/{objected}", tag = "rights", security(("bearer" = [])),
    params(("id" = SubjectId, Path), ("objected" = PurposeName, Path), crate::openapi::PurposeParam),
    responses((status = 204, description = "objection recorded"), DataErrors))]
pub async fn object(
    State(state): State<AppState>,
    Auth(p): Auth,
    Purpose(purpose): Purpose,
    Ctx(ctx): Ctx,
    Path((id, objected)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id, SubjectId::parse)?;
    let objected = path_id(&objected, PurposeName::parse)?;
    blocking(&state.vault, move |v| {
        v.set_objection(&p, &purpose, &id, &objected, true, &ctx)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Withdraws an objection.
#[utoipa::path(delete, path = "/v1/subjects/{id}/objections/{objected}", tag = "rights", security(("bearer" = [])),
    params(("id" = SubjectId, Path), ("objected" = PurposeName, Path), crate::openapi::PurposeParam),
    responses((status = 204, description = "objection withdrawn"), DataErrors))]
pub async fn withdraw_objection(
    State(state): State<AppState>,
    Auth(p): Auth,
    Purpose(purpose): Purpose,
    Ctx(ctx): Ctx,
    Path((id, objected)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id, SubjectId::parse)?;
    let objected = path_id(&objected, PurposeName::parse)?;
    blocking(&state.vault, move |v| {
        v.set_objection(&p, &purpose, &id, &objected, false, &ctx)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The JSON Schema (2020-12) of the subject export.
#[utoipa::path(get, path = "/v1/schemas/subject-export.json", tag = "rights",
    responses((status = 200, description = "JSON Schema", body = serde_json::Value, content_type = "application/schema+json")))]
pub async fn export_schema() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/schema+json")],
        custodian_vault::rights::EXPORT_SCHEMA,
    )
}
