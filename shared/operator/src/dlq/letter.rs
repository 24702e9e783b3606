//! One dead letter as a person inspects it: what the consumer's headers
//! (or the broker's `x-death`) say about it, where it was first published,
//! and its body with card tokens masked.

use super::mask_card_tokens;
use checkout_messaging::dead_letter::{
    ATTEMPTS, DEATH, ERROR, FAILED_AT, HANDLER, ORIGINAL_EXCHANGE, ORIGINAL_ROUTING_KEY, REASON,
    header_int, header_str,
};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};

/// Where a message was first published: the exchange and routing key a
/// replay checks against the failing service's bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The exchange it was published to.
    pub exchange: String,
    /// The routing key it was published with.
    pub routing_key: String,
}

/// One message in a dead-letter queue, as a person inspects it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The AMQP `message_id`, else the envelope's `id`.
    pub message_id: Option<String>,
    /// The AMQP `type`, else the envelope's `type`.
    pub event_type: Option<String>,
    /// Why it was dead-lettered (`x-dead-letter-reason`, else the broker's
    /// newest `x-death` reason, e.g. `rejected` or `delivery_limit`).
    pub reason: Option<String>,
    /// The last error.
    pub error: Option<String>,
    /// The handler that gave up.
    pub handler: Option<String>,
    /// How many attempts it had.
    pub attempts: Option<i64>,
    /// When it was dead-lettered.
    pub failed_at: Option<String>,
    /// Where it was first published to (`x-original-exchange`).
    pub original_exchange: Option<String>,
    /// The routing key it was first published with (`x-original-routing-key`).
    pub original_routing_key: Option<String>,
    /// Every header as the broker holds it.
    pub headers: FieldTable,
    /// The body, unchanged (card tokens included: print [`DeadLetter::masked_body`]).
    pub body: Vec<u8>,
    properties: BasicProperties,
}

impl DeadLetter {
    pub(super) fn from_delivery(properties: BasicProperties, body: Vec<u8>) -> Self {
        let headers = properties.headers().clone().unwrap_or_default();
        let h = Some(&headers);
        let text = |key: &str| header_str(h, key).map(str::to_owned);
        // A producer that set no properties still sent an envelope, usually.
        let envelope = serde_json::from_slice::<serde_json::Value>(&body).ok();
        let from_body = |field: &str| {
            envelope
                .as_ref()
                .and_then(|e| e.get(field)?.as_str().map(str::to_owned))
        };
        let broker_reason = deaths(&headers)
            .first()
            .and_then(|death| table_str(death, "reason"));
        Self {
            message_id: properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .or_else(|| from_body("id")),
            event_type: properties
                .kind()
                .as_ref()
                .map(|s| s.to_string())
                .or_else(|| from_body("type")),
            reason: text(REASON).or(broker_reason),
            error: text(ERROR),
            handler: text(HANDLER),
            attempts: header_int(h, ATTEMPTS),
            failed_at: text(FAILED_AT),
            original_exchange: text(ORIGINAL_EXCHANGE),
            original_routing_key: text(ORIGINAL_ROUTING_KEY),
            headers,
            body,
            properties,
        }
    }

    /// Where it was first published: the `x-original-*` headers the
    /// consumer adds, else — for a message the broker dead-lettered itself —
    /// the `x-death` entry of `work_queue`, the queue it was taken from.
    pub fn original_route(&self, work_queue: &str) -> Option<Route> {
        if let (Some(exchange), Some(routing_key)) =
            (&self.original_exchange, &self.original_routing_key)
        {
            return Some(Route {
                exchange: exchange.clone(),
                routing_key: routing_key.clone(),
            });
        }
        deaths(&self.headers)
            .into_iter()
            .find(|death| table_str(death, "queue").as_deref() == Some(work_queue))
            .and_then(|death| {
                let exchange = table_str(death, "exchange")?;
                let routing_key = match death.inner().get("routing-keys")? {
                    AMQPValue::FieldArray(keys) => keys.as_slice().iter().find_map(value_str)?,
                    _ => return None,
                };
                Some(Route {
                    exchange,
                    routing_key,
                })
            })
    }

    /// The message's AMQP properties as stored (a replay sends them on).
    pub fn properties(&self) -> &BasicProperties {
        &self.properties
    }

    /// The body to show a person: pretty JSON when it is JSON, else the
    /// text (invalid UTF-8 replaced), with every `card_token` value masked.
    pub fn masked_body(&self) -> String {
        match serde_json::from_slice::<serde_json::Value>(&self.body) {
            Ok(mut json) => {
                super::mask::mask_json(&mut json);
                serde_json::to_string_pretty(&json).unwrap_or_default()
            }
            Err(_) => mask_card_tokens(&String::from_utf8_lossy(&self.body)).into_owned(),
        }
    }
}

/// The tables of the `x-death` header, newest first.
fn deaths(headers: &FieldTable) -> Vec<&FieldTable> {
    match headers.inner().get(DEATH) {
        Some(AMQPValue::FieldArray(entries)) => entries
            .as_slice()
            .iter()
            .filter_map(|entry| match entry {
                AMQPValue::FieldTable(table) => Some(table),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn table_str(table: &FieldTable, key: &str) -> Option<String> {
    value_str(table.inner().get(key)?)
}

fn value_str(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok().map(str::to_owned),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// A header value as a person reads it: strings as they are, tables and
/// arrays (such as `x-death`) spelled out, timestamps as RFC 3339 (for
/// `checkoutctl dlq show` and the console). Mask it before showing it.
pub fn header_text(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.to_string(),
        AMQPValue::FieldArray(items) => {
            let items: Vec<String> = items.as_slice().iter().map(header_text).collect();
            format!("[{}]", items.join(", "))
        }
        AMQPValue::FieldTable(table) => {
            let fields: Vec<String> = table
                .inner()
                .iter()
                .map(|(key, value)| format!("{key}: {}", header_text(value)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        AMQPValue::Timestamp(seconds) => chrono::DateTime::from_timestamp(*seconds as i64, 0)
            .map_or_else(|| seconds.to_string(), |t| t.to_rfc3339()),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkout_messaging::dead_letter::set_str;
    use lapin::types::{LongString, ShortString};

    fn letter(headers: FieldTable) -> DeadLetter {
        DeadLetter::from_delivery(
            BasicProperties::default().with_headers(headers),
            b"{}".to_vec(),
        )
    }

    #[test]
    fn the_original_route_comes_from_the_consumer_headers_else_from_x_death() {
        let mut headers = FieldTable::default();
        set_str(&mut headers, ORIGINAL_EXCHANGE, "ns.events");
        set_str(&mut headers, ORIGINAL_ROUTING_KEY, "order.created");
        assert_eq!(
            letter(headers).original_route("ns.payment"),
            Some(Route {
                exchange: "ns.events".into(),
                routing_key: "order.created".into()
            })
        );

        let death = |queue: &str, exchange: &str, key: &str| {
            let mut entry = FieldTable::default();
            set_str(&mut entry, "queue", queue);
            set_str(&mut entry, "reason", "rejected");
            set_str(&mut entry, "exchange", exchange);
            entry.insert(
                ShortString::from("routing-keys"),
                AMQPValue::FieldArray(vec![AMQPValue::LongString(LongString::from(key))].into()),
            );
            AMQPValue::FieldTable(entry)
        };
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from(DEATH),
            AMQPValue::FieldArray(
                vec![
                    death("ns.other", "", "ns.other"),
                    death("ns.payment", "ns.events", "order.created"),
                ]
                .into(),
            ),
        );
        let broker_dead_lettered = letter(headers);
        assert_eq!(broker_dead_lettered.reason.as_deref(), Some("rejected"));
        assert_eq!(
            broker_dead_lettered.original_route("ns.payment"),
            Some(Route {
                exchange: "ns.events".into(),
                routing_key: "order.created".into()
            })
        );
        assert_eq!(broker_dead_lettered.original_route("ns.email"), None);
        assert_eq!(
            letter(FieldTable::default()).original_route("ns.payment"),
            None
        );
    }
}
