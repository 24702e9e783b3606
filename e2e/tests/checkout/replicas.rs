//! Scaling out: two processes of each consumer service compete for one
//! queue and share one database. However the deliveries are spread between
//! them, every order must end once, be charged once, be mailed once, and
//! move stock once.

use crate::{card_for, check_exactly_once, order_body};
use e2e::{Options, Probe, ReceivedSpan, Service, SpanKind, System};
use futures::future::try_join_all;
use std::collections::BTreeMap;
use uuid::Uuid;

const ORDERS: i64 = 10;

#[tokio::test]
async fn two_replicas_of_each_consumer_handle_every_order_exactly_once() -> anyhow::Result<()> {
    let system = System::start(Options::default().with_consumer_replicas(2)).await?;
    let cables_before = system.product("CB-001").await?;

    // Order n buys n cables, so the stock check below would notice any
    // order counted twice or not at all.
    let orders: Vec<(i64, &str)> = (1..=ORDERS).map(|n| (n, card_for(n))).collect();
    let ids: Vec<Uuid> = try_join_all(orders.iter().map(async |(quantity, card)| {
        let body = order_body(&[("CB-001", *quantity)], card);
        system.place_order(&body).await
    }))
    .await?;

    try_join_all(
        ids.iter().zip(&orders).map(async |(id, (_, card))| {
            check_exactly_once(&system, *id, *card == "tok_visa").await
        }),
    )
    .await?;

    let sold: i64 = orders
        .iter()
        .filter(|(_, card)| *card == "tok_visa")
        .map(|(quantity, _)| quantity)
        .sum();
    let cables = system.product("CB-001").await?;
    assert_eq!(cables.on_hand, cables_before.on_hand - sold);
    assert_eq!(
        cables.reserved, cables_before.reserved,
        "nothing left reserved"
    );

    // The work really was shared: each replica handled some deliveries.
    // (RabbitMQ hands a queue's messages to its consumers in turn.)
    let consumers = [Service::Payment, Service::Inventory, Service::Email];
    let replicas_seen = system
        .eventually(
            "CONSUMER spans from both replicas of each consumer service",
            async || {
                let seen = deliveries_per_replica(&system.otlp().spans());
                let shared = consumers
                    .iter()
                    .all(|service| seen.get(service.binary()).map_or(0, BTreeMap::len) >= 2);
                Ok(if shared {
                    Probe::Done(seen)
                } else {
                    Probe::not_yet(seen)
                })
            },
        )
        .await?;
    println!("deliveries handled per replica: {replicas_seen:#?}");

    system.shutdown().await
}

/// service → instance → how many CONSUMER spans (deliveries) it exported.
fn deliveries_per_replica(spans: &[ReceivedSpan]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut seen: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for span in spans.iter().filter(|span| span.kind == SpanKind::Consumer) {
        let instance = span.instance.clone().unwrap_or_default();
        *seen
            .entry(span.service.clone())
            .or_default()
            .entry(instance)
            .or_default() += 1;
    }
    seen
}
