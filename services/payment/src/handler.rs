//! Reacts to orders: charges a new order once, refunds a cancelled one, and
//! leaves a tombstone when the cancellation overtakes the order.
//!
//! Every reaction claims or locks the order's one `payments` row first, so
//! duplicates, redeliveries and a cancellation racing its order (on one
//! replica or several) all end with at most one charge and one refund.

use crate::SERVICE;
use crate::payment::{self, NewPayment, Status};
use crate::provider::{self, Charge};
use checkout_events::{
    Currency, Envelope, Money, OrderCancelled, PaymentCaptured, PaymentFailed, PaymentRefunded,
    PaymentRequested,
};
use checkout_messaging::{Cause, Handler, HandlerError, Outbox, Outcome};
use checkout_runtime::Faults;
use sqlx::PgConnection;
use tracing::instrument;
use uuid::Uuid;

const OUTBOX: Outbox = Outbox::new(SERVICE.binary);

/// The Payment service's consumer handler: what the consumer runs for every
/// delivery, public so tests can apply events without a broker. Its
/// provider answers through the `decline` fault switch of `faults` (the
/// default board has none).
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
        if envelope.is::<PaymentRequested>() {
            let event: PaymentRequested = envelope.decode()?;
            charge(tx, envelope, &event, &self.faults).await?;
        } else if envelope.is::<OrderCancelled>() {
            let event: OrderCancelled = envelope.decode()?;
            refund(tx, envelope, &event).await?;
        } else {
            return Ok(Outcome::Ignored);
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
    let claimed = payment::claim(
        tx,
        &NewPayment {
            id: payment_id,
            order_id: event.order_id,
            status,
            amount: event.amount.amount,
            currency: event.amount.currency.as_str(),
            reason,
        },
    )
    .await?;
    if !claimed {
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
    let payment = match payment::lock(tx, order_id).await? {
        Some(payment) => payment,
        None => {
            if payment::claim(tx, &NewPayment::tombstone(order_id, &event.reason)).await? {
                tracing::info!("cancelled before it was charged; tombstone recorded");
                return Ok(());
            }
            // The PaymentRequested committed between the look and the claim; its
            // row is visible now, so treat it like any other.
            payment::lock(tx, order_id).await?.ok_or_else(|| {
                HandlerError::Transient(
                    format!("the payment of order {order_id} conflicted but cannot be read").into(),
                )
            })?
        }
    };

    match payment.status {
        Status::Captured => {
            let currency = Currency::parse(payment.currency.as_str()).map_err(|e| {
                HandlerError::Permanent(format!("payment of order {order_id}: {e}"))
            })?;
            let amount = Money::new(payment.amount, currency);
            payment::set_status(tx, order_id, Status::Refunded, &event.reason).await?;
            tracing::info!(payment_id = %payment.id, %amount, "payment refunded");
            let refunded = PaymentRefunded {
                order_id,
                payment_id: payment.id,
                amount,
            };
            OUTBOX.emit(tx, &refunded, Cause::Event(envelope)).await?;
        }
        Status::Declined | Status::Refunded | Status::Voided => {
            tracing::info!(
                status = payment.status.as_str(),
                "nothing was taken or it was already given back; nothing to refund"
            );
        }
    }
    Ok(())
}
