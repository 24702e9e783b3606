//! A service on its own user declares its retries, and its consumer
//! refuses forged events whoever published them.

use crate::consumer::count_attempt;
use crate::permissions::*;
use crate::support::eventually;
use checkout_events::{Envelope, Event, OrderConfirmed};
use checkout_messaging::{Consumer, Handler, HandlerError, Outcome};
use checkout_operator::dlq::{self, DeadLetter};
use lapin::types::ShortString;
use sqlx::PgConnection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Records every event it is given; fails the first attempt at each.
#[derive(Clone, Default)]
pub(crate) struct Recorder {
    attempts: Arc<Mutex<HashMap<Uuid, u32>>>,
}

impl Handler for Recorder {
    async fn handle(
        &self,
        envelope: &Envelope,
        tx: &mut PgConnection,
    ) -> Result<Outcome, HandlerError> {
        let attempt = count_attempt(&self.attempts, envelope)?;
        if attempt == 1 {
            return Err(HandlerError::Transient("the first try fails".into()));
        }
        sqlx::query("INSERT INTO state (id, note) VALUES ($1, $2)")
            .bind(envelope.id)
            .bind(&envelope.event_type)
            .execute(&mut *tx)
            .await?;
        Ok(Outcome::Applied)
    }
}

#[tokio::test]
async fn a_service_on_its_own_user_declares_retries_and_refuses_forged_events() {
    let mut env = Secured::new().await;
    let pool = env.database().await;
    let inventory = Arc::new(env.connect_as("inventory").await);
    let order = env.connect_as("order").await;
    let payment = env.connect_as("payment").await;
    let admin = connect_as_admin().await;
    let t = env.topology.clone();

    // What the service does at start, with its own user only.
    let declared = t.declare_own(&inventory, "inventory", &retries()).await;
    let stop = CancellationToken::new();
    let consumer =
        Consumer::new(pool.clone(), Recorder::default(), &t, "inventory").with_retries(retries());
    let running = tokio::spawn(consumer.run(inventory.clone(), inventory.clone(), stop.clone()));

    // The owner, as itself: applied, after a retry through the service's
    // own retry exchange and delay queue.
    let genuine =
        Envelope::new(&confirmed(), "order-service", Uuid::now_v7(), None).expect("envelope");
    let sent = publish(
        &order,
        &t.exchange(),
        OrderConfirmed::ROUTING_KEY,
        &serde_json::to_vec(&genuine).expect("json"),
    )
    .await;
    // Forged: the right routing key, another source — with the owner's
    // credentials, and with the administrator's.
    let by_owner = envelope(&confirmed(), "payment-service");
    let by_admin = envelope(&confirmed(), "test");
    let sent_by_owner = publish(
        &order,
        &t.exchange(),
        OrderConfirmed::ROUTING_KEY,
        &by_owner,
    )
    .await;
    let sent_by_admin = publish(
        &admin,
        &t.exchange(),
        OrderConfirmed::ROUTING_KEY,
        &by_admin,
    )
    .await;
    // And what Payment's user cannot send at all, it cannot forge either.
    let by_payment = publish(
        &payment,
        &t.exchange(),
        OrderConfirmed::ROUTING_KEY,
        &envelope(&confirmed(), "order-service"),
    )
    .await;

    let dlq = t.dead_letter_queue("inventory");
    let applied = eventually(Duration::from_secs(10), || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM state")
            .fetch_one(&pool)
            .await
            .unwrap_or(0)
            == 1
    })
    .await;
    let parked = eventually(Duration::from_secs(10), || async {
        depth(&admin, &dlq).await == 2
    })
    .await;
    let letters: Vec<DeadLetter> = dlq::peek(&fresh(&admin).await, &dlq, 10)
        .await
        .expect("peek");
    let recorded: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM state")
        .fetch_all(&pool)
        .await
        .expect("state");
    let retry_queue_left = depth(&admin, &t.retry_queue("inventory", retries().delays()[0])).await;

    stop.cancel();
    let stopped = running.await.expect("joined");
    pool.close().await;
    for connection in [&order, &payment, &admin] {
        let _ = connection.close(200, ShortString::from("done")).await;
    }
    let _ = inventory.close(200, ShortString::from("done")).await;
    env.cleanup().await;

    declared.expect("the service declares its own names with its own user");
    stopped.expect("the consumer stops cleanly");
    sent.expect("order publishes order.confirmed");
    sent_by_owner.expect("the broker cannot tell a wrong source");
    sent_by_admin.expect("the administrator may publish anything");
    refused(&by_payment, "payment publishing order.confirmed");
    assert!(applied, "the genuine event was applied after one retry");
    assert_eq!(
        recorded,
        [genuine.id],
        "only the genuine event changed anything"
    );
    assert_eq!(retry_queue_left, 0);
    assert!(parked, "both forged events are dead-lettered");
    assert_eq!(letters.len(), 2);
    for letter in &letters {
        assert_eq!(letter.reason.as_deref(), Some("forbidden"), "{letter:?}");
        let error = letter.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("OrderConfirmed is published only by order-service"),
            "{error}"
        );
        assert_eq!(letter.handler.as_deref(), Some("inventory"));
    }
}
