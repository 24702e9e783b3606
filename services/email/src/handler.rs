//! The Email service's consumer: reacts to the end of an order by
//! recording its one notification, in the consumer's transaction. Sending
//! it is the [sender](crate::sender)'s job.

use crate::notification::Notification;
use crate::store;
use checkout_events::{EmailInbox, Envelope, Inbox as _};
use checkout_messaging::{Handler, HandlerError, Outcome};
use checkout_telemetry::propagation::span_context_map;
use sqlx::PgConnection;
use tracing::Span;

/// The Email service's consumer handler.
#[derive(Debug, Clone, Copy)]
pub struct Notifier;

impl Handler for Notifier {
    async fn handle(
        &self,
        envelope: &Envelope,
        tx: &mut PgConnection,
    ) -> Result<Outcome, HandlerError> {
        let Some(event) = EmailInbox::decode(envelope)? else {
            return Ok(Outcome::Ignored);
        };
        let (order_id, mail) = match event {
            EmailInbox::OrderConfirmed(event) => (event.order_id, Notification::confirmed(&event)),
            EmailInbox::OrderCancelled(event) => (event.order_id, Notification::cancelled(&event)),
        };
        let trace_context = span_context_map(&Span::current());
        if store::record(tx, order_id, &mail, envelope.id, &trace_context).await? {
            tracing::info!(%order_id, kind = ?mail.kind, recipient = %mail.recipient, "notification recorded");
        }
        Ok(Outcome::Applied)
    }
}
