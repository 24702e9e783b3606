//! The local catalog follows Inventory's ProductUpdated events: stale
//! revisions are discarded, and new prices apply to the next order.

use crate::helpers::{AcceptedView, order_body, spawn_app, spawn_app_with};
use checkout_testkit::{TestDatabase, isolated_config};
use order_service::Settings;
use serde_json::json;
use std::time::{Duration, Instant};

async fn catalog_entry(app: &crate::helpers::TestApp, sku: &str) -> Option<serde_json::Value> {
    let (_, catalog) = app.get_json("/catalog").await;
    catalog
        .as_array()
        .and_then(|products| products.iter().find(|p| p["sku"] == sku).cloned())
}

#[tokio::test]
async fn a_stale_revision_is_discarded_and_orders_use_the_newest_price() {
    let app = spawn_app().await;
    app.add_product("KB-001", 4999, 1).await;
    // Revision 3 overtakes revision 2 on the way.
    app.add_product("KB-001", 5999, 3).await;
    app.add_product("KB-001", 5499, 2).await;

    let product = catalog_entry(&app, "KB-001").await.expect("known");
    assert_eq!(product["revision"], 3);
    assert_eq!(product["unit_price"]["amount"], 5999);

    let response = app
        .post_order(order_body(
            json!([{ "sku": "KB-001", "quantity": 2 }]),
            "tok_visa",
        ))
        .await;
    let body: AcceptedView = response.json().await.expect("an accepted order");
    let order = app.get_order(&body.id.to_string()).await;
    assert_eq!(order.items[0].unit_price.amount, 5999);
    assert_eq!(order.total.amount, 2 * 5999);
    app.cleanup().await;
}

/// Inventory and Order on one broker namespace: a price changed with
/// `PUT /products/{sku}` reaches the Order service through the outbox, the
/// broker and its consumer, and the next order is priced with it.
#[tokio::test]
async fn a_price_changed_at_inventory_prices_the_next_order() {
    let inventory_db = TestDatabase::create("inventory", &inventory_service::MIGRATOR)
        .await
        .expect("inventory database");
    let inventory_config = isolated_config(&inventory_service::SERVICE, &inventory_db);
    let order = spawn_app_with(
        Settings::default(),
        Some(&inventory_config.broker_namespace),
    )
    .await;
    let inventory = inventory_service::build(inventory_config.clone())
        .await
        .expect("inventory starts");
    let inventory_address = format!("http://127.0.0.1:{}", inventory.port());
    let inventory_stop = inventory.shutdown_token();
    let inventory_server = tokio::spawn(inventory.run_until_stopped());

    let wait_for_revision = |revision: i64| {
        let order = &order;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let entry = catalog_entry(order, "KB-001").await;
                if entry.as_ref().is_some_and(|p| p["revision"] == revision) {
                    return entry.unwrap_or_default();
                }
                assert!(
                    Instant::now() < deadline,
                    "revision {revision} never arrived: {entry:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // The start-up announcement.
    let announced = wait_for_revision(1).await;
    assert_eq!(announced["unit_price"]["amount"], 4999);

    let put = order
        .client
        .put(format!("{inventory_address}/products/KB-001"))
        .header(
            "authorization",
            checkout_testkit::admin_authorization(&inventory_config),
        )
        .json(&json!({
            "name": "Mechanical keyboard",
            "unit_price": { "amount": 3999, "currency": "USD" },
            "on_hand": 100,
        }))
        .send()
        .await
        .expect("PUT sent");
    assert_eq!(put.status(), 200);
    let changed = wait_for_revision(2).await;
    assert_eq!(changed["unit_price"]["amount"], 3999);

    let response = order
        .post_order(order_body(
            json!([{ "sku": "KB-001", "quantity": 1 }]),
            "tok_visa",
        ))
        .await;
    let body: AcceptedView = response.json().await.expect("an accepted order");
    let placed = order.get_order(&body.id.to_string()).await;
    assert_eq!(placed.total.amount, 3999);

    inventory_stop.cancel();
    inventory_server
        .await
        .expect("joined")
        .expect("inventory stopped cleanly");
    inventory_db.drop().await.expect("drop inventory database");
    // Deletes the shared namespace's topology too.
    order.cleanup().await;
}
