//! The Inventory handler and catalog against a real PostgreSQL, without a
//! broker: each test gets a fresh database with the demo catalog, applies
//! events through the handler the consumer runs, and checks reservations,
//! stock and the outbox. One test starts the whole service to check the
//! start-up announcement and the HTTP API.

use checkout_events::{
    Currency, Envelope, Event, InventoryFailed, InventoryReserved, LineItem, Money, OrderCancelled,
    OrderConfirmed, OrderCreated, OrderId, ProductUpdated, Quantity, Sku,
};
use checkout_messaging::{Cause, Outcome};
use checkout_testkit::{
    TestDatabase, admin_authorization, delete_topology, isolated_config, outbox_envelopes,
    outbox_event_types, with_database,
};
use inventory_service::catalog::{self, ProductChange};
use inventory_service::{InventoryHandler, MIGRATOR, SERVICE};
use sqlx::PgPool;
use uuid::Uuid;

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::parse("USD").expect("valid"))
}

fn created(order_id: OrderId, lines: &[(&str, i64)]) -> OrderCreated {
    let items: Vec<LineItem> = lines
        .iter()
        .map(|(sku, quantity)| LineItem {
            sku: Sku::parse(*sku).expect("valid"),
            quantity: Quantity::parse(*quantity).expect("valid"),
            unit_price: usd(100),
        })
        .collect();
    let total = usd(100 * lines.iter().map(|(_, q)| q).sum::<i64>());
    OrderCreated {
        order_id,
        customer_id: "c-42".to_owned(),
        customer_email: None,
        items,
        total,
    }
}

fn confirmed(order_id: OrderId) -> OrderConfirmed {
    OrderConfirmed {
        order_id,
        customer_id: "c-42".to_owned(),
        customer_email: None,
        total: usd(100),
    }
}

fn cancelled(order_id: OrderId) -> OrderCancelled {
    OrderCancelled {
        order_id,
        customer_id: "c-42".to_owned(),
        customer_email: None,
        reason: "payment declined".to_owned(),
    }
}

/// Applies `event` as the consumer does: the handler in one transaction,
/// committed when applied.
async fn apply<E: Event>(pool: &PgPool, order_id: OrderId, event: &E) -> Outcome {
    let envelope =
        Envelope::new(event, "order-service", order_id.as_uuid(), None).expect("serializable");
    checkout_testkit::handle(pool, &InventoryHandler, &envelope)
        .await
        .expect("handled")
}

/// `(on_hand, reserved)` of a product.
async fn stock(pool: &PgPool, sku: &str) -> (i64, i64) {
    sqlx::query_as("SELECT on_hand, reserved FROM products WHERE sku = $1")
        .bind(sku)
        .fetch_one(pool)
        .await
        .expect("select product")
}

/// `(status, reason)` of the order's reservation, if any.
async fn reservation(pool: &PgPool, order_id: OrderId) -> Option<(String, Option<String>)> {
    sqlx::query_as("SELECT status, reason FROM reservations WHERE order_id = $1")
        .bind(order_id.as_uuid())
        .fetch_optional(pool)
        .await
        .expect("select reservation")
}

async fn lines(pool: &PgPool, order_id: OrderId) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT sku, quantity FROM reservation_lines WHERE order_id = $1 ORDER BY sku")
        .bind(order_id.as_uuid())
        .fetch_all(pool)
        .await
        .expect("select lines")
}

fn status(row: Option<(String, Option<String>)>) -> Option<String> {
    row.map(|(status, _)| status)
}

#[tokio::test]
async fn an_order_that_fits_is_reserved_whole() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();

        let outcome = apply(
            &pool,
            order_id,
            &created(order_id, &[("KB-001", 2), ("MN-001", 1)]),
        )
        .await;

        assert_eq!(outcome, Outcome::Applied);
        assert_eq!(
            status(reservation(&pool, order_id).await).as_deref(),
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

        apply(
            &pool,
            order_id,
            &created(order_id, &[("KB-001", 1), ("MN-001", 21)]),
        )
        .await;

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

        apply(
            &pool,
            order_id,
            &created(order_id, &[("KB-001", 1), ("ZZ-999", 1)]),
        )
        .await;

        assert_eq!(
            status(reservation(&pool, order_id).await).as_deref(),
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
        apply(&pool, order_id, &created(order_id, &[("MN-001", 20)])).await;
        assert_eq!(stock(&pool, "MN-001").await, (20, 20), "all of it held");

        apply(&pool, order_id, &cancelled(order_id)).await;
        apply(&pool, order_id, &cancelled(order_id)).await;

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
        apply(&pool, next, &created(next, &[("MN-001", 20)])).await;
        assert_eq!(
            status(reservation(&pool, next).await).as_deref(),
            Some("RESERVED")
        );
    })
    .await;
}

#[tokio::test]
async fn a_confirmed_order_ships_its_stock() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();
        apply(
            &pool,
            order_id,
            &created(order_id, &[("KB-001", 2), ("CB-001", 3)]),
        )
        .await;

        apply(&pool, order_id, &confirmed(order_id)).await;
        apply(&pool, order_id, &confirmed(order_id)).await;
        // A late cancellation cannot un-ship what left the warehouse.
        apply(&pool, order_id, &cancelled(order_id)).await;

        assert_eq!(
            status(reservation(&pool, order_id).await).as_deref(),
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
        apply(&pool, order_id, &created(order_id, &[("MN-001", 21)])).await;

        apply(&pool, order_id, &confirmed(order_id)).await;
        apply(&pool, order_id, &cancelled(order_id)).await;

        assert_eq!(
            status(reservation(&pool, order_id).await).as_deref(),
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

        apply(&pool, order_id, &cancelled(order_id)).await;
        apply(&pool, order_id, &created(order_id, &[("KB-001", 1)])).await;

        assert_eq!(
            status(reservation(&pool, order_id).await).as_deref(),
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
        let event = created(order_id, &[("LP-001", 5)]);

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
        let created = Envelope::new(
            &created(order_id, &[("KB-001", 4)]),
            "order-service",
            order_id.as_uuid(),
            None,
        )
        .expect("serializable");
        let cancelled = Envelope::new(
            &cancelled(order_id),
            "order-service",
            order_id.as_uuid(),
            None,
        )
        .expect("serializable");

        // The reservation is written but not committed when the
        // cancellation looks: it finds no row, and its tombstone claim waits.
        checkout_testkit::race(&pool, InventoryHandler, &created, cancelled).await;

        assert_eq!(
            status(reservation(&pool, order_id).await).as_deref(),
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

#[tokio::test]
async fn the_announcement_carries_every_product() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        let announced = catalog::announce(&pool).await.expect("announced");

        assert_eq!(announced, 5);
        assert_eq!(outbox_event_types(&pool).await, ["ProductUpdated"; 5]);
        let envelopes = outbox_envelopes(&pool).await;
        let updates: Vec<ProductUpdated> = envelopes
            .iter()
            .map(|e| e.decode().expect("a ProductUpdated"))
            .collect();
        let skus: Vec<&str> = updates.iter().map(|u| u.sku.as_str()).collect();
        assert_eq!(skus, ["CB-001", "KB-001", "LP-001", "MN-001", "MS-001"]);
        let keyboard = &updates[1];
        assert_eq!(keyboard.name, "Mechanical keyboard");
        assert_eq!(keyboard.unit_price, usd(4999));
        assert_eq!(keyboard.revision, 1);
        assert!(
            envelopes
                .iter()
                .all(|e| e.correlation_id == envelopes[0].correlation_id),
            "one correlation id for the whole announcement"
        );
    })
    .await;
}

#[tokio::test]
async fn a_product_change_bumps_its_revision_and_is_announced() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        let sku = Sku::parse("LP-001").expect("valid");
        let change = ProductChange {
            name: None,
            unit_price: Some(usd(2999)),
            on_hand: None,
        };
        let cause = Cause::Command {
            correlation_id: Uuid::now_v7(),
        };

        let mut tx = pool.begin().await.expect("begin");
        let updated = catalog::update(&mut tx, &sku, &change, cause)
            .await
            .expect("updated");
        let missing = catalog::update(
            &mut tx,
            &Sku::parse("ZZ-999").expect("valid"),
            &change,
            cause,
        )
        .await
        .expect("no error");
        tx.commit().await.expect("commit");

        let updated = updated.expect("LP-001 exists");
        assert_eq!((updated.revision, &updated.unit_price), (2, &usd(2999)));
        assert_eq!(updated.name, "Desk lamp");
        assert_eq!(missing, None);
        assert_eq!(outbox_event_types(&pool).await, ["ProductUpdated"]);
        let emitted: ProductUpdated = outbox_envelopes(&pool).await[0]
            .decode()
            .expect("a ProductUpdated");
        assert_eq!(emitted, updated);
    })
    .await;
}

#[tokio::test]
async fn the_service_announces_its_catalog_and_serves_its_state() {
    let db = TestDatabase::create("inventory", &MIGRATOR)
        .await
        .expect("a test database");
    let config = isolated_config(&SERVICE, &db);
    let app = inventory_service::build(config.clone())
        .await
        .expect("the service starts (RabbitMQ at 127.0.0.1:5672)");
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    let announced = outbox_event_types(db.pool()).await;
    let order_id = OrderId::new();
    apply(db.pool(), order_id, &created(order_id, &[("MN-001", 3)])).await;

    let client = reqwest::Client::new();
    let authorization = admin_authorization(&config);
    let get = |path: String| {
        let request = client
            .get(format!("{address}{path}"))
            .header("authorization", &authorization)
            .send();
        async move {
            let response = request.await.expect("GET");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.expect("a JSON body");
            (status, body)
        }
    };
    let products = get("/products".to_owned()).await;
    let reservations = get(format!("/reservations?order_id={order_id}")).await;
    let none = get(format!("/reservations?order_id={}", Uuid::now_v7())).await;
    let invalid = get("/reservations".to_owned()).await;

    shutdown.cancel();
    let stopped = server.await.expect("joined");
    delete_topology(&config).await.expect("delete topology");
    db.drop().await.expect("drop the test database");
    stopped.expect("the service stopped cleanly");

    assert_eq!(announced, ["ProductUpdated"; 5]);
    assert_eq!(products.0, 200);
    let skus: Vec<&str> = products
        .1
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|p| p["sku"].as_str())
        .collect();
    assert_eq!(skus, ["CB-001", "KB-001", "LP-001", "MN-001", "MS-001"]);
    assert_eq!(
        products.1[3],
        serde_json::json!({
            "sku": "MN-001",
            "name": "27-inch monitor",
            "unit_price": { "amount": 24999, "currency": "USD" },
            "on_hand": 20,
            "reserved": 3,
            "available": 17,
            "revision": 1,
        })
    );
    assert_eq!(reservations.0, 200);
    let reservation = &reservations.1[0];
    assert_eq!(reservation["order_id"], order_id.to_string());
    assert_eq!(reservation["status"], "RESERVED");
    assert!(reservation["reason"].is_null());
    assert_eq!(
        reservation["items"],
        serde_json::json!([{ "sku": "MN-001", "quantity": 3 }])
    );
    assert_eq!(none, (200, serde_json::json!([])));
    assert_eq!(invalid.0, 422);
}

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
                steps.push((order_id, Step::Created(created(order_id, &[("CB-001", 3)]))));
                if cancel {
                    steps.push((order_id, Step::Cancelled(cancelled(order_id))));
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
                apply(&pool, *order_id, &confirmed(*order_id)).await;
                apply(&pool, *order_id, &confirmed(*order_id)).await;
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

/// `PUT /products/{sku}` with `body`, as an operator (`authorization` is
/// `Bearer <ADMIN_TOKEN>`): status and JSON answer.
async fn put(
    address: &str,
    authorization: &str,
    sku: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .put(format!("{address}/products/{sku}"))
        .header("authorization", authorization)
        .json(&body)
        .send()
        .await
        .expect("PUT");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

fn product(name: &str, amount: i64, on_hand: i64) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "unit_price": { "amount": amount, "currency": "USD" },
        "on_hand": on_hand,
    })
}

#[tokio::test]
async fn products_are_created_and_changed_with_put_and_each_change_is_announced() {
    let service = checkout_testkit::spawn(&SERVICE, &MIGRATOR, inventory_service::build).await;
    let pool = service.db.pool().clone();
    let announced = outbox_event_types(&pool).await.len();
    let address = service.address.clone();
    let authorization = service.admin_authorization();

    let (status, new) = put(
        &address,
        &authorization,
        "HD-001",
        product("Headset", 7999, 30),
    )
    .await;
    assert_eq!(status, 201, "{new}");
    assert_eq!(
        (new["revision"].as_i64(), new["available"].as_i64()),
        (Some(1), Some(30))
    );
    let (status, again) = put(
        &address,
        &authorization,
        "HD-001",
        product("Headset", 7999, 30),
    )
    .await;
    assert_eq!(
        (status, again["revision"].as_i64()),
        (200, Some(1)),
        "unchanged: no new revision"
    );
    let (status, repriced) = put(
        &address,
        &authorization,
        "HD-001",
        product("Headset", 6999, 30),
    )
    .await;
    assert_eq!((status, repriced["revision"].as_i64()), (200, Some(2)));
    let (_, restocked) = put(
        &address,
        &authorization,
        "HD-001",
        product("Headset", 6999, 45),
    )
    .await;
    assert_eq!(
        (
            restocked["revision"].as_i64(),
            restocked["on_hand"].as_i64()
        ),
        (Some(3), Some(45))
    );

    let events: Vec<ProductUpdated> = outbox_envelopes(&pool).await[announced..]
        .iter()
        .map(|e| e.decode().expect("a ProductUpdated"))
        .collect();
    let revisions: Vec<(i64, i64)> = events
        .iter()
        .map(|e| (e.revision, e.unit_price.amount))
        .collect();
    assert_eq!(revisions, [(1, 7999), (2, 6999), (3, 6999)]);

    // Stock cannot go below what orders hold.
    let order_id = OrderId::new();
    apply(&pool, order_id, &created(order_id, &[("HD-001", 5)])).await;
    let (status, problem) = put(
        &address,
        &authorization,
        "HD-001",
        product("Headset", 6999, 4),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "on_hand", "{problem}");

    let invalid = serde_json::json!({
        "name": " ",
        "unit_price": { "amount": -1, "currency": "usd" },
        "on_hand": -5,
    });
    let (status, problem) = put(&address, &authorization, "bad sku", invalid).await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "sku",
            "name",
            "unit_price.amount",
            "unit_price.currency",
            "on_hand"
        ]
    );
    service.stop().await;
}

#[tokio::test]
async fn the_http_api_is_documented_and_random_input_gets_no_server_error() {
    let service = checkout_testkit::spawn(&SERVICE, &MIGRATOR, inventory_service::build).await;
    checkout_testkit::api::check_openapi(
        &service.address,
        &["GET /products", "PUT /products/{sku}", "GET /reservations"],
    )
    .await;
    let samples = vec![product("Desk lamp", 3499, 50), product("New thing", 100, 1)];
    let authorization = service.admin_authorization();
    let report =
        checkout_testkit::fuzz::fuzz(&service.address, Some(&authorization), samples).await;
    assert_eq!(report.server_errors, 0);
    service.stop().await;
}

#[tokio::test]
async fn the_catalog_is_changed_and_reservations_shown_only_with_the_admin_token() {
    let service = checkout_testkit::spawn(&SERVICE, &MIGRATOR, inventory_service::build).await;
    let authorization = service.admin_authorization();
    checkout_testkit::api::check_admin(
        &service.address,
        &authorization,
        &["PUT /products/{sku}", "GET /reservations"],
    )
    .await;
    let address = service.address.clone();
    let client = reqwest::Client::new();
    let before = products(&client, &address).await;

    let anonymous = client
        .put(format!("{address}/products/KB-001"))
        .json(&product("Free keyboard", 0, 1_000_000))
        .send()
        .await
        .expect("sent");
    let challenge = anonymous.headers().get("www-authenticate").cloned();
    let wrong = client
        .put(format!("{address}/products/KB-001"))
        .header("authorization", "Bearer not-the-admin-token-at-all")
        .json(&product("Free keyboard", 0, 1_000_000))
        .send()
        .await
        .expect("sent");
    let after_refused = products(&client, &address).await;
    let (admitted, changed) = put(
        &address,
        &authorization,
        "KB-001",
        product("Keyboard", 4599, 90),
    )
    .await;
    let reservations = client
        .get(format!(
            "{address}/reservations?order_id={}",
            Uuid::now_v7()
        ))
        .header("authorization", &authorization)
        .send()
        .await
        .expect("sent");
    let reservations_status = reservations.status();
    service.stop().await;

    assert_eq!(anonymous.status(), 401);
    assert!(challenge.is_some_and(|c| c.as_bytes().starts_with(b"Bearer")));
    assert_eq!(wrong.status(), 401);
    assert_eq!(after_refused, before, "a refused PUT changed nothing");
    assert_eq!(admitted, 200, "{changed}");
    assert_eq!(changed["unit_price"]["amount"], 4599);
    assert_eq!(reservations_status, 200);
}

#[tokio::test]
async fn without_an_admin_token_the_catalog_cannot_be_changed_and_says_how_to_enable_it() {
    let service = checkout_testkit::spawn_with(
        &SERVICE,
        &MIGRATOR,
        |config| config.admin_token = None,
        inventory_service::build,
    )
    .await;
    let off = checkout_testkit::api::check_admin_off(&service.address).await;
    let listed = reqwest::get(format!("{}/products", service.address))
        .await
        .expect("sent")
        .status();
    service.stop().await;
    assert_eq!(
        off, 2,
        "PUT /products/{{sku}} and GET /reservations are off"
    );
    assert_eq!(listed, 200, "the catalog is still public");
}

/// `GET /products`, public.
async fn products(client: &reqwest::Client, address: &str) -> serde_json::Value {
    client
        .get(format!("{address}/products"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}
