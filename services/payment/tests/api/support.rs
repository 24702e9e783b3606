//! What the Payment tests share: applying an event as the consumer does,
//! and reading the `payments` rows as stored.

use checkout_events::{Event, OrderId};
use checkout_messaging::Outcome;

use payment_service::PaymentHandler;
use sqlx::PgPool;
use uuid::Uuid;

/// Applies `event` as the consumer does: the handler in one transaction,
/// committed when applied.
pub(crate) async fn apply<E: Event>(pool: &PgPool, order_id: OrderId, event: &E) -> Outcome {
    let envelope = checkout_testkit::from_order(order_id, event);
    checkout_testkit::handle(pool, &PaymentHandler::default(), &envelope)
        .await
        .expect("handled")
}

/// A `payments` row, with the column values as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Payment {
    pub(crate) id: Uuid,
    pub(crate) status: String,
    pub(crate) amount: i64,
    pub(crate) currency: String,
    pub(crate) reason: Option<String>,
}

/// The rows of `order_id`.
pub(crate) async fn payments(pool: &PgPool, order_id: OrderId) -> Vec<Payment> {
    sqlx::query_as("SELECT id, status, amount, currency, reason FROM payments WHERE order_id = $1")
        .bind(order_id.as_uuid())
        .fetch_all(pool)
        .await
        .expect("select payments")
}
