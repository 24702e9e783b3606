//! Many orders' events, duplicated and shuffled.

use crate::support::{apply, payments};
use checkout_events::fixtures::build::{order_cancelled, payment_requested};
use checkout_events::{OrderCancelled, OrderId, PaymentRequested};
use checkout_testkit::{outbox_envelopes, with_database};
use payment_service::MIGRATOR;

/// An order's events at Payment, in causal order.
enum Step {
    Created(PaymentRequested),
    Cancelled(OrderCancelled),
}

#[tokio::test]
async fn events_duplicated_and_shuffled_leave_no_money_held_for_cancelled_orders() {
    with_database("payment", &MIGRATOR, |pool| async move {
        // (card, cancelled?) for each order; every event delivered twice.
        let cases = [
            ("tok_visa", false),
            ("tok_visa", true),
            ("tok_decline", true),
        ];
        let mut steps = Vec::new();
        let mut orders = Vec::new();
        for _ in 0..4 {
            for (card, cancel) in cases {
                let order_id = OrderId::new();
                orders.push((order_id, card, cancel));
                for _ in 0..2 {
                    steps.push((
                        order_id,
                        Step::Created(payment_requested(order_id, 9998, card)),
                    ));
                    if cancel {
                        steps.push((
                            order_id,
                            Step::Cancelled(order_cancelled(order_id, "out of stock")),
                        ));
                    }
                }
            }
        }
        for (order_id, step) in checkout_testkit::shuffled(steps, 7) {
            match step {
                Step::Created(event) => apply(&pool, order_id, &event).await,
                Step::Cancelled(event) => apply(&pool, order_id, &event).await,
            };
        }

        let events = outbox_envelopes(&pool).await;
        let count = |order_id: OrderId, event_type: &str| {
            events
                .iter()
                .filter(|e| {
                    e.event_type == event_type && e.data["order_id"] == serde_json::json!(order_id)
                })
                .count()
        };
        for (order_id, card, cancel) in orders {
            let rows = payments(&pool, order_id).await;
            assert_eq!(rows.len(), 1, "one payment row per order");
            let captured = count(order_id, "PaymentCaptured");
            let refunded = count(order_id, "PaymentRefunded");
            assert!(
                captured <= 1 && refunded <= 1,
                "{order_id}: captured {captured}, refunded {refunded}"
            );
            match (card, cancel) {
                // As in order: captured once, never refunded.
                ("tok_visa", false) => {
                    assert_eq!(
                        (rows[0].status.as_str(), captured, refunded),
                        ("CAPTURED", 1, 0)
                    );
                }
                // In order it would be REFUNDED; when the cancel came first
                // it is VOIDED and nothing was captured. Either way no money is held.
                ("tok_visa", true) => {
                    assert!(matches!(rows[0].status.as_str(), "REFUNDED" | "VOIDED"));
                    assert_eq!(captured, refunded, "{order_id}: every capture refunded");
                }
                _ => {
                    assert!(matches!(rows[0].status.as_str(), "DECLINED" | "VOIDED"));
                    assert_eq!((captured, refunded), (0, 0));
                }
            }
        }
    })
    .await;
}
