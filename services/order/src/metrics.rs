//! The Order service's own series: orders by status, counted from the
//! `orders` table at every scrape (see `checkout_runtime::metrics`).
//!
//! A gauge read from the table rather than a counter bumped in the saga:
//! a counter incremented inside the handler's transaction would count
//! twice when the transaction rolls back and is retried, and would restart
//! from zero with the process; the table is the truth, shared by replicas.
//! Dashboards take `max` across replicas and `delta` for a rate.

use futures::future::BoxFuture;
use sqlx::PgPool;

/// Orders by `status` (`PENDING`, `CONFIRMED`, `CANCELLED`).
pub const ORDERS: &str = "checkout_orders";

/// Orders the deadline sweeper cancelled (see `crate::deadline`).
pub const ORDERS_TIMED_OUT: &str = "checkout_orders_timed_out_total";

/// Age in seconds of the oldest PENDING order (0 when none), read from
/// the table at scrape time: above [`ORDER_DEADLINE`] plus a sweep, the
/// deadline sweeper is not doing its job (an alert in `deploy/prometheus`).
pub const OLDEST_PENDING_AGE: &str = "checkout_order_oldest_pending_age_seconds";

/// The `ORDER_DEADLINE` this replica runs with, in seconds, for alerts
/// that compare an order's age with it.
pub const ORDER_DEADLINE: &str = "checkout_order_deadline_seconds";

/// Seconds from `POST /orders` to the order's final status, by `status`
/// (`CONFIRMED`, `CANCELLED`): recorded once per order, by the saga step
/// that decides it.
pub const ORDER_COMPLETION: &str = "checkout_order_completion_seconds";

/// Records how long an order took from its creation to `status`:
/// `age_secs`, read with the order's lock by the deciding transaction
/// (as of its start). In the transaction that decides it, so a decision is
/// recorded once — unless that transaction fails at commit and is retried,
/// which costs one extra sample.
pub(crate) fn record_completion(age_secs: f64, status: &'static str) {
    metrics::histogram!(ORDER_COMPLETION, "status" => status).record(age_secs.max(0.0));
}

/// Registers the descriptions of this service's series and publishes its
/// `deadline`.
pub(crate) fn describe(deadline: std::time::Duration) {
    metrics::describe_gauge!(
        OLDEST_PENDING_AGE,
        metrics::Unit::Seconds,
        "Age of the oldest PENDING order (0 when none)"
    );
    metrics::describe_gauge!(ORDER_DEADLINE, metrics::Unit::Seconds, "ORDER_DEADLINE");
    metrics::gauge!(ORDER_DEADLINE).set(deadline.as_secs_f64());
    metrics::describe_histogram!(
        ORDER_COMPLETION,
        metrics::Unit::Seconds,
        "Time from POST /orders to CONFIRMED or CANCELLED, by final status"
    );
    metrics::describe_gauge!(ORDERS, "Orders by status, counted in the orders table");
    metrics::describe_counter!(
        ORDERS_TIMED_OUT,
        "Orders cancelled because they were still pending at ORDER_DEADLINE"
    );
}

/// Sets [`ORDERS`] for every status, zero included, so a dashboard shows
/// "no cancelled orders" rather than "no data", and [`OLDEST_PENDING_AGE`].
/// One scan of `orders` per scrape: fine for a demo's table, an index-only
/// count or a summary table beyond that.
pub(crate) fn orders_by_status(pool: &PgPool) -> BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        let counts = crate::store::count_by_status(pool).await?;
        for (status, count) in counts {
            // Row counts fit an f64 exactly far beyond any real table.
            metrics::gauge!(ORDERS, "status" => status).set(count as f64);
        }
        let oldest: f64 = sqlx::query_scalar(
            "SELECT COALESCE(extract(epoch FROM now() - min(created_at)), 0)::float8 \
             FROM orders WHERE status = 'PENDING'",
        )
        .fetch_one(pool)
        .await?;
        metrics::gauge!(OLDEST_PENDING_AGE).set(oldest.max(0.0));
        Ok(())
    })
}
