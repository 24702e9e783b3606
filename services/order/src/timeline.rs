//! The timeline of an order: every event that moved it, in the order it
//! happened — what this service emitted and the replies it applied — so a
//! person reading `GET /orders/{id}` sees the saga without opening logs.
//!
//! Each entry is written in the transaction that emitted or applied its
//! event, so the timeline never shows something that did not commit.

use checkout_events::{Envelope, OrderId};
use checkout_telemetry::propagation::trace_id;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgPool};
use tracing::Span;
use utoipa::ToSchema;

/// One event in an order's timeline.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub(crate) struct Entry {
    /// The event type, e.g. `PaymentCaptured`.
    #[serde(rename = "type")]
    event_type: String,
    /// When it happened (the envelope's `occurred_at`).
    occurred_at: DateTime<Utc>,
    /// The service that emitted it, e.g. `payment-service`.
    source: String,
    /// The envelope id: the event's identity across services.
    event_id: uuid::Uuid,
    /// The trace of the span that emitted or applied it, when traced.
    trace_id: Option<String>,
}

impl Entry {
    /// The event type, e.g. `PaymentRefunded`.
    pub(crate) fn event_type(&self) -> &str {
        &self.event_type
    }
}

/// The current span's trace id, or `None` outside a sampled trace.
pub(crate) fn current_trace_id() -> Option<String> {
    Some(trace_id(&Span::current())).filter(|t| t.bytes().any(|b| b != b'0'))
}

/// Records `envelope` as having moved `order_id`. Recording one event
/// twice changes nothing.
pub(crate) async fn record(
    tx: &mut PgConnection,
    order_id: OrderId,
    envelope: &Envelope,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO order_events (order_id, event_id, event_type, source, occurred_at, trace_id) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(order_id.as_uuid())
    .bind(envelope.id)
    .bind(&envelope.event_type)
    .bind(&envelope.source)
    .bind(envelope.occurred_at)
    .bind(current_trace_id())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The timeline of `order_id`, oldest first.
pub(crate) async fn of(pool: &PgPool, order_id: uuid::Uuid) -> Result<Vec<Entry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT event_type, occurred_at, source, event_id, trace_id FROM order_events \
         WHERE order_id = $1 ORDER BY seq",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await
}
