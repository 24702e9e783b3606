//! The Inventory service's consumer: reacts to orders: reserves a new order's items (all or none), ships them
//! when the order is confirmed, gives them back when it is cancelled, and
//! leaves a tombstone when the cancellation overtakes the order.
//!
//! Every reaction claims or locks the order's one `reservations` row first,
//! so duplicates, redeliveries and a cancellation racing its order (on one
//! replica or several) hold and give back stock at most once.

use crate::OUTBOX;
use crate::reservation::{self, Reservation};
use crate::store::{self, HoldOne, Settle, Status};
use checkout_events::{
    Envelope, Inbox as _, InventoryFailed, InventoryInbox, InventoryReleased, InventoryReserved,
    OrderCancelled, OrderCreated, OrderId, ReservedItem, Sku,
};
use checkout_messaging::claim::lock_or_tombstone;
use checkout_messaging::{Cause, Handler, HandlerError, Outcome};
use sqlx::PgConnection;
use std::collections::BTreeMap;
use tracing::instrument;

/// The Inventory service's consumer handler: what the consumer runs for
/// every delivery, public so tests can apply events without a broker.
#[derive(Debug, Clone, Copy, Default)]
pub struct InventoryHandler;

impl Handler for InventoryHandler {
    async fn handle(
        &self,
        envelope: &Envelope,
        tx: &mut PgConnection,
    ) -> Result<Outcome, HandlerError> {
        let Some(event) = InventoryInbox::decode(envelope)? else {
            return Ok(Outcome::Ignored);
        };
        match event {
            InventoryInbox::OrderCreated(event) => reserve(tx, envelope, &event).await?,
            InventoryInbox::OrderConfirmed(event) => ship(tx, event.order_id).await?,
            InventoryInbox::OrderCancelled(event) => release(tx, envelope, &event).await?,
        }
        Ok(Outcome::Applied)
    }
}

/// Holds every line of a new order, or none, unless the order already has
/// a reservation (a duplicate, or the tombstone of an earlier cancellation).
#[instrument(skip_all, fields(order_id = %event.order_id))]
async fn reserve(
    tx: &mut PgConnection,
    envelope: &Envelope,
    event: &OrderCreated,
) -> Result<(), HandlerError> {
    let order_id = event.order_id;
    let items: Vec<ReservedItem> = event
        .items
        .iter()
        .map(|line| ReservedItem {
            sku: line.sku.clone(),
            quantity: line.quantity,
        })
        .collect();
    let lines = reservation::totals(&items);
    let cause = Cause::Event(envelope);
    let held = match lines.as_slice() {
        // One SKU (every order of a flash sale): claimed, judged and, if it
        // fits, held in one statement.
        [(sku, quantity)] => match store::hold_one(tx, order_id, sku, *quantity).await? {
            HoldOne::Taken => return taken(),
            HoldOne::Held => true,
            HoldOne::Short { available } => {
                let available = BTreeMap::from([(sku.clone(), available)]);
                hold_or_fail(tx, order_id, (&items, &lines), &available, cause).await?
            }
        },
        // Several: claimed, then judged and held under the locks of all
        // their products, taken in SKU order.
        _ if store::claim(tx, order_id, Status::Reserved, None).await? => {
            let available = store::lock_stock(tx, lines.iter().map(|(sku, _)| sku)).await?;
            hold_or_fail(tx, order_id, (&items, &lines), &available, cause).await?
        }
        _ => return taken(),
    };
    if held {
        tracing::info!(lines = lines.len(), "stock reserved");
        OUTBOX
            .emit(tx, &InventoryReserved { order_id, items }, cause)
            .await?;
    }
    Ok(())
}

/// What reserving does for an order that already has a reservation.
fn taken() -> Result<(), HandlerError> {
    tracing::info!(
        "the order already has a reservation (duplicate, or cancelled first); nothing to do"
    );
    Ok(())
}

/// Judges an order claimed as RESERVED by the reservation rule, with
/// `available` read under its products' locks: holds all its `lines`
/// (`items` per SKU), or marks it FAILED and emits why. Returns whether it
/// holds them. No one sees the claim before commit, so it is never seen
/// RESERVED without its lines.
async fn hold_or_fail(
    tx: &mut PgConnection,
    order_id: OrderId,
    (items, lines): (&[ReservedItem], &[(Sku, i64)]),
    available: &BTreeMap<Sku, i64>,
    cause: Cause<'_>,
) -> Result<bool, HandlerError> {
    let decision = reservation::decide(items, available);
    let Reservation::OutOfStock { sku, .. } = &decision else {
        store::hold(tx, order_id, lines).await?;
        return Ok(true);
    };
    let reason = decision.reason().unwrap_or_default();
    store::set_status(tx, order_id, Status::Failed, Some(&reason)).await?;
    tracing::info!(%reason, "out of stock; nothing reserved");
    let failed = InventoryFailed {
        order_id,
        reason,
        sku: Some(sku.clone()),
    };
    OUTBOX.emit(tx, &failed, cause).await?;
    Ok(false)
}

/// A confirmed order's units leave the warehouse: a RESERVED reservation
/// becomes COMMITTED. Anything else has nothing held to ship.
#[instrument(skip_all, fields(order_id = %order_id))]
async fn ship(tx: &mut PgConnection, order_id: OrderId) -> Result<(), HandlerError> {
    if store::settle(tx, order_id, Settle::Ship).await? {
        tracing::info!("reservation committed; stock shipped");
    } else {
        tracing::info!("nothing held to ship");
    }
    Ok(())
}

/// Gives back what a cancelled order holds; if its OrderCreated has not
/// arrived yet, leaves a VOIDED tombstone so that it never reserves.
#[instrument(skip_all, fields(order_id = %event.order_id))]
async fn release(
    tx: &mut PgConnection,
    envelope: &Envelope,
    event: &OrderCancelled,
) -> Result<(), HandlerError> {
    let order_id = event.order_id;
    let how = Settle::Release(&event.reason);
    // Most cancellations find the order RESERVED: one statement ends it.
    let mut released = store::settle(tx, order_id, how).await?;
    if !released {
        // No reservation yet (then the tombstone goes in), or nothing held.
        let locked =
            lock_or_tombstone(tx, (order_id, &event.reason), store::lock, store::tombstone).await?;
        if locked == Some(Status::Reserved) {
            // Its OrderCreated committed since the first look; locked now.
            released = store::settle(tx, order_id, how).await?;
        }
    }
    if !released {
        tracing::info!("nothing held, or already settled; nothing to release");
        return Ok(());
    }
    tracing::info!("reservation released");
    OUTBOX
        .emit(tx, &InventoryReleased { order_id }, Cause::Event(envelope))
        .await?;
    Ok(())
}
