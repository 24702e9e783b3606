//! An outage of the consumer's own database is waited out, not retried:
//! however long it lasts, it costs no attempt and dead-letters nothing.
//! A panicking handler is a failed attempt, retried like any other.

use crate::consumer::{GOOD, PANICKY, applied, envelope, start, stop};
use crate::support::{TestEnv, eventually, retries};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_database_outage_longer_than_the_retry_budget_delays_but_dead_letters_nothing() {
    let env = TestEnv::new().await;
    let (shutdown, task) = start(&env, 4);
    // The consumer is up and has applied something before the outage.
    env.publish(&envelope(GOOD, 0)).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            applied(&env, GOOD, 0).await == 1
        })
        .await,
        "applied before the outage"
    );

    env.refuse_connections(true).await;
    let during: Vec<_> = (1..=10).map(|seq| envelope(GOOD, seq)).collect();
    for event in &during {
        env.publish(event).await;
    }
    // The consumer takes what its prefetch allows and holds it: the rest
    // waits in the queue, and nothing goes to a retry or dead-letter queue.
    let queue = env.topology.queue("probe");
    let held = Instant::now() + Duration::from_secs(10);
    while env.ready(&queue).await != 6 {
        assert!(
            Instant::now() < held,
            "the consumer holds its prefetch of 4"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The outage lasts several times the whole retry budget (100 ms + 200 ms).
    let budget: Duration = retries().delays().iter().sum();
    tokio::time::sleep(budget * 5).await;
    assert_eq!(env.ready(&env.topology.dead_letter_queue("probe")).await, 0);
    for delay in retries().delays() {
        assert_eq!(
            env.ready(&env.topology.retry_queue("probe", *delay)).await,
            0
        );
    }
    assert_eq!(
        env.ready(&queue).await,
        6,
        "no delivery was settled meanwhile"
    );

    env.refuse_connections(false).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            env.count("SELECT count(*) FROM processed_events").await == 11
        })
        .await,
        "every event is applied once the database is back"
    );
    for seq in 1..=10 {
        assert_eq!(
            applied(&env, GOOD, seq).await,
            1,
            "event {seq} applied once"
        );
    }
    stop(shutdown, task).await;
    env.assert_nothing_dead_lettered("probe").await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_panicking_handler_is_retried_not_left_unacked() {
    let env = TestEnv::new().await;
    env.publish(&envelope(PANICKY, 1)).await;
    env.publish(&envelope(GOOD, 2)).await;

    // Prefetch 1: a delivery left unacked by the panic would block GOOD.
    let (shutdown, task) = start(&env, 1);
    assert!(
        eventually(Duration::from_secs(10), || async {
            applied(&env, PANICKY, 1).await == 1
        })
        .await,
        "the message is applied on its retry"
    );
    assert_eq!(
        applied(&env, GOOD, 2).await,
        1,
        "the message behind went on"
    );
    stop(shutdown, task).await;
    env.cleanup().await;
}
