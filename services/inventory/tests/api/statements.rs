//! What each event costs the Inventory database, in statements (the
//! handler's own; the consumer adds a `SAVEPOINT` per event and a `BEGIN`,
//! an inbox `INSERT` and a `COMMIT` per batch). A change that adds one
//! fails here, and says so.

use crate::support::reservation;
use checkout_events::OrderId;
use checkout_events::fixtures::build::{order_cancelled, order_confirmed, order_created};
use checkout_testkit::{from_order, handler_statements, with_database};
use inventory_service::{InventoryHandler, MIGRATOR};

#[tokio::test]
async fn each_event_of_an_order_costs_the_fewest_statements() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        let cost = |envelope| {
            let pool = pool.clone();
            async move { handler_statements(&pool, &InventoryHandler, &envelope).await }
        };
        let (shipped, released, mixed, short) = (
            OrderId::new(),
            OrderId::new(),
            OrderId::new(),
            OrderId::new(),
        );
        let one_sku = |id| from_order(id, &order_created(id, &[("KB-001", 1)], 100));

        let reserve_one = cost(one_sku(shipped)).await;
        cost(one_sku(released)).await;
        let two_skus = order_created(mixed, &[("KB-001", 1), ("MN-001", 1)], 100);
        let reserve_two = cost(from_order(mixed, &two_skus)).await;
        let too_many = order_created(short, &[("MN-001", 21)], 100);
        let out_of_stock = cost(from_order(short, &too_many)).await;
        let ship = cost(from_order(shipped, &order_confirmed(shipped, 100))).await;
        let cancelled = from_order(released, &order_cancelled(released, "declined"));
        let release = cost(cancelled).await;

        assert_eq!(
            (reserve_one, reserve_two, out_of_stock, ship, release),
            // One SKU: claim and hold in one statement, the outbox row.
            // Two SKUs: the claim, the products locked in SKU order, the
            // hold, the outbox row. Out of stock (one SKU): the statement
            // that found too little, the FAILED status, the outbox row.
            // Ship: one statement settles the reservation and its stock.
            // Release: the same, and the outbox row.
            (2, 4, 3, 1, 2)
        );
        // The one statement read what was left (20, less the mixed order's
        // unit) for the reason.
        assert_eq!(
            reservation(&pool, short).await,
            Some((
                "FAILED".to_owned(),
                Some("only 19 of MN-001 in stock, 21 requested".to_owned())
            ))
        );
    })
    .await;
}
