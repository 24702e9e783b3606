//! `GET /payments?order_id=`: the payment recorded for an order, as a list
//! (empty until the order is seen, one row after), with its OpenAPI
//! description. For operators: it takes [`Admin`], the `ADMIN_TOKEN` check.

use crate::store::{self, Status};
use axum::Json;
use axum::extract::State;
use checkout_runtime::admin::{Admin, AdminProblems};
use checkout_runtime::http::{Amount, ApiQuery, Problem, ProblemResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The routes, each with its documentation.
pub(crate) fn api(pool: PgPool) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(list)).with_state(pool)
}

/// The query of `GET /payments`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct Filter {
    /// The order whose payment to show.
    order_id: Uuid,
}

/// An order's payment.
#[derive(Debug, Serialize, ToSchema)]
struct Payment {
    /// The payment's id.
    id: Uuid,
    /// The order paid for.
    order_id: Uuid,
    /// `CAPTURED`, `DECLINED`, `REFUNDED` or `VOIDED`.
    status: Status,
    /// The order's total.
    amount: Amount,
    /// Why it was declined or refunded.
    reason: Option<String>,
    /// When the order was first seen.
    created_at: DateTime<Utc>,
    /// When the payment last changed.
    updated_at: DateTime<Utc>,
}

impl From<store::Payment> for Payment {
    fn from(payment: store::Payment) -> Self {
        Self {
            id: payment.id,
            order_id: payment.order_id,
            status: payment.status,
            amount: Amount::new(payment.amount, payment.currency),
            reason: payment.reason,
            created_at: payment.created_at,
            updated_at: payment.updated_at,
        }
    }
}

/// The payment of an order: empty until the order is seen here. For
/// operators, with the `ADMIN_TOKEN`.
#[utoipa::path(get, path = "/payments", tag = "payments",
    params(Filter),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Zero or one payment", body = [Payment]),
        AdminProblems,
        (status = 422, response = ProblemResponse),
    ))]
async fn list(
    _admin: Admin,
    State(pool): State<PgPool>,
    ApiQuery(filter): ApiQuery<Filter>,
) -> Result<Json<Vec<Payment>>, Problem> {
    let payments = store::of_order(&pool, filter.order_id).await?;
    Ok(Json(payments.into_iter().map(Payment::from).collect()))
}
