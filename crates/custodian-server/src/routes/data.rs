use super::path_id;
use crate::AppState;
use crate::body::Body;
use crate::extract::{Auth, Ctx, Params, Purpose, audited_read, blocking};
use crate::openapi::{BodyErrors, DataErrors};
use crate::problem::ApiError;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use custodian_core::ids::{RecordId, SubjectId};
use custodian_core::record::FieldName;
use custodian_vault::views::*;
use serde::Deserialize;

/// Collection: creates a data subject (a random pseudonymous id), optionally with a first record.
#[utoipa::path(post, path = "/v1/subjects", tag = "subjects", security(("bearer" = [])),
    params(crate::openapi::PurposeParam),
    request_body = NewSubject,
    responses((status = 201, body = CreatedSubject), DataErrors, BodyErrors))]
pub async fn create_subject(
    State(state): State<AppState>,
    Auth(p): Auth,
    Purpose(purpose): Purpose,
    Ctx(ctx): Ctx,
    Body(input): Body<NewSubject>,
) -> Result<(StatusCode, Json<CreatedSubject>), ApiError> {
    let out = blocking(&state.vault, move |v| {
        v.create_subject(&p, &purpose, input, &ctx)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Consultation: a subject and every record about it, decrypted.
#[utoipa::path(get, path = "/v1/subjects/{id}", tag = "subjects", security(("bearer" = [])),
    params(("id" = SubjectId, Path), crate::openapi::PurposeParam),
    responses((status = 200, body = SubjectView), DataErrors))]
pub async fn get_subject(
    State(state): State<AppState>,
    Auth(p): Auth,
    Purpose(purpose): Purpose,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<SubjectView>, ApiError> {
    let id = path_id(&id, SubjectId::parse)?;
    Ok(Json(
        audited_read(&state.vault, move |v| {
            v.get_subject_pending(&p, &purpose, &id, &ctx)
        })
        .await?,
    ))
}

/// Erasure (Art. 17): destroys the subject's key, records and lookup entries. Idempotent.
#[utoipa::path(delete, path = "/v1/subjects/{id}", tag = "subjects", security(("bearer" = [])),
    params(("id" = SubjectId, Path), crate::openapi::PurposeParam),
    responses((status = 200, body = ErasureReceipt), DataErrors))]
pub async fn erase_subject(
    State(state): State<AppState>,
    Auth(p): Auth,
    Purpose(purpose): Purpose,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<ErasureReceipt>, ApiError> {
    let id = path_id(&id, SubjectId::parse)?;
    Ok(Json(
        blocking(&state.vault, move |v| {
            v.erase_subject(&p, &purpose, &id, &ctx)
        })
        .await?,
    ))
}

/// Recording: adds a record about a subject.
#[utoipa::path(post, path = "/v1/subjects/{id}/records", tag = "records", security(("bearer" = [])),
    params(("id" = SubjectId, Path), crate::openapi::PurposeParam),
    request_body = NewRecord,
    responses((status = 201, body = RecordView), DataErrors, BodyErrors))]
pub async fn add_record(
    State(state): State<AppState>,
    Auth(p): Auth,
    Purpose(purpose): Purpose,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    Body(input): Body<NewRecord>,
) -> Result<(StatusCode, Json<RecordView>), ApiError> {
    let id = path_id(&id, SubjectId::parse)?;
    let out = blocking(&state.vault, move |v| {
        v.add_record(&p, &purpose, &id, input, &ctx)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Restriction (Art. 18): from now on the subject's data is only stored (or erased).
#[utoipa::path(put, path = "/v1/subjects/{id}/restriction", tag = "subjects", security(("bearer" = [])),
    params(("id" = SubjectId, Path), crate::openapi::PurposeParam),
    responses((status = 204, description = "restricted"), DataErrors))]
pub async fn restrict(
    State(state): State<AppState>,
    Auth(p): Auth,
    Purpose(purpose): Purpose,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id, SubjectId::parse)?;
    blocking(&state.vault, move |v| {
        v.set_restriction(&p, &purpose, &id, true, &ctx)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lifts a restriction.
#[utoipa::path(delete, path = "/v1/subjects/{id}/restriction", tag = "subjects", security(("bearer" = [])),
    params(("id" = SubjectId, Path), crate::openapi::PurposeParam),
    responses((status = 204, description = "lifted"), DataErrors))]
pub async fn lift_restriction(
    State(state): State<AppState>,
    Auth(p): Auth,
    Purpose(purpose): Purpose,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id, SubjectId::parse)?;
    blocking(&state.vault, move |v| {
        v.set_restriction(&p, &purpose, &id, false, &ctx)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Finds subjects by a lookup key (email, phone, external id), sent in the body.
#[utoipa::path(post, path = "/v1/lookup", tag = "subjects", security(("bearer" = [])),
    params(crate::openapi::PurposeParam),
    request_body = LookupQuery,
    responses((status = 200, body = LookupResult), DataErrors, BodyErrors))]
pub async fn lookup(
    State(state): State<AppState>,
    Auth(p): Auth,
    Purpose(purpose): Purpose,
    Ctx(ctx): Ctx,
    Body(q): Body<LookupQuery>,
) -> Result<Json<LookupResult>, ApiError> {
    Ok(Json(
        audited_read(&state.vault, move |v| {
            v.lookup_pending(&p, &purpose, q, &ctx)
        })
        .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FieldsFilter {
    /// Comma-separated field names (a letter, then letters, digits and `_`, never more than
    /// 4 digits in a row): only these are decrypted and returned.
    #[param(
        pattern = "^[a-z][a-z_]{0,11}([0-9]{1,4}[a-z_]{1,8}){0,4}[0-9]{0,4}(,[a-z][a-z_]{0,11}([0-9]{1,4}[a-z_]{1,8}){0,4}[0-9]{0,4})*$"
    )]
    fields: Option<String>,
}

/// Retrieval: one record, decrypted.
#[utoipa::path(get, path = "/v1/records/{id}", tag = "records", security(("bearer" = [])),
    params(("id" = RecordId, Path), crate::openapi::PurposeParam, FieldsFilter),
    responses((status = 200, body = RecordView), DataErrors))]
pub async fn get_record(
    State(state): State<AppState>,
    Auth(p): Auth,
    Purpose(purpose): Purpose,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    Params(filter): Params<FieldsFilter>,
) -> Result<Json<RecordView>, ApiError> {
    let id = path_id(&id, RecordId::parse)?;
    let only = filter
        .fields
        .map(|f| {
            f.split(',')
                .map(FieldName::parse)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|_| {
            ApiError::bad_request(
                "invalid-fields",
                "fields must be comma-separated field names",
            )
        })?;
    Ok(Json(
        audited_read(&state.vault, move |v| {
            v.get_record_pending(&p, &purpose, &id, only.as_deref(), &ctx)
        })
        .await?,
    ))
}

/// Alteration (rectification, Art. 16): replaces the given fields.
#[utoipa::path(patch, path = "/v1/records/{id}", tag = "records", security(("bearer" = [])),
    params(("id" = RecordId, Path), crate::openapi::PurposeParam),
    request_body = FieldUpdate,
    responses((status = 200, body = RecordView), DataErrors, BodyErrors))]
pub async fn update_record(
    State(state): State<AppState>,
    Auth(p): Auth,
    Purpose(purpose): Purpose,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    Body(update): Body<FieldUpdate>,
) -> Result<Json<RecordView>, ApiError> {
    let id = path_id(&id, RecordId::parse)?;
    Ok(Json(
        blocking(&state.vault, move |v| {
            v.update_record(&p, &purpose, &id, update, &ctx)
        })
        .await?,
    ))
}

/// Erasure of one record.
#[utoipa::path(delete, path = "/v1/records/{id}", tag = "records", security(("bearer" = [])),
    params(("id" = RecordId, Path), crate::openapi::PurposeParam),
    responses((status = 204, description = "erased"), DataErrors))]
pub async fn delete_record(
    State(state): State<AppState>,
    Auth(p): Auth,
    Purpose(purpose): Purpose,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id, RecordId::parse)?;
    blocking(&state.vault, move |v| {
        v.delete_record(&p, &purpose, &id, &ctx)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
