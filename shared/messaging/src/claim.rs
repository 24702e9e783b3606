//! "Lock, else tombstone": how a saga participant reacts to a cancellation
//! that may arrive before the order it cancels.
//!
//! A participant keeps one row per order (a payment, a reservation),
//! claimed with `INSERT … ON CONFLICT DO NOTHING`. When the cancellation
//! comes, it locks that row; if there is none yet, it claims the order
//! with a tombstone, so the order's own event, arriving late, finds the
//! row and does nothing. If the claim loses (the order's event committed
//! between the look and the claim), the row is visible now and is locked
//! like any other. [`lock_or_tombstone`] is that sequence, written once.

use crate::consumer::HandlerError;
use checkout_events::OrderId;
use futures::future::BoxFuture;
use sqlx::{AssertSqlSafe, PgConnection, Postgres};

/// A statement on an order's row: a store function, boxed.
pub type RowFuture<'c, T> = BoxFuture<'c, Result<T, sqlx::Error>>;

/// For a cancellation (`order_id`, `reason`): locks the order's row with
/// `lock`; if there is none, inserts a tombstone with `tombstone` (which
/// returns whether its insert won); if another transaction's claim won
/// meanwhile, locks that row. `None` when the tombstone went in: the
/// cancellation overtook its order, and nothing else is to do.
pub async fn lock_or_tombstone<T>(
    tx: &mut PgConnection,
    (order_id, reason): (OrderId, &str),
    lock: for<'c> fn(&'c mut PgConnection, OrderId) -> RowFuture<'c, Option<T>>,
    tombstone: for<'c> fn(&'c mut PgConnection, OrderId, &'c str) -> RowFuture<'c, bool>,
) -> Result<Option<T>, HandlerError> {
    if let Some(locked) = lock(tx, order_id).await? {
        return Ok(Some(locked));
    }
    if tombstone(tx, order_id, reason).await? {
        tracing::info!(%order_id, "cancelled before the order was seen; tombstone recorded");
        return Ok(None);
    }
    // The order's own event committed between the look and the claim; its
    // row is visible now, so treat it like any other.
    match lock(tx, order_id).await? {
        Some(locked) => Ok(Some(locked)),
        None => Err(HandlerError::Transient(
            format!("the row of order {order_id} conflicted but cannot be read").into(),
        )),
    }
}

/// Moves the locked row of `order_id` in `table` to `status`, recording
/// why (`reason`, `None` to clear it) and when. `table` is one of the
/// participant's own tables (a payment, a reservation: one row per order
/// with `status`, `reason` and `updated_at`); it is a name from the
/// caller's code, never from input, since it goes into the statement as
/// written.
pub async fn set_status<S>(
    tx: &mut PgConnection,
    table: &'static str,
    order_id: OrderId,
    status: S,
    reason: Option<&str>,
) -> Result<(), sqlx::Error>
where
    S: for<'q> sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + Send,
{
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {table} SET status = $2, reason = $3, updated_at = now() WHERE order_id = $1"
    )))
    .bind(order_id.as_uuid())
    .bind(status)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;
    use uuid::Uuid;

    async fn connect() -> PgConnection {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let mut connection = PgConnection::connect(&url).await.expect("PostgreSQL");
        // A temporary table: this session's alone, gone when it ends.
        sqlx::query("CREATE TEMP TABLE rows (order_id UUID PRIMARY KEY, status TEXT NOT NULL)")
            .execute(&mut connection)
            .await
            .expect("temp table");
        connection
    }

    fn lock(tx: &mut PgConnection, id: OrderId) -> RowFuture<'_, Option<String>> {
        Box::pin(
            sqlx::query_scalar("SELECT status FROM rows WHERE order_id = $1 FOR UPDATE")
                .bind(id.as_uuid())
                .fetch_optional(tx),
        )
    }

    fn claim<'c>(tx: &'c mut PgConnection, id: OrderId, status: &'c str) -> RowFuture<'c, bool> {
        Box::pin(async move {
            let done = sqlx::query(
                "INSERT INTO rows (order_id, status) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(id.as_uuid())
            .bind(status)
            .execute(tx)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn void<'c>(tx: &'c mut PgConnection, id: OrderId, _: &'c str) -> RowFuture<'c, bool> {
        claim(tx, id, "VOIDED")
    }

    #[tokio::test]
    async fn locks_an_existing_row_else_leaves_a_tombstone() {
        let mut tx = connect().await;
        let (paid, cancelled) = (OrderId::new(), OrderId::new());
        claim(&mut tx, paid, "CAPTURED").await.expect("insert");

        let found = lock_or_tombstone(&mut tx, (paid, "why"), lock, void).await;
        assert_eq!(found.expect("locked").as_deref(), Some("CAPTURED"));
        let tombstoned = lock_or_tombstone(&mut tx, (cancelled, "why"), lock, void).await;
        assert_eq!(tombstoned.expect("tombstoned"), None);
        assert_eq!(
            lock(&mut tx, cancelled).await.expect("select").as_deref(),
            Some("VOIDED")
        );
    }

    #[tokio::test]
    async fn a_lost_claim_locks_the_winner_and_a_vanished_row_is_transient() {
        let mut tx = connect().await;
        // The first look finds nothing, and the order's own claim commits
        // right after it, as a concurrent transaction's would.
        fn raced(tx: &mut PgConnection, id: OrderId) -> RowFuture<'_, Option<String>> {
            Box::pin(async move {
                if let Some(status) = lock(tx, id).await? {
                    return Ok(Some(status));
                }
                claim(tx, id, "RESERVED").await?;
                Ok(None)
            })
        }
        let order = OrderId::new();
        let found = lock_or_tombstone(&mut tx, (order, "why"), raced, void).await;
        assert_eq!(found.expect("locked").as_deref(), Some("RESERVED"));

        let vanished = OrderId::from(Uuid::now_v7());
        let error = lock_or_tombstone(
            &mut tx,
            (vanished, "why"),
            |_, _| Box::pin(async { Ok(None::<String>) }),
            |_, _, _| Box::pin(async { Ok(false) }),
        )
        .await;
        assert!(
            matches!(&error, Err(HandlerError::Transient(e)) if e.to_string().contains(&vanished.to_string())),
            "{error:?}"
        );
    }
}
