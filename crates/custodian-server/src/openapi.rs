//! The OpenAPI 3.1 document, generated from the handlers and types, served at
//! `/openapi.json` with an offline Swagger UI at `/docs` (its assets are compiled in).

use crate::problem::Problem;
use crate::routes;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Custodian",
        description = "Your DPA, enforced and provable: a vault for personal data that a processor holds on behalf of its controllers.",
        license(name = "AGPL-3.0-only")
    ),
    paths(
        routes::healthz, routes::readyz, routes::metrics,
        routes::list_regions, routes::create_controller, routes::list_controllers, routes::get_controller,
        routes::document_purpose, routes::list_purposes,
        routes::issue_token, routes::list_tokens, routes::revoke_token,
        routes::create_account, routes::open_session,
        routes::create_subject, routes::get_subject, routes::erase_subject, routes::add_record,
        routes::restrict, routes::lift_restriction, routes::lookup,
        routes::get_record, routes::update_record, routes::delete_record,
        routes::list_records, routes::alter_records, routes::erase_records, routes::audit_tail,
        routes::audit_page, routes::subject_history, routes::verify,
        routes::export_subject, routes::import_subject, routes::object, routes::withdraw_objection, routes::export_schema,
        routes::submit, routes::status, routes::list, routes::act,
        routes::start_termination, routes::destroy, routes::certificate, routes::place_hold, routes::lift_hold, routes::retention,
    ),
    components(schemas(
        Problem,
        custodian_core::record::FieldInput,
        custodian_vault::views::FieldView,
        custodian_vault::views::NewRecord,
        custodian_vault::views::RecordView,
        custodian_vault::views::LookupQuery,
        custodian_vault::views::RequestAction,
        custodian_vault::views::BulkChange,
        custodian_core::ids::RecordId,
        custodian_core::ids::SubjectId,
        custodian_core::purpose::PurposeName,
        custodian_core::operation::Operation,
    )),
    modifiers(&Bearer),
    tags(
        (name = "controllers", description = "The processor's customers (operator)"),
        (name = "purposes", description = "Documented instructions, DPA §5(a)"),
        (name = "tokens", description = "Scoped API tokens, DPA §10(b)(c)"),
        (name = "accounts", description = "Login accounts: people who sign in with a password, DPA §10(b)(c)"),
        (name = "sessions", description = "Password login for a short-lived session token (argon2id; rate-limited per address and per login name)"),
        (name = "subjects", description = "Data subjects and their rights"),
        (name = "records", description = "Personal data, encrypted at rest"),
        (name = "rights", description = "Data-subject rights: access, portability, objection (Art. 15, 20, 21)"),
        (name = "inbox", description = "Requests from data subjects, passed on to the controller (DPA §5(d), §7)"),
        (name = "lifecycle", description = "Retention, termination, destruction, legal holds (DPA §14)"),
        (name = "audit", description = "The hash-chained audit trail, DPA §10(e)"),
        (name = "health", description = "Liveness, readiness, metrics"),
    )
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("cst_<role>_<secret>")
                    .description(Some(
                        "An API token issued by `custodian token create` or POST /v1/tokens, or a session token from POST /v1/sessions",
                    ))
                    .build(),
            ),
        );
    }
}

pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub fn docs_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().merge(
        SwaggerUi::new("/docs")
            .url("/openapi.json", openapi_document())
            // The online validator would make the page fetch from another host.
            .config(utoipa_swagger_ui::Config::from("/openapi.json").validator_url("none")),
    )
}

/// The `Custodian-Purpose` header every data call carries.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct PurposeParam {
    /// The documented purpose this call is made for (DPA §5(a)).
    #[param(
        rename = "Custodian-Purpose",
        pattern = "^[a-z][a-z0-9_-]{0,63}$",
        example = "support"
    )]
    #[allow(dead_code)]
    custodian_purpose: String,
}

/// Errors any authenticated administrative call can answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum AdminErrors {
    #[response(
        status = 400,
        description = "Bad request",
        content_type = "application/problem+json"
    )]
    BadRequest(Problem),
    #[response(
        status = 401,
        description = "Missing or invalid token",
        content_type = "application/problem+json"
    )]
    Unauthenticated(Problem),
    #[response(
        status = 403,
        description = "Refused, and audited",
        content_type = "application/problem+json"
    )]
    Refused(Problem),
    #[response(
        status = 404,
        description = "No such object for this principal",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    #[response(
        status = 408,
        description = "Request timed out",
        content_type = "application/problem+json"
    )]
    Timeout(Problem),
    #[response(
        status = 409,
        description = "Conflicts with the current state",
        content_type = "application/problem+json"
    )]
    Conflict(Problem),
    #[response(
        status = 429,
        description = "Too many requests",
        content_type = "application/problem+json"
    )]
    TooMany(Problem),
    #[response(
        status = 500,
        description = "Internal error",
        content_type = "application/problem+json"
    )]
    Internal(Problem),
    #[response(
        status = 503,
        description = "Storage unavailable; retry",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

/// Errors of data calls: the administrative ones, plus erased subjects.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum DataErrors {
    #[response(
        status = 400,
        description = "Bad request (missing or invalid Custodian-Purpose)",
        content_type = "application/problem+json"
    )]
    BadRequest(Problem),
    #[response(
        status = 401,
        description = "Missing or invalid token",
        content_type = "application/problem+json"
    )]
    Unauthenticated(Problem),
    #[response(
        status = 403,
        description = "Refused (purpose, scope, restriction, objection), and audited",
        content_type = "application/problem+json"
    )]
    Refused(Problem),
    #[response(
        status = 404,
        description = "No such object for this principal, or a record whose retention has run out (out of reach from its expiry, before the sweep erases it)",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    #[response(
        status = 408,
        description = "Request timed out",
        content_type = "application/problem+json"
    )]
    Timeout(Problem),
    #[response(
        status = 409,
        description = "Conflicts with the current state",
        content_type = "application/problem+json"
    )]
    Conflict(Problem),
    #[response(
        status = 410,
        description = "The subject was erased",
        content_type = "application/problem+json"
    )]
    Gone(Problem),
    #[response(
        status = 429,
        description = "Too many requests",
        content_type = "application/problem+json"
    )]
    TooMany(Problem),
    #[response(
        status = 500,
        description = "Internal error",
        content_type = "application/problem+json"
    )]
    Internal(Problem),
    #[response(
        status = 503,
        description = "Storage unavailable; retry",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

/// Errors of calls that take a JSON body.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum BodyErrors {
    #[response(
        status = 400,
        description = "Malformed JSON",
        content_type = "application/problem+json"
    )]
    Malformed(Problem),
    #[response(
        status = 409,
        description = "Conflicts with existing data",
        content_type = "application/problem+json"
    )]
    Conflict(Problem),
    #[response(
        status = 413,
        description = "Body too large",
        content_type = "application/problem+json"
    )]
    TooLarge(Problem),
    #[response(
        status = 415,
        description = "Body is not JSON",
        content_type = "application/problem+json"
    )]
    UnsupportedMediaType(Problem),
    #[response(
        status = 422,
        description = "Invalid input (nothing stored; audited when authenticated)",
        content_type = "application/problem+json"
    )]
    Invalid(Problem),
}
