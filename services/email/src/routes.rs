//! `GET /emails?order_id=`: the notifications recorded for an order, how
//! far sending them got, with its OpenAPI description. For operators (a
//! mail holds a customer's address): it takes [`Admin`], the `ADMIN_TOKEN`
//! check.

use axum::Json;
use axum::extract::State;
use checkout_runtime::admin::{Admin, AdminProblems};
use checkout_runtime::http::{ApiQuery, Problem, ProblemResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgPool};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The routes, each with its documentation.
pub(crate) fn api(pool: PgPool) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(list)).with_state(pool)
}

/// The query of `GET /emails`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct Filter {
    /// The order whose mails to show.
    order_id: Uuid,
}

/// One mail sent about an order.
#[derive(Debug, Serialize, FromRow, ToSchema)]
struct Email {
    /// The notification's id.
    id: Uuid,
    /// The order it is about.
    order_id: Uuid,
    /// `confirmation` or `cancellation`.
    kind: String,
    /// Where it went.
    recipient: String,
    /// Its subject line.
    subject: String,
    /// Its text.
    body: String,
    /// When it was recorded.
    created_at: DateTime<Utc>,
    /// `sent`, `failed` (given up; see `last_error`) or `pending` (not yet
    /// sent, or never: without SMTP_URL mails are only recorded).
    status: String,
    sent_at: Option<DateTime<Utc>>,
    attempts: i32,
    last_error: Option<String>,
}

/// The mails recorded for an order, oldest first. For operators, with the
/// `ADMIN_TOKEN`: a mail holds the customer's address and order.
#[utoipa::path(get, path = "/emails", tag = "emails",
    params(Filter),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The order's mails", body = [Email]),
        AdminProblems,
        (status = 422, response = ProblemResponse),
    ))]
async fn list(
    _admin: Admin,
    State(pool): State<PgPool>,
    ApiQuery(filter): ApiQuery<Filter>,
) -> Result<Json<Vec<Email>>, Problem> {
    let emails: Vec<Email> = sqlx::query_as(
        "SELECT id, order_id, kind, recipient, subject, body, created_at, \
                CASE WHEN sent_at IS NOT NULL THEN 'sent' \
                     WHEN failed_at IS NOT NULL THEN 'failed' ELSE 'pending' END AS status, \
                sent_at, attempts, last_error \
         FROM notifications WHERE order_id = $1 ORDER BY created_at",
    )
    .bind(filter.order_id)
    .fetch_all(&pool)
    .await?;
    Ok(Json(emails))
}
