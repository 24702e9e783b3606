//! The reservations and the stock they hold, in SQL.
//!
//! Lock order is always the reservation row first, then the products in
//! SKU order, on every path (reserve, release, commit), so two handlers
//! never wait for each other in a circle. A reservation row is claimed with
//! `INSERT … ON CONFLICT DO NOTHING` and changed only under its lock.
//!
//! It owns the SQL, not the decisions: those are the handler's and the
//! reservation rule's.

use checkout_events::{OrderId, Sku};
use sqlx::{FromRow, PgConnection};
use std::collections::BTreeMap;

/// Where a reservation stands; the `status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Its lines are held (counted in `products.reserved`).
    Reserved,
    /// The order could not be served; nothing was held.
    Failed,
    /// Held, then given back because the order was cancelled.
    Released,
    /// Held, then shipped: the units left `on_hand` for good.
    Committed,
    /// The tombstone of an order cancelled before it was seen here.
    Voided,
}

impl Status {
    /// The value stored in `reservations.status`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Reserved => "RESERVED",
            Status::Failed => "FAILED",
            Status::Released => "RELEASED",
            Status::Committed => "COMMITTED",
            Status::Voided => "VOIDED",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        [
            Status::Reserved,
            Status::Failed,
            Status::Released,
            Status::Committed,
            Status::Voided,
        ]
        .into_iter()
        .find(|status| status.as_str() == raw)
    }
}

/// Inserts the order's reservation row unless it has one; returns whether
/// it was inserted. A concurrent claim of the same order waits here for
/// the other transaction and then sees its row, so exactly one wins.
pub(crate) async fn claim(
    tx: &mut PgConnection,
    order_id: OrderId,
    status: Status,
    reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO reservations (order_id, status, reason) VALUES ($1, $2, $3) \
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id.as_uuid())
    .bind(status.as_str())
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Locks the order's reservation and returns its status, if it has one.
pub(crate) async fn lock(
    tx: &mut PgConnection,
    order_id: OrderId,
) -> Result<Option<Status>, sqlx::Error> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM reservations WHERE order_id = $1 FOR UPDATE")
            .bind(order_id.as_uuid())
            .fetch_optional(&mut *tx)
            .await?;
    status
        .map(|raw| {
            // The CHECK constraint admits only known statuses; anything else
            // is a schema this code does not match.
            Status::parse(&raw).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown reservation status {raw:?}").into())
            })
        })
        .transpose()
}

/// Moves a locked reservation to `status`, recording why.
pub(crate) async fn set_status(
    tx: &mut PgConnection,
    order_id: OrderId,
    status: Status,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE reservations SET status = $2, reason = $3, updated_at = now() WHERE order_id = $1",
    )
    .bind(order_id.as_uuid())
    .bind(status.as_str())
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[derive(Debug, FromRow)]
struct Stock {
    sku: String,
    available: i64,
}

/// Locks the products among `skus`, in SKU order, and returns what each can
/// still sell. Unknown SKUs are simply absent.
pub(crate) async fn lock_stock<'a>(
    tx: &mut PgConnection,
    skus: impl IntoIterator<Item = &'a Sku>,
) -> Result<BTreeMap<Sku, i64>, sqlx::Error> {
    let skus: Vec<&str> = skus.into_iter().map(Sku::as_str).collect();
    let rows: Vec<Stock> = sqlx::query_as(
        "SELECT sku, on_hand - reserved AS available FROM products \
         WHERE sku = ANY($1) ORDER BY sku FOR UPDATE",
    )
    .bind(&skus)
    .fetch_all(&mut *tx)
    .await?;
    rows.into_iter()
        .map(|row| {
            let sku = Sku::parse(row.sku).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            Ok((sku, row.available))
        })
        .collect()
}

/// Holds `lines` (one per SKU) for the order: records them and counts them
/// as reserved. The products must be locked ([`lock_stock`]) and the rule
/// must have said they fit; the table's CHECKs catch it if not.
pub(crate) async fn hold(
    tx: &mut PgConnection,
    order_id: OrderId,
    lines: &[(Sku, i64)],
) -> Result<(), sqlx::Error> {
    let skus: Vec<&str> = lines.iter().map(|(sku, _)| sku.as_str()).collect();
    let quantities: Vec<i64> = lines.iter().map(|(_, quantity)| *quantity).collect();
    sqlx::query(
        "INSERT INTO reservation_lines (order_id, sku, quantity) \
         SELECT $1, * FROM UNNEST($2::text[], $3::bigint[])",
    )
    .bind(order_id.as_uuid())
    .bind(&skus)
    .bind(&quantities)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE products p SET reserved = p.reserved + l.quantity, updated_at = now() \
         FROM reservation_lines l WHERE l.order_id = $1 AND l.sku = p.sku",
    )
    .bind(order_id.as_uuid())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// What happens to held units when the reservation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// They go back on sale.
    Release,
    /// They leave the warehouse.
    Ship,
}

/// Ends the hold of a locked RESERVED reservation: its units stop counting
/// as reserved, and when shipped they leave `on_hand` too.
pub(crate) async fn settle(
    tx: &mut PgConnection,
    order_id: OrderId,
    how: Settle,
) -> Result<(), sqlx::Error> {
    // Lock the products in SKU order first, as reserving does; the UPDATE
    // alone would lock them in whatever order its plan visits them.
    sqlx::query(
        "SELECT 1 FROM products \
         WHERE sku IN (SELECT sku FROM reservation_lines WHERE order_id = $1) \
         ORDER BY sku FOR UPDATE",
    )
    .bind(order_id.as_uuid())
    .execute(&mut *tx)
    .await?;
    let sql = match how {
        Settle::Release => {
            "UPDATE products p SET reserved = p.reserved - l.quantity, updated_at = now() \
             FROM reservation_lines l WHERE l.order_id = $1 AND l.sku = p.sku"
        }
        Settle::Ship => {
            "UPDATE products p SET reserved = p.reserved - l.quantity, \
                 on_hand = p.on_hand - l.quantity, updated_at = now() \
             FROM reservation_lines l WHERE l.order_id = $1 AND l.sku = p.sku"
        }
    };
    sqlx::query(sql)
        .bind(order_id.as_uuid())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_column_values() {
        for status in [
            Status::Reserved,
            Status::Failed,
            Status::Released,
            Status::Committed,
            Status::Voided,
        ] {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("PENDING"), None);
    }
}
