//! A handler applied without the consumer around it, and two events made
//! to race on a lock deterministically.

use checkout_events::{Envelope, Event, OrderId};
use sqlx::PgPool;

/// `event` as the Order service sends it about `order_id` (the order its
/// correlation, no cause): what a participant's handler is given.
pub fn from_order<E: Event>(order_id: OrderId, event: &E) -> Envelope {
    Envelope::new(event, "order-service", order_id.as_uuid(), None).expect("serializable")
}

/// Applies `envelope` with `handler` in one transaction and commits it
/// when the handler succeeds — what the consumer does, minus the inbox row,
/// so a test can deliver one event twice and see the handler's own guard.
pub async fn handle<H: checkout_messaging::Handler>(
    pool: &PgPool,
    handler: &H,
    envelope: &Envelope,
) -> Result<checkout_messaging::Outcome, checkout_messaging::HandlerError> {
    let mut tx = pool.begin().await?;
    let outcome = handler.handle(envelope, &mut tx).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Makes a race deterministic: applies `first` with `handler` in a
/// transaction left open, starts `second` in a transaction of its own,
/// waits (polling `pg_stat_activity`, with a deadline) until `second` is
/// blocked on a lock `first` holds, then commits `first` and lets `second`
/// finish. `second` must conflict with `first`, or the wait times out.
pub async fn race<H>(pool: &PgPool, handler: H, first: &Envelope, second: Envelope)
where
    H: checkout_messaging::Handler + Clone,
{
    let mut open = pool.begin().await.expect("begin");
    handler
        .handle(first, &mut open)
        .await
        .expect("the first event is handled");
    let racer = tokio::spawn({
        let (pool, handler) = (pool.clone(), handler.clone());
        async move {
            let mut tx = pool.begin().await.expect("begin");
            handler
                .handle(&second, &mut tx)
                .await
                .expect("the second event is handled");
            tx.commit().await.expect("commit");
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second event never waited for the first one's lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    open.commit().await.expect("commit");
    racer.await.expect("the second event finished");
}
