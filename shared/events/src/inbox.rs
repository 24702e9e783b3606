//! What each service receives: one enum per consuming service, the
//! service's *inbox*, with a variant per event type bound to its queue.
//!
//! Each inbox is declared once, with [`inbox!`], and that one declaration
//! yields both the decoding ([`Inbox::decode`]: an envelope becomes a
//! variant) and the routing keys its queue is bound to
//! ([`Inbox::ROUTING_KEYS`], from which [`crate::SUBSCRIPTIONS`] is
//! built). A handler `match`es on its inbox, so adding an event to a
//! service's inbox without handling it does not compile, and the queue is
//! bound to exactly what the handler handles.

use crate::envelope::{DecodeError, Envelope};
use crate::payloads::{
    InventoryFailed, InventoryReleased, InventoryReserved, OrderCancelled, OrderConfirmed,
    OrderCreated, PaymentCaptured, PaymentFailed, PaymentRefunded, PaymentRequested,
    ProductUpdated,
};
use crate::routing::Subscription;

/// The events one service consumes, as one enum.
pub trait Inbox: Sized {
    /// The consuming service's short name (`payment`); its queue is named
    /// after it.
    const SERVICE: &'static str;
    /// The routing keys bound to its queue: one per variant.
    const ROUTING_KEYS: &'static [&'static str];
    /// The service's queue and what is bound to it.
    const SUBSCRIPTION: Subscription = Subscription {
        service: Self::SERVICE,
        routing_keys: Self::ROUTING_KEYS,
    };

    /// Reads an envelope as one of the inbox's events: `Ok(None)` for a
    /// type the inbox does not hold (a newer event: ignored, for forward
    /// compatibility), an error for a known type whose version or payload
    /// this code cannot read.
    fn decode(envelope: &Envelope) -> Result<Option<Self>, DecodeError>;
}

/// Declares an inbox enum: `inbox!(Doc, Name = "service" { EventA, EventB })`.
/// Each variant is named after, and holds, its event type.
macro_rules! inbox {
    (
        $(#[$meta:meta])*
        $name:ident = $service:literal {
            $( $(#[$vmeta:meta])* $event:ident ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name {
            $(
                $(#[$vmeta])*
                $event($event),
            )+
        }

        impl Inbox for $name {
            const SERVICE: &'static str = $service;
            const ROUTING_KEYS: &'static [&'static str] =
                &[$( <$event as $crate::Event>::ROUTING_KEY ),+];

            fn decode(envelope: &Envelope) -> Result<Option<Self>, DecodeError> {
                $(
                    if envelope.is::<$event>() {
                        return envelope.decode().map(|event| Some(Self::$event(event)));
                    }
                )+
                Ok(None)
            }
        }
    };
}

inbox!(
    /// What the Order service's queue receives: the saga's replies, the
    /// compensations (recorded in the order's timeline) and the catalog.
    OrderInbox = "order" {
        /// Payment took the money.
        PaymentCaptured,
        /// Payment declined.
        PaymentFailed,
        /// Inventory holds every line.
        InventoryReserved,
        /// Inventory could not hold the order.
        InventoryFailed,
        /// A product was created or changed.
        ProductUpdated,
        /// A cancelled order's payment was given back. Without a subscriber
        /// it would pile up in the unroutable queue.
        PaymentRefunded,
        /// A cancelled order's stock was given back.
        InventoryReleased,
    }
);

inbox!(
    /// What the Payment service's queue receives. Not OrderCreated: the
    /// charge comes with PaymentRequested, the only event that carries
    /// the card token.
    PaymentInbox = "payment" {
        /// Charge an order.
        PaymentRequested,
        /// Refund an order, or void it before it is charged.
        OrderCancelled,
    }
);

inbox!(
    /// What the Inventory service's queue receives.
    InventoryInbox = "inventory" {
        /// Reserve an order's lines.
        OrderCreated,
        /// Ship what the order holds.
        OrderConfirmed,
        /// Give back what the order holds, or void it before it reserves.
        OrderCancelled,
    }
);

inbox!(
    /// What the Email service's queue receives: the ends of orders.
    EmailInbox = "email" {
        /// Mail the confirmation.
        OrderConfirmed,
        /// Mail the cancellation.
        OrderCancelled,
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, OrderId};

    fn cancelled() -> OrderCancelled {
        OrderCancelled {
            order_id: OrderId::new(),
            customer_id: "c-1".into(),
            customer_email: None,
            reason: "changed my mind".into(),
        }
    }

    #[test]
    fn decodes_its_events_ignores_others_and_refuses_bad_payloads() {
        let event = cancelled();
        let mut envelope = Envelope::new(&event, "order-service", event.order_id.as_uuid(), None)
            .expect("serializable");
        assert_eq!(
            PaymentInbox::decode(&envelope).expect("decodes"),
            Some(PaymentInbox::OrderCancelled(event))
        );
        assert_eq!(OrderInbox::decode(&envelope).expect("not an error"), None);
        envelope.data = serde_json::json!({});
        assert!(matches!(
            PaymentInbox::decode(&envelope),
            Err(DecodeError::InvalidPayload { .. })
        ));
    }

    #[test]
    fn routing_keys_follow_the_variants() {
        assert_eq!(
            PaymentInbox::ROUTING_KEYS,
            [PaymentRequested::ROUTING_KEY, OrderCancelled::ROUTING_KEY]
        );
        assert_eq!(EmailInbox::SUBSCRIPTION.service, "email");
    }
}
