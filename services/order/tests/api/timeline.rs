//! `GET /orders/{id}`: the events that moved the order, and its trace.

use crate::helpers::{spawn_app, spawn_app_with};
use checkout_events::{Currency, InventoryReserved, Money, PaymentCaptured};
use order_service::Settings;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn the_timeline_lists_what_moved_the_order_in_order() {
    let app = spawn_app().await;
    app.add_product("KB-001", 4999, 1).await;
    let id = app.place_keyboard_order().await;
    let reserved = app
        .deliver(&InventoryReserved {
            order_id: id,
            items: vec![],
        })
        .await;
    let captured = PaymentCaptured {
        order_id: id,
        payment_id: Uuid::now_v7(),
        amount: Money::new(4999, Currency::parse("USD").expect("usd")),
    };
    let captured_envelope = app.deliver(&captured).await;
    // A duplicate reply moves nothing, so it is not in the timeline.
    app.deliver(&captured).await;

    let order = app.get_order(&id.to_string()).await;
    assert_eq!(order.status, "CONFIRMED");
    let timeline = &order.timeline;
    let entries: Vec<(&str, &str)> = timeline
        .iter()
        .map(|e| (e.event_type.as_str(), e.source.as_str()))
        .collect();
    assert_eq!(
        entries,
        [
            ("OrderCreated", "order-service"),
            ("InventoryReserved", "test"),
            ("PaymentCaptured", "test"),
            ("OrderConfirmed", "order-service"),
        ]
    );
    assert_eq!(timeline[1].event_id, reserved.id);
    assert_eq!(timeline[2].event_id, captured_envelope.id);
    let outbox = app.outbox().await;
    let created = outbox
        .iter()
        .find(|(t, _)| t == "OrderCreated")
        .expect("created");
    assert_eq!(json!(timeline[0].event_id), created.1["id"]);
    assert!(timeline[0].occurred_at <= order.updated_at);
    app.cleanup().await;
}

#[tokio::test]
async fn an_order_with_a_trace_links_to_it_when_a_jaeger_ui_is_configured() {
    let settings = Settings {
        jaeger_ui_url: Some("http://jaeger.example:16686".to_owned()),
        ..Settings::default()
    };
    let app = spawn_app_with(settings, None).await;
    app.add_product("KB-001", 4999, 1).await;
    let id = app.place_keyboard_order().await;
    // This test process exports no spans, so the order has no trace id of
    // its own (the e2e suite checks real ones); give it one.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    sqlx::query("UPDATE orders SET trace_id = $1 WHERE id = $2")
        .bind(trace)
        .bind(id.as_uuid())
        .execute(app.db.pool())
        .await
        .expect("update");

    let order = app.get_order(&id.to_string()).await;
    assert_eq!(order.trace_id.as_deref(), Some(trace));
    assert_eq!(
        order.jaeger_url,
        Some(format!("http://jaeger.example:16686/trace/{trace}"))
    );
    app.cleanup().await;
}

#[tokio::test]
async fn orders_are_listed_newest_first_page_by_page() {
    let app = spawn_app().await;
    app.add_product("KB-001", 4999, 1).await;
    let mut placed = Vec::new();
    for _ in 0..5 {
        placed.push(app.place_keyboard_order().await);
    }
    let cancelled = placed[1];
    app.deliver(&checkout_events::PaymentFailed {
        order_id: cancelled,
        reason: "declined".into(),
    })
    .await;

    let mut seen = Vec::new();
    let mut path = "/orders?limit=2".to_owned();
    loop {
        let (status, page) = app.get_admin_json(&path).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .filter_map(|o| o["id"].as_str().map(str::to_owned)),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/orders?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    // By id: creation order to the millisecond (ids of one millisecond
    // sort at random, see OrderId::new).
    let mut newest_first = placed.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    let newest_first: Vec<String> = newest_first.iter().map(ToString::to_string).collect();
    assert_eq!(seen, newest_first);

    let (_, only) = app.get_admin_json("/orders?status=CANCELLED").await;
    assert_eq!(only["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(only["items"][0]["id"], json!(cancelled));
    assert_eq!(only["items"][0]["status"], "CANCELLED");

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=many", "limit"),
        ("status=LOST", "status"),
        ("cursor=nope", "cursor"),
        ("colour=red", "colour"),
    ] {
        let (status, problem) = app.get_admin_json(&format!("/orders?{query}")).await;
        assert_eq!(status, 422, "{query}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
    app.cleanup().await;
}
