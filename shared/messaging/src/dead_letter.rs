//! The dead-letter vocabulary: the `x-*` headers the consumer writes on a
//! message it retries or dead-letters, the reasons, and how to read them
//! back. What a person does with a dead-letter queue (list, show, replay,
//! purge) is the operator tool's (`checkout_operator::dlq`), not this
//! crate's: services never link it.
//!
//! A dead letter keeps its body and original properties and headers
//! (including `traceparent`), and gains the headers below — or, when the
//! broker dead-lettered it itself (a delivery limit passed, a reject), the
//! broker's `x-death` header ([`DEATH`]), which says where it was first
//! published.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

/// Why the message was dead-lettered: `poison`, `permanent`, `exhausted` or
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
pub const NOT_REPLAYED_HEADERS: &[&str] = &[
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
    /// The handler failed permanently ([`HandlerError::Permanent`]): it
    /// would fail the same way every time. Never retried.
    ///
    /// [`HandlerError::Permanent`]: crate::HandlerError::Permanent
    Permanent,
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
            Reason::Permanent => "permanent",
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

/// Writes a string header (as an AMQP long string).
pub fn set_str(headers: &mut FieldTable, key: &str, value: &str) {
    headers.insert(
        ShortString::from(key),
        AMQPValue::LongString(LongString::from(value)),
    );
}

/// Writes an integer header (as an AMQP 64-bit integer).
pub fn set_int(headers: &mut FieldTable, key: &str, value: i64) {
    headers.insert(ShortString::from(key), AMQPValue::LongLongInt(value));
}
