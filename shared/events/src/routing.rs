//! Who listens to what, and who may say what: the routing table of the
//! whole system ([`SUBSCRIPTIONS`]) and the owner of every event
//! ([`PUBLISHERS`]).
//!
//! An administrator provisions all of the routing table before any service
//! starts (see the messaging crate's topology), so an event published
//! before its consumer first ran waits in that consumer's queue instead of
//! being dropped.
//!
//! Ownership is declared once, here, and enforced twice: the broker lets a
//! service's user publish only the routing keys of its own aggregates
//! (RabbitMQ topic permissions, derived from [`Publisher::aggregates`]),
//! and a consumer dead-letters an event whose envelope `source` is not the
//! owner of its `type` ([`owner_of`]).

use crate::inbox::{EmailInbox, Inbox, InventoryInbox, OrderInbox, PaymentInbox};
use crate::payloads::EVENTS;

/// One service's queue and the routing keys bound to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    /// The consuming service's short name; its queue is named after it.
    pub service: &'static str,
    /// The routing keys bound to that queue.
    pub routing_keys: &'static [&'static str],
}

/// Every queue of the checkout and what is bound to it: derived from each
/// service's [`Inbox`], so a queue receives exactly what its handler
/// matches on.
pub const SUBSCRIPTIONS: &[Subscription] = &[
    OrderInbox::SUBSCRIPTION,
    PaymentInbox::SUBSCRIPTION,
    InventoryInbox::SUBSCRIPTION,
    EmailInbox::SUBSCRIPTION,
];

/// A service as a publisher: the name its events carry and the events that
/// are its to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publisher {
    /// The service's short name, as in its [`Subscription`] (`order`).
    pub service: &'static str,
    /// The envelope `source` of its events: its binary's name (`order-service`).
    pub source: &'static str,
    /// The aggregates whose events it owns: the first word of every routing
    /// key it may publish (`order` for `order.created`). Empty for a
    /// service that publishes nothing.
    pub aggregates: &'static [&'static str],
}

impl Publisher {
    /// Whether `routing_key` is `<one of its aggregates>.<verb>`.
    pub fn owns_routing_key(&self, routing_key: &str) -> bool {
        routing_key
            .split_once('.')
            .is_some_and(|(aggregate, verb)| {
                self.aggregates.contains(&aggregate) && !verb.is_empty() && !verb.contains('.')
            })
    }
}

/// Every service of the checkout as a publisher. Email publishes nothing.
pub const PUBLISHERS: &[Publisher] = &[
    Publisher {
        service: OrderInbox::SERVICE,
        source: "order-service",
        aggregates: &["order"],
    },
    Publisher {
        service: PaymentInbox::SERVICE,
        source: "payment-service",
        aggregates: &["payment"],
    },
    Publisher {
        service: InventoryInbox::SERVICE,
        source: "inventory-service",
        // The catalog is Inventory's: ProductUpdated is `product.updated`.
        aggregates: &["inventory", "product"],
    },
    Publisher {
        service: EmailInbox::SERVICE,
        source: "email-service",
        aggregates: &[],
    },
];

/// The publisher that owns events of type `event_type` (`OrderConfirmed` →
/// `order-service`), or `None` for a type this code does not know (a
/// consumer ignores those anyway: forward compatibility).
pub fn owner_of(event_type: &str) -> Option<&'static Publisher> {
    let (_, routing_key) = EVENTS.iter().find(|(ty, _)| *ty == event_type)?;
    PUBLISHERS.iter().find(|p| p.owns_routing_key(routing_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_has_exactly_one_owner() {
        for (event_type, key) in EVENTS {
            let owners: Vec<&str> = PUBLISHERS
                .iter()
                .filter(|p| p.owns_routing_key(key))
                .map(|p| p.source)
                .collect();
            assert_eq!(
                owners.len(),
                1,
                "{event_type} ({key}) is owned by {owners:?}"
            );
            assert_eq!(owner_of(event_type).map(|p| p.source), Some(owners[0]));
        }
        assert_eq!(owner_of("SomethingNew"), None);
        assert_eq!(
            owner_of("OrderConfirmed").map(|p| p.source),
            Some("order-service")
        );
        assert_eq!(
            owner_of("ProductUpdated").map(|p| p.source),
            Some("inventory-service")
        );
    }

    #[test]
    fn a_publisher_owns_one_word_verbs_of_its_aggregates_only() {
        let inventory = PUBLISHERS
            .iter()
            .find(|p| p.service == "inventory")
            .expect("inventory");
        for (key, owned) in [
            ("inventory.reserved", true),
            ("product.updated", true),
            ("order.confirmed", false),
            ("inventory", false),
            ("inventory.", false),
            ("inventory.reserved.again", false),
            ("inventoryx.reserved", false),
        ] {
            assert_eq!(inventory.owns_routing_key(key), owned, "{key}");
        }
    }

    #[test]
    fn every_subscriber_is_a_publisher_and_the_other_way_round() {
        let subscribers: Vec<&str> = SUBSCRIPTIONS.iter().map(|s| s.service).collect();
        let publishers: Vec<&str> = PUBLISHERS.iter().map(|p| p.service).collect();
        assert_eq!(subscribers, publishers);
    }

    #[test]
    fn every_event_the_code_can_publish_has_a_subscriber() {
        for (_, key) in EVENTS {
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
    fn the_table_of_events_names_every_event() {
        // Each event is declared with one `event!(Type, version, "key")` or
        // one `impl Event for Type`; the legacy OrderCreatedV1 is read
        // (as its fixture) but never emitted.
        let declared = include_str!("payloads.rs")
            .lines()
            .filter(|line| line.starts_with("event!(") || line.starts_with("impl Event for "))
            .filter(|line| !line.contains("OrderCreatedV1"))
            .count();
        assert_eq!(declared, EVENTS.len(), "EVENTS misses an event");
        for subscription in SUBSCRIPTIONS {
            for key in subscription.routing_keys {
                assert!(
                    EVENTS.iter().any(|(_, k)| k == key),
                    "{key} is bound but no event has it"
                );
            }
        }
    }
}
