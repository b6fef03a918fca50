//! Login accounts and password login. The argon2id work (hashing a new password, verifying
//! a login) runs inside the vault call, which `blocking` puts on tokio's blocking pool: it
//! never holds an async worker thread.

use crate::AppState;
use crate::body::Body;
use crate::client_addr::ClientAddr;
use crate::extract::{Auth, Ctx, blocking};
use crate::openapi::{AdminErrors, BodyErrors};
use crate::problem::{ApiError, Problem};
use crate::ratelimit::{AuthFailures, LoginFailures};
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use custodian_vault::views::{AccountView, IssuedToken, NewAccount, NewSession};
use std::sync::Arc;

/// Creates a login account. The operator creates accounts for any controller and for its own
/// staff (`operator_admin`, no controller); a controller admin only in its own controller.
/// The password is kept only as an argon2id hash.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", security(("bearer" = [])),
    request_body = NewAccount,
    responses((status = 201, body = AccountView), AdminErrors, BodyErrors))]
pub async fn create_account(
    State(state): State<AppState>,
    Auth(p): Auth,
    Ctx(ctx): Ctx,
    Body(input): Body<NewAccount>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    let account = blocking(&state.vault, move |v| v.create_account(&p, input, &ctx)).await?;
    Ok((StatusCode::CREATED, Json(account)))
}

/// Signs in with a login name and a password, for a session token (an API token of the
/// account's role and controller, valid 8 hours; the secret is in this response only).
/// An unknown login and a wrong password get the same 401. Failed attempts are limited per
/// client address and per login name: once either budget is spent, every attempt (the
/// right password too) gets 429 with `Retry-After` until it refills.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions",
    request_body = NewSession,
    responses(
        (status = 201, body = IssuedToken),
        (status = 401, description = "Wrong login or password (the same answer for an unknown login or a disabled account)", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "Request timed out", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed attempts from this address or for this login name, or the server is at its concurrency limit; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage unavailable; retry", body = Problem, content_type = "application/problem+json"),
        BodyErrors,
    ))]
pub async fn open_session(
    State(state): State<AppState>,
    Extension(sources): Extension<Arc<AuthFailures>>,
    Extension(names): Extension<Arc<LoginFailures>>,
    ClientAddr(ip): ClientAddr,
    Ctx(ctx): Ctx,
    Body(input): Body<NewSession>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    // Every attempt is paid for before the password is checked, from the address's budget
    // and the login name's; a success is refunded. So concurrent attempts cannot overrun a
    // budget, and once one is spent the right password is refused as well.
    if let Err(wait) = sources.reserve(ip) {
        return Err(ApiError::too_many_after(
            "too many failed authentication attempts from this address; retry later",
            wait,
        ));
    }
    if let Err(wait) = names.reserve(&input.login) {
        // Not checked, so not an attempt from this address.
        sources.succeeded(ip);
        return Err(ApiError::too_many_after(
            "too many failed login attempts for this login name; retry later",
            wait,
        ));
    }
    let login = input.login.clone();
    let result = blocking(&state.vault, move |v| {
        v.login(&input.login, &input.password, &ctx)
    })
    .await;
    match result {
        Ok(session) => {
            sources.succeeded(ip);
            names.succeeded(&login);
            Ok((StatusCode::CREATED, Json(session)))
        }
        Err(e) if e.status() == StatusCode::UNAUTHORIZED => {
            tracing::info!("password login failed");
            Err(e)
        }
        Err(e) => {
            // A storage or internal failure is not a failed guess.
            sources.succeeded(ip);
            names.succeeded(&login);
            Err(e)
        }
    }
}
