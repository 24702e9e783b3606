//! Deliveries that arrive together are applied in one transaction, and
//! that changes none of the consumer's promises: a message that fails in a
//! batch fails alone, a duplicate inside a batch is applied once, and a
//! batch whose commit fails is neither acked nor half-applied.

use crate::consumer::{GOOD, applied, envelope, stop};
use crate::support::{Happened, TestEnv, eventually, retries};
use checkout_events::Envelope;
use checkout_messaging::dead_letter::{self, header_str};
use checkout_messaging::{Consumer, Handler, HandlerError, Outcome};
use sqlx::PgConnection;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A writer whose events always fail permanently, after writing.
const DOOMED: u32 = 9;

/// Records each event in `state` and the transaction that applied it in
/// `applied_in`; DOOMED events write, then fail permanently.
struct Recorder;

impl Handler for Recorder {
    async fn handle(
        &self,
        envelope: &Envelope,
        tx: &mut PgConnection,
    ) -> Result<Outcome, HandlerError> {
        let event: Happened = envelope.decode()?;
        let note = format!("{}:{}", event.writer, event.seq);
        sqlx::query("INSERT INTO state (id, note) VALUES ($1, $2)")
            .bind(Uuid::now_v7())
            .bind(&note)
            .execute(&mut *tx)
            .await?;
        if event.writer == DOOMED {
            return Err(HandlerError::Permanent("doomed on purpose".into()));
        }
        sqlx::query("INSERT INTO applied_in (note, txid) VALUES ($1, txid_current())")
            .bind(&note)
            .execute(&mut *tx)
            .await?;
        Ok(Outcome::Applied)
    }
}

/// A fresh environment with the `applied_in` table.
async fn env() -> TestEnv {
    let env = TestEnv::new().await;
    sqlx::query("CREATE TABLE applied_in (note TEXT NOT NULL, txid BIGINT NOT NULL)")
        .execute(&env.pool)
        .await
        .expect("applied_in table");
    env
}

/// A [`Recorder`] consumer whose first batch waits (up to 5 s) until it
/// holds `size` deliveries, so the test knows they go together.
fn start(env: &TestEnv, size: u16) -> (CancellationToken, JoinHandle<Result<(), lapin::Error>>) {
    let shutdown = CancellationToken::new();
    let consumer = Consumer::new(env.pool.clone(), Recorder, &env.topology, "probe")
        .with_prefetch(size)
        .with_batch_limit(size)
        .with_linger(Duration::from_secs(5))
        .with_retries(retries());
    let task = tokio::spawn(consumer.run(env.broker.clone(), env.broker.clone(), shutdown.clone()));
    (shutdown, task)
}

/// Publishes `events`, then starts a consumer whose first batch holds them all.
async fn publish_and_start(
    env: &TestEnv,
    events: &[&Envelope],
) -> (CancellationToken, JoinHandle<Result<(), lapin::Error>>) {
    for event in events {
        env.publish(event).await;
    }
    start(env, u16::try_from(events.len()).expect("a small batch"))
}

/// How many transactions applied the recorded events.
async fn transactions(env: &TestEnv) -> i64 {
    env.count("SELECT count(DISTINCT txid) FROM applied_in")
        .await
}

#[tokio::test]
async fn a_message_failing_in_a_batch_is_dead_lettered_alone_and_the_rest_applied_once() {
    let env = env().await;
    let batch = [envelope(GOOD, 1), envelope(DOOMED, 2), envelope(GOOD, 3)];
    let (shutdown, task) = publish_and_start(&env, &[&batch[0], &batch[1], &batch[2]]).await;
    let dead = env
        .drain(
            &env.topology.dead_letter_queue("probe"),
            Duration::from_secs(10),
            |got| !got.is_empty(),
        )
        .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            applied(&env, GOOD, 3).await == 1
        })
        .await,
        "the message after the failing one is applied"
    );
    stop(shutdown, task).await;

    assert_eq!(dead.len(), 1, "the failing message is dead-lettered");
    let headers = dead[0].properties.headers().as_ref();
    assert_eq!(header_str(headers, dead_letter::REASON), Some("permanent"));
    let body: Envelope = serde_json::from_slice(&dead[0].data).expect("the body is unchanged");
    assert_eq!(body, batch[1]);
    assert_eq!(applied(&env, GOOD, 1).await, 1, "applied exactly once");
    assert_eq!(applied(&env, GOOD, 3).await, 1, "applied exactly once");
    assert_eq!(
        applied(&env, DOOMED, 2).await,
        0,
        "what the failing handler wrote was rolled back"
    );
    assert_eq!(transactions(&env).await, 1, "the two were applied together");
    assert_eq!(
        env.count("SELECT count(*) FROM processed_events").await,
        2,
        "the failing message left no inbox row"
    );
    assert_eq!(
        env.ready(&env.topology.queue("probe")).await,
        0,
        "all acked"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn an_event_delivered_twice_in_one_batch_is_applied_once() {
    let env = env().await;
    let twice = envelope(GOOD, 1);
    let (shutdown, task) = publish_and_start(&env, &[&twice, &envelope(GOOD, 2), &twice]).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            applied(&env, GOOD, 2).await == 1
        })
        .await,
        "the batch is applied"
    );
    stop(shutdown, task).await;

    assert_eq!(applied(&env, GOOD, 1).await, 1, "applied once");
    assert_eq!(transactions(&env).await, 1, "in one transaction");
    assert_eq!(env.count("SELECT count(*) FROM processed_events").await, 2);
    assert_eq!(
        env.ready(&env.topology.queue("probe")).await,
        0,
        "both copies were acked"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_second_copy_of_a_failing_event_in_a_batch_fails_on_its_own_account() {
    let env = env().await;
    let doomed = envelope(DOOMED, 1);
    let (shutdown, task) = publish_and_start(&env, &[&doomed, &envelope(GOOD, 2), &doomed]).await;
    // As in transactions of their own: the first copy's failure gives its
    // inbox row back, so the second is not taken for a duplicate.
    let dead = env
        .drain(
            &env.topology.dead_letter_queue("probe"),
            Duration::from_secs(10),
            |got| got.len() >= 2,
        )
        .await;
    stop(shutdown, task).await;
    assert_eq!(dead.len(), 2, "each copy is dead-lettered");
    assert_eq!(applied(&env, GOOD, 2).await, 1);
    assert_eq!(applied(&env, DOOMED, 1).await, 0);
    assert_eq!(env.count("SELECT count(*) FROM processed_events").await, 1);
    env.cleanup().await;
}

/// Makes every commit of a transaction that wrote to `state` fail, as a
/// connection lost during the commit would (SQLSTATE 08006), while
/// `commit_fuse` holds a row; counts the failed commits in a sequence
/// (which no rollback undoes).
async fn fail_commits(env: &TestEnv) {
    for sql in [
        "CREATE TABLE commit_fuse (armed BOOLEAN)",
        "INSERT INTO commit_fuse VALUES (true)",
        "CREATE SEQUENCE failed_commits",
        "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
           IF EXISTS (SELECT 1 FROM commit_fuse) THEN \
             PERFORM nextval('failed_commits'); \
             RAISE EXCEPTION 'commit refused on purpose' USING ERRCODE = '08006'; \
           END IF; \
           RETURN NULL; \
         END $$",
        "CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON state \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_commit()",
    ] {
        sqlx::query(sql).execute(&env.pool).await.expect(sql);
    }
}

#[tokio::test]
async fn a_batch_whose_commit_fails_is_not_acked_and_is_applied_once_when_redelivered() {
    let env = env().await;
    fail_commits(&env).await;
    let batch: Vec<_> = (1..=3).map(|seq| envelope(GOOD, seq)).collect();
    let (shutdown, task) = publish_and_start(&env, &batch.iter().collect::<Vec<_>>()).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.count("SELECT last_value FROM failed_commits").await >= 2
        })
        .await,
        "the batch's commit failed, and failed again when tried again"
    );
    // Stopping returns every unacked delivery to the queue.
    stop(shutdown, task).await;
    let queue = env.topology.queue("probe");
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.ready(&queue).await == 3
        })
        .await,
        "nothing of the batch was acked"
    );
    assert_eq!(env.count("SELECT count(*) FROM state").await, 0);
    assert_eq!(env.count("SELECT count(*) FROM processed_events").await, 0);

    sqlx::query("DELETE FROM commit_fuse")
        .execute(&env.pool)
        .await
        .expect("disarm");
    let (shutdown, task) = start(&env, 3);
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.count("SELECT count(*) FROM processed_events").await == 3
        })
        .await,
        "the redelivered batch is applied"
    );
    stop(shutdown, task).await;
    for seq in 1..=3 {
        assert_eq!(
            applied(&env, GOOD, seq).await,
            1,
            "event {seq} applied once"
        );
    }
    assert_eq!(env.ready(&queue).await, 0, "all acked");
    env.assert_nothing_dead_lettered("probe").await;
    env.cleanup().await;
}
