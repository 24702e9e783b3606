//! The replies of Payment and Inventory turn the order final, once.

use crate::helpers::{TestApp, spawn_app};
use checkout_events::fixtures::build::{inventory_reserved, payment_captured};
use checkout_events::{InventoryFailed, OrderId, PaymentFailed, Sku};
use serde_json::json;

pub(crate) async fn placed_order(app: &TestApp) -> OrderId {
    app.add_product("KB-001", 4999, 1).await;
    app.place_keyboard_order().await
}

fn count(outbox: &[(String, serde_json::Value)], event_type: &str) -> usize {
    outbox.iter().filter(|(t, _)| t == event_type).count()
}

#[tokio::test]
async fn both_good_replies_confirm_once_in_either_order() {
    let app = spawn_app().await;
    for inventory_first in [false, true] {
        let id = placed_order(&app).await;
        let last = if inventory_first {
            app.deliver(&inventory_reserved(id)).await;
            app.deliver(&payment_captured(id, 4999)).await
        } else {
            app.deliver(&payment_captured(id, 4999)).await;
            app.deliver(&inventory_reserved(id)).await
        };
        // A duplicate reply (a new envelope, so the inbox cannot catch it).
        app.deliver(&payment_captured(id, 4999)).await;

        let order = app.get_order(&id.to_string()).await;
        assert_eq!(order.status, "CONFIRMED");
        assert_eq!(
            (order.payment.as_str(), order.inventory.as_str()),
            ("CAPTURED", "RESERVED")
        );
        let outbox = app.outbox().await;
        let confirmed: Vec<_> = outbox
            .iter()
            .filter(|(t, e)| t == "OrderConfirmed" && e["data"]["order_id"] == json!(id))
            .collect();
        assert_eq!(confirmed.len(), 1, "one OrderConfirmed");
        assert_eq!(confirmed[0].1["causation_id"], json!(last.id));
        assert_eq!(confirmed[0].1["data"]["total"]["amount"], 4999);
    }
    app.cleanup().await;
}

#[tokio::test]
async fn a_failed_reply_cancels_with_its_reason_and_late_replies_change_nothing() {
    let app = spawn_app().await;

    let declined = placed_order(&app).await;
    app.deliver(&PaymentFailed {
        order_id: declined,
        reason: "card declined".into(),
    })
    .await;
    app.deliver(&inventory_reserved(declined)).await;
    let order = app.get_order(&declined.to_string()).await;
    assert_eq!(order.status, "CANCELLED");
    assert_eq!(
        order.cancel_reason.as_deref(),
        Some("payment failed: card declined")
    );
    assert_eq!(order.inventory, "RESERVED", "the late reply is recorded");

    let short = placed_order(&app).await;
    app.deliver(&payment_captured(short, 4999)).await;
    app.deliver(&InventoryFailed {
        order_id: short,
        reason: "only 0 of KB-001 in stock".into(),
        sku: Some(Sku::parse("KB-001").expect("sku")),
    })
    .await;
    let order = app.get_order(&short.to_string()).await;
    assert_eq!(order.status, "CANCELLED");
    assert_eq!(
        order.cancel_reason.as_deref(),
        Some("inventory failed: only 0 of KB-001 in stock")
    );

    let outbox = app.outbox().await;
    assert_eq!(
        count(&outbox, "OrderCancelled"),
        2,
        "one per cancelled order"
    );
    assert_eq!(count(&outbox, "OrderConfirmed"), 0);
    app.cleanup().await;
}

/// The two replies of one order, as events.
fn replies(order_id: OrderId, paid: bool, reserved_ok: bool) -> Vec<checkout_events::Envelope> {
    let payment = if paid {
        checkout_events::Envelope::new(
            &payment_captured(order_id, 4999),
            "payment-service",
            order_id.as_uuid(),
            None,
        )
    } else {
        let failed = PaymentFailed {
            order_id,
            reason: "card declined".into(),
        };
        checkout_events::Envelope::new(&failed, "payment-service", order_id.as_uuid(), None)
    };
    let inventory = if reserved_ok {
        checkout_events::Envelope::new(
            &inventory_reserved(order_id),
            "inventory-service",
            order_id.as_uuid(),
            None,
        )
    } else {
        let failed = InventoryFailed {
            order_id,
            reason: "out of stock".into(),
            sku: None,
        };
        checkout_events::Envelope::new(&failed, "inventory-service", order_id.as_uuid(), None)
    };
    vec![payment.expect("envelope"), inventory.expect("envelope")]
}

#[tokio::test]
async fn replies_duplicated_and_shuffled_end_as_they_do_in_order() {
    let app = spawn_app().await;
    let outcomes = [(true, true), (false, true), (true, false), (false, false)];
    let mut in_order = Vec::new();
    let mut shuffled = Vec::new();
    for (paid, reserved_ok) in outcomes {
        let calm = placed_order(&app).await;
        let chaotic = placed_order(&app).await;
        for envelope in replies(calm, paid, reserved_ok) {
            app.deliver_envelope(&envelope).await;
        }
        // Each reply twice (same envelope: a broker redelivery) and once
        // more as a new envelope (a replay), all mixed with other orders'.
        for envelope in replies(chaotic, paid, reserved_ok) {
            shuffled.push(envelope.clone());
            shuffled.push(envelope);
        }
        shuffled.extend(replies(chaotic, paid, reserved_ok));
        in_order.push((calm, chaotic, paid && reserved_ok));
    }
    for envelope in checkout_testkit::shuffled(shuffled, 42) {
        app.deliver_envelope(&envelope).await;
    }

    let outbox = app.outbox().await;
    for (calm, chaotic, good) in in_order {
        let (a, b) = (
            app.get_order(&calm.to_string()).await,
            app.get_order(&chaotic.to_string()).await,
        );
        assert_eq!(a.status, if good { "CONFIRMED" } else { "CANCELLED" });
        assert_eq!(
            (&a.status, &a.payment, &a.inventory),
            (&b.status, &b.payment, &b.inventory)
        );
        for id in [calm, chaotic] {
            let finals = outbox
                .iter()
                .filter(|(t, e)| {
                    (t == "OrderConfirmed" || t == "OrderCancelled")
                        && e["data"]["order_id"] == json!(id)
                })
                .count();
            assert_eq!(finals, 1, "exactly one final event for {id}");
        }
    }
    app.cleanup().await;
}

#[tokio::test]
async fn the_handler_applies_every_event_fixture_it_claims() {
    let app = spawn_app().await;
    checkout_testkit::contract::check_consumer(
        app.db.pool(),
        order_service::SERVICE.name,
        &order_service::handler::OrderHandler,
        async || placed_order(&app).await.as_uuid(),
    )
    .await;
    app.cleanup().await;
}
