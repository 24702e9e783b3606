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
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{FromRow, PgConnection, PgPool, Postgres};
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

/// The statement that appends entries to the timeline of order `$1`: the
/// events bound as `$2` (ids), `$3` (types), `$4` (sources) and `$5`
/// (times) by [`bind`], all with the trace id `$6`. An entry already there
/// is skipped, so recording one event twice changes nothing. A macro, not
/// a `const`, so that `concat!` can make it the tail of a statement that
/// changes the order too: the change and its entries are one round trip.
macro_rules! append {
    () => {
        "INSERT INTO order_events \
             (order_id, event_id, event_type, source, occurred_at, trace_id) \
         SELECT $1, e.*, $6 \
         FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::timestamptz[]) AS e \
         ON CONFLICT (event_id) DO NOTHING"
    };
}
pub(crate) use append;

/// Binds `order_id` and `entries` as `$1` to `$6` of [`append!`], in the
/// order given: the timeline shows them in that order.
pub(crate) fn bind<'q>(
    query: Query<'q, Postgres, PgArguments>,
    order_id: OrderId,
    entries: &[&Envelope],
) -> Query<'q, Postgres, PgArguments> {
    let ids: Vec<uuid::Uuid> = entries.iter().map(|e| e.id).collect();
    let types: Vec<String> = entries.iter().map(|e| e.event_type.clone()).collect();
    let sources: Vec<String> = entries.iter().map(|e| e.source.clone()).collect();
    let times: Vec<DateTime<Utc>> = entries.iter().map(|e| e.occurred_at).collect();
    query
        .bind(order_id.as_uuid())
        .bind(ids)
        .bind(types)
        .bind(sources)
        .bind(times)
        .bind(current_trace_id())
}

/// Records `envelope` as having moved `order_id`. Recording one event
/// twice changes nothing.
pub(crate) async fn record(
    tx: &mut PgConnection,
    order_id: OrderId,
    envelope: &Envelope,
) -> Result<(), sqlx::Error> {
    bind(sqlx::query(append!()), order_id, &[envelope])
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
