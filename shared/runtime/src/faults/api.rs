//! `GET /faults` and `PUT /faults`: a service's fault switches over HTTP,
//! mounted by the runtime on every service. Both take the admin token
//! first, then answer 403 unless the service runs with
//! `FAULTS_ENABLED=true`.

use super::{Change, Document, Faults};
use crate::admin::Admin;
use crate::http::{ApiJson, Problem};
use axum::Json;
use axum::extract::State;
use http::StatusCode;
use utoipa::IntoResponses;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes, documented, on `faults`.
pub(crate) fn api(faults: Faults) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list_faults, change_fault))
        .with_state(faults)
}

/// Who may not use the switches, as documented responses.
#[derive(Debug, IntoResponses)]
#[expect(
    dead_code,
    reason = "documentation only: the Admin extractor and `disabled` build these problems"
)]
enum Refusals {
    /// No `Authorization: Bearer`, or not the `ADMIN_TOKEN`.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// No `ADMIN_TOKEN` configured, or fault switches are disabled
    /// (`FAULTS_ENABLED` is not `true`).
    #[response(status = 403, content_type = "application/problem+json")]
    Off(Problem),
}

/// The fault switches of this service and their state.
#[utoipa::path(get, path = "/faults", tag = "faults",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The switches", body = Document),
        Refusals,
    ))]
async fn list_faults(_: Admin, State(faults): State<Faults>) -> Result<Json<Document>, Problem> {
    if let Some(refused) = disabled(&faults) {
        return Err(refused);
    }
    Ok(Json(faults.document()))
}

/// Turns one switch on or off and/or sets its parameter; omitted fields
/// keep their value. Answers with all the switches.
#[utoipa::path(put, path = "/faults", tag = "faults",
    request_body = Change,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Changed; every switch as it is now", body = Document),
        Refusals,
        (status = 422, body = Problem, content_type = "application/problem+json",
            description = "An unknown switch, a parameter it does not take, or a value out of range"),
    ))]
async fn change_fault(
    _: Admin,
    State(faults): State<Faults>,
    body: Result<ApiJson<Change>, Problem>,
) -> Result<Json<Document>, Problem> {
    // Disabled first: without FAULTS_ENABLED nothing about the body matters.
    if let Some(refused) = disabled(&faults) {
        return Err(refused);
    }
    let ApiJson(change) = body?;
    faults.apply(&change).map(Json).map_err(Problem::validation)
}

/// The 403 of a service without `FAULTS_ENABLED=true`, if it is one.
fn disabled(faults: &Faults) -> Option<Problem> {
    if faults.is_enabled() {
        return None;
    }
    Some(
        Problem::new(StatusCode::FORBIDDEN)
            .with_type("/problems/faults-disabled")
            .with_title("Fault switches are disabled")
            .with_detail(
                "this service runs without FAULTS_ENABLED=true, so its fault switches cannot be \
             read or changed (a demo setting; production leaves it unset)",
            ),
    )
}
