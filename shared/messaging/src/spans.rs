//! The spans of the messaging machinery, named and attributed after the
//! OpenTelemetry messaging semantic conventions (and their RabbitMQ page):
//!
//! - `send <exchange>` (PRODUCER): the relay publishing an outbox row, and
//!   the consumer forwarding a delivery to a retry or dead-letter exchange;
//! - `process <queue>` (CONSUMER): one delivery handled, a child of the
//!   producer's span *and* linked to it.
//!
//! Every one carries `messaging.system = rabbitmq`,
//! `messaging.operation.name` and `.type`, `messaging.destination.name`
//! (the exchange, as the RabbitMQ conventions say),
//! `messaging.rabbitmq.destination.routing_key`, `messaging.message.id`,
//! `messaging.message.conversation_id` (the envelope's correlation id),
//! and `server.address` / `server.port` (the broker, from `AMQP_URL`). A
//! failed `process` gets `error.type` and an error status.

use checkout_telemetry::propagation::Context;
use checkout_telemetry::propagation::{adopt_parent, adopt_producer, record_error};
use lapin::uri::AMQPUri;
use tracing::Span;
use tracing::field::Empty;

/// The broker a span's operation talks to: `server.address`/`server.port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The broker's host name or address.
    pub address: String,
    /// Its AMQP port.
    pub port: u16,
}

impl Peer {
    /// The host and port of an `amqp://` URL (`None` if it does not parse).
    pub fn from_amqp_url(url: &str) -> Option<Self> {
        let uri: AMQPUri = url.parse().ok()?;
        Some(Self {
            address: uri.authority.host,
            port: uri.authority.port,
        })
    }

    /// What a span shows when the broker is not known (tests that build a
    /// consumer without a URL).
    pub fn unknown() -> Self {
        Self {
            address: String::new(),
            port: 0,
        }
    }
}

/// What one message is, for its spans.
#[derive(Clone, Copy)]
pub(crate) struct Message<'a> {
    /// The event id (`messaging.message.id`).
    pub(crate) id: &'a dyn std::fmt::Display,
    /// The correlation id (`messaging.message.conversation_id`), if known.
    pub(crate) conversation_id: Option<&'a dyn std::fmt::Display>,
    /// The event type (`event.type`, the checkout's own attribute).
    pub(crate) event_type: &'a str,
    /// The routing key it is published or was delivered with.
    pub(crate) routing_key: &'a str,
}

/// A PRODUCER span `send <exchange>`, a child of `parent` (the span that
/// wrote the outbox row) or, without one, of the current span (the
/// `process` span forwarding a delivery). `purpose` says why it is sent
/// (`publish`, `retry`, `dead_letter`).
pub(crate) fn send(
    exchange: &str,
    message: Message<'_>,
    peer: &Peer,
    purpose: &'static str,
    parent: Option<Context>,
) -> Span {
    let span = messaging_span(Operation::Send, exchange, exchange, message, peer);
    span.record("checkout.send.purpose", purpose);
    match parent {
        Some(parent) => adopt_parent(&span, parent),
        None => checkout_telemetry::propagation::record_trace_id(&span),
    }
    span
}

/// A CONSUMER span `process <queue>` for a delivery from `exchange`
/// (`messaging.destination.name`) with `delivery_tag`, whose parent — and
/// link — is `producer`, the context the message carried.
pub(crate) fn process(
    queue: &str,
    exchange: &str,
    delivery_tag: u64,
    message: Message<'_>,
    peer: &Peer,
    producer: Context,
) -> Span {
    let span = messaging_span(Operation::Process, queue, exchange, message, peer);
    span.record("messaging.destination.subscription.name", queue);
    span.record("messaging.consumer.group.name", queue);
    span.record("messaging.rabbitmq.message.delivery_tag", delivery_tag);
    if let Some(conversation_id) = message.conversation_id {
        span.record("correlation_id", tracing::field::display(conversation_id));
    }
    adopt_producer(&span, producer);
    span
}

/// The two operations this crate traces.
#[derive(Debug, Clone, Copy)]
enum Operation {
    Send,
    Process,
}

impl Operation {
    /// `messaging.operation.name` (and `.type`: the same word here).
    fn name(self) -> &'static str {
        match self {
            Operation::Send => "send",
            Operation::Process => "process",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Operation::Send => "producer",
            Operation::Process => "consumer",
        }
    }
}

/// A span `<operation> <target>` with every attribute the two operations
/// share; the operation-specific ones are declared and left to the caller.
fn messaging_span(
    operation: Operation,
    target: &str,
    exchange: &str,
    message: Message<'_>,
    peer: &Peer,
) -> Span {
    let span = tracing::info_span!(
        "messaging",
        otel.name = format!("{} {target}", operation.name()),
        otel.kind = operation.kind(),
        messaging.system = "rabbitmq",
        messaging.operation.name = operation.name(),
        messaging.operation.type = operation.name(),
        messaging.destination.name = exchange,
        messaging.destination.subscription.name = Empty,
        messaging.consumer.group.name = Empty,
        messaging.rabbitmq.destination.routing_key = message.routing_key,
        messaging.rabbitmq.message.delivery_tag = Empty,
        messaging.message.id = %message.id,
        messaging.message.conversation_id = Empty,
        server.address = peer.address.as_str(),
        server.port = peer.port,
        event.type = message.event_type,
        checkout.send.purpose = Empty,
        correlation_id = Empty,
        error.type = Empty,
        trace_id = Empty,
    );
    if let Some(conversation_id) = message.conversation_id {
        span.record(
            "messaging.message.conversation_id",
            tracing::field::display(conversation_id),
        );
    }
    span
}

/// Marks a `send` or `process` span failed with `error_type` (a reason such
/// as `permanent`, `exhausted`, `transient`, `not_confirmed`).
pub(crate) fn failed(span: &Span, error_type: &str, description: &str) {
    record_error(span, error_type, description);
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    /// Runs `work` with spans exported to memory; returns them.
    fn exported(work: impl FnOnce()) -> Vec<SpanData> {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, work);
        provider.force_flush().expect("flushed");
        exporter.get_finished_spans().expect("spans")
    }

    fn attribute(span: &SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    #[test]
    fn a_process_span_is_a_child_of_the_send_span_and_links_to_it() {
        let peer = Peer {
            address: "broker".into(),
            port: 5672,
        };
        let message = Message {
            id: &"event-1",
            conversation_id: Some(&"order-1"),
            event_type: "order.created",
            routing_key: "order.created",
        };
        let spans = exported(|| {
            let sent = send("ns.events", message, &peer, "publish", None);
            let producer = sent.context();
            let processed = process("ns.payment", "ns.events", 7, message, &peer, producer);
            processed.in_scope(|| {
                let retry = send("ns.payment.retry", message, &peer, "retry", None);
                failed(&retry, "refused", "nacked");
            });
            failed(&processed, "permanent", "no such order");
            drop(processed);
            drop(sent);
        });
        let by_name = |name: &str| {
            spans
                .iter()
                .find(|span| span.name == name)
                .unwrap_or_else(|| panic!("a span {name}: {spans:#?}"))
        };
        let sent = by_name("send ns.events");
        let processed = by_name("process ns.payment");
        let retry = by_name("send ns.payment.retry");

        assert_eq!(sent.span_kind, SpanKind::Producer);
        assert_eq!(processed.span_kind, SpanKind::Consumer);
        assert_eq!(processed.parent_span_id, sent.span_context.span_id());
        assert_eq!(
            processed
                .links
                .iter()
                .map(|link| link.span_context.span_id())
                .collect::<Vec<_>>(),
            [sent.span_context.span_id()],
            "linked to the send as well"
        );
        assert_eq!(retry.parent_span_id, processed.span_context.span_id());
        for (key, value) in [
            ("messaging.system", "rabbitmq"),
            ("messaging.operation.name", "process"),
            ("messaging.operation.type", "process"),
            ("messaging.destination.name", "ns.events"),
            (
                "messaging.rabbitmq.destination.routing_key",
                "order.created",
            ),
            ("messaging.rabbitmq.message.delivery_tag", "7"),
            ("messaging.message.id", "event-1"),
            ("messaging.message.conversation_id", "order-1"),
            ("server.address", "broker"),
            ("server.port", "5672"),
            ("error.type", "permanent"),
        ] {
            assert_eq!(attribute(processed, key).as_deref(), Some(value), "{key}");
        }
        assert!(
            matches!(processed.status, Status::Error { .. }),
            "{:?}",
            processed.status
        );
        assert_eq!(attribute(retry, "error.type").as_deref(), Some("refused"));
        assert_eq!(
            attribute(sent, "messaging.operation.name").as_deref(),
            Some("send")
        );
        assert_eq!(attribute(sent, "error.type"), None);
        assert!(matches!(sent.status, Status::Unset), "{:?}", sent.status);
    }

    #[test]
    fn the_peer_is_the_host_and_port_of_the_amqp_url() {
        assert_eq!(
            Peer::from_amqp_url("amqp://guest:guest@broker.internal:5673/%2f"),
            Some(Peer {
                address: "broker.internal".into(),
                port: 5673
            })
        );
        assert_eq!(
            Peer::from_amqp_url("amqp://127.0.0.1").map(|p| p.port),
            Some(5672),
            "the default AMQP port"
        );
        assert_eq!(Peer::from_amqp_url("not a url"), None);
    }
}
