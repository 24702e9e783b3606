//! Who listens to what: the routing table of the whole system.
//!
//! Every service declares all of it at start (see the messaging crate's
//! topology), so an event published before its consumer first ran waits in
//! that consumer's queue instead of being dropped.

use crate::envelope::Event;
use crate::payloads::{
    InventoryFailed, InventoryReserved, OrderCancelled, OrderConfirmed, OrderCreated,
    PaymentCaptured, PaymentFailed, ProductUpdated,
};

/// One service's queue and the routing keys bound to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    /// The consuming service's short name; its queue is named after it.
    pub service: &'static str,
    /// The routing keys bound to that queue.
    pub routing_keys: &'static [&'static str],
}

/// Every queue of the checkout and what is bound to it.
pub const SUBSCRIPTIONS: &[Subscription] = &[
    Subscription {
        service: "order",
        routing_keys: &[
            PaymentCaptured::ROUTING_KEY,
            PaymentFailed::ROUTING_KEY,
            InventoryReserved::ROUTING_KEY,
            InventoryFailed::ROUTING_KEY,
            ProductUpdated::ROUTING_KEY,
        ],
    },
    Subscription {
        service: "payment",
        routing_keys: &[OrderCreated::ROUTING_KEY, OrderCancelled::ROUTING_KEY],
    },
    Subscription {
        service: "inventory",
        routing_keys: &[
            OrderCreated::ROUTING_KEY,
            OrderConfirmed::ROUTING_KEY,
            OrderCancelled::ROUTING_KEY,
        ],
    },
    Subscription {
        service: "email",
        routing_keys: &[OrderConfirmed::ROUTING_KEY, OrderCancelled::ROUTING_KEY],
    },
];
