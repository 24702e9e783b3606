//! The `payments` table: one row per order, claimed with
//! `INSERT … ON CONFLICT DO NOTHING` and changed only under a row lock, so
//! any interleaving of PaymentRequested and OrderCancelled (and of replicas)
//! ends in one consistent row.
//!
//! It owns the SQL and the statuses, not the decisions: those are the
//! handler's (what to do) and the provider's (capture or decline).

use checkout_events::OrderId;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// Where a payment stands; the `status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// The order's total was taken.
    Captured,
    /// The provider declined; nothing was taken.
    Declined,
    /// Taken, then given back because the order was cancelled.
    Refunded,
    /// The tombstone of an order cancelled before it was seen here.
    Voided,
}

impl Status {
    /// The value stored in `payments.status`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Captured => "CAPTURED",
            Status::Declined => "DECLINED",
            Status::Refunded => "REFUNDED",
            Status::Voided => "VOIDED",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        [
            Status::Captured,
            Status::Declined,
            Status::Refunded,
            Status::Voided,
        ]
        .into_iter()
        .find(|status| status.as_str() == raw)
    }
}

/// A row to claim an order with.
#[derive(Debug)]
pub(crate) struct NewPayment<'a> {
    pub(crate) id: Uuid,
    pub(crate) order_id: OrderId,
    pub(crate) status: Status,
    pub(crate) amount: i64,
    pub(crate) currency: &'a str,
    pub(crate) reason: Option<&'a str>,
}

impl<'a> NewPayment<'a> {
    /// The tombstone of an order cancelled before its PaymentRequested: it knows
    /// no amount, so it holds 0 in `XXX` (ISO 4217 for "no currency").
    pub(crate) fn tombstone(order_id: OrderId, reason: &'a str) -> Self {
        Self {
            id: Uuid::now_v7(),
            order_id,
            status: Status::Voided,
            amount: 0,
            currency: "XXX",
            reason: Some(reason),
        }
    }
}

/// Inserts `payment` unless its order already has a row. Returns whether
/// it was inserted. A concurrent claim of the same order waits here for
/// the other transaction and then sees its row, so exactly one wins.
pub(crate) async fn claim(
    tx: &mut PgConnection,
    payment: &NewPayment<'_>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO payments (order_id, id, status, amount, currency, reason) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(payment.order_id.as_uuid())
    .bind(payment.id)
    .bind(payment.status.as_str())
    .bind(payment.amount)
    .bind(payment.currency)
    .bind(payment.reason)
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// An order's payment, locked until the transaction ends.
#[derive(Debug)]
pub(crate) struct Locked {
    pub(crate) id: Uuid,
    pub(crate) status: Status,
    pub(crate) amount: i64,
    pub(crate) currency: String,
}

#[derive(Debug, FromRow)]
struct Row {
    id: Uuid,
    status: String,
    amount: i64,
    currency: String,
}

/// Locks the payment of `order_id`, if it has one.
pub(crate) async fn lock(
    tx: &mut PgConnection,
    order_id: OrderId,
) -> Result<Option<Locked>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT id, status, amount, currency FROM payments WHERE order_id = $1 FOR UPDATE",
    )
    .bind(order_id.as_uuid())
    .fetch_optional(&mut *tx)
    .await?;
    row.map(|row| {
        // The CHECK constraint admits only known statuses; anything else is
        // a schema this code does not match, which retrying cannot fix.
        let status = Status::parse(&row.status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown payment status {:?}", row.status).into())
        })?;
        Ok(Locked {
            id: row.id,
            status,
            amount: row.amount,
            currency: row.currency,
        })
    })
    .transpose()
}

/// Moves a locked payment to `status`, recording why.
pub(crate) async fn set_status(
    tx: &mut PgConnection,
    order_id: OrderId,
    status: Status,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE payments SET status = $2, reason = $3, updated_at = now() WHERE order_id = $1",
    )
    .bind(order_id.as_uuid())
    .bind(status.as_str())
    .bind(reason)
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
            Status::Captured,
            Status::Declined,
            Status::Refunded,
            Status::Voided,
        ] {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("PENDING"), None);
    }
}
