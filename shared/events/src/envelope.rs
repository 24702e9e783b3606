//! The envelope: the one JSON shape every message body has.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

/// A typed event payload: its name, version and routing key on the wire.
pub trait Event: Serialize + DeserializeOwned {
    /// The envelope's `type`, e.g. `OrderCreated`.
    const TYPE: &'static str;
    /// The payload version this type reads and writes.
    const VERSION: u32;
    /// The routing key it is published with: `aggregate.verb`, past tense.
    const ROUTING_KEY: &'static str;
    /// Every payload version this type reads: its own, and older ones whose
    /// fields are a superset of its own (fields it does not know are
    /// ignored), so a consumer drains messages an older producer sent.
    const READS: &'static [u32] = &[Self::VERSION];
    /// Payload fields too sensitive to keep: the outbox strips them from its
    /// copy of the event once the broker has it (a card token, say).
    const SECRET_FIELDS: &'static [&'static str] = &[];
}

/// Why an envelope's payload could not be read as the event asked for.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The envelope carries another event type.
    #[error("expected event type {expected}, got {actual}")]
    WrongType {
        /// The type the caller asked for.
        expected: &'static str,
        /// The type the envelope carries.
        actual: String,
    },
    /// The envelope carries a version this code does not read.
    #[error(
        "{event_type} version {actual} is not supported (this code reads versions {supported:?})"
    )]
    UnsupportedVersion {
        /// The event type.
        event_type: String,
        /// The version in the envelope.
        actual: u32,
        /// The versions this code reads.
        supported: &'static [u32],
    },
    /// The payload is not a valid instance of the event (missing field, bad value).
    #[error("invalid {event_type} payload: {source}")]
    InvalidPayload {
        /// The event type.
        event_type: &'static str,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

/// Every message body: metadata plus the event's payload in `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// UUID v7; the idempotency key consumers deduplicate on.
    pub id: Uuid,
    /// The event type, e.g. `OrderCreated`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload version.
    pub version: u32,
    /// When the fact happened.
    pub occurred_at: DateTime<Utc>,
    /// The service that emitted it, e.g. `order-service`.
    pub source: String,
    /// Ties a whole saga together: the order id for order events.
    pub correlation_id: Uuid,
    /// The id of the event that caused this one, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The event's payload.
    pub data: serde_json::Value,
}

impl Envelope {
    /// Wraps `event` in a new envelope with a fresh id.
    ///
    /// Fails only if the payload cannot be represented as JSON, which the
    /// payload types of this crate never do.
    pub fn new<E: Event>(
        event: &E,
        source: &str,
        correlation_id: Uuid,
        causation_id: Option<Uuid>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            id: Uuid::now_v7(),
            event_type: E::TYPE.to_owned(),
            version: E::VERSION,
            occurred_at: Utc::now(),
            source: source.to_owned(),
            correlation_id,
            causation_id,
            data: serde_json::to_value(event)?,
        })
    }

    /// Whether this envelope carries events of type `E` (any version).
    pub fn is<E: Event>(&self) -> bool {
        self.event_type == E::TYPE
    }

    /// Reads the payload as `E`, checking type and version first (any
    /// version of [`Event::READS`]).
    pub fn decode<E: Event>(&self) -> Result<E, DecodeError> {
        if self.event_type != E::TYPE {
            return Err(DecodeError::WrongType {
                expected: E::TYPE,
                actual: self.event_type.clone(),
            });
        }
        if !E::READS.contains(&self.version) {
            return Err(DecodeError::UnsupportedVersion {
                event_type: self.event_type.clone(),
                actual: self.version,
                supported: E::READS,
            });
        }
        E::deserialize(&self.data).map_err(|source| DecodeError::InvalidPayload {
            event_type: E::TYPE,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InventoryReleased, OrderId, PaymentFailed};

    fn released() -> InventoryReleased {
        InventoryReleased {
            order_id: OrderId::new(),
        }
    }

    #[test]
    fn round_trips_through_json_with_the_wire_field_names() {
        let event = released();
        let envelope = Envelope::new(&event, "inventory-service", event.order_id.as_uuid(), None)
            .expect("serializable");
        let json = serde_json::to_value(&envelope).expect("serializable");
        assert_eq!(json["type"], "InventoryReleased");
        assert_eq!(json["version"], 1);
        assert!(json.get("causation_id").is_none());
        let back: Envelope = serde_json::from_value(json).expect("deserializable");
        assert_eq!(back.decode::<InventoryReleased>().expect("decodes"), event);
    }

    #[test]
    fn decode_checks_type_and_version() {
        let event = released();
        let mut envelope =
            Envelope::new(&event, "inventory-service", event.order_id.as_uuid(), None)
                .expect("serializable");
        assert!(matches!(
            envelope.decode::<PaymentFailed>(),
            Err(DecodeError::WrongType { .. })
        ));
        envelope.version = 2;
        assert!(matches!(
            envelope.decode::<InventoryReleased>(),
            Err(DecodeError::UnsupportedVersion { actual: 2, .. })
        ));
    }

    #[test]
    fn unknown_fields_are_ignored_and_missing_ones_refused() {
        let event = released();
        let mut envelope =
            Envelope::new(&event, "inventory-service", event.order_id.as_uuid(), None)
                .expect("serializable");
        envelope.data["added_later"] = serde_json::json!("ignored");
        assert_eq!(
            envelope.decode::<InventoryReleased>().expect("decodes"),
            event
        );
        envelope.data = serde_json::json!({});
        assert!(matches!(
            envelope.decode::<InventoryReleased>(),
            Err(DecodeError::InvalidPayload { .. })
        ));
    }
}
