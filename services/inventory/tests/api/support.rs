//! What the Inventory tests share: applying an event as the consumer
//! does, reading stock and reservations as stored, and the API's answers
//! as typed views.

use checkout_events::{Event, OrderId};
use checkout_messaging::Outcome;
use checkout_runtime::http::Amount;

use inventory_service::InventoryHandler;
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Applies `event` as the consumer does: the handler in one transaction,
/// committed when applied.
pub(crate) async fn apply<E: Event>(pool: &PgPool, order_id: OrderId, event: &E) -> Outcome {
    checkout_testkit::handle(
        pool,
        &InventoryHandler,
        &checkout_testkit::from_order(order_id, event),
    )
    .await
    .expect("handled")
}

/// `(on_hand, reserved)` of a product.
pub(crate) async fn stock(pool: &PgPool, sku: &str) -> (i64, i64) {
    sqlx::query_as("SELECT on_hand, reserved FROM products WHERE sku = $1")
        .bind(sku)
        .fetch_one(pool)
        .await
        .expect("select product")
}

/// `(status, reason)` of the order's reservation, if any.
pub(crate) async fn reservation(
    pool: &PgPool,
    order_id: OrderId,
) -> Option<(String, Option<String>)> {
    sqlx::query_as("SELECT status, reason FROM reservations WHERE order_id = $1")
        .bind(order_id.as_uuid())
        .fetch_optional(pool)
        .await
        .expect("select reservation")
}

pub(crate) async fn lines(pool: &PgPool, order_id: OrderId) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT sku, quantity FROM reservation_lines WHERE order_id = $1 ORDER BY sku")
        .bind(order_id.as_uuid())
        .fetch_all(pool)
        .await
        .expect("select lines")
}

pub(crate) fn status(row: Option<(String, Option<String>)>) -> Option<String> {
    row.map(|(status, _)| status)
}

/// A product as `GET /products` and `PUT /products/{sku}` show it.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProductView {
    pub(crate) sku: String,
    pub(crate) name: String,
    pub(crate) unit_price: Amount,
    pub(crate) on_hand: i64,
    pub(crate) reserved: i64,
    pub(crate) available: i64,
    pub(crate) revision: i64,
}

/// One line of a reservation.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ItemView {
    pub(crate) sku: String,
    pub(crate) quantity: i64,
}

/// A reservation as `GET /reservations` shows it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReservationView {
    pub(crate) order_id: Uuid,
    pub(crate) status: String,
    pub(crate) reason: Option<String>,
    pub(crate) items: Vec<ItemView>,
    pub(crate) created_at: chrono::DateTime<chrono::Utc>,
    pub(crate) updated_at: chrono::DateTime<chrono::Utc>,
}

/// The invalid fields of a validation problem.
#[derive(Debug, Deserialize)]
pub(crate) struct ProblemView {
    pub(crate) errors: Vec<FieldView>,
}

/// One invalid field.
#[derive(Debug, Deserialize)]
pub(crate) struct FieldView {
    pub(crate) field: String,
}

/// `PUT /products/{sku}` with `body`, as an operator (`authorization` is
/// `Bearer <ADMIN_TOKEN>`): status and body.
pub(crate) async fn put(
    address: &str,
    authorization: &str,
    sku: &str,
    body: serde_json::Value,
) -> (u16, String) {
    let response = reqwest::Client::new()
        .put(format!("{address}/products/{sku}"))
        .header("authorization", authorization)
        .json(&body)
        .send()
        .await
        .expect("PUT");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

pub(crate) fn product(name: &str, amount: i64, on_hand: i64) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "unit_price": { "amount": amount, "currency": "USD" },
        "on_hand": on_hand,
    })
}

/// Parses an answer's body as `T`, naming the body when it is not one.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &str) -> T {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The share of `items` that writer `writer` of `writers` takes: every
/// `writers`-th, from its own index, so concurrent writers interleave.
pub(crate) fn deal<T: Clone>(items: &[T], writer: usize, writers: usize) -> Vec<T> {
    items
        .iter()
        .skip(writer)
        .step_by(writers)
        .cloned()
        .collect()
}
