//! The Email service's consumer: reacts to the end of an order by
//! recording its one notification, in the consumer's transaction. Sending
//! it is the [sender](crate::sender)'s job.

use crate::notification::Notification;
use crate::store;
use checkout_events::{EmailInbox, Envelope, Inbox as _};
use checkout_messaging::{Handler, HandlerError, Outcome};
use checkout_telemetry::propagation::span_context_map;
use sqlx::PgConnection;
use std::sync::Arc;
use tokio::sync::Notify;
use tracing::Span;

/// The Email service's consumer handler. Once a delivery's transaction has
/// committed it wakes this process's [sender](crate::sender) through
/// `wake`, in memory: a `pg_notify` inside the transaction would take
/// PostgreSQL's commit-wide notify lock on every delivery, serialising
/// commits (the relay stopped using it for the same reason). Other
/// replicas' senders find the row at their next poll.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    wake: Arc<Notify>,
}

impl Notifier {
    /// A handler that wakes whoever waits on `wake` after each commit.
    pub fn new(wake: Arc<Notify>) -> Self {
        Self { wake }
    }
}

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

    fn committed(&self, _envelope: &Envelope) {
        // One stored permit if the sender is busy: it looks again when done.
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkout_events::OrderId;
    use checkout_events::fixtures::build::order_confirmed;

    #[tokio::test]
    async fn a_commit_wakes_the_sender_even_if_it_is_not_waiting_yet() {
        let wake = Arc::new(Notify::new());
        let event = order_confirmed(OrderId::new(), 9998);
        let envelope =
            Envelope::new(&event, "order-service", event.order_id.as_uuid(), None).expect("json");

        Notifier::new(wake.clone()).committed(&envelope);

        // The permit is stored: a sender that starts waiting later wakes at once.
        tokio::time::timeout(std::time::Duration::from_millis(10), wake.notified())
            .await
            .expect("woken");
    }
}
