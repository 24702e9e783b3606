//! The Order service's consumer: it joins the saga's replies into the
//! order's final state (the state machine is [`crate::saga`]) and keeps
//! the local catalog.
//!
//! Both good → CONFIRMED + OrderConfirmed; the first failure → CANCELLED +
//! OrderCancelled, which Payment and Inventory compensate; their
//! PaymentRefunded and InventoryReleased come back here and go into the
//! order's timeline, so the order shows its compensation was done. Replies
//! for one order are serialised by locking its row; duplicates and late
//! replies are absorbed by the state machine, [`Saga`](crate::saga::Saga). An order
//! no reply decides in time is cancelled by [`crate::deadline`].

use crate::saga::{Reply, Transition};
use crate::store::Locked;
use crate::{OUTBOX, catalog, store, timeline};
use checkout_events::{
    Envelope, Inbox as _, OrderCancelled, OrderConfirmed, OrderId, OrderInbox, ProductUpdated,
};
use checkout_messaging::{Cause, Handler, HandlerError, Outcome};
use sqlx::PgConnection;

/// The Order service's consumer handler: what the consumer runs for every
/// delivery, public so tests can apply events without a broker.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderHandler;

impl Handler for OrderHandler {
    async fn handle(
        &self,
        envelope: &Envelope,
        tx: &mut PgConnection,
    ) -> Result<Outcome, HandlerError> {
        let Some(event) = OrderInbox::decode(envelope)? else {
            return Ok(Outcome::Ignored);
        };
        let (order_id, reply) = match event {
            OrderInbox::PaymentCaptured(e) => (e.order_id, Reply::Payment(Ok(()))),
            OrderInbox::PaymentFailed(e) => (e.order_id, Reply::Payment(Err(e.reason))),
            OrderInbox::InventoryReserved(e) => (e.order_id, Reply::Inventory(Ok(()))),
            OrderInbox::InventoryFailed(e) => (e.order_id, Reply::Inventory(Err(e.reason))),
            OrderInbox::ProductUpdated(update) => {
                apply_product(tx, &update).await?;
                return Ok(Outcome::Applied);
            }
            OrderInbox::PaymentRefunded(e) => {
                record_compensation(tx, envelope, e.order_id).await?;
                return Ok(Outcome::Applied);
            }
            OrderInbox::InventoryReleased(e) => {
                record_compensation(tx, envelope, e.order_id).await?;
                return Ok(Outcome::Applied);
            }
        };
        apply_reply(tx, envelope, order_id, reply).await?;
        Ok(Outcome::Applied)
    }
}

/// Keeps the local catalog: a stale revision is discarded.
async fn apply_product(tx: &mut PgConnection, update: &ProductUpdated) -> Result<(), HandlerError> {
    if !catalog::apply(tx, update).await? {
        tracing::debug!(sku = %update.sku, revision = update.revision, "stale product revision discarded");
    }
    Ok(())
}

/// Applies a participant's reply to the order's saga, under the order's
/// lock, and announces what it decides.
async fn apply_reply(
    tx: &mut PgConnection,
    envelope: &Envelope,
    order_id: OrderId,
    reply: Reply,
) -> Result<(), HandlerError> {
    let Some(mut order) = store::lock(tx, order_id).await? else {
        // Replies are caused by OrderCreated, which commits with the order:
        // a reply for an unknown order is not something retrying can fix.
        return Err(HandlerError::Permanent(format!("no order {order_id}")));
    };
    let transition = order.saga.apply(reply);
    tracing::info!(%order_id, ?transition, "reply applied");
    if transition == Transition::Duplicate {
        return Ok(());
    }
    store::save(tx, order_id, &order.saga).await?;
    // Late replies too: they change a leg even when they decide nothing.
    timeline::record(tx, order_id, envelope).await?;
    announce(tx, order_id, order, transition, Cause::Event(envelope)).await
}

/// Emits what a decision says (OrderConfirmed or OrderCancelled) and puts it
/// in the order's timeline; nothing for a transition that decides nothing.
/// `order` is the locked order with its saga already saved.
pub(crate) async fn announce(
    tx: &mut PgConnection,
    order_id: OrderId,
    order: Locked,
    transition: Transition,
    cause: Cause<'_>,
) -> Result<(), HandlerError> {
    match transition {
        Transition::Confirmed => {
            let event = OrderConfirmed {
                order_id,
                customer_id: order.customer_id,
                customer_email: order.customer_email,
                total: order.total,
            };
            let emitted = OUTBOX.emit_envelope(tx, &event, cause).await?;
            timeline::record(tx, order_id, &emitted).await?;
            crate::metrics::record_completion(tx, order_id, "CONFIRMED").await?;
        }
        Transition::Cancelled(reason) => {
            let event = OrderCancelled {
                order_id,
                customer_id: order.customer_id,
                customer_email: order.customer_email,
                reason,
            };
            let emitted = OUTBOX.emit_envelope(tx, &event, cause).await?;
            timeline::record(tx, order_id, &emitted).await?;
            crate::metrics::record_completion(tx, order_id, "CANCELLED").await?;
        }
        Transition::Duplicate | Transition::Recorded | Transition::Late => {}
    }
    Ok(())
}

/// A refund or a release of a cancelled order: recorded in its timeline
/// (under the order's lock, so the timeline keeps the order things happened in).
async fn record_compensation(
    tx: &mut PgConnection,
    envelope: &Envelope,
    order_id: OrderId,
) -> Result<(), HandlerError> {
    if store::lock(tx, order_id).await?.is_none() {
        return Err(HandlerError::Permanent(format!("no order {order_id}")));
    }
    timeline::record(tx, order_id, envelope).await?;
    Ok(())
}
