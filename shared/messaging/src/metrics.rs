//! The metrics the messaging machinery records, through the `metrics`
//! facade: whatever recorder the process installs (the runtime installs a
//! Prometheus one) receives them; without one they cost nothing.
//!
//! These names are a contract with the dashboards in `deploy/`.

/// Deliveries handled, by `event_type` and `outcome`
/// (`applied`, `duplicate`, `ignored`, `retried`, `dead_lettered`).
pub const MESSAGES_CONSUMED: &str = "checkout_messages_consumed_total";
/// Outbox rows published and confirmed, by `event_type`.
pub const MESSAGES_PUBLISHED: &str = "checkout_messages_published_total";
/// Seconds from delivery to settlement, by `event_type`.
pub const HANDLER_DURATION: &str = "checkout_handler_duration_seconds";
/// Deliveries sent round again after a transient failure, by `event_type`.
pub const MESSAGE_RETRIES: &str = "checkout_message_retries_total";
/// Deliveries moved to the dead-letter queue, by `reason`
/// (`poison`, `permanent`, `exhausted`, `forbidden`).
pub const MESSAGES_DEAD_LETTERED: &str = "checkout_messages_dead_lettered_total";
/// Messages waiting in the unroutable queue (published with a routing key
/// no queue is bound to). Every service reports the same shared queue: take
/// the `max` across instances. Anything above 0 needs a person.
pub const UNROUTABLE_MESSAGES: &str = "checkout_unroutable_messages";
/// Messages waiting in a service's dead-letter queue, by `service`.
pub const DEAD_LETTERS: &str = "checkout_dead_letters";

/// 1 while a consumer is paused because its database is unavailable, by
/// `service`; no attempt is counted meanwhile.
pub const CONSUMER_PAUSED: &str = "checkout_consumer_paused";
/// Outbox rows the broker refused (nacked, or returned as unroutable), by
/// `event_type` and `outcome`: `retry` (tried again after a backoff) or
/// `parked` (the last attempt; the row waits for an operator).
pub const OUTBOX_REFUSALS: &str = "checkout_outbox_refusals_total";

/// Registers descriptions, so the exporter's `# HELP` lines say what each is.
pub fn describe() {
    metrics::describe_counter!(
        MESSAGES_CONSUMED,
        "Deliveries handled, by event type and outcome"
    );
    metrics::describe_counter!(
        MESSAGES_PUBLISHED,
        "Outbox rows published and confirmed, by event type"
    );
    metrics::describe_histogram!(
        HANDLER_DURATION,
        metrics::Unit::Seconds,
        "Time from delivery to settlement, by event type"
    );
    metrics::describe_counter!(
        MESSAGE_RETRIES,
        "Deliveries retried after a transient failure"
    );
    metrics::describe_counter!(
        MESSAGES_DEAD_LETTERED,
        "Deliveries moved to the dead-letter queue, by reason (poison, permanent, exhausted, forbidden)"
    );
    metrics::describe_gauge!(
        CONSUMER_PAUSED,
        "1 while the consumer waits for its database to come back"
    );
    metrics::describe_gauge!(
        UNROUTABLE_MESSAGES,
        "Messages in the unroutable queue (no binding matched their routing key)"
    );
    metrics::describe_gauge!(
        DEAD_LETTERS,
        "Messages in a service's dead-letter queue, by service"
    );
    metrics::describe_counter!(
        OUTBOX_REFUSALS,
        "Outbox rows the broker refused, by event type and outcome (retry, parked)"
    );
}
