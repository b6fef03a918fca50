//! Custodian's HTTP API. This is the only crate that knows HTTP: it turns requests into
//! calls on the [`custodian_vault::Vault`] and errors into RFC 9457 problem documents, in
//! one place ([`problem`]).

mod body;
pub mod client_addr;
mod extract;
pub mod metrics_layer;
mod openapi;
pub mod problem;
pub mod ratelimit;
mod routes;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Request};
use custodian_core::ids::RequestId;
use custodian_vault::Vault;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use openapi::openapi_document;

/// Limits on what one request may cost.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    /// Requests per minute one address may make to the public request endpoints.
    pub public_requests_per_minute: u32,
    /// Failed authentication attempts one address may make per minute (and in a burst);
    /// beyond it every token it presents is answered 429 until its budget refills.
    pub auth_failures_per_minute: u32,
    /// Failed password attempts one login name may take per hour (and in a burst), whether
    /// or not it is an account's; beyond it every login for that name, the right password
    /// too, is answered 429 until its budget refills.
    pub login_failures_per_hour: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client for the limits above
    /// (none by default: the socket's peer is the client).
    pub trusted_proxies: client_addr::TrustedProxies,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 512,
            public_requests_per_minute: 10,
            auth_failures_per_minute: 30,
            login_failures_per_hour: 10,
            trusted_proxies: client_addr::TrustedProxies::default(),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub vault: Arc<Vault>,
    pub metrics: Option<PrometheusHandle>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone, Copy, Debug)]
struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(
        &mut self,
        _req: &Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let id = RequestId::from_random(custodian_crypto::random::id_bytes());
        HeaderValue::from_str(id.as_str())
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

/// The whole application: routes, limits, logging, metrics.
pub fn app(state: AppState, limits: &Limits) -> Router {
    let api = routes::router().with_state(state.clone());
    let timeout_problem = limits.request_timeout;
    Router::new()
        .merge(api)
        .merge(openapi::docs_router())
        .layer(axum::Extension(std::sync::Arc::new(ratelimit::RateLimiter::new(limits.public_requests_per_minute))))
        .layer(axum::Extension(std::sync::Arc::new(ratelimit::AuthFailures::new(limits.auth_failures_per_minute))))
        .layer(axum::Extension(std::sync::Arc::new(ratelimit::LoginFailures::new(limits.login_failures_per_hour))))
        .layer(axum::Extension(std::sync::Arc::new(limits.trusted_proxies.clone())))
        .fallback(problem::not_found)
        .method_not_allowed_fallback(problem::method_not_allowed)
        .layer(axum::middleware::from_fn(metrics_layer::track))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(
            ServiceBuilder::new()
                // Outermost first: a request id for everything, then the access log, which
                // records method, route template, status and latency: never bodies, never
                // query values, never headers (tokens).
                // A client may send its own request id only if it is one of ours in shape:
                // anything else could carry data into every log line and response.
                .map_request(|mut req: Request<axum::body::Body>| {
                    let keep = req
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| RequestId::parse(v).is_ok());
                    if !keep {
                        req.headers_mut().remove(REQUEST_ID);
                    }
                    req
                })
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeId))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request<_>| {
                            let route = req
                                .extensions()
                                .get::<axum::extract::MatchedPath>()
                                .map(|m| m.as_str().to_owned())
                                .unwrap_or_else(|| "unmatched".into());
                            let id = req
                                .headers()
                                .get(REQUEST_ID)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_owned();
                            tracing::info_span!("http", method = %req.method(), route = %route, request_id = %id)
                        })
                        .on_request(())
                        .on_response(
                            |res: &axum::http::Response<_>, latency: Duration, _span: &tracing::Span| {
                                tracing::info!(status = res.status().as_u16(), latency_ms = latency.as_millis() as u64, "served");
                            },
                        ),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(CatchPanicLayer::custom(problem::panic_response))
                .layer(axum::error_handling::HandleErrorLayer::new(problem::middleware_error))
                .load_shed()
                // Global: `Router::layer` wraps every route on its own, and a plain
                // `concurrency_limit` would give each route its own semaphore (the cap
                // multiplied by the number of routes).
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    limits.max_concurrent_requests,
                ))
                .timeout(timeout_problem)
                .layer(SetResponseHeaderLayer::overriding(
                    axum::http::header::STRICT_TRANSPORT_SECURITY,
                    HeaderValue::from_static("max-age=31536000; includeSubDomains"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    axum::http::header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    axum::http::header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                )),
        )
}
