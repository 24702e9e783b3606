//! No order is ever stranded: an outage longer than any retry budget only
//! delays the saga, a leg lost to a bug is cancelled at the order deadline
//! and compensated, and every message a run produces reaches a subscriber
//! (nothing piles up in the unroutable queue or a dead-letter queue).

use crate::{EACH_IN_TURN, card_for, check_exactly_once, order_body};
use e2e::{Compensation, Options, Probe, Service, System};
use reqwest::StatusCode;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Longer than the e2e services' whole retry budget (200 ms + 1 s + 3 s).
const OUTAGE: Duration = Duration::from_secs(6);

/// Asserts that no dead-letter queue holds anything and that nothing was
/// unroutable.
async fn assert_nothing_parked(system: &System) -> anyhow::Result<()> {
    let topology = system.topology()?;
    for service in ["order", "payment", "inventory", "email"] {
        let queue = topology.dead_letter_queue(service);
        assert_eq!(system.queue_depth(&queue).await?, 0, "{queue} is empty");
    }
    let unroutable = topology.unroutable();
    assert_eq!(
        system.queue_depth(&unroutable).await?,
        0,
        "{unroutable} is empty"
    );
    Ok(())
}

#[tokio::test]
async fn every_order_ends_when_each_database_is_down_longer_than_the_retry_budget()
-> anyhow::Result<()> {
    let system = System::start(Options::default()).await?;
    let mut placed: Vec<(Uuid, i64)> = Vec::new();
    let mut refused = 0;
    let mut n = 0;
    for service in EACH_IN_TURN {
        system.refuse_database(service, true).await?;
        let until = Instant::now() + OUTAGE;
        while Instant::now() < until {
            n += 1;
            let response = system
                .post_order(&order_body(&[("CB-001", 1)], card_for(n)))
                .await?;
            if response.status() == StatusCode::ACCEPTED {
                let accepted: e2e::Accepted = response.json().await?;
                placed.push((accepted.id, n));
            } else {
                // Only while the Order service's own database is down.
                assert_eq!(service, Service::Order, "{}", response.text().await?);
                refused += 1;
            }
            // A steady stream (a rate, not a wait for anything).
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        system.refuse_database(service, false).await?;
    }
    let outage_over = Instant::now();

    for (id, n) in &placed {
        check_exactly_once(&system, *id, card_for(*n) == "tok_visa").await?;
    }
    let settled_after = outage_over.elapsed();
    assert_nothing_parked(&system).await?;
    println!(
        "{} orders placed during four {OUTAGE:?} database outages ({refused} refused while \
         the Order database was down): 0 stuck, 0 captured and not refunded, 0 units held, \
         1 email each; all final {settled_after:?} after the last outage ended",
        placed.len()
    );
    system.shutdown().await
}

#[tokio::test]
async fn an_order_whose_inventory_leg_is_dead_lettered_is_cancelled_at_the_deadline_and_refunded()
-> anyhow::Result<()> {
    let system =
        System::start(Options::default().with_order_deadline(Duration::from_secs(3))).await?;
    // A bug in Inventory for this order only: any order line of 7 units.
    system
        .execute_in(
            Service::Inventory,
            "CREATE FUNCTION e2e_bug() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'e2e: a bug for lines of 7 units'; END $$; \
             CREATE TRIGGER e2e_bug BEFORE INSERT ON reservation_lines \
             FOR EACH ROW WHEN (NEW.quantity = 7) EXECUTE FUNCTION e2e_bug();",
        )
        .await?;
    let stock_before = system.product("KB-001").await?.stock();

    let id = system
        .place_order(&order_body(&[("KB-001", 7)], "tok_visa"))
        .await?;
    let order = system.wait_for_final_status(id).await?;
    assert_eq!(order.status, "CANCELLED", "{order:#?}");
    assert_eq!(
        order.cancel_reason.as_deref(),
        Some("timed out waiting for inventory")
    );
    system.wait_for_payment(id, "REFUNDED").await?;
    // Inventory never held anything: the cancellation left a tombstone.
    system.wait_for_reservation(id, "VOIDED").await?;
    system.wait_for_email(id, "cancellation").await?;
    let compensated = system
        .eventually("the refund to show on the order", async || {
            let order = system.order(id).await?;
            Ok(match &order.compensation {
                Some(c) if c.payment == "REFUNDED" => Probe::Done(c.clone()),
                _ => Probe::not_yet(order),
            })
        })
        .await?;
    assert_eq!(
        compensated,
        Compensation {
            payment: "REFUNDED".to_owned(),
            inventory: "NONE".to_owned(),
        }
    );
    assert_eq!(system.payments(id).await?.len(), 1);
    assert_eq!(system.emails(id).await?.len(), 1);
    assert_eq!(system.product("KB-001").await?.stock(), stock_before);
    // The dead letter is kept for an operator, not lost.
    let dlq = system.topology()?.dead_letter_queue("inventory");
    assert_eq!(system.queue_depth(&dlq).await?, 1, "{dlq}");
    system.shutdown().await
}

#[tokio::test]
async fn good_declined_and_out_of_stock_orders_leave_nothing_unroutable() -> anyhow::Result<()> {
    let system = System::start(Options::default()).await?;
    let good = system
        .place_order(&order_body(&[("MS-001", 1)], "tok_visa"))
        .await?;
    let declined = system
        .place_order(&order_body(&[("MS-001", 1)], "tok_decline"))
        .await?;
    let short = system
        .place_order(&order_body(&[("MN-001", 21)], "tok_visa"))
        .await?;
    check_exactly_once(&system, good, true).await?;
    check_exactly_once(&system, declined, false).await?;
    // The out-of-stock order was charged first: its refund comes back to
    // the Order service (it used to go nowhere but the unroutable queue).
    let refunded = system
        .eventually("the refund to show on the order", async || {
            let order = system.order(short).await?;
            Ok(match &order.compensation {
                Some(c) if c.payment == "REFUNDED" => Probe::Done(order),
                _ => Probe::not_yet(order),
            })
        })
        .await?;
    assert_eq!(refunded.status, "CANCELLED");
    assert_nothing_parked(&system).await?;
    system.shutdown().await
}
