//! The relay publishes every committed row exactly once, keeps each
//! writer's order, and leaves rows unpublished when the broker refuses them;
//! a refused row backs off on its own and is parked after its last attempt,
//! holding up none of the rows behind it; confirms and shutdown are bounded
//! in time; old published rows and processed events are pruned.

use crate::relay_refusals::confirm_channel;
use crate::support::{AMQP_URL, Happened, TestEnv, eventually};
use checkout_events::Envelope;
use checkout_messaging::{Cause, Outbox, Relay, connect};
use lapin::options::ConfirmSelectOptions;
use lapin::types::ShortString;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub(crate) const OUTBOX: Outbox = Outbox::new("test-service");
pub(crate) const WRITERS: u32 = 8;
pub(crate) const PER_WRITER: u32 = 50;

pub(crate) async fn write(pool: &PgPool, writer: u32, seq: u32) {
    let mut tx = pool.begin().await.expect("begin");
    OUTBOX
        .emit(
            &mut tx,
            &Happened { writer, seq },
            Cause::Command {
                correlation_id: Uuid::now_v7(),
            },
        )
        .await
        .expect("emit");
    tx.commit().await.expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishes_every_committed_row_exactly_once_in_writer_order() {
    let env = TestEnv::new().await;
    let shutdown = CancellationToken::new();
    // Small batches so the relay runs many batches while writers write.
    let relay = Relay::new(env.pool.clone(), env.topology.exchange())
        .with_batch_size(16)
        .with_poll_interval(Duration::from_millis(200));
    let relay_task = tokio::spawn(relay.run(env.broker.clone(), shutdown.clone()));

    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let pool = env.pool.clone();
            tokio::spawn(async move {
                for seq in 0..PER_WRITER {
                    write(&pool, writer, seq).await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer finished");
    }

    let total = (WRITERS * PER_WRITER) as usize;
    let queue = env.topology.queue("probe");
    let deliveries = env
        .drain(&queue, Duration::from_secs(30), |got| got.len() >= total)
        .await;
    // Once every row is marked published the relay publishes nothing more,
    // and a duplicate would already be queued (marking follows the confirm).
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.count("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .await
                == 0
        })
        .await,
        "every row is marked published"
    );
    shutdown.cancel();
    relay_task
        .await
        .expect("joined")
        .expect("relay stopped cleanly");
    let extra = env.drain(&queue, Duration::ZERO, |_| false).await;
    assert!(extra.is_empty(), "{} duplicate deliveries", extra.len());

    let envelopes: Vec<Envelope> = deliveries
        .iter()
        .map(|d| serde_json::from_slice(&d.data).expect("an envelope"))
        .collect();
    let ids: HashSet<Uuid> = envelopes.iter().map(|e| e.id).collect();
    assert_eq!(envelopes.len(), total, "every row published, none twice");
    assert_eq!(ids.len(), total, "no duplicate ids");

    let mut last_seq: HashMap<u32, u32> = HashMap::new();
    for envelope in &envelopes {
        let event: Happened = envelope.decode().expect("a Happened");
        if let Some(previous) = last_seq.insert(event.writer, event.seq) {
            assert!(
                event.seq == previous + 1,
                "writer {} published {} after {}",
                event.writer,
                event.seq,
                previous
            );
        }
    }
    env.cleanup().await;
}

#[tokio::test]
async fn rows_stay_unpublished_when_the_broker_refuses_them() {
    let env = TestEnv::new().await;
    for seq in 0..3 {
        write(&env.pool, 0, seq).await;
    }

    // An exchange that does not exist: the broker closes the channel and
    // confirms nothing. On a connection of its own: lapin may reuse the
    // closed channel's id before the broker has finished closing it, which
    // the broker answers by closing the whole connection (the relay itself
    // backs off before opening a new channel).
    let refusing = connect(AMQP_URL, "refused-relay")
        .await
        .expect("rabbitmq is up");
    let channel = refusing.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let refused = Relay::new(
        env.pool.clone(),
        format!("{}.missing", env.topology.exchange()),
    );
    assert!(refused.publish_batch(&channel).await.is_err());
    let _ = refusing.close(200, ShortString::from("done")).await;
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .await,
        3
    );

    // The same rows go out once the destination exists.
    let channel = confirm_channel(&env.broker).await;
    let relay = Relay::new(env.pool.clone(), env.topology.exchange());
    assert_eq!(relay.publish_batch(&channel).await.expect("published"), 3);
    let queue = env.topology.queue("probe");
    let got = env
        .drain(&queue, Duration::from_secs(10), |got| got.len() >= 3)
        .await;
    assert_eq!(got.len(), 3);
    assert!(
        eventually(Duration::from_secs(5), || async {
            env.count("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .await
                == 0
        })
        .await
    );
    env.cleanup().await;
}

/// A relay whose poll is an hour, so only a wake-up can explain a quick
/// publish; returned once it listens and has published a first row, so it
/// is past its first batch and waiting.
pub(crate) async fn idle_relay(
    env: &TestEnv,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), lapin::Error>>,
) {
    let shutdown = CancellationToken::new();
    let relay = Relay::new(env.pool.clone(), env.topology.exchange())
        .with_poll_interval(Duration::from_secs(3600));
    let task = tokio::spawn(relay.run(env.broker.clone(), shutdown.clone()));
    assert!(
        eventually(Duration::from_secs(5), || async {
            env.count("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'")
                .await
                > 0
        })
        .await,
        "the relay listens"
    );
    write(&env.pool, 0, 0).await;
    checkout_messaging::wake_relays();
    let queue = env.topology.queue("probe");
    let first = env
        .drain(&queue, Duration::from_secs(10), |got| !got.is_empty())
        .await;
    assert_eq!(first.len(), 1, "the relay publishes the first row");
    (shutdown, task)
}

/// Expects the one row written since [`idle_relay`] to reach the probe
/// queue, then stops the relay.
pub(crate) async fn expect_published_then_stop(
    env: TestEnv,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), lapin::Error>>,
) {
    let queue = env.topology.queue("probe");
    let got = env
        .drain(&queue, Duration::from_secs(10), |got| !got.is_empty())
        .await;
    assert_eq!(got.len(), 1);
    shutdown.cancel();
    task.await.expect("joined").expect("relay stopped");
    env.cleanup().await;
}

#[tokio::test]
async fn a_wake_after_commit_publishes_without_waiting_for_the_poll() {
    let env = TestEnv::new().await;
    let (shutdown, task) = idle_relay(&env).await;
    write(&env.pool, 0, 1).await;
    checkout_messaging::wake_relays();
    expect_published_then_stop(env, shutdown, task).await;
}

#[tokio::test]
async fn a_notify_from_outside_the_process_wakes_the_relay() {
    let env = TestEnv::new().await;
    let (shutdown, task) = idle_relay(&env).await;
    // A row written by someone else (no in-process wake), who notifies.
    write(&env.pool, 0, 1).await;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(checkout_messaging::outbox::NOTIFY_CHANNEL)
        .execute(&env.pool)
        .await
        .expect("notify");
    expect_published_then_stop(env, shutdown, task).await;
}

#[tokio::test]
async fn a_relay_killed_between_confirm_and_mark_republishes_and_the_inbox_absorbs_it() {
    let env = TestEnv::new().await;
    // GOOD events, so the consumer below applies them.
    for seq in 0..3 {
        write(&env.pool, crate::consumer::GOOD, seq).await;
    }
    let channel = confirm_channel(&env.broker).await;
    let relay = Relay::new(env.pool.clone(), env.topology.exchange());

    // The crash window: the broker confirms, then marking the rows fails,
    // exactly as if the process died before its commit.
    sqlx::raw_sql(
        "CREATE FUNCTION die() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'relay killed before marking'; END $$; \
         CREATE TRIGGER die BEFORE UPDATE ON outbox FOR EACH ROW EXECUTE FUNCTION die();",
    )
    .execute(&env.pool)
    .await
    .expect("trigger");
    assert!(relay.publish_batch(&channel).await.is_err());
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .await,
        3,
        "nothing marked"
    );

    // Restarted, the relay publishes the same rows again.
    sqlx::raw_sql("DROP TRIGGER die ON outbox")
        .execute(&env.pool)
        .await
        .expect("drop trigger");
    assert_eq!(relay.publish_batch(&channel).await.expect("republished"), 3);

    let (shutdown, task) = crate::consumer::start(&env, 8);
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.count("SELECT count(*) FROM processed_events").await == 3
                && env.ready(&env.topology.queue("probe")).await == 0
        })
        .await,
        "all six deliveries handled"
    );
    for seq in 0..3 {
        assert_eq!(
            crate::consumer::applied(&env, crate::consumer::GOOD, seq).await,
            1,
            "event {seq} applied once although delivered twice"
        );
    }
    crate::consumer::stop(shutdown, task).await;
    env.cleanup().await;
}
