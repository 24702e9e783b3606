//! `checkoutctl dlq` and `outbox`: the commands, run in-process as the
//! binary runs them, against the real broker and database.

use crate::consumer::{BROKEN, Scripted, applied, envelope, start_with, stop};
use crate::support::{TestEnv, eventually};
use checkout_operator::cli::Cli;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What a `checkoutctl` run printed, and whether it succeeded.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) status: Status,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

/// Whether a `checkoutctl` run succeeded (exit code 0).
#[derive(Debug)]
pub(crate) struct Status(bool);

impl Status {
    pub(crate) fn success(&self) -> bool {
        self.0
    }
}

/// Runs `checkoutctl args…` in-process, as the binary does: an error is
/// what it would print on stderr before exiting with 1.
pub(crate) async fn run_checkoutctl(args: &[&str]) -> Output {
    let cli = Cli::from_args(std::iter::once("checkoutctl").chain(args.iter().copied()))
        .expect("valid arguments");
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let done = cli.run(&mut stdout, &mut stderr).await;
    if let Err(error) = &done {
        stderr.extend_from_slice(format!("checkoutctl: {error:#}\n").as_bytes());
    }
    Output {
        status: Status(done.is_ok()),
        stdout,
        stderr,
    }
}

/// Runs `checkoutctl --namespace <the test's> args…`.
pub(crate) async fn checkoutctl(env: &TestEnv, args: &[&str]) -> Output {
    let namespace = env
        .topology
        .exchange()
        .trim_end_matches(".events")
        .to_owned();
    let mut all = vec!["--namespace", namespace.as_str()];
    all.extend_from_slice(args);
    run_checkoutctl(&all).await
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn list_show_replay_and_purge_dead_letters() {
    let env = TestEnv::new().await;
    let handler = Scripted::default();
    let (shutdown, task) = start_with(&env, 8, handler.clone());
    let dlq = env.topology.dead_letter_queue("probe");

    // The same event twice (a broker redelivery, say); both are exhausted.
    let failing = envelope(BROKEN, 1);
    env.publish(&failing).await;
    env.publish(&failing).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.ready(&dlq).await == 2
        })
        .await,
        "both copies are dead-lettered"
    );
    let id = failing.id.to_string();

    let list = checkoutctl(&env, &["dlq", "list", "--service", "probe"]).await;
    assert!(list.status.success(), "{list:?}");
    let text = stdout(&list);
    assert_eq!(text.matches(&id).count(), 2, "{text}");
    assert!(
        text.contains("exhausted") && text.contains("test.happened"),
        "{text}"
    );
    assert!(text.contains("2 dead letter(s)"), "{text}");

    let show = checkoutctl(&env, &["dlq", "show", "--service", "probe", &id]).await;
    assert!(show.status.success(), "{show:?}");
    let text = stdout(&show);
    assert!(text.contains("database unavailable"), "{text}");
    assert!(text.contains("\"writer\": 3"), "the body is shown: {text}");
    assert_eq!(env.ready(&dlq).await, 2, "looking removes nothing");

    // Fix the cause, replay everything (to probe's own queue: the test
    // service is not one of the checkout's, so its bindings are given):
    // applied once, the copy deduplicated.
    handler.broken.store(false, Ordering::SeqCst);
    let replay = checkoutctl(
        &env,
        &[
            "dlq",
            "replay",
            "--service",
            "probe",
            "--routing-keys",
            "test.happened",
            "--all",
        ],
    )
    .await;
    assert!(replay.status.success(), "{replay:?}");
    assert!(
        stdout(&replay).contains("replayed 2, left 0"),
        "{}",
        stdout(&replay)
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.count("SELECT count(*) FROM processed_events").await == 1
                && env.ready(&env.topology.queue("probe")).await == 0
        })
        .await
    );
    assert_eq!(applied(&env, BROKEN, 1).await, 1);
    assert_eq!(env.ready(&dlq).await, 0);

    // Purge asks for confirmation, then empties the queue.
    env.publish_raw("test.happened", b"poison").await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.ready(&dlq).await == 1
        })
        .await
    );
    let refused = checkoutctl(&env, &["dlq", "purge", "--service", "probe"]).await;
    assert!(!refused.status.success());
    assert_eq!(env.ready(&dlq).await, 1);
    let purge = checkoutctl(&env, &["dlq", "purge", "--service", "probe", "--yes"]).await;
    assert!(stdout(&purge).contains("purged 1"), "{purge:?}");
    assert_eq!(env.ready(&dlq).await, 0);

    stop(shutdown, task).await;
    env.cleanup().await;
}

#[tokio::test]
async fn outbox_lists_and_unparks_parked_rows() {
    let env = TestEnv::new().await;
    let outbox = checkout_messaging::Outbox::new("test-service");
    let mut tx = env.pool.begin().await.expect("begin");
    let cause = checkout_messaging::Cause::Command {
        correlation_id: uuid::Uuid::now_v7(),
    };
    let parked = outbox
        .emit(
            &mut tx,
            &crate::support::Happened { writer: 1, seq: 1 },
            cause,
        )
        .await
        .expect("emit");
    tx.commit().await.expect("commit");
    // As the relay leaves a row the broker refused on every attempt.
    sqlx::query(
        "UPDATE outbox SET attempts = 20, last_error = 'nacked by the broker', \
         parked_at = now() WHERE event_id = $1",
    )
    .bind(parked)
    .execute(&env.pool)
    .await
    .expect("park the row");
    let database = env.db().url().to_owned();

    let list = checkoutctl(&env, &["outbox", "--database-url", &database, "parked"]).await;
    assert!(list.status.success(), "{list:?}");
    let text = stdout(&list);
    assert!(text.contains(&parked.to_string()), "{text}");
    assert!(text.contains("nacked by the broker"), "{text}");
    assert!(text.contains("1 parked row(s)"), "{text}");

    let id = parked.to_string();
    let unpark = checkoutctl(
        &env,
        &["outbox", "--database-url", &database, "unpark", &id],
    )
    .await;
    assert!(unpark.status.success(), "{unpark:?}");
    assert!(stdout(&unpark).contains("unparked 1 row(s)"));
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE parked_at IS NULL AND attempts = 0")
            .await,
        1,
        "due again, with its attempts reset"
    );
    let again = checkoutctl(
        &env,
        &["outbox", "--database-url", &database, "unpark", &id],
    )
    .await;
    assert!(
        !again.status.success(),
        "nothing left to unpark is an error"
    );
    env.cleanup().await;
}
