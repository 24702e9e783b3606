//! What the API shows of an order: `GET /orders/{id}` ([`OrderView`]) and
//! a line of `GET /orders` ([`OrderSummary`]), made from what the store
//! read. Money becomes the wire's [`Amount`] here, at the edge.

use crate::saga::{InventoryLeg, PaymentLeg, Status};
use crate::store::{Order, Summary};
use crate::timeline::Entry;
use checkout_events::{Event as _, InventoryReleased, PaymentRefunded};
use checkout_runtime::http::Amount;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// An order as a client sees it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OrderView {
    /// The order's id (UUID v7).
    id: uuid::Uuid,
    /// `PENDING`, then `CONFIRMED` or `CANCELLED`.
    #[schema(example = "CONFIRMED")]
    status: Status,
    /// The customer's opaque id.
    customer_id: String,
    /// Where the outcome is mailed, if given.
    customer_email: Option<String>,
    /// The priced lines.
    items: Vec<LineView>,
    /// The sum of the lines.
    total: Amount,
    /// `PENDING`, `CAPTURED` or `FAILED`.
    #[schema(example = "CAPTURED")]
    payment: PaymentLeg,
    /// `PENDING`, `RESERVED` or `FAILED`.
    #[schema(example = "RESERVED")]
    inventory: InventoryLeg,
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
    /// The order with its timeline, the compensation it shows, and a link
    /// to its trace (`jaeger_url` of its `trace_id`).
    pub(crate) fn new(
        order: Order,
        timeline: Vec<Entry>,
        jaeger_url: impl FnOnce(&str) -> Option<String>,
    ) -> Self {
        let payment = PaymentLeg::from(order.payment);
        let inventory = InventoryLeg::from(order.inventory);
        let compensation = (order.status == Status::Cancelled).then(|| {
            let seen = |event_type: &str| timeline.iter().any(|e| e.event_type() == event_type);
            Compensation {
                payment: Compensation::state(
                    payment == PaymentLeg::Captured,
                    seen(PaymentRefunded::TYPE),
                    Given::Refunded,
                ),
                inventory: Compensation::state(
                    inventory == InventoryLeg::Reserved,
                    seen(InventoryReleased::TYPE),
                    Given::Released,
                ),
            }
        });
        Self {
            id: order.id,
            status: order.status,
            total: amount(order.total_amount, &order.currency),
            customer_id: order.customer_id,
            customer_email: order.customer_email,
            items: order
                .lines
                .into_iter()
                .map(|l| LineView {
                    sku: l.sku.into(),
                    quantity: l.quantity.get(),
                    unit_price: amount(l.unit_price, &l.currency),
                })
                .collect(),
            payment,
            inventory,
            cancel_reason: order.cancel_reason,
            compensation,
            jaeger_url: order.trace_id.as_deref().and_then(jaeger_url),
            trace_id: order.trace_id,
            timeline,
            created_at: order.created_at,
            updated_at: order.updated_at,
        }
    }
}

fn amount(minor_units: i64, currency: &checkout_events::Currency) -> Amount {
    Amount::new(minor_units, currency.as_str())
}

/// Where giving back one leg of a cancelled order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum Given {
    /// The payment was refunded (PaymentRefunded).
    Refunded,
    /// The stock was released (InventoryReleased).
    Released,
    /// Taken, and waiting to be given back.
    Pending,
    /// Nothing was taken.
    None,
}

/// What a cancelled order's legs gave back, as the participants reported
/// it (PaymentRefunded, InventoryReleased).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Compensation {
    /// `REFUNDED`; `PENDING` while a captured payment waits for its refund;
    /// `NONE` when nothing was captured.
    #[schema(example = "REFUNDED")]
    payment: Given,
    /// `RELEASED`; `PENDING` while reserved stock waits for its release;
    /// `NONE` when nothing was reserved.
    #[schema(example = "RELEASED")]
    inventory: Given,
}

impl Compensation {
    fn state(taken: bool, given_back: bool, done: Given) -> Given {
        match (given_back, taken) {
            (true, _) => done,
            (false, true) => Given::Pending,
            (false, false) => Given::None,
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

/// An order in a list: what tells orders apart, without lines or timeline.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OrderSummary {
    /// The order's id; `GET /orders/{id}` has the rest.
    pub(crate) id: uuid::Uuid,
    /// `PENDING`, `CONFIRMED` or `CANCELLED`.
    status: Status,
    /// The customer's opaque id.
    customer_id: String,
    /// The sum of the lines.
    total: Amount,
    /// When it was placed.
    created_at: DateTime<Utc>,
    /// When its state last changed.
    updated_at: DateTime<Utc>,
}

impl From<Summary> for OrderSummary {
    fn from(row: Summary) -> Self {
        Self {
            id: row.id,
            status: row.status,
            customer_id: row.customer_id,
            total: amount(row.total_amount, &row.currency),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}
