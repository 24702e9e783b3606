//! The saga's invariants over a set of orders, checked and counted once
//! every order has settled: each order is final, has at most one capture,
//! a refund for a captured order that was cancelled, exactly one email of
//! its outcome's kind, and no unit of stock is held for any of them.

use e2e::{Order, Probe, Service, System};
use std::fmt;
use uuid::Uuid;

/// What a run of orders came to (printed for the closing note).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) orders: usize,
    pub(crate) confirmed: usize,
    pub(crate) cancelled: usize,
    /// Payments that were captured (refunded ones included).
    pub(crate) captures: usize,
    pub(crate) refunds: usize,
    /// Messages in the four dead-letter queues.
    pub(crate) dead_letters: usize,
    pub(crate) emails: usize,
    /// Faults the switch injected, as the services counted them.
    pub(crate) injected: u64,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "orders {}, confirmed {}, cancelled {}, captures {}, refunds {}, dead letters {}, emails {}, faults injected {}",
            self.orders,
            self.confirmed,
            self.cancelled,
            self.captures,
            self.refunds,
            self.dead_letters,
            self.emails,
            self.injected
        )
    }
}

/// Waits until every order in `orders` is final and compensated, asserts
/// the invariants, and counts.
pub(crate) async fn settle(system: &System, orders: &[Uuid]) -> anyhow::Result<Counts> {
    let mut counts = Counts {
        orders: orders.len(),
        ..Counts::default()
    };
    for &id in orders {
        let order = system.wait_for_final_status(id).await?;
        settle_one(system, &order, &mut counts).await?;
    }
    assert_no_stock_held(system).await?;
    assert_each_reply_once(system).await?;
    for service in Service::ALL {
        counts.dead_letters += system.dead_letters(service).await?.len();
    }
    Ok(counts)
}

async fn settle_one(system: &System, order: &Order, counts: &mut Counts) -> anyhow::Result<()> {
    let id = order.id;
    let confirmed = order.status == "CONFIRMED";
    if confirmed {
        counts.confirmed += 1;
        system.wait_for_payment(id, "CAPTURED").await?;
        system.wait_for_reservation(id, "COMMITTED").await?;
    } else {
        counts.cancelled += 1;
    }
    let payments = system.payments(id).await?;
    assert!(payments.len() <= 1, "order {id}: {payments:#?}");
    let captured = payments
        .iter()
        .any(|p| p.status == "CAPTURED" || p.status == "REFUNDED");
    if captured {
        counts.captures += 1;
        if !confirmed {
            // A captured payment of a cancelled order is given back.
            system.wait_for_payment(id, "REFUNDED").await?;
            counts.refunds += 1;
        }
    }
    let kind = if confirmed {
        "confirmation"
    } else {
        "cancellation"
    };
    system.wait_for_email(id, kind).await?;
    let emails = system.emails(id).await?;
    assert_eq!(emails.len(), 1, "order {id}: one email: {emails:#?}");
    counts.emails += emails.len();
    Ok(())
}

/// No product has units reserved once every order is final (a confirmed
/// order's units are committed, a cancelled one's released).
async fn assert_no_stock_held(system: &System) -> anyhow::Result<()> {
    system
        .eventually("no stock to be held by settled orders", async || {
            let products = system.products().await?;
            let held: Vec<(String, i64)> = products
                .iter()
                .filter(|p| p.reserved != 0)
                .map(|p| (p.sku.clone(), p.reserved))
                .collect();
            Ok(if held.is_empty() {
                Probe::Done(())
            } else {
                Probe::not_yet(held)
            })
        })
        .await
}

/// Payment answered each order once and Inventory reserved each once, in
/// their outboxes — what a redelivery after a crash would duplicate if
/// the inbox did not absorb it.
async fn assert_each_reply_once(system: &System) -> anyhow::Result<()> {
    for (service, types) in [
        (Service::Payment, "'PaymentCaptured', 'PaymentFailed'"),
        (Service::Payment, "'PaymentRefunded'"),
        (Service::Inventory, "'InventoryReserved', 'InventoryFailed'"),
    ] {
        let sql = format!(
            "SELECT count(*) - count(DISTINCT envelope->>'correlation_id') FROM outbox \
             WHERE event_type IN ({types})"
        );
        let repeated = system.count_in(service, &sql).await?;
        assert_eq!(
            repeated,
            0,
            "{}: {types} repeated for an order",
            service.name()
        );
    }
    Ok(())
}
