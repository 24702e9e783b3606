//! The fault switches, flipped while orders stream in: each is switched on
//! during a stream, switched off again, and then every order must still
//! end as the saga promises ([`invariants::settle`]): final, at most one
//! capture, a refund for every cancelled capture, no stock held, exactly
//! one email. Each test prints its counts (`--nocapture`) for the record.

use crate::invariants::{Counts, settle};
use crate::{card_for, order_body};
use e2e::{Options, Probe, Service, System};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// Orders placed while a switch is on.
const STREAM: i64 = 8;
/// Orders placed after it is off again.
const AFTER: i64 = 4;
/// The Order service's deadline: short, so orders stranded by a
/// permanent failure are cancelled within the test.
const DEADLINE: Duration = Duration::from_secs(8);

async fn start() -> anyhow::Result<System> {
    System::start(
        Options::default()
            .with_fault_switches()
            .with_order_deadline(DEADLINE),
    )
    .await
}

/// Places order `n` (one cable, every third card declines) as `customer`.
async fn place(system: &System, n: i64, customer: &str) -> anyhow::Result<Uuid> {
    let mut body = order_body(&[("CB-001", 1)], card_for(n));
    body["customer_id"] = json!(customer);
    system.place_order(&body).await
}

/// `change` with `"on"` set.
fn turned(change: &Value, on: bool) -> Value {
    let mut change = change.clone();
    change["on"] = json!(on);
    change
}

/// Faults `change`'s switch injected on `services`, all told.
async fn injected(system: &System, services: &[Service], change: &Value) -> anyhow::Result<u64> {
    let switch = change["name"].as_str().unwrap_or_default();
    let mut total = 0;
    for &service in services {
        total += system.faults_injected(service, switch).await?;
    }
    Ok(total)
}

/// Switches `change` on at `services`, places [`STREAM`] orders (order
/// `n` as `customer(n)`), waits until the switch has struck `strikes`
/// times, switches it off and places [`AFTER`] more. Returns the orders
/// and the strikes counted.
async fn flip(
    system: &System,
    services: &[Service],
    change: Value,
    strikes: u64,
    customer: impl Fn(i64) -> String,
) -> anyhow::Result<(Vec<Uuid>, u64)> {
    for &service in services {
        let board = system.switch_fault(service, &turned(&change, true)).await?;
        let shown = board["switches"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["name"] == change["name"]))
            .cloned()
            .unwrap_or_default();
        assert_eq!(shown["on"], true, "{}: {board}", service.name());
    }
    let mut orders = Vec::new();
    for n in 1..=STREAM {
        orders.push(place(system, n, &customer(n)).await?);
    }
    let struck = system
        .eventually(&format!("{strikes} strikes of {change}"), async || {
            let seen = injected(system, services, &change).await?;
            Ok(if seen >= strikes {
                Probe::Done(seen)
            } else {
                Probe::not_yet(seen)
            })
        })
        .await?;
    for &service in services {
        system
            .switch_fault(service, &turned(&change, false))
            .await?;
    }
    for n in STREAM + 1..=STREAM + AFTER {
        orders.push(place(system, n, &customer(n)).await?);
    }
    Ok((orders, struck))
}

fn report(switch: &str, counts: &Counts) {
    println!("fault switch {switch}: {counts}");
}

fn ordinary(_: i64) -> String {
    "c-42".to_owned()
}

#[tokio::test]
async fn switches_decline_cancels_the_orders_it_declines() -> anyhow::Result<()> {
    let system = start().await?;
    let change = json!({"name": "decline", "percent": 100});
    let (orders, struck) = flip(
        &system,
        &[Service::Payment],
        change,
        STREAM as u64,
        ordinary,
    )
    .await?;
    let counts = Counts {
        injected: struck,
        ..settle(&system, &orders).await?
    };
    report("decline", &counts);
    for &id in &orders[..STREAM as usize] {
        let order = system.order(id).await?;
        assert_eq!(order.status, "CANCELLED", "declined while on: {order:#?}");
    }
    assert_eq!(counts.dead_letters, 0);
    system.shutdown().await
}

#[tokio::test]
async fn switches_fail_transient_is_retried_to_the_same_outcome() -> anyhow::Result<()> {
    let system = start().await?;
    let services = [Service::Payment, Service::Inventory];
    let change = json!({"name": "fail_transient", "percent": 50});
    let (orders, struck) = flip(&system, &services, change, 2, ordinary).await?;
    let counts = Counts {
        injected: struck,
        ..settle(&system, &orders).await?
    };
    report("fail_transient", &counts);
    let retried = system
        .metric(Service::Payment, "checkout_message_retries_total", "")
        .await?
        + system
            .metric(Service::Inventory, "checkout_message_retries_total", "")
            .await?;
    assert!(retried >= 2.0, "every strike was retried: {retried}");
    // Switched off within the retry budget (200 ms + 1 s + 3 s): nothing
    // ran out of attempts.
    assert_eq!(counts.dead_letters, 0);
    let good = (1..=STREAM + AFTER).filter(|n| card_for(*n) == "tok_visa");
    assert_eq!(counts.confirmed, good.count(), "retried, then as usual");
    system.shutdown().await
}

#[tokio::test]
async fn switches_fail_permanent_dead_letters_the_matching_orders_then_the_deadline_cancels_them()
-> anyhow::Result<()> {
    let system = start().await?;
    let services = [Service::Payment, Service::Inventory];
    let matching = |n: i64| n <= STREAM && n % 2 == 0;
    let customer = |n: i64| {
        if matching(n) {
            format!("fail-{n}")
        } else {
            format!("c-{n}")
        }
    };
    let matches = (1..=STREAM).filter(|n| matching(*n)).count();
    let change = json!({"name": "fail_permanent", "pattern": "fail-*"});
    // Payment's PaymentRequested and Inventory's OrderCreated, per order.
    let strikes = 2 * matches as u64;
    let (orders, struck) = flip(&system, &services, change, strikes, customer).await?;
    let counts = Counts {
        injected: struck,
        ..settle(&system, &orders).await?
    };
    report("fail_permanent", &counts);
    for service in services {
        let letters = system.dead_letters(service).await?;
        assert_eq!(letters.len(), matches, "{}: {letters:#?}", service.name());
    }
    for (n, &id) in (1..).zip(&orders) {
        let order = system.order(id).await?;
        if matching(n) {
            assert_eq!(
                order.status, "CANCELLED",
                "stranded, then cancelled: {order:#?}"
            );
            assert!(
                system
                    .payments(id)
                    .await?
                    .iter()
                    .all(|p| p.status != "CAPTURED")
            );
        } else {
            let expected = if card_for(n) == "tok_visa" {
                "CONFIRMED"
            } else {
                "CANCELLED"
            };
            assert_eq!(order.status, expected, "{order:#?}");
        }
    }
    system.shutdown().await
}

#[tokio::test]
async fn switches_delay_slows_every_service_and_changes_no_outcome() -> anyhow::Result<()> {
    let system = start().await?;
    let change = json!({"name": "delay", "latency_ms": 200});
    let (orders, struck) = flip(&system, &Service::ALL, change, STREAM as u64, ordinary).await?;
    let counts = Counts {
        injected: struck,
        ..settle(&system, &orders).await?
    };
    report("delay", &counts);
    assert_eq!(counts.dead_letters, 0);
    let good = (1..=STREAM + AFTER).filter(|n| card_for(*n) == "tok_visa");
    assert_eq!(counts.confirmed, good.count());
    system.shutdown().await
}

#[tokio::test]
async fn switches_smtp_refuse_changes_no_outcome() -> anyhow::Result<()> {
    let system = start().await?;
    let change = json!({"name": "smtp_refuse"});
    let (orders, struck) = flip(&system, &[Service::Email], change, 0, ordinary).await?;
    let counts = Counts {
        injected: struck,
        ..settle(&system, &orders).await?
    };
    report("smtp_refuse", &counts);
    assert_eq!(counts.emails, orders.len());
    assert_eq!(counts.dead_letters, 0);
    system.shutdown().await
}

#[tokio::test]
async fn switches_crash_before_ack_exits_70_and_the_redelivery_is_absorbed() -> anyhow::Result<()> {
    let mut system = start().await?;
    let change = json!({"name": "crash_before_ack", "on": true});
    system.switch_fault(Service::Payment, &change).await?;
    let mut orders = Vec::new();
    for n in 1..=STREAM {
        orders.push(place(&system, n, "c-42").await?);
    }
    let status = system.wait_for_exit(Service::Payment, 0).await?;
    assert_eq!(status.code(), Some(70), "crash_before_ack exits with 70");
    // Its switches start off again: the crash happens once per switch-on.
    system.restart(Service::Payment, 0).await?;
    for n in STREAM + 1..=STREAM + AFTER {
        orders.push(place(&system, n, "c-42").await?);
    }
    let counts = Counts {
        injected: 1,
        ..settle(&system, &orders).await?
    };
    report("crash_before_ack", &counts);
    let absorbed = system
        .metric(
            Service::Payment,
            "checkout_messages_consumed_total",
            "outcome=\"duplicate\"",
        )
        .await?;
    assert!(
        absorbed >= 1.0,
        "the delivery committed before the crash came again and was absorbed"
    );
    assert_eq!(counts.dead_letters, 0);
    system.shutdown().await
}
