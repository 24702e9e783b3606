//! The consumer applies each event once whatever the broker redelivers,
//! retries transient failures without holding up the messages behind, and
//! dead-letters what cannot succeed with the reason — and goes on.

use crate::support::{Happened, TestEnv, eventually, retries};
use checkout_events::Envelope;
use checkout_messaging::dead_letter::{self, header_int, header_str};
use checkout_messaging::{Consumer, Handler, HandlerError, Outcome};
use lapin::message::Delivery;
use sqlx::PgConnection;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Writers with scripted behaviour.
pub(crate) const GOOD: u32 = 1;
const FLAKY: u32 = 2;
pub(crate) const BROKEN: u32 = 3;
/// Panics on its first attempt.
pub(crate) const PANICKY: u32 = 4;

/// Records every application of an event in `state`; events from the
/// FLAKY writer fail transiently twice first, BROKEN ones always, PANICKY
/// ones panic once.
#[derive(Clone)]
pub(crate) struct Scripted {
    attempts: Arc<Mutex<HashMap<Uuid, u32>>>,
    /// Whether BROKEN events fail; clearing it is "fixing the cause".
    pub(crate) broken: Arc<AtomicBool>,
}

/// Counts one more attempt at `envelope` in `attempts`; returns which
/// attempt this is (1 for the first).
pub(crate) fn count_attempt(
    attempts: &Mutex<HashMap<Uuid, u32>>,
    envelope: &Envelope,
) -> Result<u32, HandlerError> {
    let mut attempts = attempts
        .lock()
        .map_err(|_| HandlerError::Permanent("poisoned lock".into()))?;
    let n = attempts.entry(envelope.id).or_default();
    *n += 1;
    Ok(*n)
}

impl Default for Scripted {
    fn default() -> Self {
        Self {
            attempts: Arc::default(),
            broken: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl Handler for Scripted {
    async fn handle(
        &self,
        envelope: &Envelope,
        tx: &mut PgConnection,
    ) -> Result<Outcome, HandlerError> {
        // As every service's handler does: a type it does not know is
        // ignored (forward compatibility), not poison.
        if !envelope.is::<Happened>() {
            return Ok(Outcome::Ignored);
        }
        let event: Happened = envelope.decode()?;
        let attempt = count_attempt(&self.attempts, envelope)?;
        assert!(
            !(event.writer == PANICKY && attempt == 1),
            "a bug in the handler"
        );
        let fail = match event.writer {
            FLAKY => attempt <= 2,
            BROKEN => self.broken.load(Ordering::SeqCst),
            _ => false,
        };
        if fail {
            return Err(HandlerError::Transient(
                format!("database unavailable (attempt {attempt})").into(),
            ));
        }
        sqlx::query("INSERT INTO state (id, note) VALUES ($1, $2)")
            .bind(Uuid::now_v7())
            .bind(format!("{}:{}", event.writer, event.seq))
            .execute(&mut *tx)
            .await?;
        Ok(Outcome::Applied)
    }
}

pub(crate) fn envelope(writer: u32, seq: u32) -> Envelope {
    Envelope::new(&Happened { writer, seq }, "test", Uuid::now_v7(), None).expect("envelope")
}

/// How often `writer:seq` was applied.
pub(crate) async fn applied(env: &TestEnv, writer: u32, seq: u32) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM state WHERE note = $1")
        .bind(format!("{writer}:{seq}"))
        .fetch_one(&env.pool)
        .await
        .expect("count")
}

/// The order in which events were applied, as `writer:seq`.
async fn applied_order(env: &TestEnv) -> Vec<String> {
    sqlx::query_scalar("SELECT note FROM state ORDER BY id")
        .fetch_all(&env.pool)
        .await
        .expect("notes")
}

/// Runs a [`Scripted`] consumer on the probe queue until the token is cancelled.
pub(crate) fn start(
    env: &TestEnv,
    prefetch: u16,
) -> (CancellationToken, JoinHandle<Result<(), lapin::Error>>) {
    start_with(env, prefetch, Scripted::default())
}

/// Like [`start`], with a handler the test keeps a hold of.
pub(crate) fn start_with(
    env: &TestEnv,
    prefetch: u16,
    handler: Scripted,
) -> (CancellationToken, JoinHandle<Result<(), lapin::Error>>) {
    let shutdown = CancellationToken::new();
    let consumer = Consumer::new(env.pool.clone(), handler, &env.topology, "probe")
        .with_prefetch(prefetch)
        .with_retries(retries());
    let task = tokio::spawn(consumer.run(env.broker.clone(), env.broker.clone(), shutdown.clone()));
    (shutdown, task)
}

pub(crate) async fn stop(shutdown: CancellationToken, task: JoinHandle<Result<(), lapin::Error>>) {
    shutdown.cancel();
    task.await
        .expect("joined")
        .expect("consumer stopped cleanly");
}

async fn dead_letters(env: &TestEnv, count: usize) -> Vec<Delivery> {
    env.drain(
        &env.topology.dead_letter_queue("probe"),
        Duration::from_secs(10),
        |got| got.len() >= count,
    )
    .await
}

#[tokio::test]
async fn a_redelivered_message_changes_nothing() {
    let env = TestEnv::new().await;
    let duplicate = envelope(GOOD, 1);
    let sentinel = envelope(GOOD, 2);
    env.publish(&duplicate).await;
    env.publish(&duplicate).await;
    env.publish(&sentinel).await;

    // Prefetch 1: deliveries are handled in order, so once the sentinel is
    // applied both copies of the duplicate have been handled.
    let (shutdown, task) = start(&env, 1);
    assert!(
        eventually(Duration::from_secs(10), || async {
            applied(&env, GOOD, 2).await == 1
        })
        .await,
        "the sentinel is applied"
    );
    assert_eq!(
        applied(&env, GOOD, 1).await,
        1,
        "applied once despite two deliveries"
    );
    assert_eq!(env.count("SELECT count(*) FROM processed_events").await, 2);
    stop(shutdown, task).await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_transient_failure_is_retried_without_holding_up_the_messages_behind() {
    let env = TestEnv::new().await;
    env.publish(&envelope(FLAKY, 1)).await;
    env.publish(&envelope(GOOD, 2)).await;

    // Prefetch 1: were the retry waiting in the consumer, GOOD would wait too.
    let (shutdown, task) = start(&env, 1);
    assert!(
        eventually(Duration::from_secs(10), || async {
            applied(&env, FLAKY, 1).await == 1
        })
        .await,
        "the flaky message is applied in the end"
    );
    assert_eq!(
        applied_order(&env).await,
        ["1:2", "2:1"],
        "the message behind went first"
    );
    assert_eq!(applied(&env, FLAKY, 1).await, 1, "applied exactly once");
    stop(shutdown, task).await;
    let leftovers = env
        .drain(
            &env.topology.dead_letter_queue("probe"),
            Duration::ZERO,
            |_| false,
        )
        .await;
    assert!(leftovers.is_empty(), "nothing was dead-lettered");
    env.cleanup().await;
}

#[tokio::test]
async fn a_message_that_always_fails_is_dead_lettered_with_the_reason() {
    let env = TestEnv::new().await;
    let broken = envelope(BROKEN, 1);
    env.publish(&broken).await;
    env.publish(&envelope(GOOD, 2)).await;

    let (shutdown, task) = start(&env, 4);
    let dead = dead_letters(&env, 1).await;
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    let headers = letter.properties.headers().as_ref();
    assert_eq!(header_str(headers, dead_letter::REASON), Some("exhausted"));
    assert_eq!(
        header_int(headers, dead_letter::ATTEMPTS),
        Some(i64::from(retries().max_attempts()))
    );
    assert_eq!(header_str(headers, dead_letter::HANDLER), Some("probe"));
    assert_eq!(
        header_str(headers, dead_letter::ORIGINAL_ROUTING_KEY),
        Some("test.happened")
    );
    assert_eq!(
        header_str(headers, dead_letter::ORIGINAL_EXCHANGE),
        Some(env.topology.exchange().as_str())
    );
    assert!(header_str(headers, dead_letter::FAILED_AT).is_some());
    let error = header_str(headers, dead_letter::ERROR).unwrap_or_default();
    assert!(
        error.contains("database unavailable (attempt 3)"),
        "{error}"
    );
    let body: Envelope = serde_json::from_slice(&letter.data).expect("the body is unchanged");
    assert_eq!(body, broken);

    assert_eq!(applied(&env, GOOD, 2).await, 1, "the consumer went on");
    assert_eq!(applied(&env, BROKEN, 1).await, 0);
    stop(shutdown, task).await;
    env.cleanup().await;
}

#[tokio::test]
async fn poison_goes_straight_to_the_dead_letter_queue_with_its_decode_error() {
    let env = TestEnv::new().await;
    let mut unknown_version = envelope(GOOD, 3);
    unknown_version.version = 99;
    let mut missing_field = envelope(GOOD, 4);
    missing_field.data = serde_json::json!({ "writer": 1 });
    let poison: Vec<(Vec<u8>, &str)> = vec![
        (b"this is not json".to_vec(), "not an event envelope"),
        (
            br#"{"id":"not an envelope"}"#.to_vec(),
            "not an event envelope",
        ),
        (
            serde_json::to_vec(&unknown_version).expect("json"),
            "version 99 is not supported",
        ),
        (
            serde_json::to_vec(&missing_field).expect("json"),
            "missing field `seq`",
        ),
    ];
    for (body, _) in &poison {
        env.publish_raw("test.happened", body).await;
    }
    let mut unknown_type = envelope(GOOD, 5);
    unknown_type.event_type = "SomethingNew".into();
    env.publish(&unknown_type).await;
    env.publish(&envelope(GOOD, 6)).await;

    let (shutdown, task) = start(&env, 8);
    assert!(
        eventually(Duration::from_secs(10), || async {
            applied(&env, GOOD, 6).await == 1
        })
        .await,
        "the good message after the poison is applied"
    );
    // Stopping waits for the handlers in flight, so the dead-letter queue
    // holds everything it will ever get from this test.
    stop(shutdown, task).await;
    let dead = dead_letters(&env, poison.len()).await;
    assert_eq!(
        dead.len(),
        poison.len(),
        "each poison message is dead-lettered"
    );
    assert_eq!(
        env.ready(&env.topology.dead_letter_queue("probe")).await,
        0,
        "nothing else is dead-lettered (the unknown type is ignored)"
    );
    for (body, expected_error) in &poison {
        let letter = dead.iter().find(|d| &d.data == body).unwrap_or_else(|| {
            let seen: Vec<_> = dead
                .iter()
                .map(|d| {
                    let headers = d.properties.headers().as_ref();
                    format!(
                        "{} [{:?}: {:?}]",
                        String::from_utf8_lossy(&d.data),
                        header_str(headers, dead_letter::REASON),
                        header_str(headers, dead_letter::ERROR)
                    )
                })
                .collect();
            panic!(
                "{} is dead-lettered; the queue held {seen:#?}",
                String::from_utf8_lossy(body)
            )
        });
        let headers = letter.properties.headers().as_ref();
        assert_eq!(header_str(headers, dead_letter::REASON), Some("poison"));
        assert_eq!(
            header_int(headers, dead_letter::ATTEMPTS),
            Some(1),
            "never retried"
        );
        let error = header_str(headers, dead_letter::ERROR).unwrap_or_default();
        assert!(
            error.contains(expected_error),
            "{error:?} should mention {expected_error:?}"
        );
    }
    assert_eq!(
        env.count("SELECT count(*) FROM processed_events").await,
        1,
        "only the good message is in the inbox; the unknown type is ignored unrecorded"
    );
    env.cleanup().await;
}
