//! Dead letters: what a message carries when it leaves the flow for good,
//! and what a person can do with a dead-letter queue (list, show, replay,
//! purge — the `checkoutctl dlq` commands).
//!
//! A dead letter keeps its body and original properties and headers
//! (including `traceparent`), and gains the `x-*` headers below.

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use std::time::Duration;

/// Why the message was dead-lettered: `poison`, `rejected` or `exhausted`.
pub const REASON: &str = "x-dead-letter-reason";
/// The last error, as text.
pub const ERROR: &str = "x-error";
/// The consumer (inbox handler name) that gave up.
pub const HANDLER: &str = "x-handler";
/// How many times it was tried.
pub const ATTEMPTS: &str = "x-attempts";
/// When it was dead-lettered (RFC 3339).
pub const FAILED_AT: &str = "x-failed-at";
/// The routing key it was first published with.
pub const ORIGINAL_ROUTING_KEY: &str = "x-original-routing-key";
/// The exchange it was first published to.
pub const ORIGINAL_EXCHANGE: &str = "x-original-exchange";
/// How many retries it has had (0 on first delivery); travels with retries.
pub const RETRY_COUNT: &str = "x-retry-count";

/// Why a message is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// It cannot be read: not JSON, not an envelope, an unknown version, a
    /// missing field. Never retried.
    Poison,
    /// The handler refused it permanently. Never retried.
    Rejected,
    /// It failed transiently on every attempt.
    Exhausted,
}

impl Reason {
    /// The `x-dead-letter-reason` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Poison => "poison",
            Reason::Rejected => "rejected",
            Reason::Exhausted => "exhausted",
        }
    }
}

/// Reads a string header, whichever AMQP string type it was written as.
pub fn header_str<'a>(headers: Option<&'a FieldTable>, key: &str) -> Option<&'a str> {
    match headers?.inner().get(key)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

/// Reads an integer header, whichever AMQP integer type it was written as.
pub fn header_int(headers: Option<&FieldTable>, key: &str) -> Option<i64> {
    match headers?.inner().get(key)? {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        _ => None,
    }
}

pub(crate) fn set_str(headers: &mut FieldTable, key: &str, value: &str) {
    headers.insert(
        ShortString::from(key),
        AMQPValue::LongString(LongString::from(value)),
    );
}

pub(crate) fn set_int(headers: &mut FieldTable, key: &str, value: i64) {
    headers.insert(ShortString::from(key), AMQPValue::LongLongInt(value));
}

/// Publishes `body` to the default exchange with `routing_key` (a queue
/// name) and waits for the broker's confirm. `channel` must be in confirm mode.
pub(crate) async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), String> {
    let exchange = ShortString::try_new(exchange).map_err(|e| e.to_string())?;
    let routing_key = ShortString::try_new(routing_key).map_err(|e| e.to_string())?;
    let confirm = channel
        .basic_publish(
            exchange,
            routing_key,
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            properties,
        )
        .await
        .map_err(|e| e.to_string())?;
    match confirm.await.map_err(|e| e.to_string())? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err("returned as unroutable".to_owned()),
        Confirmation::Nack(_) => Err("nacked by the broker".to_owned()),
        Confirmation::NotRequested => Err("channel not in confirm mode".to_owned()),
    }
}

/// One message in a dead-letter queue, as a person inspects it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The AMQP `message_id`, else the envelope's `id`.
    pub message_id: Option<String>,
    /// The AMQP `type`, else the envelope's `type`.
    pub event_type: Option<String>,
    /// Why it was dead-lettered.
    pub reason: Option<String>,
    /// The last error.
    pub error: Option<String>,
    /// The handler that gave up.
    pub handler: Option<String>,
    /// How many attempts it had.
    pub attempts: Option<i64>,
    /// When it was dead-lettered.
    pub failed_at: Option<String>,
    /// Where it was first published to.
    pub original_exchange: Option<String>,
    /// The routing key it was first published with.
    pub original_routing_key: Option<String>,
    /// Every header as the broker holds it.
    pub headers: FieldTable,
    /// The body, unchanged.
    pub body: Vec<u8>,
    properties: BasicProperties,
}

impl DeadLetter {
    fn from_delivery(properties: BasicProperties, body: Vec<u8>) -> Self {
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
            reason: text(REASON),
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
}

/// Reads up to `limit` messages of `queue` without removing them (each is
/// fetched, then returned to the queue).
pub async fn peek(
    channel: &Channel,
    queue: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>, lapin::Error> {
    let mut taken = Vec::new();
    let mut letters = Vec::new();
    while letters.len() < limit {
        let Some(message) = channel
            .basic_get(ShortString::from(queue), BasicGetOptions::default())
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        letters.push(DeadLetter::from_delivery(
            delivery.properties.clone(),
            delivery.data.clone(),
        ));
        taken.push(delivery.acker);
    }
    // Give them all back at once, so none is fetched twice above.
    give_back(channel, queue, taken).await?;
    Ok(letters)
}

/// What [`replay`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replayed {
    /// Messages published again to their original exchange and routing key.
    pub replayed: usize,
    /// Messages left in the queue (not selected, or without an original route).
    pub left: usize,
}

/// Publishes the dead letters of `queue` that `select` picks back to their
/// original exchange and routing key — without the dead-letter headers,
/// with their original trace context — and removes each from the queue once
/// the broker confirmed the publish. The consumers' inbox still
/// deduplicates, so replaying an event that was in fact applied is harmless.
pub async fn replay(
    channel: &Channel,
    queue: &str,
    select: impl Fn(&DeadLetter) -> bool,
) -> Result<Replayed, lapin::Error> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut outcome = Replayed::default();
    let mut keep = Vec::new();
    let total = ready_count(channel, queue).await?;
    for _ in 0..total {
        let Some(message) = channel
            .basic_get(ShortString::from(queue), BasicGetOptions::default())
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        let letter = DeadLetter::from_delivery(delivery.properties.clone(), delivery.data.clone());
        let route = letter
            .original_exchange
            .clone()
            .zip(letter.original_routing_key.clone());
        match route {
            Some((exchange, routing_key)) if select(&letter) => {
                let mut headers = letter.headers.clone();
                let mut inner = headers.inner().clone();
                for key in [REASON, ERROR, HANDLER, ATTEMPTS, FAILED_AT, RETRY_COUNT] {
                    inner.remove(key);
                }
                headers = FieldTable::from(inner);
                let properties = letter.properties.clone().with_headers(headers);
                match publish_confirmed(channel, &exchange, &routing_key, &letter.body, properties)
                    .await
                {
                    Ok(()) => {
                        delivery.acker.ack(BasicAckOptions::default()).await?;
                        outcome.replayed += 1;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "replay failed; the message stays in the queue");
                        keep.push(delivery.acker);
                    }
                }
            }
            _ => keep.push(delivery.acker),
        }
    }
    outcome.left = keep.len();
    give_back(channel, queue, keep).await?;
    Ok(outcome)
}

/// Returns fetched messages to their queue and waits (bounded) until the
/// queue counts them again.
///
/// A quorum queue applies a requeue asynchronously: without the wait, a
/// `list` followed at once by a `show` or `replay` — or anything reading the
/// queue's depth — could miss the messages that were only being looked at.
async fn give_back(
    channel: &Channel,
    queue: &str,
    ackers: Vec<lapin::Acker>,
) -> Result<(), lapin::Error> {
    let returned = ackers.len();
    for acker in ackers {
        acker
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await?;
    }
    let deadline = tokio::time::Instant::now() + GIVE_BACK_WAIT;
    while ready_count(channel, queue).await? < returned {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                queue,
                returned,
                "the broker has not requeued every message yet"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// How long [`give_back`] waits for the broker to count requeued messages.
const GIVE_BACK_WAIT: Duration = Duration::from_secs(5);

/// The number of messages ready in `queue`.
async fn ready_count(channel: &Channel, queue: &str) -> Result<usize, lapin::Error> {
    let declared = channel
        .queue_declare(
            ShortString::from(queue),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(declared.message_count() as usize)
}

/// Removes every message of `queue`; returns how many.
pub async fn purge(channel: &Channel, queue: &str) -> Result<u32, lapin::Error> {
    channel
        .queue_purge(ShortString::from(queue), QueuePurgeOptions::default())
        .await
}
