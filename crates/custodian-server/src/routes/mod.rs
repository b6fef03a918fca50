//! The `/v1` routes. Each handler is thin: extract, call one vault use case on the
//! blocking pool, answer. Lookup values travel in bodies, never in URLs.

mod accounts;
mod admin;
mod audit;
mod bulk;
mod data;
mod health;
mod inbox;
mod lifecycle;
mod rights;

use crate::AppState;
use axum::Router;
use axum::routing::{get, post};

pub use accounts::*;
pub use admin::*;
pub use audit::*;
pub use bulk::*;
pub use data::*;
pub use health::*;
pub use inbox::*;
pub use lifecycle::*;
pub use rights::*;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/v1/regions", get(admin::list_regions))
        .route(
            "/v1/controllers",
            post(admin::create_controller).get(admin::list_controllers),
        )
        .route("/v1/controllers/{id}", get(admin::get_controller))
        .route(
            "/v1/purposes",
            post(admin::document_purpose).get(admin::list_purposes),
        )
        .route(
            "/v1/tokens",
            post(admin::issue_token).get(admin::list_tokens),
        )
        .route(
            "/v1/tokens/{id}",
            axum::routing::delete(admin::revoke_token),
        )
        .route("/v1/accounts", post(accounts::create_account))
        .route("/v1/sessions", post(accounts::open_session))
        .route("/v1/subjects", post(data::create_subject))
        .route(
            "/v1/subjects/{id}",
            get(data::get_subject).delete(data::erase_subject),
        )
        .route("/v1/subjects/{id}/records", post(data::add_record))
        .route(
            "/v1/subjects/{id}/restriction",
            axum::routing::put(data::restrict).delete(data::lift_restriction),
        )
        .route("/v1/lookup", post(data::lookup))
        .route(
            "/v1/records",
            get(bulk::list_records)
                .patch(bulk::alter_records)
                .delete(bulk::erase_records),
        )
        .route(
            "/v1/records/{id}",
            get(data::get_record)
                .patch(data::update_record)
                .delete(data::delete_record),
        )
        .route("/v1/subjects/{id}/export", get(rights::export_subject))
        .route("/v1/subjects/import", post(rights::import_subject))
        .route(
            "/v1/subjects/{id}/objections/{objected}",
            axum::routing::put(rights::object).delete(rights::withdraw_objection),
        )
        .route(
            "/v1/schemas/subject-export.json",
            get(rights::export_schema),
        )
        .route(
            "/v1/public/controllers/{id}/requests",
            // 128 KiB: the largest request the schema allows (320 + 4000 characters, each up to
            // 12 bytes as a JSON escape) fits with room, so only an abusive body gets 413.
            post(inbox::submit).layer(axum::extract::DefaultBodyLimit::max(128 * 1024)),
        )
        .route("/v1/public/requests/{reference}", get(inbox::status))
        .route("/v1/requests", get(inbox::list))
        .route("/v1/requests/{id}/actions", post(inbox::act))
        .route(
            "/v1/controllers/{id}/termination",
            post(lifecycle::start_termination),
        )
        .route("/v1/controllers/{id}/destruction", post(lifecycle::destroy))
        .route(
            "/v1/controllers/{id}/certificate",
            get(lifecycle::certificate),
        )
        .route(
            "/v1/controllers/{id}/legal-hold",
            axum::routing::put(lifecycle::place_hold).delete(lifecycle::lift_hold),
        )
        .route("/v1/retention", get(lifecycle::retention))
        .route("/v1/audit", get(audit::audit_page))
        .route("/v1/audit/verify", post(audit::verify))
        .route("/v1/audit/tail", get(audit::audit_tail))
        .route("/v1/subjects/{id}/history", get(audit::subject_history))
}

/// Parses a path id, answering 404 (not 400) for a malformed one: from the caller's side
/// there is simply no such object.
pub(crate) fn path_id<T>(
    raw: &str,
    parse: fn(&str) -> Result<T, custodian_core::ValidationError>,
) -> Result<T, crate::problem::ApiError> {
    parse(raw).map_err(|_| custodian_vault::VaultError::NotFound.into())
}

/// The Art. 4(2) operation a data route performs, so that a call refused before reaching
/// the vault (no purpose) is still audited as an attempt at that operation.
pub(crate) fn operation_of(
    method: &axum::http::Method,
    route: &str,
) -> Option<custodian_core::operation::Operation> {
    use axum::http::Method;
    use custodian_core::operation::Operation::*;
    Some(match (method.clone(), route) {
        (Method::POST, "/v1/subjects") => Collection,
        (Method::GET, "/v1/subjects/{id}") => Consultation,
        (Method::DELETE, "/v1/subjects/{id}") => Erasure,
        (Method::POST, "/v1/subjects/{id}/records") => Recording,
        (Method::PUT | Method::DELETE, "/v1/subjects/{id}/restriction") => Restriction,
        (Method::POST, "/v1/lookup") => Retrieval,
        (Method::GET, "/v1/records") => Consultation,
        (Method::PATCH, "/v1/records") => Alteration,
        (Method::DELETE, "/v1/records") => Erasure,
        (Method::GET, "/v1/records/{id}") => Retrieval,
        (Method::PATCH, "/v1/records/{id}") => Alteration,
        (Method::DELETE, "/v1/records/{id}") => Erasure,
        (Method::GET, "/v1/subjects/{id}/export") => Disclosure,
        (Method::POST, "/v1/subjects/import") => Collection,
        (Method::PUT | Method::DELETE, "/v1/subjects/{id}/objections/{objected}") => Restriction,
        _ => return None,
    })
}
