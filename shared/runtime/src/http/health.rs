//! `/health/live` and `/health/ready`, documented like every route.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use http::StatusCode;
use serde::Serialize;
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Debug, Clone)]
struct Probes {
    pool: PgPool,
    broker_up: Arc<AtomicBool>,
}

/// The answer of `/health/live`.
#[derive(Debug, Serialize, ToSchema)]
struct Liveness {
    /// Always `live`.
    status: &'static str,
}

/// The answer of `/health/ready`.
#[derive(Debug, Serialize, ToSchema)]
struct Readiness {
    /// `ready` or `not ready`.
    status: &'static str,
    /// Each dependency, `true` when it answers.
    checks: Checks,
}

/// What readiness depends on.
#[derive(Debug, Serialize, ToSchema)]
struct Checks {
    /// The database answers `SELECT 1`.
    database: bool,
    /// The broker connection is up.
    broker: bool,
}

/// The health routes with their documentation, for [`health_routes`] and
/// the service's OpenAPI document alike.
fn health_api() -> OpenApiRouter<Probes> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
}

/// `/health/live` (the process answers) and `/health/ready` (the database
/// answers and a broker session is running).
pub fn health_routes(pool: PgPool, broker_up: Arc<AtomicBool>) -> Router {
    let (router, _) = health_api()
        .with_state(Probes { pool, broker_up })
        .split_for_parts();
    router
}

/// The OpenAPI paths of [`health_routes`].
pub(crate) fn health_openapi() -> utoipa::openapi::OpenApi {
    health_api().into_openapi()
}

/// Liveness: the process answers HTTP.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "The process is alive", body = Liveness)))]
async fn live() -> Json<Liveness> {
    Json(Liveness { status: "live" })
}

/// Readiness: the database answers and the broker connection is up.
#[utoipa::path(get, path = "/health/ready", tag = "health", responses(
    (status = 200, description = "Ready to take traffic", body = Readiness),
    (status = 503, description = "A dependency is down", body = Readiness),
))]
async fn ready(State(probes): State<Probes>) -> Response {
    let database = sqlx::query("SELECT 1").execute(&probes.pool).await.is_ok();
    let broker = probes.broker_up.load(Ordering::SeqCst);
    let ready = database && broker;
    let body = Readiness {
        status: if ready { "ready" } else { "not ready" },
        checks: Checks { database, broker },
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
