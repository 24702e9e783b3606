//! The order deadline: no order stays PENDING longer than `ORDER_DEADLINE`.
//!
//! A leg that never answers — its service down for longer than any retry,
//! its message dead-lettered by a bug — would otherwise leave the order
//! pending forever, with the customer's money captured or stock held by the
//! other leg. The sweeper runs on a timer in every Order replica, takes the
//! expired orders with `FOR UPDATE SKIP LOCKED` (so replicas, and replies
//! being applied, never contend for one), cancels each through the state
//! machine ([`Saga::expire`](crate::saga::Saga::expire), whose reason names
//! the missing leg) and emits OrderCancelled through the outbox like any
//! cancellation. The usual compensations follow: Payment refunds a capture,
//! Inventory releases a reservation, and either leaves a tombstone if the
//! cancellation overtakes the order. A reply that arrives after the
//! deadline is recorded in the timeline and decides nothing.

use crate::handler::conclude;
use crate::store;
use checkout_events::OrderId;
use checkout_messaging::{Cause, HandlerError};
use checkout_telemetry::propagation::{adopt_parent, context_from_map};
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Orders cancelled in one transaction at most.
const BATCH: i64 = 100;

/// Cancels expired orders every `every` until `shutdown`.
pub(crate) async fn run(
    pool: PgPool,
    deadline: Duration,
    every: Duration,
    shutdown: CancellationToken,
) {
    tracing::info!(?deadline, "order deadline sweeper started");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        // A full batch may have more behind it.
        loop {
            match sweep(&pool, deadline).await {
                Ok(n) if n == BATCH as usize && !shutdown.is_cancelled() => continue,
                Ok(_) => break,
                Err(error) => {
                    // The database is down, say: the orders wait for the next tick.
                    tracing::warn!(%error, "order deadline sweep failed; trying again at the next tick");
                    break;
                }
            }
        }
    }
}

/// How often a sweeper with `deadline` looks: often enough that an order is
/// cancelled soon after its deadline, never more than once a second.
pub(crate) fn interval(deadline: Duration) -> Duration {
    (deadline / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// Cancels up to [`BATCH`] expired orders in one transaction; returns how many.
pub(crate) async fn sweep(pool: &PgPool, deadline: Duration) -> Result<usize, HandlerError> {
    let mut tx = pool.begin().await?;
    let expired = store::lock_expired(&mut tx, deadline, BATCH).await?;
    for (order_id, trace_context) in &expired {
        expire(&mut tx, *order_id)
            .instrument(span(*order_id, trace_context))
            .await?;
    }
    if !expired.is_empty() {
        checkout_messaging::outbox::commit(tx).await?;
        metrics::counter!(crate::metrics::ORDERS_TIMED_OUT).increment(expired.len() as u64);
    }
    Ok(expired.len())
}

async fn expire(tx: &mut sqlx::PgConnection, order_id: OrderId) -> Result<(), HandlerError> {
    // Locked already by the sweep; this reads the saga under that lock.
    let Some(mut order) = store::lock(tx, order_id).await? else {
        return Ok(());
    };
    let transition = order.saga.expire();
    tracing::warn!(%order_id, ?transition, "order deadline passed");
    let cause = Cause::Command {
        correlation_id: order_id.as_uuid(),
    };
    conclude(tx, order_id, order, transition, None, cause).await
}

/// The span of one cancellation, in the trace of the request that placed
/// the order, so a timed-out order is still one trace.
fn span(order_id: OrderId, trace_context: &HashMap<String, String>) -> tracing::Span {
    let span = tracing::info_span!("order deadline", %order_id, trace_id = tracing::field::Empty);
    adopt_parent(&span, context_from_map(trace_context));
    span
}
