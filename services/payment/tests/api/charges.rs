//! Charges, refunds and tombstones, one order at a time.

use crate::support::{apply, payments};
use checkout_events::fixtures::build::{order_cancelled, payment_requested, usd};
use checkout_events::{OrderId, PaymentCaptured, PaymentRefunded};
use checkout_messaging::Outcome;
use checkout_testkit::{from_order, outbox_envelopes, outbox_event_types, with_database};
use payment_service::{MIGRATOR, PaymentHandler};
use sqlx::PgPool;
use uuid::Uuid;

#[tokio::test]
async fn a_good_card_is_captured() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();

        let outcome = pay(&pool, order_id, "tok_visa").await;

        assert_eq!(outcome, Outcome::Applied);
        let rows = payments(&pool, order_id).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, "CAPTURED");
        assert_eq!((rows[0].amount, rows[0].currency.as_str()), (9998, "USD"));
        assert_eq!(rows[0].reason, None);
        assert_eq!(outbox_event_types(&pool).await, ["PaymentCaptured"]);
        let envelopes = outbox_envelopes(&pool).await;
        let captured: PaymentCaptured = envelopes[0].decode().expect("a PaymentCaptured");
        assert_eq!(captured.order_id, order_id);
        assert_eq!(captured.payment_id, rows[0].id);
        assert_eq!(captured.amount, usd(9998));
        assert_eq!(envelopes[0].source, "payment-service");
        assert_eq!(envelopes[0].correlation_id, order_id.as_uuid());
        assert!(envelopes[0].causation_id.is_some());
    })
    .await;
}

#[tokio::test]
async fn the_decline_token_is_declined() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();

        pay(&pool, order_id, "tok_decline").await;

        let rows = payments(&pool, order_id).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, "DECLINED");
        assert_eq!(rows[0].reason.as_deref(), Some("card declined"));
        assert_eq!(outbox_event_types(&pool).await, ["PaymentFailed"]);
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_order_is_refunded_once() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();
        pay(&pool, order_id, "tok_visa").await;

        cancel(&pool, order_id).await;
        cancel(&pool, order_id).await;

        let rows = payments(&pool, order_id).await;
        assert_eq!(rows[0].status, "REFUNDED");
        assert_eq!(rows[0].reason.as_deref(), Some("out of stock"));
        assert_eq!(
            outbox_event_types(&pool).await,
            ["PaymentCaptured", "PaymentRefunded"]
        );
        let refunded: PaymentRefunded = outbox_envelopes(&pool).await[1]
            .decode()
            .expect("a PaymentRefunded");
        assert_eq!(refunded.payment_id, rows[0].id);
        assert_eq!(refunded.amount, usd(9998));
    })
    .await;
}

#[tokio::test]
async fn a_declined_payment_has_nothing_to_refund() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();
        pay(&pool, order_id, "tok_decline").await;

        cancel(&pool, order_id).await;

        assert_eq!(payments(&pool, order_id).await[0].status, "DECLINED");
        assert_eq!(outbox_event_types(&pool).await, ["PaymentFailed"]);
    })
    .await;
}

#[tokio::test]
async fn a_cancellation_before_the_order_leaves_a_tombstone() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();

        cancel(&pool, order_id).await;
        pay(&pool, order_id, "tok_visa").await;

        let rows = payments(&pool, order_id).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, "VOIDED");
        assert_eq!((rows[0].amount, rows[0].currency.as_str()), (0, "XXX"));
        assert!(
            outbox_event_types(&pool).await.is_empty(),
            "nothing is charged or refunded"
        );
    })
    .await;
}

#[tokio::test]
async fn a_duplicate_order_is_charged_once() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();
        let event = payment_requested(order_id, 9998, "tok_visa");

        // Two envelopes (new ids), so the inbox would not catch the second.
        apply(&pool, order_id, &event).await;
        let first = payments(&pool, order_id).await;
        apply(&pool, order_id, &event).await;

        let rows = payments(&pool, order_id).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id, first[0].id);
        assert_eq!(outbox_event_types(&pool).await, ["PaymentCaptured"]);
    })
    .await;
}

#[tokio::test]
async fn other_events_are_ignored() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();
        let event = PaymentCaptured {
            order_id,
            payment_id: Uuid::now_v7(),
            amount: usd(1),
        };

        assert_eq!(apply(&pool, order_id, &event).await, Outcome::Ignored);
        assert!(payments(&pool, order_id).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_cancellation_racing_its_order_refunds_it() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();
        let created = from_order(order_id, &payment_requested(order_id, 9998, "tok_visa"));
        let cancelled = from_order(order_id, &order_cancelled(order_id, "out of stock"));

        // The charge is written but not committed when the cancellation
        // looks: it finds no row, and its tombstone claim waits for the charge.
        checkout_testkit::race(&pool, PaymentHandler::default(), &created, cancelled).await;

        assert_eq!(payments(&pool, order_id).await[0].status, "REFUNDED");
        assert_eq!(
            outbox_event_types(&pool).await,
            ["PaymentCaptured", "PaymentRefunded"]
        );
    })
    .await;
}

// The steps these cases take again and again: an order of 99.98 USD paid
// with `token`, and its cancellation.

async fn pay(pool: &PgPool, order_id: OrderId, token: &str) -> Outcome {
    apply(pool, order_id, &payment_requested(order_id, 9998, token)).await
}

async fn cancel(pool: &PgPool, order_id: OrderId) -> Outcome {
    apply(pool, order_id, &order_cancelled(order_id, "out of stock")).await
}
