//! What each reply costs the Order database, in statements (the handler's
//! own; the consumer adds a `SAVEPOINT` per event and a `BEGIN`, an inbox
//! `INSERT` and a `COMMIT` per batch). Placing an order is counted in
//! `src/place.rs`.

use crate::helpers::spawn_app;
use crate::saga::placed_order;
use checkout_events::fixtures::build::{inventory_reserved, payment_captured};
use checkout_events::{Currency, Envelope, Event, Money, PaymentRefunded};
use checkout_testkit::handler_statements;
use order_service::handler::OrderHandler;
use sqlx::PgPool;
use uuid::Uuid;

/// The statements `event` costs the handler.
async fn cost<E: Event>(pool: &PgPool, event: &E) -> usize {
    let envelope = Envelope::new(event, "test", Uuid::now_v7(), None).expect("envelope");
    handler_statements(pool, &OrderHandler, &envelope).await
}

#[tokio::test]
async fn each_reply_costs_the_fewest_statements() {
    let app = spawn_app().await;
    let id = placed_order(&app).await;
    let pool = app.db.pool();

    // The lock, then the saga with the reply's timeline entry.
    let first = cost(pool, &payment_captured(id, 4999)).await;
    // The lock, the saga with both timeline entries (the reply and
    // OrderConfirmed), OrderConfirmed's outbox row.
    let deciding = cost(pool, &inventory_reserved(id)).await;
    // A duplicate reply: the lock alone.
    let duplicate = cost(pool, &inventory_reserved(id)).await;
    // A compensation: the lock and its timeline entry.
    let refund = PaymentRefunded {
        order_id: id,
        payment_id: Uuid::now_v7(),
        amount: Money::new(4999, Currency::parse("USD").expect("USD")),
    };
    let refunded = cost(pool, &refund).await;
    let order = app.get_order(&id.to_string()).await;
    app.cleanup().await;

    assert_eq!((first, deciding, duplicate, refunded), (2, 3, 1, 2));
    assert_eq!(order.status, "CONFIRMED");
}
