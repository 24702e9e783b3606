//! One order is one trace: the spans the four services export for it, as
//! collected by the test's own OTLP receiver, form one tree rooted at the
//! HTTP request that placed the order, with every message hop linking a
//! CONSUMER span to the PRODUCER span that sent the message.

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
