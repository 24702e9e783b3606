//! The payload of every event in the checkout saga.

use crate::envelope::Event;
use crate::values::{LineItem, Money, OrderId, Quantity, Sku};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! event {
    ($ty:ident, $version:literal, $key:literal) => {
        impl Event for $ty {
            const TYPE: &'static str = stringify!($ty);
            const VERSION: u32 = $version;
            const ROUTING_KEY: &'static str = $key;
        }
    };
}

/// An order was accepted and is waiting for payment and stock.
///
/// Version 2 no longer carries the card token: it goes only to Payment, in
/// [`PaymentRequested`]. Version 1 (with `card_token`) is still read: its
/// fields are a superset, and the token is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreated {
    /// The order.
    pub order_id: OrderId,
    /// The customer's opaque id.
    pub customer_id: String,
    /// Where to send notifications, if the customer gave an address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    /// The priced lines.
    pub items: Vec<LineItem>,
    /// The sum of the lines.
    pub total: Money,
}
impl Event for OrderCreated {
    const TYPE: &'static str = "OrderCreated";
    const VERSION: u32 = 2;
    const ROUTING_KEY: &'static str = "order.created";
    const READS: &'static [u32] = &[1, 2];
}

/// Version 1 of [`OrderCreated`], as it was written before the card token
/// moved to [`PaymentRequested`]: kept so its fixture stays the contract of
/// what older producers sent. No code emits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreatedV1 {
    /// The order.
    pub order_id: OrderId,
    /// The customer's opaque id.
    pub customer_id: String,
    /// Where to send notifications, if the customer gave an address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    /// The priced lines.
    pub items: Vec<LineItem>,
    /// The sum of the lines.
    pub total: Money,
    /// The payment provider's token for the customer's card.
    pub card_token: String,
}
impl Event for OrderCreatedV1 {
    const TYPE: &'static str = "OrderCreated";
    const VERSION: u32 = 1;
    const ROUTING_KEY: &'static str = "order.created";
}

/// The order asks Payment to charge it: the only event that carries the
/// card token, so the token reaches Payment and no other service. The
/// outbox drops the token from its copy once the broker has the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRequested {
    /// The order to charge.
    pub order_id: OrderId,
    /// The customer's opaque id.
    pub customer_id: String,
    /// What to charge: the order's total.
    pub amount: Money,
    /// The payment provider's token for the customer's card (never a card number).
    pub card_token: String,
}
impl Event for PaymentRequested {
    const TYPE: &'static str = "PaymentRequested";
    const VERSION: u32 = 1;
    const ROUTING_KEY: &'static str = "order.payment-requested";
    const SECRET_FIELDS: &'static [&'static str] = &["card_token"];
}

/// The order's amount was captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCaptured {
    /// The order paid for.
    pub order_id: OrderId,
    /// The payment's id at the Payment service.
    pub payment_id: Uuid,
    /// What was captured.
    pub amount: Money,
}
event!(PaymentCaptured, 1, "payment.captured");

/// The payment was declined; nothing was captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailed {
    /// The order.
    pub order_id: OrderId,
    /// Why, in words a customer may read.
    pub reason: String,
}
event!(PaymentFailed, 1, "payment.failed");

/// A captured payment was refunded because its order was cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    /// The order.
    pub order_id: OrderId,
    /// The refunded payment.
    pub payment_id: Uuid,
    /// What was refunded.
    pub amount: Money,
}
event!(PaymentRefunded, 1, "payment.refunded");

/// One reserved line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedItem {
    /// The SKU.
    pub sku: Sku,
    /// Units held for the order.
    pub quantity: Quantity,
}

/// Every line of the order is held in stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReserved {
    /// The order.
    pub order_id: OrderId,
    /// What is held.
    pub items: Vec<ReservedItem>,
}
event!(InventoryReserved, 1, "inventory.reserved");

/// The order could not be reserved; nothing is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryFailed {
    /// The order.
    pub order_id: OrderId,
    /// Why, in words a customer may read.
    pub reason: String,
    /// The first line that could not be served, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<Sku>,
}
event!(InventoryFailed, 1, "inventory.failed");

/// A reservation was given back because its order was cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReleased {
    /// The order.
    pub order_id: OrderId,
}
event!(InventoryReleased, 1, "inventory.released");

/// Payment and stock are both secured: the order is final and good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderConfirmed {
    /// The order.
    pub order_id: OrderId,
    /// The customer's opaque id.
    pub customer_id: String,
    /// Where to send the confirmation, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    /// What the customer pays.
    pub total: Money,
}
event!(OrderConfirmed, 1, "order.confirmed");

/// The order failed; whatever was secured for it must be given back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    /// The order.
    pub order_id: OrderId,
    /// The customer's opaque id.
    pub customer_id: String,
    /// Where to send the notice, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    /// Why, in words a customer may read.
    pub reason: String,
}
event!(OrderCancelled, 1, "order.cancelled");

/// A product was created or changed at Inventory (event-carried state transfer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductUpdated {
    /// The product.
    pub sku: Sku,
    /// Its display name.
    pub name: String,
    /// The price of one unit.
    pub unit_price: Money,
    /// Grows by one on every change; older revisions are discarded.
    pub revision: i64,
}
event!(ProductUpdated, 1, "product.updated");

/// Every event above as (envelope `type`, routing key): everything the
/// services can publish. Owners (`owner_of`), metric labels and the
/// "every event has a subscriber" test read it; a test checks it names
/// every event.
pub const EVENTS: &[(&str, &str)] = &[
    (OrderCreated::TYPE, OrderCreated::ROUTING_KEY),
    (PaymentRequested::TYPE, PaymentRequested::ROUTING_KEY),
    (PaymentCaptured::TYPE, PaymentCaptured::ROUTING_KEY),
    (PaymentFailed::TYPE, PaymentFailed::ROUTING_KEY),
    (PaymentRefunded::TYPE, PaymentRefunded::ROUTING_KEY),
    (InventoryReserved::TYPE, InventoryReserved::ROUTING_KEY),
    (InventoryFailed::TYPE, InventoryFailed::ROUTING_KEY),
    (InventoryReleased::TYPE, InventoryReleased::ROUTING_KEY),
    (OrderConfirmed::TYPE, OrderConfirmed::ROUTING_KEY),
    (OrderCancelled::TYPE, OrderCancelled::ROUTING_KEY),
    (ProductUpdated::TYPE, ProductUpdated::ROUTING_KEY),
];

/// `event_type` when it is one of [`EVENTS`], else `"unknown"`: what
/// a metric label may carry of a type read from a message. Every distinct
/// label value is a series kept until the process restarts, so a label
/// taken verbatim from the broker lets any publisher grow the service's
/// memory and the Prometheus it feeds without bound.
pub fn event_type_label(event_type: &str) -> &'static str {
    EVENTS
        .iter()
        .find(|(known, _)| *known == event_type)
        .map_or("unknown", |(known, _)| known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_of_events_names_each_type_with_its_routing_key() {
        fn pair<E: Event>() -> (&'static str, &'static str) {
            (E::TYPE, E::ROUTING_KEY)
        }
        let pairs = [
            pair::<OrderCreated>(),
            pair::<PaymentRequested>(),
            pair::<PaymentCaptured>(),
            pair::<PaymentFailed>(),
            pair::<PaymentRefunded>(),
            pair::<InventoryReserved>(),
            pair::<InventoryFailed>(),
            pair::<InventoryReleased>(),
            pair::<OrderConfirmed>(),
            pair::<OrderCancelled>(),
            pair::<ProductUpdated>(),
        ];
        assert_eq!(pairs, EVENTS);
    }

    #[test]
    fn a_known_event_type_is_its_own_label_and_anything_else_is_unknown() {
        for (known, _) in EVENTS {
            assert_eq!(event_type_label(known), *known);
        }
        for other in [
            "",
            "orderCreated",
            "OrderCreated ",
            "Evil-0194f0c2",
            "unknown",
        ] {
            assert_eq!(event_type_label(other), "unknown", "{other:?}");
        }
    }
}
