//! Errors as RFC 9457 problem documents, mapped from [`VaultError`] in exactly one place.
//! The `detail` shown to the caller never holds personal data; the logged message may hold
//! more (internal causes) but never values either.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use custodian_vault::VaultError;
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
    retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            slug,
            title,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, slug, "Bad request", detail)
    }

    pub fn too_many(detail: &str) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            detail,
        );
        e.retry_after = Some(60);
        e
    }

    /// 429 with a `Retry-After` of `seconds`.
    pub fn too_many_after(detail: &str, seconds: u32) -> Self {
        let mut e = Self::too_many(detail);
        e.retry_after = Some(seconds.max(1));
        e
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Unauthenticated => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Unauthenticated",
                "send a valid API token as 'Authorization: Bearer <token>'",
            ),
            // One answer for an unknown login, a disabled account and a wrong password.
            VaultError::BadCredentials => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid-credentials",
                "Unauthenticated",
                "wrong login or password",
            ),
            VaultError::Refused(r) => {
                ApiError::new(StatusCode::FORBIDDEN, "refused", "Refused", r.to_string())
            }
            VaultError::NotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                "no such object for this principal",
            ),
            VaultError::Gone => ApiError::new(
                StatusCode::GONE,
                "erased",
                "Erased",
                "this data subject was erased",
            ),
            VaultError::Invalid(v) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "Invalid input",
                v.to_string(),
            ),
            VaultError::Conflict(what) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", what)
            }
            VaultError::Unavailable(cause) => {
                tracing::error!(cause = %cause, "storage unavailable");
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Storage unavailable",
                    "the operation did not happen; retry later",
                );
                e.retry_after = Some(5);
                e
            }
            VaultError::Internal(cause) => {
                tracing::error!(cause = %cause, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "the operation did not happen; the cause is in the server log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: format!("urn:custodian:problem:{}", self.slug),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
        };
        let mut res = (self.status, Json(body)).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}

/// A panic never shows its message (it could hold anything); it becomes a plain 500.
pub fn panic_response(_err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Internal error",
        "the cause is in the server log",
    )
    .into_response()
}

/// Errors from the middleware stack: a request that took too long (408; its operation may
/// still have completed: the audit trail says), or the concurrency cap is full (429: shed
/// rather than queued without bound).
pub async fn middleware_error(err: tower::BoxError) -> Response {
    if err.is::<tower::timeout::error::Elapsed>() {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "Request timed out",
            "the request took longer than this server allows; whether a write completed is recorded in the audit trail",
        )
        .into_response();
    }
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "overloaded",
        "Too many requests",
        "the server is at its concurrency limit; retry shortly",
    );
    e.retry_after = Some(1);
    e.into_response()
}

pub async fn not_found() -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no-route",
        "Not found",
        "no such route; see /openapi.json",
    )
    .into_response()
}

pub async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this route does not accept that method; see /openapi.json",
    )
    .into_response()
}
