//! Reacts to the end of an order: records its one notification, in the
//! consumer's transaction. Sending it is the [sender](crate::sender)'s job.

use crate::notification::Notification;
use crate::sender::NOTIFY_CHANNEL;
use checkout_events::{Envelope, OrderCancelled, OrderConfirmed};
use checkout_messaging::{Handler, HandlerError, Outcome};
use checkout_telemetry::propagation::span_context_map;
use sqlx::PgConnection;
use sqlx::types::Json;
use tracing::Span;
use uuid::Uuid;

/// The Email service's consumer handler.
#[derive(Debug, Clone, Copy)]
pub struct Notifier;

impl Handler for Notifier {
    async fn handle(
        &self,
        envelope: &Envelope,
        tx: &mut PgConnection,
    ) -> Result<Outcome, HandlerError> {
        let notification = if envelope.is::<OrderConfirmed>() {
            let event: OrderConfirmed = envelope.decode()?;
            (event.order_id, Notification::confirmed(&event))
        } else if envelope.is::<OrderCancelled>() {
            let event: OrderCancelled = envelope.decode()?;
            (event.order_id, Notification::cancelled(&event))
        } else {
            return Ok(Outcome::Ignored);
        };
        let (order_id, mail) = notification;
        let inserted = sqlx::query(
            "INSERT INTO notifications \
             (id, order_id, kind, recipient, subject, body, event_id, trace_context) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (order_id, kind) DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(order_id.as_uuid())
        .bind(mail.kind.as_str())
        .bind(&mail.recipient)
        .bind(&mail.subject)
        .bind(&mail.body)
        .bind(envelope.id)
        .bind(Json(span_context_map(&Span::current())))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 1 {
            // Wakes the sender at commit; a lost one waits for its poll.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(NOTIFY_CHANNEL)
                .execute(&mut *tx)
                .await?;
            tracing::info!(%order_id, kind = mail.kind.as_str(), recipient = %mail.recipient, "notification recorded");
        }
        Ok(Outcome::Applied)
    }
}
