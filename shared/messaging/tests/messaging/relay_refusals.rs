//! A row the broker refuses backs off on its own and is parked after its
//! last attempt, holding up none of the rows behind it.

use crate::relay::*;
use crate::support::{Happened, TestEnv, eventually};
use checkout_events::Event;
use checkout_messaging::outbox::{self, Backlog, Selection};
use checkout_messaging::{Cause, Relay};
use lapin::options::ConfirmSelectOptions;
use lapin::types::ShortString;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// An event whose routing key the tests make the broker refuse.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Refused;

impl Event for Refused {
    const TYPE: &'static str = "Refused";
    const VERSION: u32 = 1;
    const ROUTING_KEY: &'static str = "test.refused";
}

/// Writes one [`Refused`] row and returns its event id.
pub(crate) async fn write_refused(pool: &PgPool) -> Uuid {
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
pub(crate) struct RowState {
    attempts: i32,
    /// Seconds from now until the next attempt (negative: due; a new or
    /// unparked row is due since `-infinity`).
    due_in: f64,
    last_error: Option<String>,
    parked: bool,
    published: bool,
}

pub(crate) async fn row_state(env: &TestEnv, event_id: Uuid) -> RowState {
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

pub(crate) async fn confirm_channel(connection: &lapin::Connection) -> lapin::Channel {
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    channel
}

pub(crate) async fn unpublished(env: &TestEnv) -> i64 {
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
