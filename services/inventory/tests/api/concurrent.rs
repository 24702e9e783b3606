//! Orders of several SKUs, reserved, shipped and released by concurrent
//! transactions: the lock order (reservation row, then products in SKU
//! order, on every path) leaves no two transactions waiting for each other
//! in a circle — PostgreSQL would abort one with a deadlock error, and the
//! handler would fail — and the stock adds up afterwards.

use crate::support::{deal, stock};
use checkout_events::OrderId;
use checkout_events::fixtures::build::{order_cancelled, order_confirmed, order_created};
use checkout_testkit::{from_order, handle, with_database};
use inventory_service::{InventoryHandler, MIGRATOR};
use std::collections::BTreeMap;

/// Demo-catalog SKUs with their stock; each order takes three of them, in
/// an order of its own (never sorted), one unit each.
const SKUS: [(&str, i64); 4] = [
    ("LP-001", 50),
    ("KB-001", 100),
    ("CB-001", 500),
    ("MS-001", 100),
];

/// What becomes of an order after it is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Shipped,
    Released,
    Held,
}

/// One order of the test: its id, lines and fate.
#[derive(Debug, Clone)]
struct Order {
    id: OrderId,
    lines: Vec<(&'static str, i64)>,
    fate: Fate,
}

#[tokio::test]
async fn concurrent_reservations_shipments_and_releases_keep_the_stock_exact() {
    const ORDERS: usize = 48;
    const WRITERS: usize = 4;
    with_database("inventory", &MIGRATOR, |pool| async move {
        let orders: Vec<Order> = (0..ORDERS)
            .map(|n| Order {
                id: OrderId::new(),
                lines: (0..3).map(|k| (SKUS[(n + k) % 4].0, 1)).collect(),
                fate: [Fate::Shipped, Fate::Released, Fate::Held][n % 3],
            })
            .collect();

        // Each writer reserves its orders and settles each at once, one
        // transaction per event, as the consumer applies them when they
        // arrive alone.
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let pool = pool.clone();
                let mine = deal(&orders, writer, WRITERS);
                tokio::spawn(async move {
                    for Order { id, lines, fate } in mine {
                        let created = from_order(id, &order_created(id, &lines, 100));
                        handle(&pool, &InventoryHandler, &created)
                            .await
                            .expect("reserved");
                        let settled = match fate {
                            Fate::Shipped => from_order(id, &order_confirmed(id, 100)),
                            Fate::Released => from_order(id, &order_cancelled(id, "declined")),
                            Fate::Held => continue,
                        };
                        handle(&pool, &InventoryHandler, &settled)
                            .await
                            .expect("settled");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.expect("the writer finished");
        }

        let mut expected: BTreeMap<&str, (i64, i64)> =
            SKUS.into_iter().map(|(sku, n)| (sku, (n, 0))).collect();
        for Order { lines, fate, .. } in &orders {
            for (sku, quantity) in lines {
                let (on_hand, reserved) = expected.get_mut(sku).expect("a known SKU");
                match fate {
                    Fate::Shipped => *on_hand -= quantity,
                    Fate::Held => *reserved += quantity,
                    Fate::Released => {}
                }
            }
        }
        for (sku, want) in expected {
            assert_eq!(stock(&pool, sku).await, want, "{sku}");
        }
        let statuses: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM reservations GROUP BY status ORDER BY status",
        )
        .fetch_all(&pool)
        .await
        .expect("statuses");
        assert_eq!(
            statuses,
            [
                ("COMMITTED".to_owned(), 16),
                ("RELEASED".to_owned(), 16),
                ("RESERVED".to_owned(), 16)
            ]
        );
    })
    .await;
}
