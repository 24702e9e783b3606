//! The `payments` table, all of its SQL: one row per order, claimed with
//! `INSERT … ON CONFLICT DO NOTHING` and changed only under a row lock, so
//! any interleaving of PaymentRequested and OrderCancelled (and of replicas)
//! ends in one consistent row.
//!
//! It owns the SQL and the statuses, not the decisions: those are the
//! handler's (what to do) and the provider's (capture or decline).

use checkout_events::{Currency, Money, OrderId};
use checkout_messaging::claim::RowFuture;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

/// Where a payment stands: the `status` column and the API's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
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

/// A row to claim an order with.
#[derive(Debug)]
pub(crate) struct NewPayment<'a> {
    pub(crate) id: Uuid,
    pub(crate) order_id: OrderId,
    pub(crate) status: Status,
    /// What is taken; `None` for a tombstone, which knows no amount and
    /// holds 0 in `XXX` (ISO 4217 for "no currency").
    pub(crate) amount: Option<&'a Money>,
    pub(crate) reason: Option<&'a str>,
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
    .bind(payment.status)
    .bind(payment.amount.map_or(0, |money| money.amount))
    .bind(
        payment
            .amount
            .map_or("XXX", |money| money.currency.as_str()),
    )
    .bind(payment.reason)
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Claims the order with the tombstone of a cancellation that came before
/// its PaymentRequested; returns whether it was inserted.
pub(crate) fn tombstone<'c>(
    tx: &'c mut PgConnection,
    order_id: OrderId,
    reason: &'c str,
) -> RowFuture<'c, bool> {
    Box::pin(async move {
        let payment = NewPayment {
            id: Uuid::now_v7(),
            order_id,
            status: Status::Voided,
            amount: None,
            reason: Some(reason),
        };
        claim(tx, &payment).await
    })
}

/// A payment as stored.
#[derive(Debug, FromRow)]
pub(crate) struct Payment {
    pub(crate) id: Uuid,
    pub(crate) order_id: Uuid,
    pub(crate) status: Status,
    pub(crate) amount: i64,
    #[sqlx(try_from = "String")]
    pub(crate) currency: Currency,
    pub(crate) reason: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl Payment {
    /// What was (or was to be) taken.
    pub(crate) fn money(&self) -> Money {
        Money::new(self.amount, self.currency.clone())
    }
}

const PAYMENT: &str = "SELECT id, order_id, status, amount, currency, reason, created_at, \
     updated_at FROM payments WHERE order_id = $1";

/// Locks the payment of `order_id`, if it has one.
pub(crate) fn lock(tx: &mut PgConnection, order_id: OrderId) -> RowFuture<'_, Option<Payment>> {
    Box::pin(
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{PAYMENT} FOR UPDATE")))
            .bind(order_id.as_uuid())
            .fetch_optional(tx),
    )
}

/// The payment of `order_id`, if it has one: zero or one row.
pub(crate) async fn of_order(pool: &PgPool, order_id: Uuid) -> Result<Vec<Payment>, sqlx::Error> {
    sqlx::query_as(PAYMENT).bind(order_id).fetch_all(pool).await
}

/// Refunds the payment of `order_id` if it is CAPTURED, in one statement
/// (the `UPDATE` takes the row's lock and re-checks the status after
/// waiting for it), recording why; returns it as refunded. `None` if it is
/// not CAPTURED (declined, refunded already, a tombstone) or there is none.
pub(crate) async fn refund(
    tx: &mut PgConnection,
    order_id: OrderId,
    reason: &str,
) -> Result<Option<Payment>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE payments SET status = 'REFUNDED', reason = $2, updated_at = now() \
         WHERE order_id = $1 AND status = 'CAPTURED' \
         RETURNING id, order_id, status, amount, currency, reason, created_at, updated_at",
    )
    .bind(order_id.as_uuid())
    .bind(reason)
    .fetch_optional(&mut *tx)
    .await
}
