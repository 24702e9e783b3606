//! The Payment service's consumer: charges a new order once, refunds a
//! cancelled one, and leaves a tombstone when the cancellation overtakes
//! the order.
//!
//! Every reaction claims or locks the order's one `payments` row first, so
//! duplicates, redeliveries and a cancellation racing its order (on one
//! replica or several) all end with at most one charge and one refund.

use crate::OUTBOX;
use crate::provider::{self, Charge};
use crate::store::{self, NewPayment, Status};
use checkout_events::{
    Envelope, Inbox as _, OrderCancelled, PaymentCaptured, PaymentFailed, PaymentInbox,
    PaymentRefunded, PaymentRequested,
};
use checkout_messaging::claim::lock_or_tombstone;
use checkout_messaging::{Cause, Handler, HandlerError, Outcome};
use checkout_runtime::Faults;
use sqlx::PgConnection;
use tracing::instrument;
use uuid::Uuid;

/// The Payment service's consumer handler: what the consumer runs for every
/// delivery, public so tests can apply events without a broker.
#[derive(Debug, Clone, Default)]
pub struct PaymentHandler {
    faults: Faults,
}

impl PaymentHandler {
    /// A handler whose provider answers through `faults`' `decline` switch.
    pub fn new(faults: Faults) -> Self {
        Self { faults }
    }
}

impl Handler for PaymentHandler {
    async fn handle(
        &self,
        envelope: &Envelope,
        tx: &mut PgConnection,
    ) -> Result<Outcome, HandlerError> {
        let Some(event) = PaymentInbox::decode(envelope)? else {
            return Ok(Outcome::Ignored);
        };
        match event {
            PaymentInbox::PaymentRequested(event) => {
                charge(tx, envelope, &event, &self.faults).await?
            }
            PaymentInbox::OrderCancelled(event) => refund(tx, envelope, &event).await?,
        }
        Ok(Outcome::Applied)
    }
}

/// Charges the order's total unless the order already has a row (a
/// duplicate, or the tombstone of an earlier cancellation).
#[instrument(skip_all, fields(order_id = %event.order_id))]
async fn charge(
    tx: &mut PgConnection,
    envelope: &Envelope,
    event: &PaymentRequested,
    faults: &Faults,
) -> Result<(), HandlerError> {
    // The simulated provider is a pure function, so its answer can go into
    // the very statement that claims the order: a lost claim then costs
    // nothing. (A real provider would be called after the claim, with the
    // payment id as its idempotency key.)
    let outcome = provider::charge_unless_declined(&event.card_token, faults);
    let (status, reason) = match &outcome {
        Charge::Captured => (Status::Captured, None),
        Charge::Declined { reason } => (Status::Declined, Some(reason.as_str())),
    };
    let payment_id = Uuid::now_v7();
    let payment = NewPayment {
        id: payment_id,
        order_id: event.order_id,
        status,
        amount: Some(&event.amount),
        reason,
    };
    if !store::claim(tx, &payment).await? {
        tracing::info!(
            "the order already has a payment (duplicate, or cancelled first); nothing to do"
        );
        return Ok(());
    }

    let cause = Cause::Event(envelope);
    match outcome {
        Charge::Captured => {
            tracing::info!(%payment_id, amount = %event.amount, "payment captured");
            let captured = PaymentCaptured {
                order_id: event.order_id,
                payment_id,
                amount: event.amount.clone(),
            };
            OUTBOX.emit(tx, &captured, cause).await?;
        }
        Charge::Declined { reason } => {
            tracing::info!(%payment_id, %reason, "payment declined");
            let failed = PaymentFailed {
                order_id: event.order_id,
                reason,
            };
            OUTBOX.emit(tx, &failed, cause).await?;
        }
    }
    Ok(())
}

/// Gives back what a cancelled order paid; if its PaymentRequested has not
/// arrived yet, leaves a VOIDED tombstone so that it never charges.
#[instrument(skip_all, fields(order_id = %event.order_id))]
async fn refund(
    tx: &mut PgConnection,
    envelope: &Envelope,
    event: &OrderCancelled,
) -> Result<(), HandlerError> {
    let order_id = event.order_id;
    // Most cancellations find the payment CAPTURED: one statement refunds it.
    let mut refunded = store::refund(tx, order_id, &event.reason).await?;
    if refunded.is_none() {
        // No payment yet (then the tombstone goes in), or nothing taken.
        let locked =
            lock_or_tombstone(tx, (order_id, &event.reason), store::lock, store::tombstone).await?;
        if locked.is_some_and(|payment| payment.status == Status::Captured) {
            // Its PaymentRequested committed since the first look; locked now.
            refunded = store::refund(tx, order_id, &event.reason).await?;
        }
    }
    let Some(refunded) = refunded else {
        tracing::info!("nothing was taken, or it was already given back; nothing to refund");
        return Ok(());
    };
    let amount = refunded.money();
    tracing::info!(payment_id = %refunded.id, %amount, "payment refunded");
    let event = PaymentRefunded {
        order_id,
        payment_id: refunded.id,
        amount,
    };
    OUTBOX.emit(tx, &event, Cause::Event(envelope)).await?;
    Ok(())
}
