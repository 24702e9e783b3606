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
    // Late replies too: they change a leg even when they decide nothing.
    conclude(
        tx,
        order_id,
        order,
        transition,
        Some(envelope),
        Cause::Event(envelope),
    )
    .await
}

/// Saves a locked `order` whose saga made `transition`, with its timeline:
/// the reply that moved it (`applied`; none when the deadline did) and
/// what the transition announces, OrderConfirmed or OrderCancelled, which
/// goes to the outbox too. Two statements: the saga with its timeline
/// entries, and the outbox row (none for a transition that decides nothing).
pub(crate) async fn conclude(
    tx: &mut PgConnection,
    order_id: OrderId,
    order: Locked,
    transition: Transition,
    applied: Option<&Envelope>,
    cause: Cause<'_>,
) -> Result<(), HandlerError> {
    let Locked {
        saga,
        customer_id,
        customer_email,
        total,
        age_secs,
    } = order;
    let announced = match transition {
        Transition::Confirmed => {
            let event = OrderConfirmed {
                order_id,
                customer_id,
                customer_email,
                total,
            };
            Some((OUTBOX.prepare(&event, cause)?, "CONFIRMED"))
        }
        Transition::Cancelled(reason) => {
            let event = OrderCancelled {
                order_id,
                customer_id,
                customer_email,
                reason,
            };
            Some((OUTBOX.prepare(&event, cause)?, "CANCELLED"))
        }
        Transition::Duplicate | Transition::Recorded | Transition::Late => None,
    };
    let entries: Vec<&Envelope> = applied
        .into_iter()
        .chain(announced.as_ref().map(|(event, _)| event.envelope()))
        .collect();
    store::save(tx, order_id, &saga, &entries).await?;
    if let Some((event, status)) = announced {
        OUTBOX.emit_all(tx, std::slice::from_ref(&event)).await?;
        crate::metrics::record_completion(age_secs, status);
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
