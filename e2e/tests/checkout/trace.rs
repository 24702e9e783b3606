//! One order is one trace: the spans the four services export for it, as
//! collected by the test's own OTLP receiver, form one tree rooted at the
//! HTTP request that placed the order, with every message hop linking a
//! CONSUMER span to the PRODUCER span that sent the message — and every
//! span named and attributed after the OpenTelemetry semantic conventions
//! (HTTP server spans; messaging `send <exchange>` / `process <queue>`).

use crate::order_body;
use e2e::otlp::{ROUTING_KEY, tree};
use e2e::{Options, ReceivedSpan, Service, SpanKind, System};
use std::collections::BTreeMap;

/// The deliveries of a confirmed order (who consumes which routing key),
/// straight from the flow in the design: Payment reacts to the payment the
/// order requests (the one event with the card token) and Inventory to the
/// order, the Order service joins their replies, Inventory and Email react
/// to the confirmation.
const DELIVERIES: [(Service, &str); 6] = [
    (Service::Payment, "order.payment-requested"),
    (Service::Inventory, "order.created"),
    (Service::Order, "payment.captured"),
    (Service::Order, "inventory.reserved"),
    (Service::Inventory, "order.confirmed"),
    (Service::Email, "order.confirmed"),
];

#[tokio::test]
async fn one_order_is_one_trace_across_all_four_services() -> anyhow::Result<()> {
    let system = System::start(Options::default()).await?;

    let id = system
        .place_order(&order_body(&[("KB-001", 2), ("MS-001", 1)], "tok_visa"))
        .await?;
    let order = system.wait_for_final_status(id).await?;
    assert_eq!(order.status, "CONFIRMED", "{order:#?}");

    let trace_id = order.trace_id.clone().unwrap_or_default();
    assert!(
        trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "GET /orders/{id} gives the trace id as 32 hex digits: {:?}",
        order.trace_id
    );

    // Spans come in batches from four processes, in no particular order:
    // wait until every delivery of the saga is there and no span points at
    // a parent that has not arrived. A broken link (a hop that started a
    // new trace, a parent that is never exported) makes this time out,
    // printing the tree as far as it got.
    let spans = system
        .spans_for_trace(
            &trace_id,
            "the six deliveries of a confirmed order, no span with a missing parent",
            |spans| {
                DELIVERIES
                    .iter()
                    .all(|(service, key)| consumed(spans, *service, key))
                    && spans.iter().all(|span| is_root_or_has_parent(span, spans))
            },
        )
        .await?;

    let mut per_service: BTreeMap<&str, usize> = BTreeMap::new();
    for span in &spans {
        *per_service.entry(&span.service).or_default() += 1;
    }
    let tree = tree(&spans);
    println!(
        "trace {trace_id}: {} spans {per_service:?}\n{tree}",
        spans.len()
    );

    // The root is the request that placed the order.
    let roots: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|span| span.parent_span_id.is_none())
        .collect();
    assert_eq!(roots.len(), 1, "one root:\n{tree}");
    let root = roots[0];
    assert_eq!(root.service, Service::Order.binary(), "{root}");
    assert_eq!(root.kind, SpanKind::Server, "{root}");
    assert_eq!(root.name, "POST /orders", "{root}");

    // Every delivery continues the publish of the same message.
    for consumer in spans.iter().filter(|span| span.kind == SpanKind::Consumer) {
        let parent = parent_of(consumer, &spans);
        assert_eq!(
            parent.map(|span| span.kind),
            Some(SpanKind::Producer),
            "{consumer} is a child of the span that published its message:\n{tree}"
        );
        assert_eq!(
            parent.and_then(|span| span.attributes.get(ROUTING_KEY)),
            consumer.attributes.get(ROUTING_KEY),
            "{consumer} and its parent name the same routing key:\n{tree}"
        );
    }

    // Names and required attributes, as the semantic conventions have them.
    check_server_span(root, &tree);
    for span in &spans {
        match span.kind {
            SpanKind::Producer => check_send_span(span, &tree),
            SpanKind::Consumer => check_process_span(span, &tree),
            _ => {}
        }
    }

    // Each service that emits events publishes under this trace.
    for service in [Service::Order, Service::Payment, Service::Inventory] {
        assert!(
            spans
                .iter()
                .any(|span| span.service == service.binary() && span.kind == SpanKind::Producer),
            "{} publishes an event in this trace:\n{tree}",
            service.binary()
        );
    }

    system.shutdown().await
}

/// Whether `service` has a CONSUMER span for a message routed with `key`.
fn consumed(spans: &[ReceivedSpan], service: Service, key: &str) -> bool {
    spans.iter().any(|span| {
        span.kind == SpanKind::Consumer
            && span.service == service.binary()
            && span.attributes.get(ROUTING_KEY).map(String::as_str) == Some(key)
    })
}

/// Whether `span` starts the trace or its parent is among `spans`.
fn is_root_or_has_parent(span: &ReceivedSpan, spans: &[ReceivedSpan]) -> bool {
    span.parent_span_id.is_none() || parent_of(span, spans).is_some()
}

/// The span's parent, if it is among `spans`.
fn parent_of<'a>(span: &ReceivedSpan, spans: &'a [ReceivedSpan]) -> Option<&'a ReceivedSpan> {
    let parent = span.parent_span_id.as_ref()?;
    spans.iter().find(|other| &other.span_id == parent)
}

/// `span`'s attribute `key`, which must be there.
fn attribute<'a>(span: &'a ReceivedSpan, key: &str, tree: &str) -> &'a str {
    span.attributes
        .get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{span} has {key}: {:?}\n{tree}", span.attributes))
}

/// The attributes every messaging span has (`server.*` from `AMQP_URL`).
fn check_messaging_span(span: &ReceivedSpan, operation: &str, tree: &str) {
    assert_eq!(
        attribute(span, "messaging.system", tree),
        "rabbitmq",
        "{span}"
    );
    assert_eq!(
        attribute(span, "messaging.operation.name", tree),
        operation,
        "{span}"
    );
    assert_eq!(
        attribute(span, "messaging.operation.type", tree),
        operation,
        "{span}"
    );
    assert!(
        !attribute(span, "server.address", tree).is_empty(),
        "{span}"
    );
    assert!(
        attribute(span, "server.port", tree)
            .parse::<u16>()
            .is_ok_and(|port| port > 0),
        "{span}"
    );
    assert!(
        !attribute(span, "messaging.message.id", tree).is_empty(),
        "{span}"
    );
    assert!(!attribute(span, ROUTING_KEY, tree).is_empty(), "{span}");
}

/// The HTTP server span of `POST /orders`, with the stable HTTP attributes.
fn check_server_span(span: &ReceivedSpan, tree: &str) {
    assert_eq!(
        attribute(span, "http.request.method", tree),
        "POST",
        "{span}"
    );
    assert_eq!(attribute(span, "http.route", tree), "/orders", "{span}");
    assert_eq!(attribute(span, "url.scheme", tree), "http", "{span}");
    assert_eq!(attribute(span, "url.path", tree), "/orders", "{span}");
    assert_eq!(
        attribute(span, "server.address", tree),
        "127.0.0.1",
        "{span}"
    );
    assert!(
        attribute(span, "server.port", tree).parse::<u16>().is_ok(),
        "{span}"
    );
    assert!(
        attribute(span, "http.response.status_code", tree).starts_with('2'),
        "{span}"
    );
    assert!(
        !span.attributes.contains_key("error.type"),
        "no error: {span}"
    );
}

/// A PRODUCER span: `send <exchange>`, the exchange as the destination, the
/// order's correlation id as the conversation.
fn check_send_span(span: &ReceivedSpan, tree: &str) {
    check_messaging_span(span, "send", tree);
    let exchange = attribute(span, "messaging.destination.name", tree);
    assert_eq!(span.name, format!("send {exchange}"), "{span}\n{tree}");
    assert!(
        !attribute(span, "messaging.message.conversation_id", tree).is_empty(),
        "{span}"
    );
}

/// A CONSUMER span: `process <queue>`, with the delivery tag and the
/// conversation (correlation) id; the exchange is the destination.
fn check_process_span(span: &ReceivedSpan, tree: &str) {
    check_messaging_span(span, "process", tree);
    let queue = attribute(span, "messaging.destination.subscription.name", tree);
    assert_eq!(span.name, format!("process {queue}"), "{span}\n{tree}");
    assert!(
        !attribute(span, "messaging.destination.name", tree).is_empty(),
        "{span}"
    );
    assert!(
        attribute(span, "messaging.rabbitmq.message.delivery_tag", tree)
            .parse::<u64>()
            .is_ok_and(|tag| tag > 0),
        "{span}"
    );
    assert!(
        !attribute(span, "messaging.message.conversation_id", tree).is_empty(),
        "{span}"
    );
    assert!(
        !span.attributes.contains_key("error.type"),
        "no failure: {span}"
    );
}
