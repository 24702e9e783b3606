//! The outbox row commits with the state change, or neither does.

use crate::support::{Happened, TestEnv};
use checkout_messaging::{Cause, Outbox};
use uuid::Uuid;

const OUTBOX: Outbox = Outbox::new("test-service");

async fn change_state_and_emit(env: &TestEnv, commit: bool) -> Uuid {
    let id = Uuid::now_v7();
    let mut tx = env.pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO state (id, note) VALUES ($1, 'changed')")
        .bind(id)
        .execute(&mut *tx)
        .await
        .expect("state change");
    OUTBOX
        .emit(
            &mut tx,
            &Happened { writer: 0, seq: 0 },
            Cause::Command { correlation_id: id },
        )
        .await
        .expect("emit");
    if commit {
        tx.commit().await.expect("commit");
    } else {
        tx.rollback().await.expect("rollback");
    }
    id
}

#[tokio::test]
async fn a_committed_change_has_its_outbox_row() {
    let env = TestEnv::new().await;
    let id = change_state_and_emit(&env, true).await;

    let (event_type, routing_key, correlation): (String, String, Uuid) = sqlx::query_as(
        "SELECT event_type, routing_key, (envelope->>'correlation_id')::uuid FROM outbox",
    )
    .fetch_one(&env.pool)
    .await
    .expect("exactly one outbox row");
    assert_eq!(
        (event_type.as_str(), routing_key.as_str()),
        ("Happened", "test.happened")
    );
    assert_eq!(correlation, id);
    assert_eq!(env.count("SELECT count(*) FROM state").await, 1);
    env.cleanup().await;
}

#[tokio::test]
async fn a_rolled_back_change_leaves_no_outbox_row() {
    let env = TestEnv::new().await;
    change_state_and_emit(&env, false).await;
    assert_eq!(env.count("SELECT count(*) FROM state").await, 0);
    assert_eq!(env.count("SELECT count(*) FROM outbox").await, 0);
    env.cleanup().await;
}
