//! Acks sent as one `multiple` ack never settle a delivery whose verdict is
//! still being carried out (its batch committing, its dead letter awaiting
//! a confirm): deliveries settled after it are acked without it, and it
//! stays with the broker.

use crate::consumer::{GOOD, Scripted, applied, envelope};
use crate::permissions::rabbitmqctl;
use crate::proxy::Proxy;
use crate::support::{Happened, TestEnv, eventually, retries};
use checkout_events::Envelope;
use checkout_messaging::{Consumer, connect};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Deliveries of `queue` the broker counts as handed over and not acked.
async fn unacked(queue: &str) -> Option<u64> {
    let listed = rabbitmqctl(
        &[
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages_unacknowledged",
        ],
        None,
    )
    .await
    .ok()?;
    listed.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next() == Some(queue))
            .then(|| fields.next()?.parse().ok())
            .flatten()
    })
}

/// Waits until the GOOD events `seqs` are applied, and then until every
/// delivery of `queue` is acked but one: the one held back.
async fn applied_and_acked_but_one(env: &TestEnv, queue: &str, seqs: [u32; 2]) {
    assert!(
        eventually(Duration::from_secs(10), || async {
            applied(env, GOOD, seqs[0]).await == 1 && applied(env, GOOD, seqs[1]).await == 1
        })
        .await,
        "the events behind the held-back delivery were applied"
    );
    assert!(
        eventually(Duration::from_secs(20), || async {
            unacked(queue).await == Some(1)
        })
        .await,
        "every delivery acked but the held-back one"
    );
}

/// The probe queue's consumer with prefetch 4, so that two ready
/// deliveries behind an open one are acked on their own (see `acks`) and
/// the broker shows the one left unacked.
fn probe_consumer(env: &TestEnv) -> Consumer<Scripted> {
    Consumer::new(
        env.pool.clone(),
        Scripted::default(),
        &env.topology,
        "probe",
    )
    .with_prefetch(4)
    .with_retries(retries())
    .with_drain_timeout(Duration::from_millis(200))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_settled_after_an_unsettled_one_are_acked_without_it() {
    let env = TestEnv::new().await;
    let queue = env.topology.queue("probe");
    // Dead letters go out through a proxy that holds back the confirms:
    // the poison message's verdict cannot be carried out.
    let proxy = Proxy::start().await;
    let publish = Arc::new(
        connect(&proxy.url, "acks-publisher")
            .await
            .expect("rabbitmq through the proxy"),
    );
    let shutdown = CancellationToken::new();
    let consumer = probe_consumer(&env);
    let task = tokio::spawn(consumer.run(env.broker.clone(), publish.clone(), shutdown.clone()));
    // Once one event is applied, the consumer's publishing channel is open.
    env.publish(&envelope(GOOD, 99)).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            applied(&env, GOOD, 99).await == 1
        })
        .await,
        "the consumer runs"
    );

    proxy.hold(true);
    env.publish_raw("test.happened", b"poison, first in the queue")
        .await;
    for seq in 0..2 {
        env.publish(&envelope(GOOD, seq)).await;
    }
    applied_and_acked_but_one(&env, &queue, [0, 1]).await;
    // Its forward abandoned at shutdown and the consuming channel closed,
    // the poison message goes back to its queue: no ack of a later
    // delivery took it along.
    shutdown.cancel();
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.ready(&queue).await == 1
        })
        .await,
        "the unsettled delivery is back in its queue"
    );
    // Closing the publishing channel waits for the broker: let it answer.
    proxy.sever();
    let _ = task.await.expect("joined");
    let left = env
        .drain(&queue, Duration::from_secs(10), |got| !got.is_empty())
        .await;
    let bodies: Vec<&[u8]> = left.iter().map(|d| d.data.as_slice()).collect();
    assert_eq!(bodies, [b"poison, first in the queue".as_slice()]);
    assert_eq!(env.ready(&queue).await, 0, "the good ones were acked");
    env.cleanup().await;
}

/// Makes the commit of any transaction that applied `writer:seq` wait for
/// the advisory lock `HOLD_COMMIT` (a deferred trigger runs at commit).
async fn hold_commits_of(env: &TestEnv, writer: u32, seq: u32) {
    let body = format!(
        "CREATE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.note = '{writer}:{seq}' THEN PERFORM pg_advisory_xact_lock_shared({HOLD_COMMIT}); END IF; \
           RETURN NULL; END $$"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(body))
        .execute(&env.pool)
        .await
        .expect("trigger function");
    sqlx::query(
        "CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON state \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hold_commit()",
    )
    .execute(&env.pool)
    .await
    .expect("trigger");
}

const HOLD_COMMIT: i64 = 4242;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_settled_before_an_earlier_one_commits_does_not_ack_it() {
    let env = TestEnv::new().await;
    let queue = env.topology.queue("probe");
    hold_commits_of(&env, GOOD, 0).await;
    let mut locker = env.pool.acquire().await.expect("connection");
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(HOLD_COMMIT)
        .execute(&mut *locker)
        .await
        .expect("lock");
    for seq in 0..3 {
        env.publish(&envelope(GOOD, seq)).await;
    }
    // A batch per delivery.
    let shutdown = CancellationToken::new();
    let consumer = probe_consumer(&env).with_batch_limit(1);
    let task = tokio::spawn(consumer.run(env.broker.clone(), env.broker.clone(), shutdown.clone()));

    applied_and_acked_but_one(&env, &queue, [1, 2]).await;
    assert_eq!(
        applied(&env, GOOD, 0).await,
        0,
        "the first is not committed"
    );
    // Abandoned at shutdown, the uncommitted delivery goes back to its queue.
    shutdown.cancel();
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.ready(&queue).await == 1
        })
        .await,
        "the uncommitted delivery is back in its queue"
    );
    let _ = task.await.expect("joined");
    let left = env
        .drain(&queue, Duration::from_secs(10), |got| !got.is_empty())
        .await;
    let seqs: Vec<u32> = left
        .iter()
        .map(|d| {
            let envelope: Envelope = serde_json::from_slice(&d.data).expect("an envelope");
            envelope.decode::<Happened>().expect("a Happened").seq
        })
        .collect();
    assert_eq!(seqs, [0]);
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(HOLD_COMMIT)
        .execute(&mut *locker)
        .await
        .expect("unlock");
    drop(locker);
    env.cleanup().await;
}
