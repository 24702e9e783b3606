//! Dead letters never vanish: looking at them many times leaves them intact,
//! a replay goes to the failing service's queue only, `show` stops at the
//! match and masks card tokens, a full unroutable queue refuses publishes
//! (the outbox keeps the row), queues from an older version are kept, and
//! the depths reach the gauges.

use crate::consumer::envelope;
use crate::dlq_tool::{checkoutctl, run_checkoutctl, stdout};
use crate::support::{AMQP_URL, BYSTANDER, Happened, PROBE, TestEnv, eventually, retries};
use checkout_events::Event;
use checkout_messaging::dead_letter::{self, DEATH, header_int, header_str};
use checkout_messaging::{Cause, Outbox, QueueState, Relay, RetryPolicy, Topology, connect};
use checkout_operator::dlq;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, BasicRejectOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What the broker adds at each delivery of a quorum queue's message; not
/// part of the stored message.
const DELIVERY_COUNT: &str = "x-delivery-count";

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in pairs {
        table.insert(ShortString::from(*key), value.clone());
    }
    table
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// The headers the consumer gives a dead letter, for `routing_key`.
fn dead_letter_headers(env: &TestEnv, routing_key: &str) -> FieldTable {
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
async fn confirming(env: &TestEnv) -> Channel {
    let channel = env.broker.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    channel
}

/// Publishes and waits for the broker's confirm.
async fn put(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Confirmation {
    channel
        .basic_publish(
            ShortString::from(exchange),
            ShortString::from(routing_key),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm")
}

fn properties(message_id: &str, headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_message_id(ShortString::from(message_id))
        .with_type(ShortString::from("Happened"))
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(2)
        .with_headers(headers)
}

/// Headers as stored: without the broker's per-delivery count.
fn stored(headers: &FieldTable) -> BTreeMap<String, AMQPValue> {
    headers
        .inner()
        .iter()
        .filter(|(key, _)| key.as_str() != DELIVERY_COUNT)
        .map(|(key, value)| (key.to_string(), value.clone()))
        .collect()
}

async fn wait_ready(env: &TestEnv, queue: &str, count: u32) {
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
        let id = delivery
            .properties
            .message_id()
            .clone()
            .expect("id")
            .to_string();
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
async fn redeclare(env: &TestEnv, queue: &str, key: &str, value: AMQPValue) -> String {
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
        let id = delivery
            .properties
            .message_id()
            .clone()
            .expect("id")
            .to_string();
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

/// An event no queue is bound to.
#[derive(Debug, Serialize, Deserialize)]
struct Stray {
    n: u32,
}

impl Event for Stray {
    const TYPE: &'static str = "Stray";
    const VERSION: u32 = 1;
    const ROUTING_KEY: &'static str = "test.nobody-listens";
}

#[tokio::test]
async fn a_full_unroutable_queue_refuses_publishes_and_the_outbox_keeps_the_row() {
    let env = TestEnv::new().await;
    let unroutable = env.topology.unroutable();
    let channel = confirming(&env).await;

    // Fill it through the alternate exchange, as a routing mistake would.
    let started = Instant::now();
    let (mut acked, mut nacked) = (0, 0);
    while nacked == 0 && acked < Topology::UNROUTABLE_MAX_LENGTH + 1_000 {
        let mut confirms = Vec::new();
        for _ in 0..500 {
            confirms.push(
                channel
                    .basic_publish(
                        ShortString::from(env.topology.exchange()),
                        ShortString::from(Stray::ROUTING_KEY),
                        BasicPublishOptions::default(),
                        b"{}",
                        BasicProperties::default(),
                    )
                    .await
                    .expect("publish"),
            );
        }
        for confirm in confirms {
            match confirm.await.expect("confirm") {
                Confirmation::Nack(_) => nacked += 1,
                _ => acked += 1,
            }
        }
    }
    let depth = env.ready(&unroutable).await;
    eprintln!(
        "unroutable queue: {acked} acked, {nacked} nacked, depth {depth}, in {:?}",
        started.elapsed()
    );
    assert!(nacked > 0, "the broker refuses past the limit");
    let limit = Topology::UNROUTABLE_MAX_LENGTH as u32;
    // A quorum queue learns it is full asynchronously: publishes in flight
    // when it fills (at most one batch of 500) may still get in.
    assert!((limit..=limit + 500).contains(&depth), "depth {depth}");

    // The relay's publish of a stray row is refused; the row stays, the
    // routable row beside it goes out.
    let outbox = Outbox::new("test-service");
    let mut tx = env.pool.begin().await.expect("begin");
    let cause = || Cause::Command {
        correlation_id: Uuid::now_v7(),
    };
    outbox
        .emit(&mut tx, &Stray { n: 1 }, cause())
        .await
        .expect("emit");
    outbox
        .emit(&mut tx, &Happened { writer: 1, seq: 1 }, cause())
        .await
        .expect("emit");
    tx.commit().await.expect("commit");
    let relay = Relay::new(env.pool.clone(), env.topology.exchange());
    // A refusal is recorded on its row, not an error of the batch.
    let published = relay.publish_batch(&channel).await.expect("a batch");
    assert_eq!(published, 1, "the routable row went out");
    let unpublished = "SELECT count(*) FROM outbox WHERE published_at IS NULL";
    assert_eq!(env.count(unpublished).await, 1);
    let refused = "SELECT count(*) FROM outbox WHERE attempts = 1 AND last_error IS NOT NULL";
    assert_eq!(env.count(refused).await, 1, "the refusal is on the row");
    // Due again at once, for the rest of this test.
    sqlx::query("UPDATE outbox SET next_attempt_at = '-infinity' WHERE published_at IS NULL")
        .execute(&env.pool)
        .await
        .expect("make it due");

    // Once a person has dealt with the queue, the row goes out.
    dlq::purge(&env.channel, &unroutable).await.expect("purge");
    assert_eq!(relay.publish_batch(&channel).await.expect("published"), 1);
    assert_eq!(env.count(unpublished).await, 0);
    wait_ready(&env, &unroutable, 1).await;

    // Declared as such: another limit is refused.
    let refused = redeclare(&env, &unroutable, "x-max-length", AMQPValue::LongInt(5)).await;
    assert!(
        refused.contains("inequivalent arg 'x-max-length'"),
        "{refused}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn queues_left_by_an_older_version_are_kept_and_the_rest_declared() {
    let namespace = format!("test-legacy-{}", Uuid::now_v7().simple());
    let topology = Topology::new(namespace.as_str()).expect("valid");
    let connection = connect(AMQP_URL, "messaging-tests-legacy")
        .await
        .expect("rabbitmq is up");
    let channel = connection.create_channel().await.expect("channel");
    // What the previous version declared: quorum, no other argument.
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    for queue in [topology.dead_letter_queue("probe"), topology.unroutable()] {
        channel
            .queue_declare(
                ShortString::from(queue.as_str()),
                durable,
                table(&[("x-queue-type", text("quorum"))]),
            )
            .await
            .expect("a legacy queue");
    }
    channel
        .basic_publish(
            ShortString::from(""),
            ShortString::from(topology.dead_letter_queue("probe")),
            BasicPublishOptions::default(),
            b"an old dead letter",
            BasicProperties::default(),
        )
        .await
        .expect("publish");

    let declared = topology
        .provision(&connection, PROBE, &RetryPolicy::new(Vec::new()))
        .await;
    let state = topology
        .check_dead_letter_queue(&connection, "probe")
        .await
        .expect("check");
    let missing = topology
        .check_dead_letter_queue(&connection, "nobody")
        .await
        .expect("check");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let routed = put(
        &channel,
        &topology.exchange(),
        Happened::ROUTING_KEY,
        b"{}",
        BasicProperties::default(),
    )
    .await;
    let ready = |queue: String| {
        let channel = channel.clone();
        async move {
            channel
                .queue_declare(
                    ShortString::from(queue),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map(|q| q.message_count())
        }
    };
    let work_queue_ok = eventually(Duration::from_secs(5), || async {
        ready(topology.queue("probe")).await.ok() == Some(1)
    })
    .await;
    let old_letter = ready(topology.dead_letter_queue("probe")).await;
    let ctl = |extra: &'static [&'static str]| {
        let namespace = namespace.clone();
        async move {
            let mut args = vec![
                "--namespace",
                &namespace,
                "dlq",
                "list",
                "--service",
                "probe",
            ];
            args.extend_from_slice(extra);
            run_checkoutctl(&args).await
        }
    };
    let refused = ctl(&[]).await;
    let allowed = ctl(&["--allow-legacy-queue"]).await;

    topology
        .delete(&channel, PROBE, &RetryPolicy::new(Vec::new()))
        .await
        .expect("delete the legacy topology");
    let _ = connection.close(200, ShortString::from("done")).await;

    declared.expect("provision keeps the legacy queues and declares the rest");
    assert!(
        matches!(&state, QueueState::Legacy(why) if why.contains("x-delivery-limit")),
        "{state:?}"
    );
    assert_eq!(missing, QueueState::Missing);
    assert!(matches!(routed, Confirmation::Ack(None)), "{routed:?}");
    assert!(work_queue_ok, "the work queue was declared and bound");
    assert_eq!(old_letter.expect("the legacy DLQ is still there"), 1);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("older version"),
        "{refused:?}"
    );
    assert!(allowed.status.success(), "{allowed:?}");
    assert!(stdout(&allowed).contains("1 dead letter(s)"), "{allowed:?}");
}

/// The process's one Prometheus recorder, installed on first use.
fn metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("the only recorder");
        checkout_messaging::metrics::describe();
        handle
    })
}

#[tokio::test]
async fn watch_depths_sets_the_gauges_until_shutdown_or_connection_loss() {
    let env = TestEnv::new().await;
    let handle = metrics();
    let channel = confirming(&env).await;
    let dlq = env.topology.dead_letter_queue("probe");
    for id in ["a", "b"] {
        put(
            &channel,
            "",
            &dlq,
            b"{}",
            properties(id, FieldTable::default()),
        )
        .await;
    }
    put(
        &channel,
        &env.topology.exchange(),
        Stray::ROUTING_KEY,
        b"{}",
        BasicProperties::default(),
    )
    .await;

    let shutdown = CancellationToken::new();
    let watcher = tokio::spawn(checkout_messaging::watch_depths(
        env.broker.clone(),
        env.topology.clone(),
        "probe",
        Duration::from_millis(50),
        shutdown.clone(),
    ));
    let reported = eventually(Duration::from_secs(10), || async {
        let text = handle.render();
        text.contains("checkout_dead_letters{service=\"probe\"} 2")
            && text.contains("checkout_unroutable_messages 1")
    })
    .await;
    assert!(reported, "{}", handle.render());
    assert!(handle.render().contains("# HELP checkout_dead_letters"));
    shutdown.cancel();
    watcher.await.expect("joined").expect("Ok at shutdown");

    // Its own connection, closed under it: the watcher says so.
    let connection = std::sync::Arc::new(connect(AMQP_URL, "depth-loss").await.expect("up"));
    let watcher = tokio::spawn(checkout_messaging::watch_depths(
        connection.clone(),
        env.topology.clone(),
        "probe",
        Duration::from_millis(50),
        CancellationToken::new(),
    ));
    connection
        .close(200, ShortString::from("gone"))
        .await
        .expect("close");
    let ended = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("the watcher stops")
        .expect("joined");
    assert!(ended.is_err(), "{ended:?}");
    env.cleanup().await;
}
