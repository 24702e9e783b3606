//! The event contracts of the checkout: the envelope every message travels
//! in, the typed payload of every event, and the value types they share
//! (money, SKUs, quantities, order ids).
//!
//! This crate owns the wire format and nothing else: no I/O, no broker, no
//! database. Services depend on it to speak to each other; the messaging
//! crate depends on it only for [`Envelope`].
//!
//! Schema evolution: fields are only ever added, and added as optional; a
//! consumer ignores fields it does not know; a breaking change is a new
//! `VERSION` of an event, handled side by side.

mod envelope;
#[cfg(feature = "fixtures")]
pub mod fixtures;
mod inbox;
mod payloads;
mod routing;
mod values;

pub use envelope::{DecodeError, Envelope, Event};
pub use inbox::{EmailInbox, Inbox, InventoryInbox, OrderInbox, PaymentInbox};
pub use payloads::{
    EVENTS, InventoryFailed, InventoryReleased, InventoryReserved, OrderCancelled, OrderConfirmed,
    OrderCreated, OrderCreatedV1, PaymentCaptured, PaymentFailed, PaymentRefunded,
    PaymentRequested, ProductUpdated, ReservedItem, event_type_label,
};
pub use routing::{PUBLISHERS, Publisher, SUBSCRIPTIONS, Subscription, owner_of};
pub use values::{Currency, LineItem, Money, MoneyError, OrderId, Quantity, Sku, ValueError};
