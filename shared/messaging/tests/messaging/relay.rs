//! The relay publishes every committed row exactly once, keeps each
//! writer's order, and leaves rows unpublished when the broker refuses them;
//! a refused row backs off on its own and is parked after its last attempt,
//! holding up none of the rows behind it; confirms and shutdown are bounded
//! in time; old published rows and processed events are pruned.

use crate::support::{AMQP_URL, Happened, Proxy, TestEnv, eventually};
use checkout_events::{Envelope, Event};
use checkout_messaging::outbox::{self, Backlog, Selection};
use checkout_messaging::retention::{self, Pruned, Retention};
use checkout_messaging::{Cause, Outbox, Relay, RelayError, connect};
use lapin::options::ConfirmSelectOptions;
use lapin::types::ShortString;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const OUTBOX: Outbox = Outbox::new("test-service");
const WRITERS: u32 = 8;
const PER_WRITER: u32 = 50;

async fn write(pool: &PgPool, writer: u32, seq: u32) {
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
    let channel = env.broker.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
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
async fn idle_relay(
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
async fn expect_published_then_stop(
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
    let channel = env.broker.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
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

/// An event whose routing key the tests make the broker refuse.
#[derive(Debug, Serialize, Deserialize)]
struct Refused;

impl Event for Refused {
    const TYPE: &'static str = "Refused";
    const VERSION: u32 = 1;
    const ROUTING_KEY: &'static str = "test.refused";
}

/// Writes one [`Refused`] row and returns its event id.
async fn write_refused(pool: &PgPool) -> Uuid {
    let mut tx = pool.begin().await.expect("begin");
    let id = OUTBOX
        .emit(
            &mut tx,
            &Refused,
            Cause::Command {
                correlation_id: Uuid::now_v7(),
            },
        )
        .await
        .expect("emit");
    tx.commit().await.expect("commit");
    id
}

/// What the relay recorded on a row.
#[derive(Debug, sqlx::FromRow)]
struct RowState {
    attempts: i32,
    /// Seconds from now until the next attempt (negative: due; a new or
    /// unparked row is due since `-infinity`).
    due_in: f64,
    last_error: Option<String>,
    parked: bool,
    published: bool,
}

async fn row_state(env: &TestEnv, event_id: Uuid) -> RowState {
    sqlx::query_as(
        "SELECT attempts, \
                (EXTRACT(EPOCH FROM next_attempt_at) - EXTRACT(EPOCH FROM now()))::float8 AS due_in, \
                last_error, parked_at IS NOT NULL AS parked, published_at IS NOT NULL AS published \
         FROM outbox WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_one(&env.pool)
    .await
    .expect("the row exists")
}

async fn confirm_channel(connection: &lapin::Connection) -> lapin::Channel {
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    channel
}

async fn unpublished(env: &TestEnv) -> i64 {
    env.count("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_row_holds_up_none_of_the_thousand_rows_behind_it() {
    let env = TestEnv::new().await;
    env.refuse(Refused::ROUTING_KEY).await;
    let refused = write_refused(&env.pool).await;
    let mut tx = env.pool.begin().await.expect("begin");
    for seq in 0..1000 {
        OUTBOX
            .emit(
                &mut tx,
                &Happened { writer: 0, seq },
                Cause::Command {
                    correlation_id: Uuid::now_v7(),
                },
            )
            .await
            .expect("emit");
    }
    tx.commit().await.expect("commit");

    // Batches of 16: a relay that backed off whenever a batch held a refusal
    // (100 ms doubling to 5 s), or that claimed the refused row first every
    // time, would need minutes for 1,000 rows. A long refusal backoff, so the
    // row is tried exactly once here.
    let shutdown = CancellationToken::new();
    let relay = Relay::new(env.pool.clone(), env.topology.exchange())
        .with_batch_size(16)
        .with_refusal_backoff(Duration::from_secs(3600), Duration::from_secs(3600));
    let started = Instant::now();
    let task = tokio::spawn(relay.run(env.broker.clone(), shutdown.clone()));
    // Timed on the outbox (confirmed and marked), not on the probe queue:
    // draining it one basic.get at a time is slower than the relay.
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.count("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
                .await
                == 1000
        })
        .await,
        "every row behind the refused one is published within seconds"
    );
    let took = started.elapsed();
    println!("1,000 rows behind a refused row published in {took:?} (batches of 16)");
    let queue = env.topology.queue("probe");
    let got = env
        .drain(&queue, Duration::from_secs(10), |got| got.len() >= 1000)
        .await;
    assert_eq!(got.len(), 1000, "each delivered once");
    shutdown.cancel();
    task.await.expect("joined").expect("relay stopped cleanly");

    let state = row_state(&env, refused).await;
    assert_eq!(state.attempts, 1, "{state:?}");
    assert!(
        state.due_in > 3000.0,
        "its next attempt is an hour away: {state:?}"
    );
    assert!(
        state
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("nacked")),
        "{state:?}"
    );
    assert!(!state.parked && !state.published, "{state:?}");
    assert_eq!(unpublished(&env).await, 1, "only the refused row is left");
    env.cleanup().await;
}

#[tokio::test]
async fn a_row_refused_on_every_attempt_is_parked_and_claimed_again_only_once_unparked() {
    let env = TestEnv::new().await;
    let refusing_queue = env.refuse(Refused::ROUTING_KEY).await;
    let first = write_refused(&env.pool).await;
    let second = write_refused(&env.pool).await;

    // Polling once an hour: only the relay's own wake-up for a refused row
    // that is due again can explain three attempts in a few seconds.
    let shutdown = CancellationToken::new();
    let relay = Relay::new(env.pool.clone(), env.topology.exchange())
        .with_poll_interval(Duration::from_secs(3600))
        .with_max_attempts(3)
        .with_refusal_backoff(Duration::from_millis(20), Duration::from_millis(40));
    let task = tokio::spawn(relay.clone().run(env.broker.clone(), shutdown.clone()));
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.count("SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL")
                .await
                == 2
        })
        .await,
        "both rows are parked after their third refusal"
    );
    shutdown.cancel();
    task.await.expect("joined").expect("relay stopped cleanly");

    let state = row_state(&env, first).await;
    assert_eq!(state.attempts, 3, "{state:?}");
    assert!(state.parked && !state.published, "{state:?}");

    // Parked rows are no longer claimed.
    let channel = confirm_channel(&env.broker).await;
    assert_eq!(relay.publish_batch(&channel).await.expect("a batch"), 0);
    assert_eq!(row_state(&env, first).await.attempts, 3, "not tried again");

    // What the operator and /metrics see.
    let parked = outbox::parked(&env.pool, 10).await.expect("parked rows");
    assert_eq!(
        parked.iter().map(|row| row.event_id).collect::<Vec<_>>(),
        [first, second],
        "oldest first"
    );
    assert_eq!(parked[0].attempts, 3);
    assert_eq!(parked[0].routing_key, Refused::ROUTING_KEY);
    assert!(
        parked[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("nacked"))
    );
    assert_eq!(outbox::parked(&env.pool, 1).await.expect("parked").len(), 1);
    let backlog = outbox::backlog(&env.pool).await.expect("backlog");
    assert_eq!(
        backlog,
        Backlog {
            waiting: 0,
            parked: 2,
            oldest_waiting_age_secs: 0.0
        }
    );

    // Unparking: only the rows selected, due at once, attempts from zero.
    assert_eq!(
        outbox::unpark(&env.pool, Selection::Events(vec![Uuid::now_v7()]))
            .await
            .expect("unpark"),
        0,
        "an id that is not parked changes nothing"
    );
    assert_eq!(
        outbox::unpark(&env.pool, Selection::Events(vec![first]))
            .await
            .expect("unpark"),
        1
    );
    let state = row_state(&env, first).await;
    assert!(
        state.attempts == 0 && !state.parked && state.due_in < 0.0,
        "{state:?}"
    );
    let backlog = outbox::backlog(&env.pool).await.expect("backlog");
    assert_eq!((backlog.waiting, backlog.parked), (1, 1));
    assert!(backlog.oldest_waiting_age_secs > 0.0);

    // Claimed again, and refused again: a fresh count that does not park it.
    let relay = relay.with_refusal_backoff(Duration::ZERO, Duration::ZERO);
    assert_eq!(relay.publish_batch(&channel).await.expect("a batch"), 0);
    let state = row_state(&env, first).await;
    assert!(state.attempts == 1 && !state.parked, "{state:?}");

    // The cause fixed (the refusing queue gone), everything unparked goes out.
    env.channel
        .queue_delete(
            ShortString::from(refusing_queue.as_str()),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .expect("delete the refusing queue");
    assert_eq!(
        outbox::unpark(&env.pool, Selection::All)
            .await
            .expect("unpark"),
        1,
        "the second row"
    );
    assert_eq!(relay.publish_batch(&channel).await.expect("a batch"), 2);
    assert_eq!(unpublished(&env).await, 0);
    env.cleanup().await;
}

#[tokio::test]
async fn an_unroutable_row_is_refused_on_its_own_and_the_rest_of_the_batch_is_published() {
    let env = TestEnv::new().await;
    // No alternate exchange and no binding: the mandatory publish comes back.
    let exchange = env.bare_exchange().await;
    write(&env.pool, 0, 0).await;
    // A second row the exchange can route, to a queue of its own.
    let routed = env.topology.queue("bare-routed");
    env.channel
        .queue_declare(
            ShortString::from(routed.as_str()),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("declare");
    env.channel
        .queue_bind(
            ShortString::from(routed.as_str()),
            ShortString::from(exchange.as_str()),
            ShortString::from(Refused::ROUTING_KEY),
            lapin::options::QueueBindOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("bind");
    write_refused(&env.pool).await;

    let channel = confirm_channel(&env.broker).await;
    let relay = Relay::new(env.pool.clone(), exchange);
    assert_eq!(relay.publish_batch(&channel).await.expect("a batch"), 1);
    let (attempts, error): (i32, Option<String>) =
        sqlx::query_as("SELECT attempts, last_error FROM outbox WHERE event_type = 'Happened'")
            .fetch_one(&env.pool)
            .await
            .expect("the unroutable row");
    assert_eq!(attempts, 1);
    assert!(
        error.as_deref().is_some_and(|e| e.contains("NO_ROUTE")),
        "{error:?}"
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM outbox WHERE event_type = 'Refused' AND published_at IS NOT NULL"
        )
        .await,
        1
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_confirming_leaves_the_rows_unpublished_and_the_relay_opens_a_new_channel()
 {
    let env = TestEnv::new().await;
    let proxy = Proxy::start().await;
    let via_proxy = std::sync::Arc::new(
        connect(&proxy.url, "relay-via-proxy")
            .await
            .expect("rabbitmq through the proxy"),
    );
    let probe = env.topology.queue("probe");
    let timeout = Duration::from_millis(300);

    // One batch: the broker routes the messages, but its confirms are held back.
    let channel = confirm_channel(&via_proxy).await;
    for seq in 0..5 {
        write(&env.pool, 0, seq).await;
    }
    proxy.hold(true);
    let relay = Relay::new(env.pool.clone(), env.topology.exchange()).with_confirm_timeout(timeout);
    let started = Instant::now();
    let result = relay.publish_batch(&channel).await;
    let took = started.elapsed();
    assert!(
        matches!(
            result,
            Err(RelayError::ConfirmTimeout {
                unconfirmed: 5,
                claimed: 5,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(2),
        "gave up after {took:?}"
    );
    assert_eq!(unpublished(&env).await, 5, "nothing marked");
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE attempts > 0")
            .await,
        0,
        "a missing confirm is not the rows' fault"
    );
    proxy.hold(false);
    drop(channel);
    let routed = env
        .drain(&probe, Duration::from_secs(10), |got| got.len() >= 5)
        .await;
    assert_eq!(routed.len(), 5, "the broker had routed them");

    // The running relay: once its confirms stop, it gives up on the channel
    // and asks for a new one; when the broker answers again, the rows go out.
    let shutdown = CancellationToken::new();
    let opened_before = proxy.channels_opened();
    let task = tokio::spawn(relay.run(via_proxy.clone(), shutdown.clone()));
    let first = env
        .drain(&probe, Duration::from_secs(10), |got| got.len() >= 5)
        .await;
    assert_eq!(first.len(), 5, "republished on a channel of its own");
    assert!(
        eventually(Duration::from_secs(10), || async {
            unpublished(&env).await == 0
        })
        .await
    );
    let opened = proxy.channels_opened();
    assert_eq!(opened, opened_before + 1, "one channel so far");
    proxy.hold(true);
    for seq in 5..8 {
        write(&env.pool, 0, seq).await;
    }
    checkout_messaging::wake_relays();
    assert!(
        eventually(Duration::from_secs(10), || async {
            proxy.channels_opened() > opened
        })
        .await,
        "the relay gives up on the silent channel and opens another"
    );
    assert_eq!(unpublished(&env).await, 3, "nothing marked meanwhile");
    proxy.hold(false);
    assert!(
        eventually(Duration::from_secs(10), || async {
            unpublished(&env).await == 0
        })
        .await,
        "published once the broker answers again"
    );
    shutdown.cancel();
    task.await.expect("joined").expect("relay stopped cleanly");
    let _ = via_proxy.close(200, ShortString::from("done")).await;
    let late = env.drain(&probe, Duration::ZERO, |_| false).await;
    let ids: HashSet<Uuid> = late
        .iter()
        .map(|d| {
            serde_json::from_slice::<Envelope>(&d.data)
                .expect("an envelope")
                .id
        })
        .collect();
    assert_eq!(
        ids.len(),
        3,
        "each of the three at least once (duplicates allowed)"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_stuck_at_shutdown_is_abandoned_after_the_shutdown_timeout() {
    let env = TestEnv::new().await;
    for seq in 0..3 {
        write(&env.pool, 0, seq).await;
    }
    // The relay's claim waits for this lock: a batch that cannot finish.
    let mut locker = env.pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .expect("lock");
    let grace = Duration::from_millis(500);
    let shutdown = CancellationToken::new();
    let relay = Relay::new(env.pool.clone(), env.topology.exchange()).with_shutdown_timeout(grace);
    let task = tokio::spawn(relay.run(env.broker.clone(), shutdown.clone()));
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.count(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND query LIKE '%SKIP LOCKED%'",
            )
            .await
                > 0
        })
        .await,
        "the relay's batch is under way, waiting"
    );

    let started = Instant::now();
    shutdown.cancel();
    task.await.expect("joined").expect("relay stopped cleanly");
    let took = started.elapsed();
    println!("relay stopped {took:?} after shutdown, with a stuck batch and a {grace:?} bound");
    assert!(
        took >= grace && took < grace + Duration::from_secs(2),
        "{took:?}"
    );
    locker.rollback().await.expect("unlock");
    assert_eq!(
        unpublished(&env).await,
        3,
        "the abandoned batch marked nothing"
    );

    // Nothing is stranded: the next relay publishes them.
    let shutdown = CancellationToken::new();
    let relay = Relay::new(env.pool.clone(), env.topology.exchange());
    let task = tokio::spawn(relay.run(env.broker.clone(), shutdown.clone()));
    let got = env
        .drain(
            &env.topology.queue("probe"),
            Duration::from_secs(10),
            |got| got.len() >= 3,
        )
        .await;
    assert_eq!(got.len(), 3);
    shutdown.cancel();
    task.await.expect("joined").expect("relay stopped cleanly");
    env.cleanup().await;
}

#[tokio::test]
async fn pruning_deletes_only_published_rows_and_processed_events_past_their_retention() {
    let env = TestEnv::new().await;
    for seq in 0..4 {
        write(&env.pool, 0, seq).await;
    }
    // Published 8 and 6 days ago; written 30 days ago and still owed, one
    // of them parked.
    sqlx::raw_sql(
        "UPDATE outbox SET published_at = now() - interval '8 days' WHERE envelope->'data'->>'seq' = '0'; \
         UPDATE outbox SET published_at = now() - interval '6 days' WHERE envelope->'data'->>'seq' = '1'; \
         UPDATE outbox SET created_at = now() - interval '30 days' WHERE envelope->'data'->>'seq' IN ('2', '3'); \
         UPDATE outbox SET parked_at = now() - interval '20 days' WHERE envelope->'data'->>'seq' = '3';",
    )
    .execute(&env.pool)
    .await
    .expect("age the outbox");
    // More than two chunks of inbox rows handled 15 days ago, some 13 days
    // ago, an old event handled only yesterday (a late replay), and an id
    // that is not a UUID v7 (it must never be pruned early).
    sqlx::raw_sql(
        "CREATE FUNCTION pg_temp.v7(at timestamptz, n bigint) RETURNS uuid LANGUAGE sql AS \
             $$ SELECT (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') \
                        || '7' || substr(md5(n::text), 1, 3) || '8' || substr(md5(n::text), 4, 15))::uuid $$; \
         INSERT INTO processed_events (event_id, handler, processed_at) \
             SELECT pg_temp.v7(now() - interval '15 days' - g * interval '1 ms', g), 'probe', \
                    now() - interval '15 days' \
             FROM generate_series(1, 25000) g; \
         INSERT INTO processed_events (event_id, handler, processed_at) \
             SELECT pg_temp.v7(now() - interval '13 days', g), 'probe', now() - interval '13 days' \
             FROM generate_series(1, 10) g; \
         INSERT INTO processed_events (event_id, handler, processed_at) VALUES \
             (pg_temp.v7(now() - interval '30 days', 0), 'probe', now() - interval '1 day'), \
             ('ffffffff-ffff-4fff-bfff-ffffffffffff', 'probe', now() - interval '1 day');",
    )
    .execute(&env.pool)
    .await
    .expect("age the inbox");

    let started = Instant::now();
    let pruned = retention::prune(&env.pool, Retention::default())
        .await
        .expect("prune");
    println!("pruned {pruned:?} in {:?}", started.elapsed());
    assert_eq!(
        pruned,
        Pruned {
            outbox: 1,
            inbox: 25_000
        }
    );
    assert_eq!(env.count("SELECT count(*) FROM outbox").await, 3);
    assert_eq!(unpublished(&env).await, 2, "owed rows are never pruned");
    assert_eq!(
        env.count("SELECT count(*) FROM processed_events").await,
        12,
        "rows handled within 14 days are kept"
    );
    assert_eq!(
        retention::prune(&env.pool, Retention::default())
            .await
            .expect("prune"),
        Pruned::default(),
        "nothing left to prune"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn the_relay_prunes_both_tables_with_its_retentions() {
    let env = TestEnv::new().await;
    write(&env.pool, 0, 0).await;
    sqlx::raw_sql(
        "UPDATE outbox SET published_at = now() - interval '2 hours'; \
         INSERT INTO processed_events (event_id, handler, processed_at) VALUES \
             ((lpad(to_hex((extract(epoch FROM now() - interval '3 hours') * 1000)::bigint), 12, '0') \
               || '70008000000000000000')::uuid, 'probe', now() - interval '3 hours'), \
             ($$00000000-0000-7000-8000-000000000001$$, 'probe', now() - interval '1 hour');",
    )
    .execute(&env.pool)
    .await
    .expect("old rows");
    let shutdown = CancellationToken::new();
    let relay = Relay::new(env.pool.clone(), env.topology.exchange())
        .with_retention(Duration::from_secs(3600))
        .with_inbox_retention(Duration::from_secs(2 * 3600));
    let task = tokio::spawn(relay.run(env.broker.clone(), shutdown.clone()));
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.count("SELECT count(*) FROM outbox").await == 0
                && env.count("SELECT count(*) FROM processed_events").await == 1
        })
        .await,
        "pruned on the relay's first idle moment"
    );
    shutdown.cancel();
    task.await.expect("joined").expect("relay stopped cleanly");
    env.cleanup().await;
}
