//! The JSON the services answer with, typed just enough for assertions.
//!
//! These are the test's own reading of the HTTP contract, deliberately not
//! the services' types: if a service renames a field, these fail to
//! deserialize and the test says so. Unknown fields are ignored, because
//! adding a field is a compatible change. Statuses stay strings, compared
//! with the literal values the API documents (`"CONFIRMED"`).

use serde::Deserialize;
use uuid::Uuid;

/// An amount in minor units (cents) with its ISO currency.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Money {
    /// Minor units: 4999 is 49.99.
    pub amount: i64,
    /// ISO 4217 code (`USD`).
    pub currency: String,
}

impl Money {
    /// `amount` cents in US dollars, the demo catalog's currency.
    pub fn usd(amount: i64) -> Self {
        Self {
            amount,
            currency: "USD".to_owned(),
        }
    }
}

/// The answer to `POST /orders`: accepted, not yet decided.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Accepted {
    /// The new order's id.
    pub id: Uuid,
    /// Always `PENDING` at this point.
    pub status: String,
}

/// `GET /orders/{id}` (Order service).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Order {
    /// The order's id.
    pub id: Uuid,
    /// `PENDING`, `CONFIRMED` or `CANCELLED`.
    pub status: String,
    /// The customer's opaque id.
    pub customer_id: String,
    /// The lines, priced by the server.
    pub items: Vec<OrderLine>,
    /// The sum of the lines.
    pub total: Money,
    /// `PENDING`, `CAPTURED` or `FAILED`.
    pub payment: String,
    /// `PENDING`, `RESERVED` or `FAILED`.
    pub inventory: String,
    /// Why it was cancelled, if it was.
    pub cancel_reason: Option<String>,
    /// For a cancelled order, what was given back; `None` otherwise.
    pub compensation: Option<Compensation>,
    /// The trace the order was placed in (32 hex digits).
    pub trace_id: Option<String>,
}

/// What a cancelled order's legs gave back, as the Order service recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Compensation {
    /// `REFUNDED`, `PENDING` (captured, refund not yet seen) or `NONE`.
    pub payment: String,
    /// `RELEASED`, `PENDING` (reserved, release not yet seen) or `NONE`.
    pub inventory: String,
}

impl Order {
    /// Whether the saga has decided (`CONFIRMED` or `CANCELLED`).
    pub fn is_final(&self) -> bool {
        self.status == "CONFIRMED" || self.status == "CANCELLED"
    }
}

/// A page of `GET /orders` (Order service, admin).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrderPage {
    /// Newest first.
    pub items: Vec<OrderSummary>,
    /// The cursor of the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// One order of a [`OrderPage`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrderSummary {
    /// The order's id.
    pub id: Uuid,
    /// `PENDING`, `CONFIRMED` or `CANCELLED`.
    pub status: String,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrderLine {
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: i64,
    /// The price per unit when the order was placed.
    pub unit_price: Money,
}

/// `GET /catalog` (the Order service's copy of the catalog).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CatalogEntry {
    /// The product.
    pub sku: String,
    /// Its display name.
    pub name: String,
    /// Its current price.
    pub unit_price: Money,
    /// The Inventory revision this copy is at.
    pub revision: i64,
}

/// `GET /products` (Inventory).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Product {
    /// The product.
    pub sku: String,
    /// Its display name.
    pub name: String,
    /// Its current price.
    pub unit_price: Money,
    /// Units in the warehouse.
    pub on_hand: i64,
    /// Units held for orders not yet decided.
    pub reserved: i64,
    /// `on_hand - reserved`: what a new order can get.
    pub available: i64,
    /// Bumped on every change of name or price.
    pub revision: i64,
}

impl Product {
    /// Just the stock figures, to compare before and after.
    pub fn stock(&self) -> Stock {
        Stock {
            on_hand: self.on_hand,
            reserved: self.reserved,
            available: self.available,
        }
    }
}

/// The stock figures of a [`Product`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stock {
    /// Units in the warehouse.
    pub on_hand: i64,
    /// Units held for orders not yet decided.
    pub reserved: i64,
    /// What a new order can get.
    pub available: i64,
}

/// `GET /reservations?order_id=` (Inventory).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Reservation {
    /// The order it is for.
    pub order_id: Uuid,
    /// `RESERVED`, `FAILED`, `RELEASED`, `COMMITTED` or `VOIDED`.
    pub status: String,
    /// Why it failed, if it did.
    pub reason: Option<String>,
    /// What is (or was) held.
    pub items: Vec<ReservedItem>,
}

/// One held line of a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReservedItem {
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: i64,
}

/// `GET /payments?order_id=` (Payment).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Payment {
    /// The order it is for.
    pub order_id: Uuid,
    /// `CAPTURED`, `DECLINED`, `REFUNDED` or `VOIDED`.
    pub status: String,
    /// What was (or would have been) charged.
    pub amount: Money,
    /// Why it was declined, refunded or voided, if it was.
    pub reason: Option<String>,
}

/// `GET /emails?order_id=` (Email).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Email {
    /// The notification's id.
    pub id: Uuid,
    /// The order it is about.
    pub order_id: Uuid,
    /// `confirmation` or `cancellation`.
    pub kind: String,
    /// The address it went to.
    pub recipient: String,
    /// Its subject line.
    pub subject: String,
    /// Its plain-text body.
    pub body: String,
}
