//! The order deadline: an order no reply decides in time is cancelled,
//! once, naming the leg it waited for, even with several replicas sweeping.

use crate::helpers::{CompensationView, OrderView, TestApp, spawn_app_with};
use crate::saga::placed_order;
use checkout_events::fixtures::build::payment_captured;
use checkout_events::{
    Currency, InventoryReleased, InventoryReserved, Money, OrderId, PaymentRefunded,
};
use order_service::Settings;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use uuid::Uuid;

fn settings(deadline: Duration) -> Settings {
    Settings {
        order_deadline: deadline,
        ..Settings::default()
    }
}

/// Polls `GET /orders/{id}` until it is not PENDING (or fails the test).
async fn wait_until_decided(app: &TestApp, id: OrderId) -> OrderView {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let order = app.get_order(&id.to_string()).await;
        if order.status != "PENDING" {
            return order;
        }
        assert!(
            Instant::now() < deadline,
            "order {id} still pending: {order:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn cancellations(outbox: &[(String, Value)], id: OrderId) -> usize {
    outbox
        .iter()
        .filter(|(t, e)| t == "OrderCancelled" && e["data"]["order_id"] == json!(id))
        .count()
}

#[tokio::test]
async fn a_pending_order_is_cancelled_at_its_deadline_and_late_replies_decide_nothing() {
    let app = spawn_app_with(settings(Duration::from_millis(300)), None).await;
    let id = placed_order(&app).await;
    app.deliver(&payment_captured(id, 4999)).await;

    let order = wait_until_decided(&app, id).await;
    assert_eq!(order.status, "CANCELLED", "{order:?}");
    assert_eq!(
        order.cancel_reason.as_deref(),
        Some("timed out waiting for inventory")
    );
    assert_eq!(
        order.compensation,
        Some(CompensationView::new("PENDING", "NONE")),
        "the captured payment waits for its refund"
    );
    let outbox = app.outbox().await;
    assert_eq!(cancellations(&outbox, id), 1, "one OrderCancelled");
    let cancelled = outbox
        .iter()
        .find(|(t, _)| t == "OrderCancelled")
        .map(|(_, e)| e)
        .expect("the cancellation");
    assert_eq!(cancelled["correlation_id"], json!(id));
    assert_eq!(
        cancelled["data"]["reason"],
        "timed out waiting for inventory"
    );

    // The late reservation is recorded and decides nothing; the
    // compensations the cancellation caused show up on the order.
    let late = app
        .deliver(&InventoryReserved {
            order_id: id,
            items: vec![],
        })
        .await;
    let amount = Money::new(4999, Currency::parse("USD").expect("usd"));
    app.deliver(&PaymentRefunded {
        order_id: id,
        payment_id: Uuid::now_v7(),
        amount,
    })
    .await;
    let order = app.get_order(&id.to_string()).await;
    assert_eq!(order.status, "CANCELLED");
    assert_eq!(order.inventory, "RESERVED");
    assert_eq!(
        order.compensation,
        Some(CompensationView::new("REFUNDED", "PENDING"))
    );
    app.deliver(&InventoryReleased { order_id: id }).await;
    let order = app.get_order(&id.to_string()).await;
    assert_eq!(
        order.compensation,
        Some(CompensationView::new("REFUNDED", "RELEASED"))
    );
    assert_eq!(
        order.timeline_types(),
        [
            "OrderCreated",
            "PaymentCaptured",
            "OrderCancelled",
            "InventoryReserved",
            "PaymentRefunded",
            "InventoryReleased"
        ]
    );
    assert!(
        order.timeline.iter().any(|e| e.event_id == late.id),
        "the late reply is in the timeline"
    );
    assert_eq!(cancellations(&app.outbox().await, id), 1, "still one");
    app.cleanup().await;
}

#[tokio::test]
async fn an_order_decided_in_time_is_left_alone() {
    let app = spawn_app_with(settings(Duration::from_millis(300)), None).await;
    let id = placed_order(&app).await;
    app.deliver(&payment_captured(id, 4999)).await;
    app.deliver(&InventoryReserved {
        order_id: id,
        items: vec![],
    })
    .await;
    // Another order, left to expire, proves a sweep ran after the first
    // was decided.
    let other = app.place_keyboard_order().await;
    let expired = wait_until_decided(&app, other).await;
    assert_eq!(
        expired.cancel_reason.as_deref(),
        Some("timed out waiting for payment and inventory")
    );
    assert_eq!(
        expired.compensation,
        Some(CompensationView::new("NONE", "NONE"))
    );

    let order = app.get_order(&id.to_string()).await;
    assert_eq!(order.status, "CONFIRMED");
    assert_eq!(order.compensation, None);
    assert_eq!(cancellations(&app.outbox().await, id), 0);
    app.cleanup().await;
}

#[tokio::test]
async fn replicas_sweeping_one_database_cancel_each_order_once() {
    let deadline = Duration::from_millis(200);
    let app = spawn_app_with(settings(deadline), None).await;
    // A second replica on the same database and broker names.
    let replica = order_service::build_with(app.config.clone(), settings(deadline))
        .await
        .expect("the replica starts");
    let stop_replica = replica.shutdown_token();
    let replica = tokio::spawn(replica.run_until_stopped());

    app.add_product("KB-001", 4999, 1).await;
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(app.place_keyboard_order().await);
    }
    for id in &ids {
        let order = wait_until_decided(&app, *id).await;
        assert_eq!(order.status, "CANCELLED", "{order:?}");
    }
    let outbox = app.outbox().await;
    for id in &ids {
        assert_eq!(cancellations(&outbox, *id), 1, "order {id}");
    }

    stop_replica.cancel();
    replica
        .await
        .expect("joined")
        .expect("the replica stopped cleanly");
    app.cleanup().await;
}
