//! `GET /emails?order_id=`: the notifications recorded for an order, how
//! far sending them got, with its OpenAPI description. For operators (a
//! mail holds a customer's address): it takes [`Admin`], the `ADMIN_TOKEN`
//! check.

use crate::store::{self, Email};
use axum::Json;
use axum::extract::State;
use checkout_runtime::admin::{Admin, AdminProblems};
use checkout_runtime::http::{ApiQuery, Problem, ProblemResponse};
use serde::Deserialize;
use sqlx::PgPool;
use utoipa::IntoParams;
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
    Ok(Json(store::of_order(&pool, filter.order_id).await?))
}
