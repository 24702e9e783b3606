//! Two batches in flight: the relay claims and publishes the next batch
//! while the confirms of the last are outstanding, marks each batch in its
//! own transaction, never has more than two open, and a failure while both
//! wait marks nothing that was not confirmed.

use crate::proxy::Proxy;
use crate::relay::write;
use crate::relay_refusals::{confirm_channel, unpublished};
use crate::support::{Happened, TestEnv, eventually};
use checkout_events::Envelope;
use checkout_messaging::{Relay, RelayError, connect};
use lapin::types::ShortString;
use std::collections::HashSet;
use std::time::Duration;

const BATCH: u16 = 2;
const ROWS: u32 = 6;

/// Rows some transaction holds locked: claimed by a batch not yet committed.
/// (The probe's own locks last one statement; it runs only while the
/// relay's confirms are held back, when the relay claims nothing.)
async fn claimed(env: &TestEnv) -> i64 {
    let free = env
        .count(
            "SELECT count(*) FROM (SELECT id FROM outbox WHERE published_at IS NULL \
             FOR UPDATE SKIP LOCKED) AS free",
        )
        .await;
    unpublished(env).await - free
}

/// Transactions open on the test database and waiting on their client: the
/// relay's batches awaiting confirms.
async fn open_batches(env: &TestEnv) -> i64 {
    env.count(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND state = 'idle in transaction'",
    )
    .await
}

/// Waits until two batches of `BATCH` rows are claimed and their messages
/// routed, with every confirm held back by the proxy.
async fn two_batches_waiting(env: &TestEnv) {
    let probe = env.topology.queue("probe");
    let both_sent = eventually(Duration::from_secs(10), || async {
        env.ready(&probe).await == 2 * u32::from(BATCH)
    })
    .await;
    assert!(both_sent, "both batches published before any confirm came");
    assert!(
        eventually(Duration::from_secs(10), || async {
            open_batches(env).await == 2
        })
        .await,
        "two claims open at once"
    );
    assert_eq!(
        claimed(env).await,
        2 * i64::from(BATCH),
        "two batches' rows"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
            .await,
        0,
        "nothing marked without its confirm"
    );
}

/// A relay publishing `ROWS` rows in batches of `BATCH`, two in flight,
/// through a proxy holding every confirm back, once both batches wait.
struct Held {
    proxy: Proxy,
    /// The connection through the proxy, closed by the test when done.
    via_proxy: lapin::Connection,
    relay: Relay,
    publishing: tokio::task::JoinHandle<Result<usize, RelayError>>,
}

async fn two_batches_held(env: &TestEnv, name: &str) -> Held {
    let proxy = Proxy::start().await;
    let via_proxy = connect(&proxy.url, name)
        .await
        .expect("rabbitmq through the proxy");
    let channel = confirm_channel(&via_proxy).await;
    for seq in 0..ROWS {
        write(&env.pool, 0, seq).await;
    }
    let relay = Relay::new(env.pool.clone(), env.topology.exchange())
        .with_batch_size(BATCH)
        .with_batches_in_flight(2);

    proxy.hold(true);
    let publishing = tokio::spawn({
        let (relay, channel) = (relay.clone(), channel.clone());
        async move { relay.publish_pending(&channel).await }
    });
    two_batches_waiting(env).await;
    Held {
        proxy,
        via_proxy,
        relay,
        publishing,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_batch_is_published_while_the_last_awaits_its_confirms() {
    let env = TestEnv::new().await;
    let held = two_batches_held(&env, "relay-pipeline").await;
    let (proxy, publishing) = (&held.proxy, held.publishing);
    assert_eq!(
        env.ready(&env.topology.queue("probe")).await,
        2 * u32::from(BATCH),
        "no third batch while two await their confirms"
    );
    proxy.hold(false);
    let published = publishing.await.expect("joined");
    assert_eq!(published.expect("published"), ROWS as usize);

    // Each batch marked in its own transaction: `now()` is its start.
    assert_eq!(unpublished(&env).await, 0);
    assert_eq!(
        env.count("SELECT count(DISTINCT published_at) FROM outbox")
            .await,
        i64::from(ROWS) / i64::from(BATCH),
        "one marking transaction per batch"
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM outbox o JOIN outbox p ON p.id < o.id \
             WHERE p.published_at > o.published_at OR p.attempts + o.attempts > 0"
        )
        .await,
        0,
        "claimed in id order, no attempt counted"
    );
    let got = env
        .drain(
            &env.topology.queue("probe"),
            Duration::from_secs(10),
            |got| got.len() >= ROWS as usize,
        )
        .await;
    let seqs: Vec<u32> = got
        .iter()
        .map(|d| {
            let envelope: Envelope = serde_json::from_slice(&d.data).expect("an envelope");
            envelope.decode::<Happened>().expect("a Happened").seq
        })
        .collect();
    assert_eq!(
        seqs,
        (0..ROWS).collect::<Vec<_>>(),
        "once each, in id order"
    );
    let _ = held.via_proxy.close(200, ShortString::from("done")).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_with_two_batches_in_flight_fails_both_and_marks_nothing() {
    let env = TestEnv::new().await;
    let held = two_batches_held(&env, "relay-pipeline-severed").await;
    let (proxy, relay, publishing) = (&held.proxy, &held.relay, held.publishing);
    // Every confirm of both batches is lost with the connection.
    proxy.sever();
    let result = tokio::time::timeout(Duration::from_secs(10), publishing)
        .await
        .expect("both batches give up at once, long before the confirm timeout")
        .expect("joined");
    assert!(matches!(result, Err(RelayError::Broker(_))), "{result:?}");
    assert_eq!(unpublished(&env).await, i64::from(ROWS), "nothing marked");
    assert_eq!(open_batches(&env).await, 0, "both claims ended");
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE attempts > 0")
            .await,
        0,
        "a lost connection is not the rows' fault"
    );

    // Nothing is stranded: on a new connection every row goes out.
    let channel = confirm_channel(&env.broker).await;
    let published = relay.publish_pending(&channel).await;
    assert_eq!(published.expect("published"), ROWS as usize);
    let got = env
        .drain(
            &env.topology.queue("probe"),
            Duration::from_secs(10),
            |got| got.len() >= (ROWS + 2 * u32::from(BATCH)) as usize,
        )
        .await;
    let ids: HashSet<String> = got
        .iter()
        .map(|d| {
            let envelope: Envelope = serde_json::from_slice(&d.data).expect("an envelope");
            envelope.id.to_string()
        })
        .collect();
    assert_eq!(
        ids.len(),
        ROWS as usize,
        "each row at least once (the severed batches' again)"
    );
    env.cleanup().await;
}
