//! The Dead letters pages on a real dead-letter queue: grouped, shown
//! masked, replayed (one group, after a confirmation) to the failing
//! service's own queue, and purged — as the console's narrowed user.

use crate::{ADMIN_URL, Harness};
use checkout_events::SUBSCRIPTIONS;
use checkout_messaging::dead_letter::{
    ATTEMPTS, ERROR, FAILED_AT, ORIGINAL_EXCHANGE, ORIGINAL_ROUTING_KEY, REASON,
};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};
use reqwest::StatusCode;
use uuid::Uuid;

const CARD_TOKEN: &str = "tok_visa_4242_secret";

/// Puts a dead letter straight into the payment service's dead-letter
/// queue, as its consumer would have; answers its message id.
async fn dead_letter(harness: &Harness, channel: &Channel, error: &str, order: Uuid) -> String {
    let id = Uuid::now_v7().to_string();
    let mut headers = FieldTable::default();
    let routing_key = SUBSCRIPTIONS
        .iter()
        .find(|s| s.service == "payment")
        .expect("payment")
        .routing_keys[0];
    for (key, value) in [
        (REASON, "rejected"),
        (ERROR, error),
        (FAILED_AT, "2026-11-30T10:00:00Z"),
        (ORIGINAL_EXCHANGE, &harness.topology.exchange()),
        (ORIGINAL_ROUTING_KEY, routing_key),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
    ] {
        headers.insert(
            ShortString::from(key),
            AMQPValue::LongString(LongString::from(value)),
        );
    }
    headers.insert(ShortString::from(ATTEMPTS), AMQPValue::LongLongInt(1));
    let body = serde_json::json!({
        "id": id, "type": "PaymentRequested", "version": 1, "source": "order-service",
        "occurred_at": "2026-11-30T09:59:59Z", "correlation_id": order,
        "data": {"order_id": order, "customer_id": "fail-1", "card_token": CARD_TOKEN},
    });
    let queue = harness.topology.dead_letter_queue("payment");
    channel
        .basic_publish(
            ShortString::from(""),
            ShortString::from(queue.as_str()),
            BasicPublishOptions::default(),
            body.to_string().as_bytes(),
            BasicProperties::default()
                .with_message_id(ShortString::from(id.as_str()))
                .with_type(ShortString::from("PaymentRequested"))
                .with_headers(headers),
        )
        .await
        .expect("publish")
        .await
        .expect("confirmed");
    id
}

async fn replay(harness: &Harness, fields: &[(&str, String)]) -> (StatusCode, String) {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    harness.post("/dead-letters/payment/replay", &pairs).await
}

async fn depth(channel: &Channel, queue: &str) -> u32 {
    checkout_messaging::depth::ready(channel, queue)
        .await
        .expect("a depth")
}

#[tokio::test]
async fn dead_letters_are_grouped_shown_masked_replayed_by_group_and_purged() {
    let harness = Harness::start().await;
    let admin = checkout_messaging::connect(ADMIN_URL, "console test")
        .await
        .expect("broker");
    let channel = admin.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let order = Uuid::now_v7();
    let first = dead_letter(&harness, &channel, "card network said no", order).await;
    dead_letter(&harness, &channel, "card network said no", Uuid::now_v7()).await;
    let odd = dead_letter(
        &harness,
        &channel,
        &format!(r#"cannot charge {{"card_token":"{CARD_TOKEN}"}}"#),
        order,
    )
    .await;

    let (status, page) = harness.get("/dead-letters/payment").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(
            "<td><strong>2</strong></td><td>rejected</td><td><code>card network said no</code>"
        ),
        "{page}"
    );
    assert!(
        page.contains(&first) && page.contains(&odd),
        "every letter is listed"
    );
    assert!(!page.contains(CARD_TOKEN), "no card token on the page");
    assert!(
        page.contains("http://jaeger.test:16686/trace/0af7651916cd43dd8448eb211c80319c"),
        "trace link"
    );

    let (status, letter) = harness
        .get(&format!("/dead-letters/payment/letters/{odd}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        letter.contains("x-dead-letter-reason") && letter.contains("PaymentRequested"),
        "{letter}"
    );
    assert!(
        !letter.contains(CARD_TOKEN),
        "headers and body masked: {letter}"
    );

    // A replay needs the page's form token, then a confirmation.
    let group = [
        ("scope", "group"),
        ("reason", "rejected"),
        ("error", "card network said no"),
    ];
    let (status, _) = harness.post("/dead-letters/payment/replay", &group).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no csrf field at all"
    );
    let mut fields = vec![("csrf", "0".repeat(32))];
    fields.extend(group.iter().map(|(k, v)| (*k, v.to_string())));
    assert_eq!(
        replay(&harness, &fields).await.0,
        StatusCode::FORBIDDEN,
        "a wrong form token"
    );
    fields[0].1 = harness.csrf().await;
    let (status, confirm) = replay(&harness, &fields).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        confirm.contains("<strong id=\"confirm-count\">2</strong>"),
        "{confirm}"
    );
    assert_eq!(
        depth(&channel, &harness.topology.dead_letter_queue("payment")).await,
        3,
        "nothing moved yet"
    );

    fields.push(("confirm", "yes".to_owned()));
    let (status, location) = replay(&harness, &fields).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        location.starts_with("/dead-letters/payment?notice=Replayed+2"),
        "{location}"
    );
    assert_eq!(
        depth(&channel, &harness.topology.queue("payment")).await,
        2,
        "back in payment's own queue"
    );
    assert_eq!(
        depth(&channel, &harness.topology.dead_letter_queue("payment")).await,
        1
    );

    let csrf = harness.csrf().await;
    let (status, location) = harness
        .post(
            "/dead-letters/payment/purge",
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(
        (status, location.as_str()),
        (
            StatusCode::SEE_OTHER,
            "/dead-letters/payment?notice=Purged+1+dead+letter%28s%29+of+payment."
        )
    );
    assert_eq!(
        depth(&channel, &harness.topology.dead_letter_queue("payment")).await,
        0
    );

    let _ = admin.close(200, ShortString::from("done")).await;
    harness.finish().await;
}
