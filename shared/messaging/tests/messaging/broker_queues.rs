//! The broker's side of dead letters: a full unroutable queue refuses
//! publishes (the outbox keeps the row), queues from an older version are
//! kept, and the depths reach the gauges.

use crate::dead_letters::*;
use crate::dlq_tool::{run_checkoutctl, stdout};
use crate::support::{AMQP_URL, Happened, PROBE, TestEnv, eventually};
use checkout_events::Event;
use checkout_messaging::{Cause, Outbox, QueueState, Relay, RetryPolicy, Topology, connect};
use checkout_operator::dlq;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Confirmation};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// An event no queue is bound to.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Stray {
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
pub(crate) fn metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
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
