//! What a service has emitted: its outbox, read back.

use checkout_events::Envelope;
use sqlx::PgPool;

/// The envelopes in `pool`'s outbox, oldest first: what a service has emitted.
pub async fn outbox_envelopes(pool: &PgPool) -> Vec<Envelope> {
    let rows: Vec<sqlx::types::Json<Envelope>> =
        sqlx::query_scalar("SELECT envelope FROM outbox ORDER BY id")
            .fetch_all(pool)
            .await
            .expect("read the outbox");
    rows.into_iter().map(|row| row.0).collect()
}

/// The event types in `pool`'s outbox, oldest first.
pub async fn outbox_event_types(pool: &PgPool) -> Vec<String> {
    outbox_envelopes(pool)
        .await
        .into_iter()
        .map(|envelope| envelope.event_type)
        .collect()
}
