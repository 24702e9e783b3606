//! The three ways an order ends, each checked in every service it touches:
//! confirmed; cancelled because the card was declined; cancelled because
//! the stock was short (after the card was charged, so it is refunded).

use crate::{CUSTOMER_EMAIL, order_body};
use e2e::{Accepted, Money, Options, Order, System};
use reqwest::StatusCode;
use uuid::Uuid;

#[tokio::test]
async fn a_good_order_is_confirmed_charged_taken_from_stock_and_mailed() -> anyhow::Result<()> {
    let system = System::start(Options::default()).await?;
    let keyboards_before = system.product("KB-001").await?;
    let mice_before = system.product("MS-001").await?;

    let response = system
        .post_order(&order_body(&[("KB-001", 2), ("MS-001", 1)], "tok_visa"))
        .await?;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let accepted: Accepted = response.json().await?;
    assert_eq!(
        accepted.status, "PENDING",
        "202 means accepted, not decided"
    );
    assert_eq!(location, Some(format!("/orders/{}", accepted.id)));
    let id = accepted.id;

    // The order: decided by the saga, priced by the server.
    let order = system.wait_for_final_status(id).await?;
    assert_eq!(order.status, "CONFIRMED", "{order:#?}");
    assert_eq!(order.payment, "CAPTURED", "{order:#?}");
    assert_eq!(order.inventory, "RESERVED", "{order:#?}");
    assert_eq!(order.cancel_reason, None);
    assert_eq!(order.total, Money::usd(2 * 4999 + 2599));

    // Payment: captured once, for exactly the total.
    assert_one_payment(&system, id, "CAPTURED", &order.total).await?;

    // Inventory: stock leaves the shelf only when the reservation is
    // committed, which happens after OrderConfirmed reaches Inventory.
    system.wait_for_reservation(id, "COMMITTED").await?;
    let keyboards = system.product("KB-001").await?;
    assert_eq!(keyboards.on_hand, keyboards_before.on_hand - 2);
    assert_eq!(keyboards.reserved, keyboards_before.reserved);
    assert_eq!(keyboards.available, keyboards_before.available - 2);
    let mice = system.product("MS-001").await?;
    assert_eq!(mice.on_hand, mice_before.on_hand - 1);
    assert_eq!(mice.reserved, mice_before.reserved);

    // Email: one confirmation, to the address given with the order.
    assert_one_email(&system, id, "confirmation").await?;

    system.shutdown().await
}

#[tokio::test]
async fn a_declined_card_cancels_the_order_and_puts_the_stock_back() -> anyhow::Result<()> {
    let system = System::start(Options::default()).await?;
    let keyboards_before = system.product("KB-001").await?;

    let id = system
        .place_order(&order_body(&[("KB-001", 3)], "tok_decline"))
        .await?;

    let order = system.wait_for_final_status(id).await?;
    assert_eq!(order.status, "CANCELLED", "{order:#?}");
    assert_eq!(order.payment, "FAILED", "{order:#?}");
    assert_says_why(&order);

    assert_one_payment(&system, id, "DECLINED", &order.total).await?;

    // Inventory may have reserved before the decline came back; the
    // cancellation must release that reservation.
    system.wait_for_reservation(id, "RELEASED").await?;
    let keyboards = system.product("KB-001").await?;
    assert_eq!(
        keyboards.stock(),
        keyboards_before.stock(),
        "stock is as it was"
    );

    assert_one_email(&system, id, "cancellation").await?;

    system.shutdown().await
}

#[tokio::test]
async fn short_stock_cancels_the_order_and_refunds_the_charge() -> anyhow::Result<()> {
    let system = System::start(Options::default()).await?;
    let monitors_before = system.product("MN-001").await?;
    let one_too_many = monitors_before.available + 1;

    let id = system
        .place_order(&order_body(&[("MN-001", one_too_many)], "tok_visa"))
        .await?;

    let order = system.wait_for_final_status(id).await?;
    assert_eq!(order.status, "CANCELLED", "{order:#?}");
    assert_eq!(order.inventory, "FAILED", "{order:#?}");
    assert_says_why(&order);
    assert_eq!(order.total, Money::usd(one_too_many * 24999));

    // All or nothing: no unit was reserved.
    system.wait_for_reservation(id, "FAILED").await?;
    // The card was fine, so Payment captured; the cancellation refunds it.
    assert_one_payment(&system, id, "REFUNDED", &order.total).await?;

    let monitors = system.product("MN-001").await?;
    assert_eq!(
        monitors.stock(),
        monitors_before.stock(),
        "stock is as it was"
    );

    assert_one_email(&system, id, "cancellation").await?;

    system.shutdown().await
}

/// A cancelled order gives a reason a customer can read.
fn assert_says_why(order: &Order) {
    assert!(
        order
            .cancel_reason
            .as_deref()
            .is_some_and(|r| !r.is_empty()),
        "a cancelled order says why: {order:#?}"
    );
}

/// Payment ends `status` for exactly `total`, in one row: one order, one
/// charge, whatever happened to it after.
async fn assert_one_payment(
    system: &System,
    id: Uuid,
    status: &str,
    total: &Money,
) -> anyhow::Result<()> {
    let payment = system.wait_for_payment(id, status).await?;
    assert_eq!(&payment.amount, total);
    let payments = system.payments(id).await?;
    assert_eq!(payments.len(), 1, "one order, one payment: {payments:#?}");
    Ok(())
}

/// One mail of `kind`, to the address given with the order.
async fn assert_one_email(system: &System, id: Uuid, kind: &str) -> anyhow::Result<()> {
    let email = system.wait_for_email(id, kind).await?;
    assert_eq!(email.recipient, CUSTOMER_EMAIL);
    let emails = system.emails(id).await?;
    assert_eq!(emails.len(), 1, "{emails:#?}");
    Ok(())
}
