//! Who listens to what: the routing table of the whole system.
//!
//! Every service declares all of it at start (see the messaging crate's
//! topology), so an event published before its consumer first ran waits in
//! that consumer's queue instead of being dropped.

use crate::envelope::Event;
use crate::payloads::{
    InventoryFailed, InventoryReleased, InventoryReserved, OrderCancelled, OrderConfirmed,
    OrderCreated, PaymentCaptured, PaymentFailed, PaymentRefunded, ProductUpdated,
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
            // Compensations, recorded in the order's timeline. Without a
            // subscriber they would pile up in the unroutable queue.
            PaymentRefunded::ROUTING_KEY,
            InventoryReleased::ROUTING_KEY,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::ROUTING_KEYS;

    #[test]
    fn every_event_the_code_can_publish_has_a_subscriber() {
        for key in ROUTING_KEYS {
            let subscribers: Vec<&str> = SUBSCRIPTIONS
                .iter()
                .filter(|s| s.routing_keys.contains(key))
                .map(|s| s.service)
                .collect();
            assert!(
                !subscribers.is_empty(),
                "nothing is bound to {key}: its messages would pile up in the unroutable queue"
            );
        }
    }

    #[test]
    fn the_list_of_routing_keys_names_every_event() {
        // Each event is declared with one `event!(Type, version, "key")`.
        let declared = include_str!("payloads.rs")
            .lines()
            .filter(|line| line.starts_with("event!("))
            .count();
        assert_eq!(declared, ROUTING_KEYS.len(), "ROUTING_KEYS misses an event");
        for subscription in SUBSCRIPTIONS {
            for key in subscription.routing_keys {
                assert!(
                    ROUTING_KEYS.contains(key),
                    "{key} is bound but no event has it"
                );
            }
        }
    }
}
