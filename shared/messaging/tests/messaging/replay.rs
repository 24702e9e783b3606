//! A replay goes to the failing service's queue only; `show` stops at the
//! match and masks card tokens.

use crate::consumer::envelope;
use crate::dead_letters::*;
use crate::dlq_tool::{checkoutctl, stdout};
use crate::support::{BYSTANDER, Happened, PROBE, TestEnv, retries};
use checkout_events::Event;
use checkout_messaging::dead_letter::{self, DEATH, header_int, header_str};
use checkout_operator::dlq;
use lapin::options::{BasicGetOptions, BasicRejectOptions};
use lapin::types::{FieldTable, ShortString};
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn replay_sends_dead_letters_to_the_failing_services_queue_only() {
    let env = TestEnv::new().await;
    env.topology
        .provision(&env.broker, BYSTANDER, &retries())
        .await
        .expect("provision the bystander");
    let (probe, bystander) = (env.topology.queue("probe"), env.topology.queue("bystander"));
    let dlq = env.topology.dead_letter_queue("probe");
    let channel = confirming(&env).await;

    // 1. Dead-lettered by the consumer: x-original-* headers.
    let by_consumer = envelope(3, 1);
    let by_consumer_body = serde_json::to_vec(&by_consumer).expect("json");
    let headers = dead_letter_headers(&env, Happened::ROUTING_KEY);
    put(
        &channel,
        "",
        &dlq,
        &by_consumer_body,
        properties(&by_consumer.id.to_string(), headers),
    )
    .await;

    // 2. Dead-lettered by the broker (a reject): only x-death says where from.
    let by_broker = envelope(3, 2);
    let by_broker_body = serde_json::to_vec(&by_broker).expect("json");
    let headers = table(&[("traceparent", text(TRACEPARENT))]);
    put(
        &channel,
        &env.topology.exchange(),
        Happened::ROUTING_KEY,
        &by_broker_body,
        properties(&by_broker.id.to_string(), headers),
    )
    .await;
    wait_ready(&env, &probe, 1).await;
    let taken = env
        .channel
        .basic_get(
            ShortString::from(probe.as_str()),
            BasicGetOptions::default(),
        )
        .await
        .expect("get")
        .expect("the published event");
    taken
        .delivery
        .acker
        .reject(BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    assert_eq!(
        env.drain(&bystander, Duration::from_secs(5), |g| !g.is_empty())
            .await
            .len(),
        1
    );

    // 3. From a routing key probe is not bound to; 4. with no route at all.
    let elsewhere = envelope(3, 3);
    let headers = dead_letter_headers(&env, "test.elsewhere");
    put(
        &channel,
        "",
        &dlq,
        b"{}",
        properties(&elsewhere.id.to_string(), headers),
    )
    .await;
    let nowhere = envelope(3, 4);
    put(
        &channel,
        "",
        &dlq,
        b"{}",
        properties(&nowhere.id.to_string(), FieldTable::default()),
    )
    .await;
    wait_ready(&env, &dlq, 4).await;

    let outcome = dlq::replay(&env.channel, &env.topology, &PROBE[0], |_| true)
        .await
        .expect("replay");
    assert_eq!((outcome.replayed, outcome.left), (2, 2), "{outcome:?}");
    let why = |id: Uuid| {
        outcome
            .not_replayed
            .iter()
            .find(|n| n.message_id.as_deref() == Some(id.to_string().as_str()))
            .map(|n| n.why.clone())
            .unwrap_or_default()
    };
    assert!(
        why(elsewhere.id).contains("\"test.elsewhere\" is not bound"),
        "{outcome:?}"
    );
    assert!(why(nowhere.id).contains("no original route"), "{outcome:?}");
    wait_ready(&env, &dlq, 2).await;

    // Both in probe's queue, with their trace context and original route,
    // without the failure's headers; none in the bystander's.
    let replayed = env
        .drain(&probe, Duration::from_secs(10), |g| g.len() >= 2)
        .await;
    assert_eq!(replayed.len(), 2);
    for delivery in &replayed {
        let id = message_id(delivery);
        let body = if id == by_consumer.id.to_string() {
            &by_consumer_body
        } else {
            assert_eq!(id, by_broker.id.to_string());
            &by_broker_body
        };
        assert_eq!(&delivery.data, body);
        assert_eq!(
            delivery.exchange.as_str(),
            env.topology.retry_exchange("probe"),
            "through probe's own exchange, not the default one"
        );
        let h = delivery.properties.headers().as_ref();
        assert_eq!(header_str(h, "traceparent"), Some(TRACEPARENT));
        assert_eq!(
            header_str(h, dead_letter::ORIGINAL_EXCHANGE),
            Some(env.topology.exchange().as_str())
        );
        assert_eq!(
            header_str(h, dead_letter::ORIGINAL_ROUTING_KEY),
            Some(Happened::ROUTING_KEY)
        );
        let keys: Vec<String> = h
            .map(|h| h.inner().keys().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        for gone in [
            dead_letter::REASON,
            dead_letter::ERROR,
            dead_letter::HANDLER,
            dead_letter::ATTEMPTS,
            dead_letter::FAILED_AT,
            dead_letter::RETRY_COUNT,
            DEATH,
            "x-first-death-queue",
        ] {
            assert!(
                !keys.iter().any(|k| k == gone),
                "{id} still has {gone}: {keys:?}"
            );
        }
    }
    assert_eq!(
        env.ready(&bystander).await,
        0,
        "no other subscriber sees a replay"
    );
    assert_eq!(env.ready(&env.topology.unroutable()).await, 0);
    env.cleanup().await;
}

#[tokio::test]
async fn show_stops_at_the_match_and_masks_the_card_token() {
    let env = TestEnv::new().await;
    let dlq = env.topology.dead_letter_queue("probe");
    let channel = confirming(&env).await;
    let ids: Vec<String> = (0..5).map(|i| format!("order-created-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let body = serde_json::json!({
            "id": id, "type": "OrderCreated", "version": 1,
            "payload": { "order_id": i, "card_token": format!("tok_secret{i}") }
        });
        let headers = dead_letter_headers(&env, "order.created");
        let body = serde_json::to_vec(&body).expect("json");
        put(&channel, "", &dlq, &body, properties(id, headers)).await;
    }
    wait_ready(&env, &dlq, 5).await;

    let show = checkoutctl(&env, &["dlq", "show", "--service", "probe", &ids[1]]).await;
    assert!(show.status.success(), "{show:?}");
    let text = stdout(&show);
    assert!(
        text.contains(&ids[1]) && text.contains("\"tok_****\""),
        "{text}"
    );
    assert!(!text.contains("tok_secret"), "the token is masked: {text}");
    assert_eq!(env.ready(&dlq).await, 5, "showing removes nothing");

    // Only the messages up to the match were fetched; the store is unmasked.
    let letters = dlq::peek(&env.channel, &dlq, 10).await.expect("peek");
    assert_eq!(letters.len(), 5);
    for letter in &letters {
        let id = letter.message_id.clone().expect("id");
        let fetched_by_show = id == ids[0] || id == ids[1];
        assert_eq!(
            header_int(Some(&letter.headers), DELIVERY_COUNT),
            Some(i64::from(fetched_by_show)),
            "{id}"
        );
        assert!(String::from_utf8_lossy(&letter.body).contains("tok_secret"));
        assert!(!letter.masked_body().contains("tok_secret"));
    }
    let missing = checkoutctl(&env, &["dlq", "show", "--service", "probe", "no-such-id"]).await;
    assert!(!missing.status.success());
    assert_eq!(env.ready(&dlq).await, 5);
    env.cleanup().await;
}
