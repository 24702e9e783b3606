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

/// An event with a field the outbox must not keep.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Charged {
    seq: u32,
    card_token: String,
}

impl checkout_events::Event for Charged {
    const TYPE: &'static str = "Charged";
    const VERSION: u32 = 1;
    // Bound to the test queue, so the relay's mandatory publish is routed.
    const ROUTING_KEY: &'static str = "test.happened";
    const SECRET_FIELDS: &'static [&'static str] = &["card_token"];
}

#[tokio::test]
async fn a_secret_field_is_published_then_dropped_from_the_outbox_copy() {
    let env = TestEnv::new().await;
    let mut tx = env.pool.begin().await.expect("begin");
    let charged = Charged {
        seq: 1,
        card_token: "tok_secret_visa".to_owned(),
    };
    let cause = Cause::Command {
        correlation_id: Uuid::now_v7(),
    };
    OUTBOX.emit(&mut tx, &charged, cause).await.expect("emit");
    OUTBOX
        .emit(&mut tx, &Happened { writer: 0, seq: 1 }, cause)
        .await
        .expect("emit");
    tx.commit().await.expect("commit");
    let kept = "SELECT count(*) FROM outbox WHERE envelope::text LIKE '%tok_secret_visa%'";
    assert_eq!(env.count(kept).await, 1, "kept until it is published");

    let relay = checkout_messaging::Relay::new(env.pool.clone(), env.topology.exchange());
    let channel = env.broker.create_channel().await.expect("channel");
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    assert_eq!(relay.publish_batch(&channel).await.expect("published"), 2);

    // The broker got the whole event; the outbox copy no longer has the token.
    let delivered = env
        .drain(
            &env.topology.queue("probe"),
            std::time::Duration::from_secs(10),
            |got| got.len() >= 2,
        )
        .await;
    let bodies: Vec<String> = delivered
        .iter()
        .map(|d| String::from_utf8_lossy(&d.data).into_owned())
        .collect();
    assert!(
        bodies.iter().any(|b| b.contains("tok_secret_visa")),
        "{bodies:?}"
    );
    assert_eq!(env.count(kept).await, 0, "dropped once published");
    let (seq, other): (i64, i64) = sqlx::query_as(
        "SELECT (envelope #>> '{data,seq}')::bigint, \
                (SELECT count(*) FROM outbox WHERE event_type = 'Happened' AND secret_fields IS NULL) \
         FROM outbox WHERE event_type = 'Charged'",
    )
    .fetch_one(&env.pool)
    .await
    .expect("the published row");
    assert_eq!(seq, 1, "the rest of the event is kept");
    assert_eq!(other, 1, "an event without secrets is stored as it was");
    env.cleanup().await;
}

#[tokio::test]
async fn events_emitted_together_are_one_row_each_in_the_order_given() {
    let env = TestEnv::new().await;
    let cause = Cause::Command {
        correlation_id: Uuid::now_v7(),
    };
    let charged = Charged {
        seq: 1,
        card_token: "tok_secret_visa".to_owned(),
    };
    let first = OUTBOX.prepare(&charged, cause).expect("prepare");
    let second = OUTBOX
        .prepare(&Happened { writer: 0, seq: 2 }, cause)
        .expect("prepare");
    let ids = [first.envelope().id, second.envelope().id];

    let mut tx = env.pool.begin().await.expect("begin");
    OUTBOX
        .emit_all(&mut tx, &[first.clone(), second.clone()])
        .await
        .expect("emit both");
    tx.rollback().await.expect("rollback");
    assert_eq!(
        env.count("SELECT count(*) FROM outbox").await,
        0,
        "both or none"
    );

    let mut tx = env.pool.begin().await.expect("begin");
    OUTBOX
        .emit_all(&mut tx, &[first, second])
        .await
        .expect("emit both");
    tx.commit().await.expect("commit");

    // In id order, as the relay claims them; each with its own type and
    // secrets, and the envelope its id was taken from.
    let rows: Vec<(Uuid, String, Option<Vec<String>>, Uuid)> = sqlx::query_as(
        "SELECT event_id, event_type, secret_fields, (envelope->>'id')::uuid \
         FROM outbox ORDER BY id",
    )
    .fetch_all(&env.pool)
    .await
    .expect("outbox rows");
    assert_eq!(
        rows,
        [
            (
                ids[0],
                "Charged".to_owned(),
                Some(vec!["card_token".to_owned()]),
                ids[0]
            ),
            (ids[1], "Happened".to_owned(), None, ids[1]),
        ]
    );
    env.cleanup().await;
}
