//! Reserving, shipping and releasing, one order at a time.

use crate::support::{apply, lines, reservation, status, stock};
use checkout_events::fixtures::build::{order_cancelled, order_confirmed, order_created};
use checkout_events::{InventoryFailed, InventoryReserved, OrderId, Sku};
use checkout_messaging::Outcome;
use checkout_testkit::{from_order, outbox_envelopes, outbox_event_types, with_database};
use inventory_service::{InventoryHandler, MIGRATOR};
use sqlx::PgPool;

#[tokio::test]
async fn an_order_that_fits_is_reserved_whole() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();

        let outcome = order(&pool, order_id, &[("KB-001", 2), ("MN-001", 1)]).await;

        assert_eq!(outcome, Outcome::Applied);
        assert_eq!(
            reservation_status(&pool, order_id).await.as_deref(),
            Some("RESERVED")
        );
        assert_eq!(stock(&pool, "KB-001").await, (100, 2));
        assert_eq!(stock(&pool, "MN-001").await, (20, 1));
        assert_eq!(
            lines(&pool, order_id).await,
            [("KB-001".to_owned(), 2), ("MN-001".to_owned(), 1)]
        );
        assert_eq!(outbox_event_types(&pool).await, ["InventoryReserved"]);
        let envelope = &outbox_envelopes(&pool).await[0];
        let reserved: InventoryReserved = envelope.decode().expect("an InventoryReserved");
        assert_eq!(reserved.order_id, order_id);
        assert_eq!(reserved.items.len(), 2);
        assert_eq!(envelope.source, "inventory-service");
        assert_eq!(envelope.correlation_id, order_id.as_uuid());
    })
    .await;
}

#[tokio::test]
async fn an_order_that_does_not_fit_reserves_nothing() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();

        order(&pool, order_id, &[("KB-001", 1), ("MN-001", 21)]).await;

        assert_eq!(
            reservation(&pool, order_id).await,
            Some((
                "FAILED".to_owned(),
                Some("only 20 of MN-001 in stock, 21 requested".to_owned())
            ))
        );
        assert_eq!(stock(&pool, "KB-001").await, (100, 0), "all or none");
        assert_eq!(stock(&pool, "MN-001").await, (20, 0));
        assert!(lines(&pool, order_id).await.is_empty());
        assert_eq!(outbox_event_types(&pool).await, ["InventoryFailed"]);
        let failed: InventoryFailed = outbox_envelopes(&pool).await[0]
            .decode()
            .expect("an InventoryFailed");
        assert_eq!(failed.sku, Some(Sku::parse("MN-001").expect("valid")));
    })
    .await;
}

#[tokio::test]
async fn an_unknown_sku_fails_the_order() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();

        order(&pool, order_id, &[("KB-001", 1), ("ZZ-999", 1)]).await;

        assert_eq!(
            reservation_status(&pool, order_id).await.as_deref(),
            Some("FAILED")
        );
        assert_eq!(stock(&pool, "KB-001").await, (100, 0));
        assert_eq!(outbox_event_types(&pool).await, ["InventoryFailed"]);
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_order_gives_its_stock_back_once() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();
        order(&pool, order_id, &[("MN-001", 20)]).await;
        assert_eq!(stock(&pool, "MN-001").await, (20, 20), "all of it held");

        cancel(&pool, order_id).await;
        cancel(&pool, order_id).await;

        assert_eq!(
            reservation(&pool, order_id).await,
            Some(("RELEASED".to_owned(), Some("payment declined".to_owned())))
        );
        assert_eq!(stock(&pool, "MN-001").await, (20, 0));
        assert_eq!(
            outbox_event_types(&pool).await,
            ["InventoryReserved", "InventoryReleased"]
        );
        // What was given back can be sold again.
        let next = OrderId::new();
        order(&pool, next, &[("MN-001", 20)]).await;
        assert_eq!(
            reservation_status(&pool, next).await.as_deref(),
            Some("RESERVED")
        );
    })
    .await;
}

#[tokio::test]
async fn a_confirmed_order_ships_its_stock() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();
        order(&pool, order_id, &[("KB-001", 2), ("CB-001", 3)]).await;

        confirm(&pool, order_id).await;
        confirm(&pool, order_id).await;
        // A late cancellation cannot un-ship what left the warehouse.
        cancel(&pool, order_id).await;

        assert_eq!(
            reservation_status(&pool, order_id).await.as_deref(),
            Some("COMMITTED")
        );
        assert_eq!(stock(&pool, "KB-001").await, (98, 0));
        assert_eq!(stock(&pool, "CB-001").await, (497, 0));
        assert_eq!(outbox_event_types(&pool).await, ["InventoryReserved"]);
    })
    .await;
}

#[tokio::test]
async fn a_failed_order_has_nothing_to_ship_or_release() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();
        order(&pool, order_id, &[("MN-001", 21)]).await;

        confirm(&pool, order_id).await;
        cancel(&pool, order_id).await;

        assert_eq!(
            reservation_status(&pool, order_id).await.as_deref(),
            Some("FAILED")
        );
        assert_eq!(stock(&pool, "MN-001").await, (20, 0));
        assert_eq!(outbox_event_types(&pool).await, ["InventoryFailed"]);
    })
    .await;
}

#[tokio::test]
async fn a_cancellation_before_the_order_leaves_a_tombstone() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();

        cancel(&pool, order_id).await;
        order(&pool, order_id, &[("KB-001", 1)]).await;

        assert_eq!(
            reservation_status(&pool, order_id).await.as_deref(),
            Some("VOIDED")
        );
        assert_eq!(stock(&pool, "KB-001").await, (100, 0));
        assert!(lines(&pool, order_id).await.is_empty());
        assert!(
            outbox_event_types(&pool).await.is_empty(),
            "nothing held or released"
        );
    })
    .await;
}

#[tokio::test]
async fn a_duplicate_order_is_reserved_once() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();
        let event = order_created(order_id, &[("LP-001", 5)], 100);

        // Two envelopes (new ids), so the inbox would not catch the second.
        apply(&pool, order_id, &event).await;
        apply(&pool, order_id, &event).await;

        assert_eq!(stock(&pool, "LP-001").await, (50, 5));
        assert_eq!(outbox_event_types(&pool).await, ["InventoryReserved"]);
    })
    .await;
}

#[tokio::test]
async fn a_cancellation_racing_its_order_releases_it() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();
        let created = from_order(order_id, &order_created(order_id, &[("KB-001", 4)], 100));
        let cancelled = from_order(order_id, &order_cancelled(order_id, "payment declined"));

        // The reservation is written but not committed when the
        // cancellation looks: it finds no row, and its tombstone claim waits.
        checkout_testkit::race(&pool, InventoryHandler, &created, cancelled).await;

        assert_eq!(
            reservation_status(&pool, order_id).await.as_deref(),
            Some("RELEASED")
        );
        assert_eq!(stock(&pool, "KB-001").await, (100, 0));
        assert_eq!(
            outbox_event_types(&pool).await,
            ["InventoryReserved", "InventoryReleased"]
        );
    })
    .await;
}

// The steps these cases take again and again, one order of 100 USD each.

async fn order(pool: &PgPool, order_id: OrderId, items: &[(&str, i64)]) -> Outcome {
    apply(pool, order_id, &order_created(order_id, items, 100)).await
}

async fn confirm(pool: &PgPool, order_id: OrderId) -> Outcome {
    apply(pool, order_id, &order_confirmed(order_id, 100)).await
}

async fn cancel(pool: &PgPool, order_id: OrderId) -> Outcome {
    apply(
        pool,
        order_id,
        &order_cancelled(order_id, "payment declined"),
    )
    .await
}

async fn reservation_status(pool: &PgPool, order_id: OrderId) -> Option<String> {
    status(reservation(pool, order_id).await)
}
