//! Confirms and shutdown are bounded in time: a broker that stops
//! confirming, a batch stuck at shutdown.

use crate::proxy::Proxy;
use crate::relay::*;
use crate::relay_refusals::{confirm_channel, unpublished};
use crate::support::{TestEnv, eventually};
use checkout_events::Envelope;
use checkout_messaging::{Relay, RelayError, connect};
use lapin::types::ShortString;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

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
