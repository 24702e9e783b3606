//! A hot SKU: many orders for the last units, applied concurrently, never
//! sell more than the warehouse has. Each order of one SKU is claimed and
//! held by one conditional statement (`store::hold_one`); these tests are
//! what says that statement cannot oversell.

use crate::support::{apply, deal, stock};
use checkout_events::fixtures::build::order_created;
use checkout_events::{Envelope, OrderId};
use checkout_messaging::Handler as _;
use checkout_testkit::{TestDatabase, from_order, isolated_config, publish, serve, with_database};
use inventory_service::{InventoryHandler, MIGRATOR};
use sqlx::PgPool;
use std::time::{Duration, Instant};

/// The SKU on sale; not in the demo catalog, so its stock is the test's.
const SKU: &str = "FLASH-001";

/// Puts `on_hand` units of [`SKU`] on sale.
async fn stock_up(pool: &PgPool, on_hand: i64) {
    sqlx::query(
        "INSERT INTO products (sku, name, unit_price, currency, on_hand) \
         VALUES ($1, 'Flash sale', 100, 'USD', $2)",
    )
    .bind(SKU)
    .bind(on_hand)
    .execute(pool)
    .await
    .expect("insert the product on sale");
}

/// An OrderCreated for one unit of [`SKU`].
fn one_unit(order_id: OrderId) -> Envelope {
    from_order(order_id, &order_created(order_id, &[(SKU, 1)], 100))
}

/// How many reservations have each status: `(RESERVED, FAILED)`, and
/// whether every FAILED one says why and every RESERVED one holds its unit.
async fn outcomes(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'RESERVED' \
                    AND (SELECT sum(quantity) FROM reservation_lines l \
                         WHERE l.order_id = r.order_id) = 1), \
                count(*) FILTER (WHERE status = 'FAILED' AND reason IS NOT NULL \
                    AND NOT EXISTS (SELECT FROM reservation_lines l \
                                    WHERE l.order_id = r.order_id)) \
         FROM reservations r",
    )
    .fetch_one(pool)
    .await
    .expect("count reservations")
}

/// The outbox's replies: `(InventoryReserved, InventoryFailed)`.
async fn replies(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE event_type = 'InventoryReserved'), \
                count(*) FILTER (WHERE event_type = 'InventoryFailed') \
         FROM outbox",
    )
    .fetch_one(pool)
    .await
    .expect("count replies")
}

#[tokio::test]
async fn two_orders_for_the_last_unit_reserve_it_once() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        stock_up(&pool, 1).await;
        let (first, second) = (OrderId::new(), OrderId::new());

        // The first holds the unit, uncommitted; the second waits for the
        // product's lock, then finds the unit gone.
        checkout_testkit::race(&pool, InventoryHandler, &one_unit(first), one_unit(second)).await;

        assert_eq!(outcomes(&pool).await, (1, 1));
        assert_eq!(stock(&pool, SKU).await, (1, 1));
        assert_eq!(replies(&pool).await, (1, 1));
        let reason: Option<String> =
            sqlx::query_scalar("SELECT reason FROM reservations WHERE order_id = $1")
                .bind(second.as_uuid())
                .fetch_one(&pool)
                .await
                .expect("the second reservation");
        assert_eq!(
            reason.as_deref(),
            Some("FLASH-001 is out of stock, 1 requested")
        );
    })
    .await;
}

#[tokio::test]
async fn a_flash_sale_sells_exactly_the_stock() {
    const UNITS: usize = 50;
    // Concurrent transactions of several orders each, as consumer batches
    // on several replicas apply them.
    const WRITERS: usize = 4;
    const PER_TRANSACTION: usize = 5;
    with_database("inventory", &MIGRATOR, |pool| async move {
        stock_up(&pool, UNITS as i64).await;
        let orders: Vec<Envelope> = (0..2 * UNITS).map(|_| one_unit(OrderId::new())).collect();

        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let pool = pool.clone();
                let mine = deal(&orders, writer, WRITERS);
                tokio::spawn(async move {
                    for batch in mine.chunks(PER_TRANSACTION) {
                        let mut tx = pool.begin().await.expect("begin");
                        for envelope in batch {
                            InventoryHandler
                                .handle(envelope, &mut tx)
                                .await
                                .expect("handled");
                        }
                        tx.commit().await.expect("commit");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.expect("the writer finished");
        }

        assert_eq!(outcomes(&pool).await, (UNITS as i64, UNITS as i64));
        assert_eq!(stock(&pool, SKU).await, (UNITS as i64, UNITS as i64));
        assert_eq!(replies(&pool).await, (UNITS as i64, UNITS as i64));
        // What is sold out stays sold out.
        let late = OrderId::new();
        apply(&pool, late, &order_created(late, &[(SKU, 1)], 100)).await;
        assert_eq!(stock(&pool, SKU).await, (UNITS as i64, UNITS as i64));
    })
    .await;
}

#[tokio::test]
async fn a_flash_sale_through_the_consumer_sells_exactly_the_stock() {
    const UNITS: usize = 20;
    let db = TestDatabase::create("inventory", &MIGRATOR)
        .await
        .expect("a test database");
    stock_up(db.pool(), UNITS as i64).await;
    let config = isolated_config(&inventory_service::SERVICE, &db);
    checkout_testkit::provision(&config)
        .await
        .expect("the broker namespace (RabbitMQ at AMQP_URL)");
    // All queued before the service starts, so its consumer takes them
    // in batches.
    for _ in 0..2 * UNITS {
        let order_id = OrderId::new();
        publish(&config, &order_created(order_id, &[(SKU, 1)], 100))
            .await
            .expect("published");
    }

    let app = inventory_service::build(config.clone())
        .await
        .expect("the service starts");
    let (_address, serving) = serve(app).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let decided = loop {
        let decided = outcomes(db.pool()).await;
        if decided.0 + decided.1 == 2 * UNITS as i64 || Instant::now() > deadline {
            break decided;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let sold = stock(db.pool(), SKU).await;
    let replied = replies(db.pool()).await;
    serving.stop(&config, db).await;

    assert_eq!(decided, (UNITS as i64, UNITS as i64));
    assert_eq!(sold, (UNITS as i64, UNITS as i64));
    assert_eq!(replied, (UNITS as i64, UNITS as i64));
}
