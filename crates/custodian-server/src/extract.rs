//! Request parts every handler needs: the authenticated principal, the named purpose, the
//! request id, and a way to run blocking vault calls off the async runtime.

use crate::AppState;
use crate::problem::ApiError;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use custodian_core::ids::RequestId;
use custodian_core::principal::Principal;
use custodian_core::purpose::PurposeName;
use custodian_vault::{CallContext, Pending, Vault, VaultError};
use secrecy::SecretString;
use std::sync::Arc;

pub const PURPOSE_HEADER: &str = "custodian-purpose";

/// Runs a vault call on the blocking pool: the store is synchronous and may fsync.
pub async fn blocking<T: Send + 'static>(
    vault: &Arc<Vault>,
    f: impl FnOnce(&Vault) -> Result<T, VaultError> + Send + 'static,
) -> Result<T, ApiError> {
    let vault = vault.clone();
    tokio::task::spawn_blocking(move || f(&vault))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "the cause is in the server log",
            )
        })?
        .map_err(ApiError::from)
}

/// Runs an audited read of one record, subject (or its records) or lookup and waits for
/// its audit entry's commit without holding a thread. Where the store allows it
/// (`Store::consults_in_place`: SQLite, whose awaited reads hand their audit entry to an
/// appending thread), the read runs right here on the async thread: handing it to the
/// blocking pool and back cost more than the read itself (perf: a sixth of the server's CPU
/// at 64 connections). Otherwise it runs on the blocking pool. Either way the answer is
/// released once that commit succeeds.
pub async fn audited_read<T: Send + 'static>(
    vault: &Arc<Vault>,
    f: impl FnOnce(&Vault) -> Result<Pending<T>, VaultError> + Send + 'static,
) -> Result<T, ApiError> {
    let pending = if vault.store().consults_in_place() {
        f(vault).map_err(ApiError::from)?
    } else {
        blocking(vault, f).await?
    };
    pending.settled().await.map_err(ApiError::from)
}

/// [`audited_read`] for a read over many records (a whole purpose's): always on the blocking
/// pool, where its length holds up no other request.
pub async fn audited_bulk_read<T: Send + 'static>(
    vault: &Arc<Vault>,
    f: impl FnOnce(&Vault) -> Result<Pending<T>, VaultError> + Send + 'static,
) -> Result<T, ApiError> {
    blocking(vault, f)
        .await?
        .settled()
        .await
        .map_err(ApiError::from)
}

/// The caller, authenticated from `Authorization: Bearer <token>`. Also left in the
/// request's extensions so that a body that fails to parse can still be audited as a
/// refusal of this principal.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(Auth(p.clone()));
        }
        let ip = crate::client_addr::client_ip(parts);
        let failures = parts
            .extensions
            .get::<Arc<crate::ratelimit::AuthFailures>>()
            .cloned();
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|t| SecretString::from(t.trim().to_owned()))
            .ok_or(ApiError::from(VaultError::Unauthenticated))?;
        // A source that spent its budget of failed attempts is not even checked.
        if let Some(wait) = failures.as_ref().and_then(|f| f.blocked(ip)) {
            return Err(ApiError::too_many_after(
                "too many failed authentication attempts from this address; retry later",
                wait,
            ));
        }
        // A token checked in the last second is answered here, without the blocking pool.
        let known = state
            .vault
            .authenticate_without_store(&header)
            .map(|r| r.map_err(ApiError::from));
        let checked = match known {
            Some(answer) => answer,
            None => blocking(&state.vault, move |v| v.authenticate(&header)).await,
        };
        let principal = match checked {
            Ok(p) => p,
            Err(e) => {
                if e.status() == StatusCode::UNAUTHORIZED {
                    if let Some(f) = &failures {
                        f.failed(ip);
                    }
                    tracing::info!("authentication failed");
                }
                return Err(e);
            }
        };
        parts.extensions.insert(principal.clone());
        Ok(Auth(principal))
    }
}

/// The purpose a data call names, from the `Custodian-Purpose` header.
#[derive(Debug, Clone)]
pub struct Purpose(pub PurposeName);

impl FromRequestParts<AppState> for Purpose {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let parsed = match parts.headers.get(PURPOSE_HEADER) {
            None => Err(ApiError::bad_request(
                "missing-purpose",
                "every data call names its purpose in the Custodian-Purpose header",
            )),
            Some(raw) => raw
                .to_str()
                .ok()
                .and_then(|s| PurposeName::parse(s).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid-purpose",
                        "Custodian-Purpose must be a purpose name: a-z, 0-9, '_' and '-'",
                    )
                }),
        };
        match parsed {
            Ok(name) => {
                parts.extensions.insert(name.clone());
                Ok(Purpose(name))
            }
            Err(e) => {
                // A data call without a valid purpose is a refused processing attempt.
                let op = parts
                    .extensions
                    .get::<axum::extract::MatchedPath>()
                    .and_then(|m| crate::routes::operation_of(&parts.method, m.as_str()));
                if let (Some(p), Some(op)) = (parts.extensions.get::<Principal>().cloned(), op) {
                    let vault = state.vault.clone();
                    let ctx = call_context(parts);
                    let reason = format!("{}: {}", e.status().as_u16(), e.detail());
                    let _ = tokio::task::spawn_blocking(move || {
                        vault.audit_rejected_input(
                            &p,
                            custodian_core::audit::Action::Processing(op),
                            None,
                            &reason,
                            &ctx,
                        )
                    })
                    .await;
                }
                Err(e)
            }
        }
    }
}

/// Query parameters, with errors as problem documents that never quote what was sent.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid-query",
                    "the query string has an unknown or malformed parameter; see /openapi.json",
                )
            })
    }
}

/// The request id, for the audit trail.
#[derive(Debug, Clone, Default)]
pub struct Ctx(pub CallContext);

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Ctx(call_context(parts)))
    }
}

pub fn call_context(parts: &Parts) -> CallContext {
    let request = parts
        .headers
        .get(crate::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| RequestId::parse(s).ok());
    CallContext { request }
}
