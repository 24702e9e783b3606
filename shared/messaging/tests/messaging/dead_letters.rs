//! Dead letters never vanish: looking at them many times leaves them intact,
//! a replay goes to the failing service's queue only, `show` stops at the
//! match and masks card tokens, a full unroutable queue refuses publishes
//! (the outbox keeps the row), queues from an older version are kept, and
//! the depths reach the gauges.

use crate::consumer::envelope;
use crate::dlq_tool::{checkoutctl, stdout};
use crate::support::{Happened, TestEnv, eventually};
use checkout_events::Event;
use checkout_messaging::dead_letter::{self, header_int};
use checkout_messaging::{QueueState, Topology};
use checkout_operator::dlq;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What the broker adds at each delivery of a quorum queue's message; not
/// part of the stored message.
pub(crate) const DELIVERY_COUNT: &str = "x-delivery-count";

pub(crate) const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

pub(crate) fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in pairs {
        table.insert(ShortString::from(*key), value.clone());
    }
    table
}

pub(crate) fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// The headers the consumer gives a dead letter, for `routing_key`.
pub(crate) fn dead_letter_headers(env: &TestEnv, routing_key: &str) -> FieldTable {
    table(&[
        ("traceparent", text(TRACEPARENT)),
        (dead_letter::REASON, text("exhausted")),
        (dead_letter::ERROR, text("database unavailable")),
        (dead_letter::HANDLER, text("probe")),
        (dead_letter::ATTEMPTS, AMQPValue::LongLongInt(5)),
        (dead_letter::FAILED_AT, text("2026-01-01T00:00:00.000Z")),
        (dead_letter::RETRY_COUNT, AMQPValue::LongLongInt(4)),
        (
            dead_letter::ORIGINAL_EXCHANGE,
            text(&env.topology.exchange()),
        ),
        (dead_letter::ORIGINAL_ROUTING_KEY, text(routing_key)),
    ])
}

/// A channel in confirm mode on the test's connection.
pub(crate) async fn confirming(env: &TestEnv) -> Channel {
    let channel = env.broker.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    channel
}

/// Publishes and waits for the broker's confirm.
pub(crate) async fn put(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Confirmation {
    try_put(channel, exchange, routing_key, body, properties)
        .await
        .expect("publish and confirm")
}

/// Publishes and waits for the broker's confirm; the error is a refusal
/// (the broker closes the channel over it) or a lost connection.
pub(crate) async fn try_put(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<Confirmation, lapin::Error> {
    channel
        .basic_publish(
            ShortString::from(exchange),
            ShortString::from(routing_key),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await?
        .await
}

pub(crate) fn properties(message_id: &str, headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_message_id(ShortString::from(message_id))
        .with_type(ShortString::from("Happened"))
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(2)
        .with_headers(headers)
}

/// Headers as stored: without the broker's per-delivery count.
pub(crate) fn stored(headers: &FieldTable) -> BTreeMap<String, AMQPValue> {
    headers
        .inner()
        .iter()
        .filter(|(key, _)| key.as_str() != DELIVERY_COUNT)
        .map(|(key, value)| (key.to_string(), value.clone()))
        .collect()
}

/// The message id of a delivery, which every message here has.
pub(crate) fn message_id(delivery: &lapin::message::Delivery) -> String {
    delivery
        .properties
        .message_id()
        .as_ref()
        .expect("a message id")
        .to_string()
}

pub(crate) async fn wait_ready(env: &TestEnv, queue: &str, count: u32) {
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.ready(queue).await == count
        })
        .await,
        "{queue} holds {count} (it holds {})",
        env.ready(queue).await
    );
}

/// The control for the test below: on this broker a quorum queue with a
/// small explicit delivery limit really counts every look (fetch, then
/// requeue), so a DLQ with a reachable limit would lose its messages.
#[tokio::test]
async fn a_small_delivery_limit_counts_every_look_on_this_broker() {
    let env = TestEnv::new().await;
    let queue = format!("{}.control", env.topology.queue("probe"));
    let args = table(&[
        ("x-queue-type", text("quorum")),
        ("x-delivery-limit", AMQPValue::LongInt(2)),
    ]);
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    env.channel
        .queue_declare(ShortString::from(queue.as_str()), durable, args)
        .await
        .expect("declare the control queue");
    let channel = confirming(&env).await;
    put(
        &channel,
        "",
        &queue,
        b"looked at",
        BasicProperties::default(),
    )
    .await;
    wait_ready(&env, &queue, 1).await;

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(
            dlq::peek(&env.channel, &queue, 10)
                .await
                .expect("peek")
                .len(),
        );
    }
    env.channel
        .queue_delete(ShortString::from(queue.as_str()), Default::default())
        .await
        .expect("delete the control queue");
    // Deliveries 1–3 are allowed with a limit of 2; the third requeue drops it.
    assert_eq!(seen, [1, 1, 1, 0]);
    env.cleanup().await;
}

#[tokio::test]
async fn dead_letters_survive_many_looks_intact() {
    let env = TestEnv::new().await;
    let dlq = env.topology.dead_letter_queue("probe");
    let channel = confirming(&env).await;
    let mut originals = BTreeMap::new();
    for seq in 0..3 {
        let event = envelope(3, seq);
        let body = serde_json::to_vec(&event).expect("json");
        let headers = dead_letter_headers(&env, Happened::ROUTING_KEY);
        let id = event.id.to_string();
        put(&channel, "", &dlq, &body, properties(&id, headers.clone())).await;
        originals.insert(id, (body, stored(&headers)));
    }
    wait_ready(&env, &dlq, 3).await;

    // 25 looks with the library, 25 with the real binary: 50 deliveries
    // each, far past RabbitMQ 4's default limit of 20.
    const LOOKS: usize = 25;
    let started = Instant::now();
    for look in 0..LOOKS {
        let letters = dlq::peek(&env.channel, &dlq, 100).await.expect("peek");
        assert_eq!(letters.len(), 3, "look {look}");
        for letter in &letters {
            let id = letter.message_id.clone().expect("an id");
            let (body, headers) = &originals[&id];
            assert_eq!(&letter.body, body, "look {look}: body of {id}");
            assert_eq!(
                &stored(&letter.headers),
                headers,
                "look {look}: headers of {id}"
            );
        }
    }
    let peeks = started.elapsed();
    let started = Instant::now();
    for look in 0..LOOKS {
        let list = checkoutctl(&env, &["dlq", "list", "--service", "probe"]).await;
        assert!(list.status.success(), "look {look}: {list:?}");
        let text = stdout(&list);
        assert!(text.contains("3 dead letter(s)"), "look {look}: {text}");
        for id in originals.keys() {
            assert!(text.contains(id.as_str()), "look {look}: {text}");
        }
    }
    eprintln!(
        "{LOOKS} peeks of 3 dead letters: {peeks:?}; {LOOKS} `checkoutctl dlq list`: {:?}",
        started.elapsed()
    );

    // All there, intact, and the broker did count every look.
    let got = env
        .drain(&dlq, Duration::from_secs(5), |got| got.len() >= 3)
        .await;
    assert_eq!(got.len(), 3);
    for delivery in &got {
        let id = message_id(delivery);
        let (body, headers) = &originals[&id];
        assert_eq!(&delivery.data, body);
        let delivered = delivery.properties.headers().clone().unwrap_or_default();
        assert_eq!(&stored(&delivered), headers);
        assert_eq!(
            header_int(Some(&delivered), DELIVERY_COUNT),
            Some(2 * LOOKS as i64),
            "the broker counted each look as a delivery"
        );
    }

    // The declared arguments carry the limit: the same declaration is
    // accepted, one with RabbitMQ 4's default of 20 refused.
    assert_eq!(
        env.topology
            .check_dead_letter_queue(&env.broker, "probe")
            .await
            .expect("check"),
        QueueState::Current
    );
    let refused = redeclare(&env, &dlq, "x-delivery-limit", AMQPValue::LongInt(20)).await;
    assert!(
        refused.contains("inequivalent arg 'x-delivery-limit'")
            && refused.contains(&i32::MAX.to_string()),
        "{refused}"
    );
    env.cleanup().await;
}

/// Declares `queue` with the current arguments but `key` set to `value`, on
/// a channel of its own; returns the broker's refusal.
pub(crate) async fn redeclare(env: &TestEnv, queue: &str, key: &str, value: AMQPValue) -> String {
    let mut args = if queue == env.topology.unroutable() {
        Topology::unroutable_queue_arguments()
    } else {
        Topology::dead_letter_queue_arguments()
    };
    args.insert(ShortString::from(key), value);
    let channel = env.broker.create_channel().await.expect("channel");
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    match channel
        .queue_declare(ShortString::from(queue), durable, args)
        .await
    {
        Ok(_) => panic!("{queue} accepted {key} = other than declared"),
        Err(error) => error.to_string(),
    }
}
