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

/// Faults the switches of `changes` injected, all told.
async fn injected(system: &System, changes: &[(Service, Value)]) -> anyhow::Result<u64> {
    let mut total = 0;
    for (service, change) in changes {
        let switch = change["name"].as_str().unwrap_or_default();
        total += system.faults_injected(*service, switch).await?;
    }
    Ok(total)
}

/// Switches each of `changes` on at its service, places [`STREAM`]
/// orders (order `n` as `customer(n)`), waits until the switches have
/// struck `strikes` times, switches them off and places [`AFTER`] more.
/// Returns the orders and the strikes counted.
async fn flip(
    system: &System,
    changes: &[(Service, Value)],
    strikes: u64,
    customer: impl Fn(i64) -> String,
) -> anyhow::Result<(Vec<Uuid>, u64)> {
    for (service, change) in changes {
        let board = system.switch_fault(*service, &turned(change, true)).await?;
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
        .eventually(&format!("{strikes} strikes of {changes:?}"), async || {
            let seen = injected(system, changes).await?;
            Ok(if seen >= strikes {
                Probe::Done(seen)
            } else {
                Probe::not_yet(seen)
            })
        })
        .await?;
    for (service, change) in changes {
        system
            .switch_fault(*service, &turned(change, false))
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
    let changes = [(Service::Payment, change)];
    let (orders, struck) = flip(&system, &changes, STREAM as u64, ordinary).await?;
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
    let change = json!({"name": "fail_transient", "percent": 50});
    let changes = [
        (Service::Payment, change.clone()),
        (Service::Inventory, change),
    ];
    let (orders, struck) = flip(&system, &changes, 2, ordinary).await?;
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

/// Which service's `fail_permanent` pattern order `n`'s customer matches:
/// orders with good cards only, so that no decline cancels one (and sends
/// its OrderCancelled, which carries the customer too) while the switch
/// is on.
fn failing_at(n: i64) -> Option<Service> {
    match n {
        4 | 8 => Some(Service::Payment),
        2 | 5 => Some(Service::Inventory),
        _ => None,
    }
}

#[tokio::test]
async fn switches_fail_permanent_dead_letters_the_matching_orders_then_the_deadline_cancels_them()
-> anyhow::Result<()> {
    let system = start().await?;
    let customer = |n: i64| match failing_at(n) {
        Some(Service::Payment) => format!("fail-pay-{n}"),
        Some(_) => format!("fail-inv-{n}"),
        None => format!("c-{n}"),
    };
    let changes = [
        (
            Service::Payment,
            json!({"name": "fail_permanent", "pattern": "fail-pay-*"}),
        ),
        (
            Service::Inventory,
            json!({"name": "fail_permanent", "pattern": "fail-inv-*"}),
        ),
    ];
    let matching = |service| {
        (1..=STREAM)
            .filter(|n| failing_at(*n) == Some(service))
            .count()
    };
    // One delivery each: PaymentRequested at Payment, OrderCreated at Inventory.
    let strikes = (matching(Service::Payment) + matching(Service::Inventory)) as u64;
    let (orders, struck) = flip(&system, &changes, strikes, customer).await?;
    let counts = Counts {
        injected: struck,
        ..settle(&system, &orders).await?
    };
    report("fail_permanent", &counts);
    for (service, _) in &changes {
        let letters = system.dead_letters(*service).await?;
        assert_eq!(
            letters.len(),
            matching(*service),
            "{}: {letters:#?}",
            service.name()
        );
    }
    for (n, &id) in (1..).zip(&orders) {
        let order = system.order(id).await?;
        let expected = match failing_at(n) {
            // Stranded until the deadline, then cancelled and compensated.
            Some(_) => "CANCELLED",
            None if card_for(n) == "tok_visa" => "CONFIRMED",
            None => "CANCELLED",
        };
        assert_eq!(order.status, expected, "{order:#?}");
    }
    // Inventory's failures leave good cards captured: each was refunded.
    assert_eq!(counts.refunds, matching(Service::Inventory));
    system.shutdown().await
}

#[tokio::test]
async fn switches_delay_slows_every_service_and_changes_no_outcome() -> anyhow::Result<()> {
    let system = start().await?;
    let change = json!({"name": "delay", "latency_ms": 200});
    let changes = Service::ALL.map(|service| (service, change.clone()));
    let (orders, struck) = flip(&system, &changes, STREAM as u64, ordinary).await?;
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
async fn switches_smtp_refuse_holds_mail_back_and_changes_no_outcome() -> anyhow::Result<()> {
    let system = start().await?;
    let changes = [(Service::Email, json!({"name": "smtp_refuse"}))];
    // Every order of the stream has its mail refused at least once.
    let (orders, struck) = flip(&system, &changes, STREAM as u64, ordinary).await?;
    let counts = Counts {
        injected: struck,
        ..settle(&system, &orders).await?
    };
    report("smtp_refuse", &counts);
    assert_eq!(counts.emails, orders.len());
    assert_eq!(counts.dead_letters, 0);
    // The refused mails went out once the switch was off (the sender's
    // backoff starts at 2 s).
    let sent = system
        .eventually("every mail to reach the SMTP server", async || {
            let sent = system.mail().accepted();
            Ok(if sent >= orders.len() {
                Probe::Done(sent)
            } else {
                Probe::not_yet(sent)
            })
        })
        .await?;
    assert_eq!(sent, orders.len(), "one mail per order");
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
