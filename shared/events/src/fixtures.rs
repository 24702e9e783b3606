//! The contract of every event, as JSON fixtures checked into the repo:
//! `fixtures/<Type>.v<version>.json`, one full envelope per event type and
//! version (feature `fixtures`, for tests).
//!
//! This crate's tests prove each fixture is what the payload types write
//! and read; each service's tests feed the fixtures of the events its
//! queue is bound to (see [`claimed_by`]) to its real handler, as sent and
//! with fields added that no version has yet — so a producer adding an
//! optional field breaks no consumer.

use crate::envelope::{Envelope, Event};
use crate::payloads::{
    InventoryFailed, InventoryReleased, InventoryReserved, OrderCancelled, OrderConfirmed,
    OrderCreated, OrderCreatedV1, PaymentCaptured, PaymentFailed, PaymentRefunded,
    PaymentRequested, ProductUpdated,
};
use crate::routing::SUBSCRIPTIONS;
use serde_json::Value;

/// One event type and version, with its fixture.
#[derive(Debug, Clone, Copy)]
pub struct Fixture {
    /// The envelope's `type`.
    pub event_type: &'static str,
    /// The payload version.
    pub version: u32,
    /// The routing key it travels with.
    pub routing_key: &'static str,
    /// The fixture's text.
    pub json: &'static str,
    /// Decodes an envelope as this type and version, re-encoding the
    /// payload (so a test can compare it with what was sent).
    pub decode: fn(&Envelope) -> Result<Value, String>,
}

macro_rules! fixture {
    ($ty:ident, $version:literal) => {
        fixture!($ty, $ty, $version)
    };
    // `$name`: the event type's name in the file name, for a legacy
    // version's own struct (OrderCreatedV1 → OrderCreated.v1.json).
    ($ty:ident, $name:ident, $version:literal) => {
        Fixture {
            event_type: <$ty as Event>::TYPE,
            version: $version,
            routing_key: <$ty as Event>::ROUTING_KEY,
            json: include_str!(concat!(
                "../fixtures/",
                stringify!($name),
                ".v",
                $version,
                ".json"
            )),
            decode: |envelope| {
                envelope
                    .decode::<$ty>()
                    .map_err(|e| e.to_string())
                    .and_then(|event| serde_json::to_value(event).map_err(|e| e.to_string()))
            },
        }
    };
}

/// Every event type and version there is.
pub const FIXTURES: &[Fixture] = &[
    fixture!(OrderCreatedV1, OrderCreated, 1),
    fixture!(OrderCreated, 2),
    fixture!(PaymentRequested, 1),
    fixture!(PaymentCaptured, 1),
    fixture!(PaymentFailed, 1),
    fixture!(PaymentRefunded, 1),
    fixture!(InventoryReserved, 1),
    fixture!(InventoryFailed, 1),
    fixture!(InventoryReleased, 1),
    fixture!(OrderConfirmed, 1),
    fixture!(OrderCancelled, 1),
    fixture!(ProductUpdated, 1),
];

impl Fixture {
    /// The fixture as JSON.
    pub fn value(&self) -> Value {
        serde_json::from_str(self.json).unwrap_or(Value::Null)
    }

    /// The fixture as a consumer receives it, after `edit` (e.g. to point
    /// it at an order the test created): parsed from JSON text, as the
    /// consumer parses a delivery.
    pub fn envelope_with(&self, edit: impl FnOnce(&mut Value)) -> Envelope {
        let mut value = self.value();
        edit(&mut value);
        serde_json::from_str(&value.to_string()).unwrap_or_else(|e| {
            panic!(
                "{}.v{}: not an envelope: {e}",
                self.event_type, self.version
            )
        })
    }

    /// [`envelope_with`](Self::envelope_with), plus a field no version
    /// has, on the envelope, on the payload and on every object inside it.
    pub fn envelope_with_unknown_fields(&self, edit: impl FnOnce(&mut Value)) -> Envelope {
        self.envelope_with(|value| {
            edit(value);
            add_unknown_field(&mut value["data"]);
            if let Value::Object(envelope) = value {
                envelope.insert("added_later".to_owned(), Value::from("to the envelope"));
            }
        })
    }
}

fn add_unknown_field(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(add_unknown_field);
            map.insert("added_later".to_owned(), Value::from(42));
        }
        Value::Array(items) => items.iter_mut().for_each(add_unknown_field),
        _ => {}
    }
}

/// The fixtures of the events bound to `service`'s queue: what its
/// consumer claims to handle.
pub fn claimed_by(service: &str) -> Vec<&'static Fixture> {
    let keys: Vec<&str> = SUBSCRIPTIONS
        .iter()
        .filter(|s| s.service == service)
        .flat_map(|s| s.routing_keys.iter().copied())
        .collect();
    FIXTURES
        .iter()
        .filter(|f| keys.contains(&f.routing_key))
        .collect()
}

/// Events built in code, for tests that apply them to a handler: the
/// customer is `c-42` without an e-mail address; change a field with
/// struct update syntax (`OrderConfirmed { customer_email: …, ..order_confirmed(…) }`).
pub mod build {
    use crate::payloads::{
        InventoryReserved, OrderCancelled, OrderConfirmed, OrderCreated, PaymentCaptured,
        PaymentRequested,
    };
    use crate::values::{Currency, LineItem, Money, OrderId, Quantity, Sku};
    use uuid::Uuid;

    /// The customer of every built event.
    pub const CUSTOMER: &str = "c-42";

    /// `amount` cents in US dollars.
    pub fn usd(amount: i64) -> Money {
        Money::new(amount, Currency::parse("USD").expect("USD is a currency"))
    }

    /// An order of `lines` (SKU, quantity), every unit at `unit_price`.
    pub fn order_created(
        order_id: OrderId,
        lines: &[(&str, i64)],
        unit_price: i64,
    ) -> OrderCreated {
        let items: Vec<LineItem> = lines
            .iter()
            .map(|(sku, quantity)| LineItem {
                sku: Sku::parse(*sku).expect("a valid SKU"),
                quantity: Quantity::parse(*quantity).expect("a valid quantity"),
                unit_price: usd(unit_price),
            })
            .collect();
        let total = usd(unit_price * lines.iter().map(|(_, q)| q).sum::<i64>());
        OrderCreated {
            order_id,
            customer_id: CUSTOMER.to_owned(),
            customer_email: None,
            items,
            total,
        }
    }

    /// The charge of an order: `total` cents with `card_token`.
    pub fn payment_requested(order_id: OrderId, total: i64, card_token: &str) -> PaymentRequested {
        PaymentRequested {
            order_id,
            customer_id: CUSTOMER.to_owned(),
            amount: usd(total),
            card_token: card_token.to_owned(),
        }
    }

    /// Payment took `amount` cents.
    pub fn payment_captured(order_id: OrderId, amount: i64) -> PaymentCaptured {
        PaymentCaptured {
            order_id,
            payment_id: Uuid::now_v7(),
            amount: usd(amount),
        }
    }

    /// Inventory holds the order (no lines listed).
    pub fn inventory_reserved(order_id: OrderId) -> InventoryReserved {
        InventoryReserved {
            order_id,
            items: vec![],
        }
    }

    /// The order is confirmed for `total` cents.
    pub fn order_confirmed(order_id: OrderId, total: i64) -> OrderConfirmed {
        OrderConfirmed {
            order_id,
            customer_id: CUSTOMER.to_owned(),
            customer_email: None,
            total: usd(total),
        }
    }

    /// The order is cancelled because of `reason`.
    pub fn order_cancelled(order_id: OrderId, reason: &str) -> OrderCancelled {
        OrderCancelled {
            order_id,
            customer_id: CUSTOMER.to_owned(),
            customer_email: None,
            reason: reason.to_owned(),
        }
    }
}
