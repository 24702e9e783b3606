//! Dead letters: what a message carries when it leaves the flow for good,
//! and what a person can do with a dead-letter queue (list, show, replay,
//! purge — the `checkoutctl dlq` commands).
//!
//! A dead letter keeps its body and original properties and headers
//! (including `traceparent`), and gains the `x-*` headers below — or, when
//! the broker dead-lettered it itself (a delivery limit passed, a reject),
//! the broker's `x-death` header, which says where it was first published.
//!
//! Looking at a queue over AMQP means taking messages and giving them back
//! (nack with requeue). That is safe only because every dead-letter queue
//! has a delivery limit that is never reached (see [`crate::topology`]);
//! messages looked at are held, not requeued one by one, so a look never
//! sees one twice, and given back together at the end.
//!
//! Card tokens never reach a terminal: [`DeadLetter::masked_body`] and
//! [`mask_card_tokens`] hide them in what is shown, never in the stored
//! message, which a replay sends on unchanged.

mod mask;

pub use mask::mask_card_tokens;

use crate::topology::Topology;
use checkout_events::Subscription;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use std::time::Duration;

/// Why the message was dead-lettered: `poison`, `rejected`, `exhausted` or
/// `forbidden`.
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
/// The broker's record of each time it dead-lettered the message: an array
/// of tables, newest first, each with `queue`, `reason`, `count`,
/// `exchange` and `routing-keys` (the route the message arrived by).
pub const DEATH: &str = "x-death";

/// Headers a replay removes: the failure's (a replayed message starts
/// afresh) and the broker's own bookkeeping, which it adds again if needed.
const NOT_REPLAYED_HEADERS: &[&str] = &[
    REASON,
    ERROR,
    HANDLER,
    ATTEMPTS,
    FAILED_AT,
    RETRY_COUNT,
    DEATH,
    "x-first-death-reason",
    "x-first-death-queue",
    "x-first-death-exchange",
    "x-last-death-reason",
    "x-last-death-queue",
    "x-last-death-exchange",
    "x-delivery-count",
];

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
    /// Its envelope's `source` is not the owner of its event type: a forged
    /// or misrouted event. Never applied, never retried.
    Forbidden,
}

impl Reason {
    /// The `x-dead-letter-reason` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Poison => "poison",
            Reason::Rejected => "rejected",
            Reason::Exhausted => "exhausted",
            Reason::Forbidden => "forbidden",
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

/// Publishes `body` to `exchange` with `routing_key` (a mandatory publish:
/// unroutable is a failure) and waits for the broker's confirm. `channel`
/// must be in confirm mode.
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

    /// The body to show a person: pretty JSON when it is JSON, else the
    /// text (invalid UTF-8 replaced), with every `card_token` value masked.
    pub fn masked_body(&self) -> String {
        match serde_json::from_slice::<serde_json::Value>(&self.body) {
            Ok(mut json) => {
                mask::mask_json(&mut json);
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
            delivery.properties,
            delivery.data,
        ));
        taken.push(delivery.acker);
    }
    // Give them all back at once, so none is fetched twice above.
    give_back(channel, queue, taken).await?;
    Ok(letters)
}

/// Finds the first dead letter of `queue` whose message id is `message_id`,
/// without removing anything. Messages are fetched one at a time and only
/// their id is kept until the match, so memory does not grow with the
/// queue; the search stops at the match, and everything fetched is given
/// back (the messages after the match are never fetched).
pub async fn find(
    channel: &Channel,
    queue: &str,
    message_id: &str,
) -> Result<Option<DeadLetter>, lapin::Error> {
    let mut taken = Vec::new();
    let mut found = None;
    while let Some(message) = channel
        .basic_get(ShortString::from(queue), BasicGetOptions::default())
        .await?
    {
        let delivery = message.delivery;
        taken.push(delivery.acker);
        let letter = DeadLetter::from_delivery(delivery.properties, delivery.data);
        if letter.message_id.as_deref() == Some(message_id) {
            found = Some(letter);
            break;
        }
    }
    give_back(channel, queue, taken).await?;
    Ok(found)
}

/// What [`replay`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Replayed {
    /// Messages sent back to the failing service's queue and removed from
    /// the dead-letter queue.
    pub replayed: usize,
    /// Messages left in the dead-letter queue: not selected, or selected
    /// but not replayable (those are in `not_replayed`).
    pub left: usize,
    /// The selected messages left in the queue, and why.
    pub not_replayed: Vec<NotReplayed>,
}

/// A selected dead letter that [`replay`] left in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReplayed {
    /// Its message id, if it has one.
    pub message_id: Option<String>,
    /// Why it stays.
    pub why: String,
}

/// Sends the dead letters of `subscription.service` that `select` picks
/// back to that service's own queue — through the service's retry
/// exchange, which routes the work queue's name to the work queue only, so
/// no other subscriber of the event sees it again — and removes each from
/// the dead-letter queue once the broker confirmed the publish.
///
/// A message is replayed only if its original routing key (see
/// [`DeadLetter::original_route`]) is one the service is bound to; others
/// stay in the queue and are reported in [`Replayed::not_replayed`]. The
/// replay keeps the body, properties and trace context, drops the
/// failure's headers (reason, error, attempts, retry count, `x-death`) and
/// records the original route, so a second failure dead-letters it the
/// same way. The service's inbox still deduplicates, so replaying an event
/// that was in fact applied is harmless.
pub async fn replay(
    channel: &Channel,
    topology: &Topology,
    subscription: &Subscription,
    select: impl Fn(&DeadLetter) -> bool,
) -> Result<Replayed, lapin::Error> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let queue = topology.dead_letter_queue(subscription.service);
    let work_queue = topology.queue(subscription.service);
    let mut outcome = Replayed::default();
    let mut keep = Vec::new();
    let total = ready_count(channel, &queue).await?;
    for _ in 0..total {
        let Some(message) = channel
            .basic_get(
                ShortString::from(queue.as_str()),
                BasicGetOptions::default(),
            )
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        let letter = DeadLetter::from_delivery(delivery.properties, delivery.data);
        if !select(&letter) {
            keep.push(delivery.acker);
            continue;
        }
        let sent = match letter.original_route(&work_queue) {
            None => Err(format!(
                "no original route: neither {ORIGINAL_ROUTING_KEY} nor an {DEATH} entry for {work_queue}"
            )),
            Some(route) if !subscribed(subscription, &route.routing_key) => Err(format!(
                "routing key {:?} is not bound to {work_queue}",
                route.routing_key
            )),
            Some(route) => {
                let properties = replay_properties(&letter, &route);
                publish_confirmed(
                    channel,
                    &topology.retry_exchange(subscription.service),
                    &work_queue,
                    &letter.body,
                    properties,
                )
                .await
            }
        };
        match sent {
            Ok(()) => {
                delivery.acker.ack(BasicAckOptions::default()).await?;
                outcome.replayed += 1;
            }
            Err(why) => {
                tracing::warn!(message_id = ?letter.message_id, %why, "not replayed; the message stays in the queue");
                outcome.not_replayed.push(NotReplayed {
                    message_id: letter.message_id.clone(),
                    why,
                });
                keep.push(delivery.acker);
            }
        }
    }
    outcome.left = keep.len();
    give_back(channel, &queue, keep).await?;
    Ok(outcome)
}

/// The letter's properties for its replay: the failure's and the broker's
/// headers removed, the original route recorded.
fn replay_properties(letter: &DeadLetter, route: &Route) -> BasicProperties {
    let mut inner = letter.headers.inner().clone();
    for key in NOT_REPLAYED_HEADERS {
        inner.remove(*key);
    }
    let mut headers = FieldTable::from(inner);
    set_str(&mut headers, ORIGINAL_EXCHANGE, &route.exchange);
    set_str(&mut headers, ORIGINAL_ROUTING_KEY, &route.routing_key);
    letter.properties.clone().with_headers(headers)
}

/// Whether one of `subscription`'s bindings matches `routing_key`, with the
/// topic exchange's rules (`*` one word, `#` zero or more).
fn subscribed(subscription: &Subscription, routing_key: &str) -> bool {
    subscription
        .routing_keys
        .iter()
        .any(|pattern| topic_matches(pattern, routing_key))
}

fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(pattern: &[&str], key: &[&str]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&"#", rest)) => (0..=key.len()).any(|skip| go(rest, &key[skip..])),
            Some((word, rest)) => key
                .split_first()
                .is_some_and(|(k, key_rest)| (*word == "*" || word == k) && go(rest, key_rest)),
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    go(&pattern, &key)
}

/// Returns fetched messages to their queue and waits (bounded) until the
/// queue counts them again, on top of those that were never fetched.
///
/// A quorum queue applies a requeue asynchronously: without the wait, a
/// `list` followed at once by a `show` or `replay` — or anything reading the
/// queue's depth — could miss the messages that were only being looked at.
async fn give_back(
    channel: &Channel,
    queue: &str,
    ackers: Vec<lapin::Acker>,
) -> Result<(), lapin::Error> {
    if ackers.is_empty() {
        return Ok(());
    }
    let returned = ackers.len() + ready_count(channel, queue).await?;
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
    Ok(crate::depth::ready(channel, queue).await? as usize)
}

/// Removes every message of `queue`; returns how many.
pub async fn purge(channel: &Channel, queue: &str) -> Result<u32, lapin::Error> {
    channel
        .queue_purge(ShortString::from(queue), QueuePurgeOptions::default())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_match_routing_keys_as_a_topic_exchange_does() {
        for (pattern, key, matches) in [
            ("payment.captured", "payment.captured", true),
            ("payment.captured", "payment.failed", false),
            ("payment.*", "payment.failed", true),
            ("payment.*", "payment.failed.late", false),
            ("payment.#", "payment", true),
            ("payment.#", "payment.failed.late", true),
            ("#", "anything.at.all", true),
            ("*.created", "order.created", true),
            ("*.created", "created", false),
        ] {
            assert_eq!(topic_matches(pattern, key), matches, "{pattern} ~ {key}");
        }
    }

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
