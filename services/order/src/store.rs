//! The orders tables: writing a placed order, locking and saving its saga
//! state, and reading what `GET /orders/{id}` and `GET /orders` show.

use crate::catalog::Priced;
use crate::order::{Leg, Saga, Status};
use crate::request::NewOrder;
use crate::timeline::Entry;
use checkout_events::{Event as _, InventoryReleased, OrderId, PaymentRefunded};
use checkout_runtime::http::Amount;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, PgPool};
use std::collections::HashMap;
use std::time::Duration;
use utoipa::ToSchema;

/// Inserts a new PENDING order and its lines, with the trace context of
/// the request that placed it (`trace_id` to show, `trace_context` to
/// continue the trace if the deadline cancels it).
pub(crate) async fn insert(
    tx: &mut PgConnection,
    id: OrderId,
    order: &NewOrder,
    priced: &Priced,
    trace_id: Option<&str>,
    trace_context: &HashMap<String, String>,
) -> Result<(), sqlx::Error> {
    let saga = Saga::new();
    sqlx::query(
        "INSERT INTO orders (id, customer_id, customer_email, status, payment, inventory, \
             total_amount, currency, trace_id, trace_context) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id.as_uuid())
    .bind(&order.customer_id)
    .bind(&order.customer_email)
    .bind(saga.status.as_str())
    .bind(saga.payment.as_str())
    .bind(saga.inventory.as_str())
    .bind(priced.total.amount)
    .bind(priced.total.currency.as_str())
    .bind(trace_id)
    .bind(Json(trace_context))
    .execute(&mut *tx)
    .await?;

    let line_nos: Vec<i32> = (1..).take(priced.items.len()).collect();
    let skus: Vec<&str> = priced.items.iter().map(|l| l.sku.as_str()).collect();
    let quantities: Vec<i64> = priced.items.iter().map(|l| l.quantity.get()).collect();
    let prices: Vec<i64> = priced.items.iter().map(|l| l.unit_price.amount).collect();
    let currencies: Vec<&str> = priced
        .items
        .iter()
        .map(|l| l.unit_price.currency.as_str())
        .collect();
    // One round trip for all lines.
    sqlx::query(
        "INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price, currency) \
         SELECT $1, * FROM UNNEST($2::int[], $3::text[], $4::bigint[], $5::bigint[], $6::text[])",
    )
    .bind(id.as_uuid())
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
    pub(crate) total_amount: i64,
    /// The total's currency.
    pub(crate) currency: String,
}

#[derive(Debug, FromRow)]
struct SagaRow {
    status: String,
    payment: String,
    inventory: String,
    cancel_reason: Option<String>,
    customer_id: String,
    customer_email: Option<String>,
    total_amount: i64,
    currency: String,
}

/// Locks an order row for the rest of the transaction, so replies for the
/// same order are applied one after the other. `None` if there is no such order.
pub(crate) async fn lock(
    tx: &mut PgConnection,
    id: OrderId,
) -> Result<Option<Locked>, sqlx::Error> {
    let row: Option<SagaRow> = sqlx::query_as(
        "SELECT status, payment, inventory, cancel_reason, customer_id, customer_email, \
             total_amount, currency \
         FROM orders WHERE id = $1 FOR UPDATE",
    )
    .bind(id.as_uuid())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let corrupt = || sqlx::Error::Decode(format!("order {id} has an unknown status").into());
    Ok(Some(Locked {
        saga: Saga {
            status: Status::parse(&row.status).ok_or_else(corrupt)?,
            payment: Leg::parse(&row.payment).ok_or_else(corrupt)?,
            inventory: Leg::parse(&row.inventory).ok_or_else(corrupt)?,
            cancel_reason: row.cancel_reason,
        },
        customer_id: row.customer_id,
        customer_email: row.customer_email,
        total_amount: row.total_amount,
        currency: row.currency,
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

/// Saves the saga state of a locked order.
pub(crate) async fn save(
    tx: &mut PgConnection,
    id: OrderId,
    saga: &Saga,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE orders SET status = $2, payment = $3, inventory = $4, cancel_reason = $5, \
             updated_at = now() \
         WHERE id = $1",
    )
    .bind(id.as_uuid())
    .bind(saga.status.as_str())
    .bind(saga.payment.as_str())
    .bind(saga.inventory.as_str())
    .bind(&saga.cancel_reason)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// An order as a client sees it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OrderView {
    /// The order's id (UUID v7).
    id: uuid::Uuid,
    /// `PENDING`, then `CONFIRMED` or `CANCELLED`.
    #[schema(example = "CONFIRMED")]
    status: String,
    /// The customer's opaque id.
    customer_id: String,
    /// Where the outcome is mailed, if given.
    customer_email: Option<String>,
    /// The priced lines.
    items: Vec<LineView>,
    /// The sum of the lines.
    total: Amount,
    /// `PENDING`, `CAPTURED` or `FAILED`.
    #[schema(value_type = String, example = "CAPTURED")]
    payment: &'static str,
    /// `PENDING`, `RESERVED` or `FAILED`.
    #[schema(value_type = String, example = "RESERVED")]
    inventory: &'static str,
    /// Why the order was cancelled, once it is.
    cancel_reason: Option<String>,
    /// For a cancelled order, whether what was taken has been given back;
    /// `null` for an order that is not cancelled.
    compensation: Option<Compensation>,
    /// The W3C trace id of the request that placed the order: search for
    /// it in Jaeger to see the whole saga.
    trace_id: Option<String>,
    /// The trace's page in Jaeger, when `JAEGER_UI_URL` is configured.
    jaeger_url: Option<String>,
    /// The events that moved the order, oldest first.
    timeline: Vec<Entry>,
    /// When it was placed.
    created_at: DateTime<Utc>,
    /// When its state last changed.
    updated_at: DateTime<Utc>,
}

impl OrderView {
    /// The order's trace id, if it was traced.
    pub(crate) fn trace_id(&self) -> Option<&str> {
        self.trace_id.as_deref()
    }

    /// Adds what is not in the orders tables: the timeline, the
    /// compensation it shows, and a link to the trace.
    pub(crate) fn with(mut self, timeline: Vec<Entry>, jaeger_url: Option<String>) -> Self {
        if self.status == Status::Cancelled.as_str() {
            let seen = |event_type: &str| timeline.iter().any(|e| e.event_type() == event_type);
            self.compensation = Some(Compensation {
                payment: Compensation::state(
                    self.payment == "CAPTURED",
                    seen(PaymentRefunded::TYPE),
                    "REFUNDED",
                ),
                inventory: Compensation::state(
                    self.inventory == "RESERVED",
                    seen(InventoryReleased::TYPE),
                    "RELEASED",
                ),
            });
        }
        self.timeline = timeline;
        self.jaeger_url = jaeger_url;
        self
    }
}

/// What a cancelled order's legs gave back, as the participants reported
/// it (PaymentRefunded, InventoryReleased).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Compensation {
    /// `REFUNDED`; `PENDING` while a captured payment waits for its refund;
    /// `NONE` when nothing was captured.
    #[schema(value_type = String, example = "REFUNDED")]
    payment: &'static str,
    /// `RELEASED`; `PENDING` while reserved stock waits for its release;
    /// `NONE` when nothing was reserved.
    #[schema(value_type = String, example = "RELEASED")]
    inventory: &'static str,
}

impl Compensation {
    fn state(taken: bool, given_back: bool, done: &'static str) -> &'static str {
        match (given_back, taken) {
            (true, _) => done,
            (false, true) => "PENDING",
            (false, false) => "NONE",
        }
    }
}

/// One line of an order.
#[derive(Debug, Serialize, ToSchema)]
struct LineView {
    /// The SKU.
    sku: String,
    /// How many.
    quantity: i64,
    /// The price of one unit when the order was placed.
    unit_price: Amount,
}

#[derive(Debug, FromRow)]
struct OrderRow {
    id: uuid::Uuid,
    status: String,
    customer_id: String,
    customer_email: Option<String>,
    total_amount: i64,
    currency: String,
    payment: String,
    inventory: String,
    cancel_reason: Option<String>,
    trace_id: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, FromRow)]
struct LineRow {
    sku: String,
    quantity: i64,
    unit_price: i64,
    currency: String,
}

/// Each leg in its own words: a payment is captured, stock is reserved.
fn leg_name(leg: &str, success: &'static str) -> &'static str {
    match Leg::parse(leg) {
        Some(Leg::Succeeded) => success,
        Some(Leg::Failed) => "FAILED",
        _ => "PENDING",
    }
}

/// Reads an order with its lines; `None` if there is no such order.
pub(crate) async fn view(pool: &PgPool, id: uuid::Uuid) -> Result<Option<OrderView>, sqlx::Error> {
    let order: Option<OrderRow> = sqlx::query_as(
        "SELECT id, status, customer_id, customer_email, total_amount, currency, payment, \
             inventory, cancel_reason, trace_id, created_at, updated_at \
         FROM orders WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(order) = order else { return Ok(None) };
    let lines: Vec<LineRow> = sqlx::query_as(
        "SELECT sku, quantity, unit_price, currency FROM order_lines \
         WHERE order_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(Some(OrderView {
        id: order.id,
        status: order.status,
        customer_id: order.customer_id,
        customer_email: order.customer_email,
        items: lines
            .into_iter()
            .map(|l| LineView {
                sku: l.sku,
                quantity: l.quantity,
                unit_price: Amount::new(l.unit_price, l.currency),
            })
            .collect(),
        total: Amount::new(order.total_amount, order.currency),
        payment: leg_name(&order.payment, "CAPTURED"),
        inventory: leg_name(&order.inventory, "RESERVED"),
        cancel_reason: order.cancel_reason,
        compensation: None,
        trace_id: order.trace_id,
        jaeger_url: None,
        timeline: Vec::new(),
        created_at: order.created_at,
        updated_at: order.updated_at,
    }))
}

/// The current status of an order, if it exists.
pub(crate) async fn status(
    tx: &mut PgConnection,
    id: OrderId,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
        .bind(id.as_uuid())
        .fetch_optional(&mut *tx)
        .await
}

/// An order in a list: what tells orders apart, without lines or timeline.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OrderSummary {
    /// The order's id; `GET /orders/{id}` has the rest.
    pub(crate) id: uuid::Uuid,
    /// `PENDING`, `CONFIRMED` or `CANCELLED`.
    status: String,
    /// The customer's opaque id.
    customer_id: String,
    /// The sum of the lines.
    total: Amount,
    /// When it was placed.
    created_at: DateTime<Utc>,
    /// When its state last changed.
    updated_at: DateTime<Utc>,
}

#[derive(Debug, FromRow)]
struct SummaryRow {
    id: uuid::Uuid,
    status: String,
    customer_id: String,
    total_amount: i64,
    currency: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
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
) -> Result<Vec<OrderSummary>, sqlx::Error> {
    let rows: Vec<SummaryRow> = sqlx::query_as(
        "SELECT id, status, customer_id, total_amount, currency, created_at, updated_at \
         FROM orders \
         WHERE ($1::text IS NULL OR status = $1) AND ($2::uuid IS NULL OR id < $2) \
         ORDER BY id DESC LIMIT $3",
    )
    .bind(status.map(Status::as_str))
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| OrderSummary {
            id: row.id,
            status: row.status,
            customer_id: row.customer_id,
            total: Amount::new(row.total_amount, row.currency),
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
        .collect())
}
