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
use sqlx::PgConnection;

/// What [`lock_or_tombstone`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed<T> {
    /// The order's row, locked until the transaction ends.
    Locked(T),
    /// There was no row: the tombstone is in, and nothing else is to do.
    Tombstoned,
}

/// A participant's one row per order, as [`lock_or_tombstone`] needs it.
pub trait OrderRow: Sync {
    /// The row as locked.
    type Locked: Send;

    /// Locks the order's row until the transaction ends; `None` if it has none.
    fn lock(
        &self,
        tx: &mut PgConnection,
    ) -> impl Future<Output = Result<Option<Self::Locked>, sqlx::Error>> + Send;

    /// Claims the order with a tombstone (`INSERT … ON CONFLICT DO
    /// NOTHING`); returns whether the insert won.
    fn tombstone(
        &self,
        tx: &mut PgConnection,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;
}

/// Locks the order's row; if there is none, inserts a tombstone; if
/// another transaction's claim won meanwhile, locks that row.
///
/// `what` names the row in the error for the one impossible case: a claim
/// that conflicted yet whose row cannot be read (transient: retried).
pub async fn lock_or_tombstone<R: OrderRow>(
    tx: &mut PgConnection,
    row: &R,
    what: &str,
) -> Result<Claimed<R::Locked>, HandlerError> {
    if let Some(locked) = row.lock(tx).await? {
        return Ok(Claimed::Locked(locked));
    }
    if row.tombstone(tx).await? {
        return Ok(Claimed::Tombstoned);
    }
    // The order's own event committed between the look and the claim; its
    // row is visible now, so treat it like any other.
    match row.lock(tx).await? {
        Some(locked) => Ok(Claimed::Locked(locked)),
        None => Err(HandlerError::Transient(
            format!("{what} conflicted but cannot be read").into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    async fn connect() -> PgConnection {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let mut connection = PgConnection::connect(&url).await.expect("PostgreSQL");
        // A temporary table: this session's alone, gone when it ends.
        sqlx::query("CREATE TEMP TABLE rows (order_id INT PRIMARY KEY, status TEXT NOT NULL)")
            .execute(&mut connection)
            .await
            .expect("temp table");
        connection
    }

    async fn lock(tx: &mut PgConnection, id: i32) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT status FROM rows WHERE order_id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(tx)
            .await
    }

    async fn claim(tx: &mut PgConnection, id: i32, status: &str) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO rows (order_id, status) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(status)
        .execute(tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A row of the temporary table; `race` inserts a competing row on
    /// the first look, as a concurrent claim committing between look and
    /// claim would; `vanish` never finds one.
    struct Row {
        id: i32,
        race: std::sync::atomic::AtomicBool,
        vanish: bool,
    }

    impl Row {
        fn new(id: i32) -> Self {
            Self {
                id,
                race: false.into(),
                vanish: false,
            }
        }
    }

    impl OrderRow for Row {
        type Locked = String;

        async fn lock(&self, tx: &mut PgConnection) -> Result<Option<String>, sqlx::Error> {
            if self.vanish {
                return Ok(None);
            }
            if self.race.swap(false, std::sync::atomic::Ordering::SeqCst) {
                claim(tx, self.id, "RESERVED").await?;
                return Ok(None);
            }
            lock(tx, self.id).await
        }

        async fn tombstone(&self, tx: &mut PgConnection) -> Result<bool, sqlx::Error> {
            if self.vanish {
                return Ok(false);
            }
            claim(tx, self.id, "VOIDED").await
        }
    }

    #[tokio::test]
    async fn locks_an_existing_row_else_leaves_a_tombstone() {
        let mut tx = connect().await;
        claim(&mut tx, 1, "CAPTURED").await.expect("insert");
        let found = lock_or_tombstone(&mut tx, &Row::new(1), "row 1").await;
        assert_eq!(
            found.expect("locked"),
            Claimed::Locked("CAPTURED".to_owned())
        );

        let tombstoned = lock_or_tombstone(&mut tx, &Row::new(2), "row 2").await;
        assert_eq!(tombstoned.expect("tombstoned"), Claimed::Tombstoned);
        assert_eq!(
            lock(&mut tx, 2).await.expect("select").as_deref(),
            Some("VOIDED")
        );
    }

    #[tokio::test]
    async fn a_lost_claim_locks_the_winner_and_a_vanished_row_is_transient() {
        let mut tx = connect().await;
        let raced = Row {
            race: true.into(),
            ..Row::new(3)
        };
        let found = lock_or_tombstone(&mut tx, &raced, "row 3").await;
        assert_eq!(
            found.expect("locked"),
            Claimed::Locked("RESERVED".to_owned())
        );

        let vanished = Row {
            vanish: true,
            ..Row::new(4)
        };
        let error = lock_or_tombstone(&mut tx, &vanished, "row 4").await;
        assert!(
            matches!(&error, Err(HandlerError::Transient(e)) if e.to_string().contains("row 4")),
            "{error:?}"
        );
    }
}
