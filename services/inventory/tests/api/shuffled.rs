//! Many orders' events, duplicated and shuffled.

use crate::support::{apply, reservation, status, stock};
use checkout_events::fixtures::build::{order_cancelled, order_confirmed, order_created};
use checkout_events::{OrderCancelled, OrderCreated, OrderId};
use checkout_testkit::with_database;
use inventory_service::{InventoryHandler, MIGRATOR, SERVICE};
use uuid::Uuid;

/// An order's events at Inventory that may arrive in either order.
enum Step {
    Created(OrderCreated),
    Cancelled(OrderCancelled),
}

#[tokio::test]
async fn events_duplicated_and_shuffled_leave_no_stock_held_for_cancelled_orders() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        let before = stock(&pool, "CB-001").await;
        let mut steps = Vec::new();
        let mut orders = Vec::new();
        for n in 0..12 {
            let order_id = OrderId::new();
            let cancel = n % 2 == 0;
            orders.push((order_id, cancel));
            for _ in 0..2 {
                steps.push((
                    order_id,
                    Step::Created(order_created(order_id, &[("CB-001", 3)], 100)),
                ));
                if cancel {
                    steps.push((
                        order_id,
                        Step::Cancelled(order_cancelled(order_id, "payment declined")),
                    ));
                }
            }
        }
        for (order_id, step) in checkout_testkit::shuffled(steps, 11) {
            match step {
                Step::Created(event) => apply(&pool, order_id, &event).await,
                Step::Cancelled(event) => apply(&pool, order_id, &event).await,
            };
        }
        // OrderConfirmed is caused by this service's own InventoryReserved,
        // so it can only follow the OrderCreated: deliver it last, twice.
        for (order_id, cancel) in &orders {
            if !cancel {
                apply(&pool, *order_id, &order_confirmed(*order_id, 100)).await;
                apply(&pool, *order_id, &order_confirmed(*order_id, 100)).await;
            }
        }

        let mut kept = 0;
        for (order_id, cancel) in &orders {
            let status = status(reservation(&pool, *order_id).await);
            if *cancel {
                assert!(
                    matches!(status.as_deref(), Some("RELEASED" | "VOIDED")),
                    "{order_id}: {status:?}"
                );
            } else {
                assert_eq!(status.as_deref(), Some("COMMITTED"), "{order_id}");
                kept += 3;
            }
        }
        let after = stock(&pool, "CB-001").await;
        assert_eq!(
            after,
            (before.0 - kept, before.1),
            "shipped once per confirmed order, nothing held"
        );
    })
    .await;
}

#[tokio::test]
async fn the_handler_applies_every_event_fixture_it_claims() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        checkout_testkit::contract::check_consumer(
            &pool,
            SERVICE.name,
            &InventoryHandler,
            async || Uuid::now_v7(),
        )
        .await;
    })
    .await;
}
