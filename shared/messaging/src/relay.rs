//! The relay: moves committed outbox rows to the broker.
//!
//! One batch is one database transaction: claim up to `batch_size`
//! unpublished rows in id order with `FOR UPDATE SKIP LOCKED` (so several
//! replicas share the outbox without publishing a row twice at once),
//! publish them all, await the broker's confirms together, then mark as
//! published exactly the rows the broker confirmed. A row the broker did
//! not confirm stays unpublished and is tried again; a crash between the
//! confirm and the commit republishes, which the consumers' inbox absorbs.
//!
//! The relay wakes when a writer in its own process calls [`wake_relays`]
//! after committing, on `NOTIFY` (for rows written from outside the
//! process), and also polls, so an idle system publishes at once and a lost
//! wake-up strands nothing. Replicas sharing an outbox each wake on their
//! own writes; the poll covers any other row.
//!
//! The writers do not `NOTIFY` from their transactions: PostgreSQL
//! serialises every notifying commit in the cluster on one lock held through
//! the WAL flush, which capped the whole checkout at about 230 orders/s on
//! two cores (see the README's Performance section).

use crate::metrics::MESSAGES_PUBLISHED;
use crate::outbox::NOTIFY_CHANNEL;
use checkout_telemetry::propagation::{adopt_parent, context_from_map, inject_amqp};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use lapin::{Confirmation, PublisherConfirm};
use sqlx::postgres::PgListener;
use sqlx::types::Json;
use sqlx::{FromRow, PgPool};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};
use uuid::Uuid;

/// Why a batch was not (fully) published.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading or marking outbox rows failed.
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The channel or connection failed.
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    /// The broker answered but did not take some rows.
    #[error("the broker refused {refused} of {claimed} messages: {reason}")]
    Refused {
        /// How many rows of the batch stay unpublished.
        refused: usize,
        /// How many rows the batch claimed.
        claimed: usize,
        /// The first refusal's reason.
        reason: String,
    },
}

#[derive(Debug, FromRow)]
struct PendingRow {
    id: i64,
    event_id: Uuid,
    event_type: String,
    routing_key: String,
    /// The envelope as PostgreSQL renders the jsonb: published as it is,
    /// rather than parsed into a `serde_json::Value` and serialised again.
    envelope: String,
    trace_context: Json<HashMap<String, String>>,
}

/// Publishes a service's outbox; see the module docs for the guarantees.
#[derive(Debug, Clone)]
pub struct Relay {
    pool: PgPool,
    exchange: String,
    batch_size: i64,
    poll_interval: Duration,
    retention: Duration,
}

/// Wakes the relays of this process. A relay that is mid-batch when it
/// fires still sees it: it starts listening before each batch.
static WAKE: Notify = Notify::const_new();

/// Tells every relay in this process that outbox rows were committed, so it
/// publishes them now instead of at its next poll. Call it after the commit
/// (before, the relay could look too early and go back to sleep); forgetting
/// it costs latency, never a message.
pub fn wake_relays() {
    WAKE.notify_waiters();
}

const PRUNE_EVERY: Duration = Duration::from_secs(600);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Relay {
    /// A relay publishing `pool`'s outbox to `exchange`, with batches of
    /// 256, a 1 s poll and published rows kept for 7 days.
    pub fn new(pool: PgPool, exchange: impl Into<String>) -> Self {
        Self {
            pool,
            exchange: exchange.into(),
            batch_size: 256,
            poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }

    /// How many rows one batch claims at most.
    pub fn with_batch_size(mut self, batch_size: u16) -> Self {
        self.batch_size = i64::from(batch_size.max(1));
        self
    }

    /// How long the relay sleeps without a notification before it looks anyway.
    pub fn with_poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// How long published rows are kept before they are pruned.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Publishes until `shutdown` is cancelled (`Ok`) or the broker
    /// connection is lost (`Err`, so a supervisor can reconnect). Other
    /// failures are logged and retried with capped backoff on a fresh
    /// channel; the batch under way when shutdown comes is finished first.
    pub async fn run(
        self,
        connection: Arc<Connection>,
        shutdown: CancellationToken,
    ) -> Result<(), lapin::Error> {
        let mut listener = self.listen().await;
        let mut channel: Option<Channel> = None;
        let mut backoff = Duration::from_millis(100);
        let mut last_prune: Option<Instant> = None;

        while !shutdown.is_cancelled() {
            // Registered before the batch's claim, so a commit during the
            // batch (whose row the claim may have missed) still wakes us.
            let woken = WAKE.notified();
            let result = match self.confirm_channel(&connection, &mut channel).await {
                Ok(ch) => self.publish_batch(ch).await,
                Err(e) => Err(e.into()),
            };
            match result {
                // A full batch: there may be more behind it.
                Ok(n) if n as i64 == self.batch_size => continue,
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                        self.prune().await;
                        last_prune = Some(Instant::now());
                    }
                    self.wait_for_work(&mut listener, woken, &shutdown).await;
                }
                Err(RelayError::Broker(error)) if !connection.status().connected() => {
                    tracing::warn!(%error, "outbox relay: broker connection lost");
                    return Err(error);
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "outbox relay: batch failed");
                    if matches!(error, RelayError::Broker(_)) {
                        channel = None;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if let Some(channel) = channel {
            let _ = channel.close(200, ShortString::from("relay stopped")).await;
        }
        tracing::info!("outbox relay stopped");
        Ok(())
    }

    /// Claims, publishes and marks one batch on `channel`, which must be in
    /// confirm mode. Returns how many rows were published.
    pub async fn publish_batch(&self, channel: &Channel) -> Result<usize, RelayError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<PendingRow> = sqlx::query_as(
            "SELECT id, event_id, event_type, routing_key, envelope::text AS envelope, trace_context \
             FROM outbox WHERE published_at IS NULL \
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let claimed = rows.len();

        // Send everything first, then await the confirms together: one
        // round trip per batch instead of one per message.
        let mut in_flight = Vec::with_capacity(claimed);
        let mut send_error = None;
        for row in &rows {
            let span = producer_span(&self.exchange, row);
            match self
                .send(channel, row, &span)
                .instrument(span.clone())
                .await
            {
                Ok(confirm) => in_flight.push((row.id, row.event_type.clone(), confirm, span)),
                Err(error) => {
                    send_error = Some(error);
                    break;
                }
            }
        }

        let mut published = Vec::with_capacity(in_flight.len());
        let mut first_refusal = None;
        for (id, event_type, confirm, span) in in_flight {
            let refusal = match confirm.await {
                Ok(Confirmation::Ack(None)) => None,
                Ok(Confirmation::Ack(Some(returned))) => Some(format!(
                    "returned as unroutable: {}",
                    returned.reply_text.as_str()
                )),
                Ok(Confirmation::Nack(_)) => Some("nacked by the broker".to_owned()),
                Ok(Confirmation::NotRequested) => Some("channel not in confirm mode".to_owned()),
                Err(error) => Some(error.to_string()),
            };
            match refusal {
                None => {
                    published.push(id);
                    metrics::counter!(MESSAGES_PUBLISHED, "event_type" => event_type).increment(1);
                }
                Some(reason) => {
                    span.in_scope(|| tracing::warn!(%reason, "publish not confirmed"));
                    first_refusal.get_or_insert(reason);
                }
            }
        }

        if !published.is_empty() {
            sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
                .bind(&published)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;

        if let Some(error) = send_error {
            return Err(error.into());
        }
        match first_refusal {
            Some(reason) => Err(RelayError::Refused {
                refused: claimed - published.len(),
                claimed,
                reason,
            }),
            None => Ok(published.len()),
        }
    }

    async fn send(
        &self,
        channel: &Channel,
        row: &PendingRow,
        span: &Span,
    ) -> Result<PublisherConfirm, lapin::Error> {
        let mut headers = FieldTable::default();
        inject_amqp(span, &mut headers);
        let mut properties = BasicProperties::default()
            .with_message_id(ShortString::from(row.event_id.to_string()))
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(2)
            .with_headers(headers);
        // The schema's CHECKs keep these within AMQP's 255-byte limit.
        if let Ok(kind) = ShortString::try_new(row.event_type.as_str()) {
            properties = properties.with_type(kind);
        }
        let routing_key = ShortString::try_new(row.routing_key.as_str())
            .unwrap_or_else(|_| ShortString::from("invalid.routing-key"));
        channel
            .basic_publish(
                ShortString::from(self.exchange.as_str()),
                routing_key,
                // Mandatory: an unroutable message comes back instead of
                // vanishing (the alternate exchange normally takes it first).
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                row.envelope.as_bytes(),
                properties,
            )
            .await
    }

    async fn confirm_channel<'c>(
        &self,
        connection: &Connection,
        channel: &'c mut Option<Channel>,
    ) -> Result<&'c Channel, lapin::Error> {
        if let Some(ch) = channel.as_ref()
            && !ch.status().connected()
        {
            *channel = None;
        }
        if channel.is_none() {
            let ch = connection.create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            *channel = Some(ch);
        }
        channel
            .as_ref()
            .ok_or_else(|| lapin::Error::from(std::io::Error::other("relay channel unavailable")))
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = match PgListener::connect_with(&self.pool).await {
            Ok(l) => l,
            Err(error) => {
                tracing::warn!(%error, "outbox relay: LISTEN unavailable, polling only");
                return None;
            }
        };
        match listener.listen(NOTIFY_CHANNEL).await {
            Ok(()) => Some(listener),
            Err(error) => {
                tracing::warn!(%error, "outbox relay: LISTEN failed, polling only");
                None
            }
        }
    }

    async fn wait_for_work(
        &self,
        listener: &mut Option<PgListener>,
        woken: Notified<'static>,
        shutdown: &CancellationToken,
    ) {
        let notified = async {
            match listener {
                // recv() reconnects by itself; an error means it could not
                // yet, so fall back to the poll interval.
                Some(l) => {
                    if l.recv().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = notified => {}
            _ = woken => {}
            _ = tokio::time::sleep(self.poll_interval) => {}
        }
    }

    async fn prune(&self) {
        let result = sqlx::query(
            "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)",
        )
        .bind(self.retention.as_secs_f64())
        .execute(&self.pool)
        .await;
        match result {
            Ok(done) if done.rows_affected() > 0 => {
                tracing::info!(rows = done.rows_affected(), "pruned published outbox rows");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "outbox relay: pruning failed"),
        }
    }
}

/// The PRODUCER span of one publish, a child of the span that wrote the row.
fn producer_span(exchange: &str, row: &PendingRow) -> Span {
    let span = tracing::info_span!(
        "publish",
        otel.name = format!("{exchange} publish"),
        otel.kind = "producer",
        messaging.system = "rabbitmq",
        messaging.operation.type = "send",
        messaging.destination.name = exchange,
        messaging.rabbitmq.destination.routing_key = row.routing_key.as_str(),
        messaging.message.id = %row.event_id,
        event.type = row.event_type.as_str(),
        trace_id = tracing::field::Empty,
    );
    adopt_parent(&span, context_from_map(&row.trace_context.0));
    span
}
