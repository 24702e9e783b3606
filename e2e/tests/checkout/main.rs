//! The checkout, end to end: the four real binaries, real PostgreSQL and
//! RabbitMQ, driven over HTTP the way a client would, and checked the way
//! a user would check: statuses, stock, payments, emails, and the trace.
//!
//! Each test starts its own [`e2e::System`] (its own databases, broker
//! names and processes), so the tests run in parallel and each one ends by
//! shutting its system down. Run them with `cargo test -p e2e`; a failing
//! test prints where its services' logs are.
//!
//! One rule runs through all of them: the HTTP reply to `POST /orders`
//! only says the order was accepted. Everything after that happens later,
//! in other processes, so a test waits for each effect it checks (polling
//! with a deadline) and only then asserts on it.

mod attacks;
mod faults;
mod forged;
mod invariants;
mod outcomes;
mod rejected;
mod replicas;
mod stranded;
mod switches;
mod trace;

use e2e::{Service, System};
use serde_json::{Value, json};
use uuid::Uuid;

/// The services in the order the fault tests take each one down: the
/// participants first, Order last, so orders keep being accepted through
/// every participant's outage and Order's own is the last word.
const EACH_IN_TURN: [Service; 4] = [
    Service::Payment,
    Service::Inventory,
    Service::Email,
    Service::Order,
];

/// The customer every test orders as.
const CUSTOMER_EMAIL: &str = "ada@example.com";

/// A `POST /orders` body for `items` (SKU, quantity) paid with `card_token`
/// (`tok_decline` declines, anything else captures).
fn order_body(items: &[(&str, i64)], card_token: &str) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(sku, quantity)| json!({ "sku": sku, "quantity": quantity }))
        .collect();
    json!({
        "customer_id": "c-42",
        "customer_email": CUSTOMER_EMAIL,
        "items": items,
        "card_token": card_token,
    })
}

/// Every third card declines.
pub(crate) fn card_for(n: i64) -> &'static str {
    if n % 3 == 0 {
        "tok_decline"
    } else {
        "tok_visa"
    }
}

/// Waits for one order's every effect, then checks each happened once.
pub(crate) async fn check_exactly_once(
    system: &System,
    id: Uuid,
    card_is_good: bool,
) -> anyhow::Result<()> {
    // A cancelled order's reservation is RELEASED — or VOIDED, when
    // Inventory (restarted, say) handled the cancel before the order: no
    // stock is held either way.
    let (status, payment, reservation, email): (_, _, &[&str], _) = if card_is_good {
        ("CONFIRMED", "CAPTURED", &["COMMITTED"], "confirmation")
    } else {
        (
            "CANCELLED",
            "DECLINED",
            &["RELEASED", "VOIDED"],
            "cancellation",
        )
    };
    let order = system.wait_for_final_status(id).await?;
    assert_eq!(order.status, status, "{order:#?}");
    system.wait_for_payment(id, payment).await?;
    system.wait_for_reservation_in(id, reservation).await?;
    system.wait_for_email(id, email).await?;

    let payments = system.payments(id).await?;
    assert_eq!(payments.len(), 1, "order {id}: {payments:#?}");
    let reservations = system.reservations(id).await?;
    assert_eq!(reservations.len(), 1, "order {id}: {reservations:#?}");
    let emails = system.emails(id).await?;
    assert_eq!(emails.len(), 1, "order {id}: {emails:#?}");
    Ok(())
}
