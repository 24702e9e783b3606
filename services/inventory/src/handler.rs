//! The Inventory service's consumer: reacts to orders: reserves a new order's items (all or none), ships them
//! when the order is confirmed, gives them back when it is cancelled, and
//! leaves a tombstone when the cancellation overtakes the order.
//!
//! Every reaction claims or locks the order's one `reservations` row first,
//! so duplicates, redeliveries and a cancellation racing its order (on one
//! replica or several) hold and give back stock at most once.

use crate::OUTBOX;
use crate::reservation::{self, Reservation};
use crate::store::{self, Settle, Status};
use checkout_events::{
    Envelope, Inbox as _, InventoryFailed, InventoryInbox, InventoryReleased, InventoryReserved,
    OrderCancelled, OrderCreated, OrderId, ReservedItem,
};
use checkout_messaging::claim::lock_or_tombstone;
use checkout_messaging::{Cause, Handler, HandlerError, Outcome};
use sqlx::PgConnection;
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
    // Claimed as RESERVED; no one sees the row before commit, and a
    // shortage rewrites it to FAILED below.
    if !store::claim(tx, order_id, Status::Reserved, None).await? {
        tracing::info!(
            "the order already has a reservation (duplicate, or cancelled first); nothing to do"
        );
        return Ok(());
    }
    let items: Vec<ReservedItem> = event
        .items
        .iter()
        .map(|line| ReservedItem {
            sku: line.sku.clone(),
            quantity: line.quantity,
        })
        .collect();
    let lines = reservation::totals(&items);
    let available = store::lock_stock(tx, lines.iter().map(|(sku, _)| sku)).await?;

    let cause = Cause::Event(envelope);
    let decision = reservation::decide(&items, &available);
    match &decision {
        Reservation::Reserved => {
            store::hold(tx, order_id, &lines).await?;
            tracing::info!(lines = lines.len(), "stock reserved");
            OUTBOX
                .emit(tx, &InventoryReserved { order_id, items }, cause)
                .await?;
        }
        Reservation::OutOfStock { sku, .. } => {
            let reason = decision.reason().unwrap_or_default();
            store::set_status(tx, order_id, Status::Failed, Some(&reason)).await?;
            tracing::info!(%reason, "out of stock; nothing reserved");
            let failed = InventoryFailed {
                order_id,
                reason,
                sku: Some(sku.clone()),
            };
            OUTBOX.emit(tx, &failed, cause).await?;
        }
    }
    Ok(())
}

/// A confirmed order's units leave the warehouse: a RESERVED reservation
/// becomes COMMITTED. Anything else has nothing held to ship.
#[instrument(skip_all, fields(order_id = %order_id))]
async fn ship(tx: &mut PgConnection, order_id: OrderId) -> Result<(), HandlerError> {
    match store::lock(tx, order_id).await? {
        Some(Status::Reserved) => {
            store::settle(tx, order_id, Settle::Ship).await?;
            store::set_status(tx, order_id, Status::Committed, None).await?;
            tracing::info!("reservation committed; stock shipped");
        }
        other => {
            tracing::info!(status = ?other, "nothing held to ship");
        }
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
    let Some(status) =
        lock_or_tombstone(tx, (order_id, &event.reason), store::lock, store::tombstone).await?
    else {
        return Ok(());
    };

    match status {
        Status::Reserved => {
            store::settle(tx, order_id, Settle::Release).await?;
            store::set_status(tx, order_id, Status::Released, Some(&event.reason)).await?;
            tracing::info!("reservation released");
            OUTBOX
                .emit(tx, &InventoryReleased { order_id }, Cause::Event(envelope))
                .await?;
        }
        Status::Failed | Status::Released | Status::Committed | Status::Voided => {
            tracing::info!(
                ?status,
                "nothing held, or already settled; nothing to release"
            );
        }
    }
    Ok(())
}
