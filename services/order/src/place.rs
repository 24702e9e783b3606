//! Placing an order: the command behind `POST /orders`. It validates the
//! request, claims its Idempotency-Key, prices it from the local catalog,
//! and writes the PENDING order with its PaymentRequested and OrderCreated
//! in one transaction.

use crate::catalog::{self, Priced, PricingError};
use crate::idempotency::{self, Claim, Key};
use crate::request::{NewOrder, PlaceOrder};
use crate::saga::Status;
use crate::{OUTBOX, store};
use axum::http::StatusCode;
use checkout_events::{OrderCreated, OrderId, PaymentRequested};
use checkout_messaging::Cause;
use checkout_runtime::http::{FieldError, Problem};
use checkout_telemetry::propagation::span_context_map;
use sqlx::{PgConnection, PgPool};

/// An accepted order: new, or the one its Idempotency-Key placed before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placed {
    /// The order's id.
    pub(crate) id: OrderId,
    /// `PENDING` for a new order; for a replay, where the order is now.
    pub(crate) status: Status,
    /// Whether the key had placed it before.
    pub(crate) replayed: bool,
}

/// Why an order was not placed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlaceError {
    /// Fields are wrong (validation, or unknown SKUs and unpriceable lines).
    #[error("the order is invalid")]
    Invalid(Vec<FieldError>),
    /// The Idempotency-Key placed an order with another body.
    #[error("the Idempotency-Key was used for another request")]
    KeyReused,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<PricingError> for PlaceError {
    fn from(error: PricingError) -> Self {
        match error {
            PricingError::Invalid(errors) => PlaceError::Invalid(errors),
            PricingError::Database(error) => PlaceError::Database(error),
        }
    }
}

impl From<PlaceError> for Problem {
    fn from(error: PlaceError) -> Self {
        match error {
            PlaceError::Invalid(errors) => Problem::validation(errors),
            PlaceError::KeyReused => Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_type("/problems/idempotency-key-reused")
                .with_title("The Idempotency-Key was used for another request")
                .with_detail(
                    "this key already placed an order with a different body; \
                     use a new key for a new order",
                ),
            PlaceError::Database(error) => error.into(),
        }
    }
}

/// Places the order `request` asks for, once per Idempotency-Key `key`.
pub(crate) async fn place(
    pool: &PgPool,
    key: Option<&Key>,
    request: PlaceOrder,
) -> Result<Placed, PlaceError> {
    // The request as parsed, before validation consumes it: what a key is
    // matched on (spacing, field order and an explicit null do not count).
    let canonical = serde_json::to_string(&request).unwrap_or_default();
    let order = request.validate().map_err(PlaceError::Invalid)?;

    let mut tx = pool.begin().await?;
    let id = OrderId::new();
    if let Some(key) = key {
        match idempotency::claim(&mut tx, &order.customer_id, key, &canonical, id).await? {
            Claim::New => {}
            Claim::Replay(original) => {
                let status = store::status(&mut tx, original).await?;
                return Ok(Placed {
                    id: original,
                    status: status.unwrap_or(Status::Pending),
                    replayed: true,
                });
            }
            Claim::Mismatch => return Err(PlaceError::KeyReused),
        }
    }
    let priced = catalog::price(&mut tx, &order.lines).await?;
    write(&mut tx, id, order, priced).await?;
    checkout_messaging::outbox::commit(tx).await?;
    tracing::info!(order_id = %id, "order placed");
    Ok(Placed {
        id,
        status: Status::Pending,
        replayed: false,
    })
}

/// Writes the new order with the first entry of its timeline, and its
/// events: two statements (the order, its lines and the entry in one; both
/// events in one).
async fn write(
    tx: &mut PgConnection,
    id: OrderId,
    order: NewOrder,
    priced: Priced,
) -> Result<(), sqlx::Error> {
    let trace_context = span_context_map(&tracing::Span::current());
    let cause = Cause::Command {
        correlation_id: id.as_uuid(),
    };
    // The card token goes to Payment alone, in its own event; the outbox
    // drops it from its copy once the broker has it.
    let charge = PaymentRequested {
        order_id: id,
        customer_id: order.customer_id.clone(),
        amount: priced.total.clone(),
        card_token: order.card_token,
    };
    let charge = OUTBOX.prepare(&charge, cause)?;
    let event = OrderCreated {
        order_id: id,
        customer_id: order.customer_id,
        customer_email: order.customer_email,
        items: priced.items,
        total: priced.total,
    };
    let created = OUTBOX.prepare(&event, cause)?;
    store::insert(tx, &event, created.envelope(), &trace_context).await?;
    OUTBOX.emit_all(tx, &[charge, created]).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkout_testkit::{count_statements, with_database};

    #[tokio::test]
    async fn placing_an_order_is_three_statements_and_a_commit() {
        with_database("order", &crate::MIGRATOR, |pool| async move {
            sqlx::query(
                "INSERT INTO catalog (sku, name, unit_price, currency, revision) \
                 VALUES ('KB-001', 'Keyboard', 4999, 'USD', 1)",
            )
            .execute(&pool)
            .await
            .expect("a product");
            let request = || -> PlaceOrder {
                serde_json::from_value(serde_json::json!({
                    "customer_id": "c-42",
                    "items": [{ "sku": "KB-001", "quantity": 2 }],
                    "card_token": "tok_visa",
                }))
                .expect("a request")
            };
            let key = Key::parse(b"key-1").expect("a key");

            let (placed, statements) = count_statements(place(&pool, None, request())).await;
            let (keyed, keyed_statements) =
                count_statements(place(&pool, Some(&key), request())).await;

            let placed = placed.expect("placed");
            // The prices, the order with its lines and timeline entry, both
            // events, COMMIT (sqlx sends BEGIN unlogged, so it is not seen);
            // with a key, its claim (which prunes expired keys) first.
            assert_eq!((statements, keyed_statements), (4, 5));
            assert!(!keyed.expect("placed").replayed);
            let written: (i64, i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM order_lines WHERE order_id = $1), \
                        (SELECT count(*) FROM order_events WHERE order_id = $1), \
                        (SELECT count(*) FROM outbox \
                          WHERE (envelope->>'correlation_id')::uuid = $1)",
            )
            .bind(placed.id.as_uuid())
            .fetch_one(&pool)
            .await
            .expect("counts");
            assert_eq!(written, (1, 1, 2), "lines, timeline, events");
        })
        .await;
    }
}
