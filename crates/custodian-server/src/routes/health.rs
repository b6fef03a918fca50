use crate::AppState;
use crate::extract::blocking;
use crate::problem::ApiError;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers a query, and no newer custodian migrated it past what
/// this one knows (a node left on the old version while others were upgraded stops taking
/// traffic).
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "ready", body = String),
    (status = 503, description = "storage unavailable, or migrated by a newer custodian", body = crate::problem::Problem, content_type = "application/problem+json"),
))]
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    blocking(&state.vault, |v| {
        v.store()
            .check_schema()
            .map_err(|e| custodian_vault::VaultError::Unavailable(e.to_string()))
    })
    .await?;
    Ok("ready")
}

/// Prometheus metrics. Labels carry route templates and status codes, never data.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    match &state.metrics {
        Some(h) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are disabled").into_response(),
    }
}
