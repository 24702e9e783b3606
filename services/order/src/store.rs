//! The orders tables: writing a placed order, locking and saving its saga
//! state, and reading orders back, as domain types (what the API shows of
//! them is [`crate::view`]'s).

use crate::saga::{Leg, Saga, Status};
use crate::timeline;
use checkout_events::{Currency, Envelope, Money, OrderCreated, OrderId, Quantity, Sku};
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, PgPool};
use std::collections::HashMap;
use std::time::Duration;

/// Inserts the new PENDING order `placed` announces, its lines and the
/// first entry of its timeline (`created`, the envelope of `placed`), in
/// one statement, with the trace context of the request that placed it
/// (the current trace id to show, `trace_context` to continue the trace if
/// the deadline cancels it).
pub(crate) async fn insert(
    tx: &mut PgConnection,
    placed: &OrderCreated,
    created: &Envelope,
    trace_context: &HashMap<String, String>,
) -> Result<(), sqlx::Error> {
    let saga = Saga::new();
    let line_nos: Vec<i32> = (1..).take(placed.items.len()).collect();
    let skus: Vec<&str> = placed.items.iter().map(|l| l.sku.as_str()).collect();
    let quantities: Vec<i64> = placed.items.iter().map(|l| l.quantity.get()).collect();
    let prices: Vec<i64> = placed.items.iter().map(|l| l.unit_price.amount).collect();
    let currencies: Vec<&str> = placed
        .items
        .iter()
        .map(|l| l.unit_price.currency.as_str())
        .collect();
    // The foreign keys of the lines and the timeline entry are checked at
    // the end of the statement, when the order row is there.
    let query = sqlx::query(concat!(
        "WITH placed AS ( \
             INSERT INTO orders (id, customer_id, customer_email, status, payment, inventory, \
                 total_amount, currency, trace_id, trace_context) \
             VALUES ($1, $7, $8, $9, $10, $11, $12, $13, $6, $14)), \
         lines AS ( \
             INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price, currency) \
             SELECT $1, * FROM UNNEST($15::int[], $16::text[], $17::bigint[], $18::bigint[], \
                 $19::text[])) ",
        timeline::append!()
    ));
    timeline::bind(query, placed.order_id, &[created])
        .bind(&placed.customer_id)
        .bind(&placed.customer_email)
        .bind(saga.status)
        .bind(saga.payment)
        .bind(saga.inventory)
        .bind(placed.total.amount)
        .bind(placed.total.currency.as_str())
        .bind(Json(trace_context))
        .bind(&line_nos)
        .bind(&skus)
        .bind(&quantities)
        .bind(&prices)
        .bind(&currencies)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// An order's saga state with what its outgoing events need.
#[derive(Debug)]
pub(crate) struct Locked {
    /// The state machine.
    pub(crate) saga: Saga,
    /// The customer's opaque id.
    pub(crate) customer_id: String,
    /// The customer's address, if given.
    pub(crate) customer_email: Option<String>,
    /// The order's total.
    pub(crate) total: Money,
    /// Seconds since the order was placed, as of this transaction's start.
    pub(crate) age_secs: f64,
}

#[derive(Debug, FromRow)]
struct SagaRow {
    status: Status,
    payment: Leg,
    inventory: Leg,
    cancel_reason: Option<String>,
    customer_id: String,
    customer_email: Option<String>,
    total_amount: i64,
    #[sqlx(try_from = "String")]
    currency: Currency,
    age_secs: f64,
}

/// Locks an order row for the rest of the transaction, so replies for the
/// same order are applied one after the other. `None` if there is no such order.
pub(crate) async fn lock(
    tx: &mut PgConnection,
    id: OrderId,
) -> Result<Option<Locked>, sqlx::Error> {
    let row: Option<SagaRow> = sqlx::query_as(
        "SELECT status, payment, inventory, cancel_reason, customer_id, customer_email, \
             total_amount, currency, extract(epoch FROM now() - created_at)::float8 AS age_secs \
         FROM orders WHERE id = $1 FOR UPDATE",
    )
    .bind(id.as_uuid())
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(|row| Locked {
        saga: Saga {
            status: row.status,
            payment: row.payment,
            inventory: row.inventory,
            cancel_reason: row.cancel_reason,
        },
        customer_id: row.customer_id,
        customer_email: row.customer_email,
        total: Money::new(row.total_amount, row.currency),
        age_secs: row.age_secs,
    }))
}

/// Locks up to `limit` orders still PENDING `deadline` after they were
/// placed, oldest first, skipping any another transaction holds (a reply
/// being applied, another replica's sweep). Returns each with the trace
/// context of the request that placed it.
pub(crate) async fn lock_expired(
    tx: &mut PgConnection,
    deadline: Duration,
    limit: i64,
) -> Result<Vec<(OrderId, HashMap<String, String>)>, sqlx::Error> {
    let rows: Vec<(uuid::Uuid, Json<HashMap<String, String>>)> = sqlx::query_as(
        "SELECT id, trace_context FROM orders \
         WHERE status = 'PENDING' AND created_at < now() - make_interval(secs => $1) \
         ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(deadline.as_secs_f64())
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, context)| (OrderId::from(id), context.0))
        .collect())
}

/// Saves the saga state of a locked order and appends `entries` (what
/// moved it, what it emits) to its timeline, in one statement.
pub(crate) async fn save(
    tx: &mut PgConnection,
    id: OrderId,
    saga: &Saga,
    entries: &[&Envelope],
) -> Result<(), sqlx::Error> {
    let query = sqlx::query(concat!(
        "WITH saved AS ( \
             UPDATE orders SET status = $7, payment = $8, inventory = $9, cancel_reason = $10, \
                 updated_at = now() \
             WHERE id = $1) ",
        timeline::append!()
    ));
    timeline::bind(query, id, entries)
        .bind(saga.status)
        .bind(saga.payment)
        .bind(saga.inventory)
        .bind(&saga.cancel_reason)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// An order as stored, with its lines.
#[derive(Debug, FromRow)]
pub(crate) struct Order {
    pub(crate) id: uuid::Uuid,
    pub(crate) status: Status,
    pub(crate) customer_id: String,
    pub(crate) customer_email: Option<String>,
    pub(crate) total_amount: i64,
    #[sqlx(try_from = "String")]
    pub(crate) currency: Currency,
    pub(crate) payment: Leg,
    pub(crate) inventory: Leg,
    pub(crate) cancel_reason: Option<String>,
    pub(crate) trace_id: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    #[sqlx(skip)]
    pub(crate) lines: Vec<Line>,
}

/// One line of an order, as stored.
#[derive(Debug, FromRow)]
pub(crate) struct Line {
    #[sqlx(try_from = "String")]
    pub(crate) sku: Sku,
    #[sqlx(try_from = "i64")]
    pub(crate) quantity: Quantity,
    pub(crate) unit_price: i64,
    #[sqlx(try_from = "String")]
    pub(crate) currency: Currency,
}

/// Reads an order with its lines; `None` if there is no such order.
pub(crate) async fn order(pool: &PgPool, id: uuid::Uuid) -> Result<Option<Order>, sqlx::Error> {
    let order: Option<Order> = sqlx::query_as(
        "SELECT id, status, customer_id, customer_email, total_amount, currency, payment, \
             inventory, cancel_reason, trace_id, created_at, updated_at \
         FROM orders WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(mut order) = order else {
        return Ok(None);
    };
    order.lines = sqlx::query_as(
        "SELECT sku, quantity, unit_price, currency FROM order_lines \
         WHERE order_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(Some(order))
}

/// The current status of an order, if it exists.
pub(crate) async fn status(
    tx: &mut PgConnection,
    id: OrderId,
) -> Result<Option<Status>, sqlx::Error> {
    sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
        .bind(id.as_uuid())
        .fetch_optional(&mut *tx)
        .await
}

/// An order in a list, as stored: without lines or timeline.
#[derive(Debug, FromRow)]
pub(crate) struct Summary {
    pub(crate) id: uuid::Uuid,
    pub(crate) status: Status,
    pub(crate) customer_id: String,
    pub(crate) total_amount: i64,
    #[sqlx(try_from = "String")]
    pub(crate) currency: Currency,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

/// Up to `limit` orders, newest first, with `status` if given, older than
/// the order `before` if given: keyset pagination on the primary key (ids
/// are UUID v7, so id order is creation order and stays stable while new
/// orders arrive).
pub(crate) async fn page(
    pool: &PgPool,
    status: Option<Status>,
    before: Option<uuid::Uuid>,
    limit: i64,
) -> Result<Vec<Summary>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, status, customer_id, total_amount, currency, created_at, updated_at \
         FROM orders \
         WHERE ($1::text IS NULL OR status = $1) AND ($2::uuid IS NULL OR id < $2) \
         ORDER BY id DESC LIMIT $3",
    )
    .bind(status)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// How many orders have each status, every status included (zero too).
pub(crate) async fn count_by_status(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.status, count(o.id) \
         FROM UNNEST($1::text[]) AS s (status) \
         LEFT JOIN orders o ON o.status = s.status \
         GROUP BY s.status",
    )
    .bind(Status::ALL.as_slice())
    .fetch_all(pool)
    .await
}
