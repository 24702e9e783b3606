//! The reservations and the stock they hold, in SQL.
//!
//! Lock order is always the reservation row first, then the products in
//! SKU order, on every path (reserve, release, commit), so two handlers
//! never wait for each other in a circle. A reservation row is claimed with
//! `INSERT … ON CONFLICT DO NOTHING` and changed only under its lock.
//!
//! Each step is as few statements as that order allows, because statements
//! are what a busy PostgreSQL spends its time on: an order of one SKU (a
//! flash sale's orders) is claimed and held in one ([`hold_one`]), and a
//! reservation is shipped or released in one ([`settle`]).
//!
//! It owns the SQL, not the decisions: those are the handler's and the
//! reservation rule's.

use checkout_events::{Currency, OrderId, Sku};
use checkout_messaging::claim::RowFuture;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, PgPool};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

/// Where a reservation stands: the `status` column and the API's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
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
    .bind(status)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// What [`hold_one`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HoldOne {
    /// The order already had a reservation; nothing was done.
    Taken,
    /// The reservation was claimed as RESERVED and its line held.
    Held,
    /// The reservation was claimed as RESERVED, but only `available` units
    /// could be sold (0 for an unknown SKU): nothing is held, and the
    /// product stays locked, so that number is exact until commit.
    Short {
        /// On hand minus reserved, read under the product's lock.
        available: i64,
    },
}

/// Claims the order's reservation and holds `quantity` of `sku` for it if
/// that many can be sold, in one statement: the reservation row first, then
/// the product, locked (`FOR UPDATE` waits for a concurrent holder and then
/// reads the newest version), and updated only if what the lock read has
/// room. So two orders for the last unit cannot both be held, and a hot
/// SKU costs each order one statement, not four.
pub(crate) async fn hold_one(
    tx: &mut PgConnection,
    order_id: OrderId,
    sku: &Sku,
    quantity: i64,
) -> Result<HoldOne, sqlx::Error> {
    let (claimed, available, held): (bool, Option<i64>, bool) = sqlx::query_as(
        "WITH claimed AS ( \
             INSERT INTO reservations (order_id, status) VALUES ($1, 'RESERVED') \
             ON CONFLICT (order_id) DO NOTHING RETURNING order_id), \
         stock AS ( \
             SELECT sku, on_hand - reserved AS available FROM products \
             WHERE sku = $2 AND EXISTS (SELECT FROM claimed) FOR UPDATE), \
         held AS ( \
             UPDATE products p SET reserved = p.reserved + $3, updated_at = now() \
             FROM stock WHERE p.sku = stock.sku AND stock.available >= $3 \
             RETURNING p.sku), \
         line AS ( \
             INSERT INTO reservation_lines (order_id, sku, quantity) \
             SELECT $1, sku, $3 FROM held) \
         SELECT EXISTS (SELECT FROM claimed), (SELECT available FROM stock), \
             EXISTS (SELECT FROM held)",
    )
    .bind(order_id.as_uuid())
    .bind(sku.as_str())
    .bind(quantity)
    .fetch_one(&mut *tx)
    .await?;
    Ok(match (claimed, held) {
        (false, _) => HoldOne::Taken,
        (true, true) => HoldOne::Held,
        (true, false) => HoldOne::Short {
            available: available.unwrap_or(0),
        },
    })
}

/// Locks the order's reservation and returns its status, if it has one.
pub(crate) fn lock(tx: &mut PgConnection, order_id: OrderId) -> RowFuture<'_, Option<Status>> {
    Box::pin(
        sqlx::query_scalar("SELECT status FROM reservations WHERE order_id = $1 FOR UPDATE")
            .bind(order_id.as_uuid())
            .fetch_optional(tx),
    )
}

/// Claims the order with the VOIDED tombstone of a cancellation that came
/// before its OrderCreated; returns whether it was inserted.
pub(crate) fn tombstone<'c>(
    tx: &'c mut PgConnection,
    order_id: OrderId,
    reason: &'c str,
) -> RowFuture<'c, bool> {
    Box::pin(claim(tx, order_id, Status::Voided, Some(reason)))
}

/// Moves a locked reservation to `status`, recording why.
pub(crate) async fn set_status(
    tx: &mut PgConnection,
    order_id: OrderId,
    status: Status,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    checkout_messaging::claim::set_status(tx, "reservations", order_id, status, reason).await
}

#[derive(Debug, FromRow)]
struct Stock {
    #[sqlx(try_from = "String")]
    sku: Sku,
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
    Ok(rows
        .into_iter()
        .map(|row| (row.sku, row.available))
        .collect())
}

/// Holds `lines` (one per SKU) for the order: records them and counts them
/// as reserved, in one statement. The products must be locked
/// ([`lock_stock`]) and the rule must have said they fit; the table's
/// CHECKs catch it if not.
pub(crate) async fn hold(
    tx: &mut PgConnection,
    order_id: OrderId,
    lines: &[(Sku, i64)],
) -> Result<(), sqlx::Error> {
    let skus: Vec<&str> = lines.iter().map(|(sku, _)| sku.as_str()).collect();
    let quantities: Vec<i64> = lines.iter().map(|(_, quantity)| *quantity).collect();
    sqlx::query(
        "WITH line AS ( \
             INSERT INTO reservation_lines (order_id, sku, quantity) \
             SELECT $1, * FROM UNNEST($2::text[], $3::bigint[]) RETURNING sku, quantity) \
         UPDATE products p SET reserved = p.reserved + line.quantity, updated_at = now() \
         FROM line WHERE p.sku = line.sku",
    )
    .bind(order_id.as_uuid())
    .bind(&skus)
    .bind(&quantities)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// What happens to held units when the reservation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle<'a> {
    /// They go back on sale; the order was cancelled for this reason.
    Release(&'a str),
    /// They leave the warehouse.
    Ship,
}

/// Ends the hold of the order's reservation if it is RESERVED, in one
/// statement: the reservation becomes RELEASED or COMMITTED, its units stop
/// counting as reserved, and when shipped they leave `on_hand` too.
/// Returns whether it was RESERVED; if not (settled already, FAILED, or no
/// reservation yet), nothing changed.
pub(crate) async fn settle(
    tx: &mut PgConnection,
    order_id: OrderId,
    how: Settle<'_>,
) -> Result<bool, sqlx::Error> {
    let (status, reason, ship) = match how {
        Settle::Release(reason) => (Status::Released, Some(reason), false),
        Settle::Ship => (Status::Committed, None, true),
    };
    // The reservation row is locked first (its UPDATE waits for a
    // concurrent settle and re-checks the status), then `held` locks the
    // products in SKU order, as reserving does, before they are updated:
    // the UPDATE alone would lock them in whatever order its plan visits them.
    let settled: bool = sqlx::query_scalar(
        "WITH settled AS ( \
             UPDATE reservations SET status = $2, reason = $3, updated_at = now() \
             WHERE order_id = $1 AND status = 'RESERVED' RETURNING order_id), \
         held AS MATERIALIZED ( \
             SELECT p.sku, l.quantity FROM products p \
             JOIN reservation_lines l ON l.sku = p.sku \
             WHERE l.order_id IN (SELECT order_id FROM settled) \
             ORDER BY p.sku FOR UPDATE OF p), \
         moved AS ( \
             UPDATE products p SET reserved = p.reserved - held.quantity, \
                 on_hand = p.on_hand - CASE WHEN $4 THEN held.quantity ELSE 0 END, \
                 updated_at = now() \
             FROM held WHERE p.sku = held.sku) \
         SELECT EXISTS (SELECT FROM settled)",
    )
    .bind(order_id.as_uuid())
    .bind(status)
    .bind(reason)
    .bind(ship)
    .fetch_one(&mut *tx)
    .await?;
    Ok(settled)
}

/// A product with its stock, as stored.
#[derive(Debug, FromRow)]
pub(crate) struct Product {
    #[sqlx(try_from = "String")]
    pub(crate) sku: Sku,
    pub(crate) name: String,
    pub(crate) unit_price: i64,
    #[sqlx(try_from = "String")]
    pub(crate) currency: Currency,
    pub(crate) on_hand: i64,
    pub(crate) reserved: i64,
    pub(crate) available: i64,
    pub(crate) revision: i64,
}

const PRODUCTS: &str = "SELECT sku, name, unit_price, currency, on_hand, reserved, \
     on_hand - reserved AS available, revision FROM products";

/// Every product, by SKU.
pub(crate) async fn products(pool: &PgPool) -> Result<Vec<Product>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{PRODUCTS} ORDER BY sku")))
        .fetch_all(pool)
        .await
}

/// The product `sku`, which must exist.
pub(crate) async fn product(tx: &mut PgConnection, sku: &Sku) -> Result<Product, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{PRODUCTS} WHERE sku = $1")))
        .bind(sku.as_str())
        .fetch_one(&mut *tx)
        .await
}

/// One reserved line.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Item {
    /// The SKU.
    sku: String,
    /// Units held.
    quantity: i64,
}

/// What an order holds, or held.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub(crate) struct Reservation {
    /// The order.
    order_id: Uuid,
    /// `RESERVED`, `FAILED`, `RELEASED`, `COMMITTED` or `VOIDED`.
    status: Status,
    /// Why nothing is (or no longer) held.
    reason: Option<String>,
    /// The lines held.
    #[schema(value_type = Vec<Item>)]
    items: Json<Vec<Item>>,
    /// When the order was first seen.
    created_at: DateTime<Utc>,
    /// When the reservation last changed.
    updated_at: DateTime<Utc>,
}

/// The reservation of `order_id` with its lines: zero or one.
pub(crate) async fn reservations_of(
    pool: &PgPool,
    order_id: Uuid,
) -> Result<Vec<Reservation>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.order_id, r.status, r.reason, r.created_at, r.updated_at, \
             COALESCE((SELECT jsonb_agg(jsonb_build_object('sku', l.sku, 'quantity', l.quantity) \
                                        ORDER BY l.sku) \
                       FROM reservation_lines l WHERE l.order_id = r.order_id), '[]'::jsonb) AS items \
         FROM reservations r WHERE r.order_id = $1",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await
}
