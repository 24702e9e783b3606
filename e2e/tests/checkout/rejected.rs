//! An order the Order service refuses: a 422 problem, and nothing happens
//! anywhere else.
//!
//! "Nothing happened" is the hard half to test in an asynchronous system:
//! an event could still be on its way when the test looks. So the test
//! sends each refused request in a trace of its own (its own `traceparent`),
//! then places one good order as a fence and waits until that order has
//! gone all the way through, and until the fence's trace has arrived from
//! all four services. Events leave the Order service's outbox in the order
//! they were written, and its spans are exported in the order they end, so
//! anything the refused requests had emitted would have travelled, and been
//! traced, before the fence. Only then does the test check that the refused
//! requests' traces hold no published event and that the stock moved by
//! the fence order alone.

use crate::order_body;
use e2e::{Options, Product, Service, SpanKind, System};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

#[tokio::test]
async fn an_invalid_order_is_refused_and_nothing_is_created() -> anyhow::Result<()> {
    let system = System::start(Options::default()).await?;
    let stock_before = stock(&system).await?;

    let cases = [
        ("an unknown SKU", order_body(&[("NOPE-1", 1)], "tok_visa")),
        ("a zero quantity", order_body(&[("KB-001", 0)], "tok_visa")),
        (
            "a negative quantity",
            order_body(&[("KB-001", -1)], "tok_visa"),
        ),
    ];
    let mut refused = Vec::new();
    for (case, body) in cases {
        let (response, trace_id) = post_in_new_trace(&system, &body).await?;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{case}"
        );
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("application/problem+json"),
            "{case}: content-type {content_type:?}"
        );
        let problem: Value = response.json().await?;
        assert_eq!(problem["status"], 422, "{case}: {problem:#}");
        refused.push((case, trace_id));
    }

    // The fence: a good order, followed to its very last effects.
    let fence = system
        .place_order(&order_body(&[("CB-001", 1)], "tok_visa"))
        .await?;
    let order = system.wait_for_final_status(fence).await?;
    assert_eq!(order.status, "CONFIRMED", "{order:#?}");
    system.wait_for_reservation(fence, "COMMITTED").await?;
    system.wait_for_email(fence, "confirmation").await?;
    let fence_trace = order.trace_id.clone().unwrap_or_default();
    system
        .spans_for_trace(&fence_trace, "spans from all four services", |spans| {
            Service::ALL
                .iter()
                .all(|service| spans.iter().any(|span| span.service == service.binary()))
        })
        .await?;

    for (case, trace_id) in &refused {
        // The server span is exported, like any other, within ~100 ms.
        let spans = system
            .spans_for_trace(trace_id, "the refused request's server span", |spans| {
                spans.iter().any(|span| span.kind == SpanKind::Server)
            })
            .await?;
        let elsewhere: Vec<_> = spans
            .iter()
            .filter(|span| {
                span.service != Service::Order.binary() || span.kind == SpanKind::Producer
            })
            .map(ToString::to_string)
            .collect();
        assert!(
            elsewhere.is_empty(),
            "{case}: the refused request published an event or reached another service: {elsewhere:#?}"
        );
    }

    // The operators' listing holds the fence and nothing else; without the
    // admin token it shows nothing at all.
    let listed = system.list_orders().await?;
    let ids: Vec<Uuid> = listed.items.iter().map(|order| order.id).collect();
    assert_eq!(ids, [fence], "{listed:#?}");
    let anonymous = system
        .http()
        .get(system.url(Service::Order, "/orders"))
        .send()
        .await?;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key("www-authenticate"));

    // Only the fence order moved stock.
    let stock_after = stock(&system).await?;
    assert_eq!(stock_after.len(), stock_before.len());
    for (before, after) in stock_before.iter().zip(&stock_after) {
        assert_eq!(before.sku, after.sku);
        let sold = if after.sku == "CB-001" { 1 } else { 0 };
        assert_eq!(after.on_hand, before.on_hand - sold, "{}", after.sku);
        assert_eq!(after.reserved, before.reserved, "{}", after.sku);
    }

    system.shutdown().await
}

/// `POST /orders` as the first hop of a trace the test chose, so it can
/// find that request's spans later; returns the trace id.
async fn post_in_new_trace(
    system: &System,
    body: &Value,
) -> anyhow::Result<(reqwest::Response, String)> {
    let trace_id = Uuid::now_v7().simple().to_string();
    let span_id = &Uuid::now_v7().simple().to_string()[16..];
    let response = system
        .http()
        .post(system.url(Service::Order, "/orders"))
        .header("traceparent", format!("00-{trace_id}-{span_id}-01"))
        .json(body)
        .send()
        .await?;
    Ok((response, trace_id))
}

/// Every product, by SKU.
async fn stock(system: &System) -> anyhow::Result<Vec<Product>> {
    let mut products = system.products().await?;
    products.sort_by(|a, b| a.sku.cmp(&b.sku));
    Ok(products)
}
