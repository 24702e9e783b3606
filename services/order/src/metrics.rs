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

/// Registers the descriptions of [`ORDERS`] and [`ORDERS_TIMED_OUT`].
pub(crate) fn describe() {
    metrics::describe_gauge!(ORDERS, "Orders by status, counted in the orders table");
    metrics::describe_counter!(
        ORDERS_TIMED_OUT,
        "Orders cancelled because they were still pending at ORDER_DEADLINE"
    );
}

/// Sets [`ORDERS`] for every status, zero included, so a dashboard shows
/// "no cancelled orders" rather than "no data". One scan of `orders` per
/// scrape: fine for a demo's table, an index-only count or a summary table
/// beyond that.
pub(crate) fn orders_by_status(pool: &PgPool) -> BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        let counts = crate::store::count_by_status(pool).await?;
        for (status, count) in counts {
            // Row counts fit an f64 exactly far beyond any real table.
            metrics::gauge!(ORDERS, "status" => status).set(count as f64);
        }
        Ok(())
    })
}
