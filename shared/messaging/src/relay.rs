//! The relay: moves committed outbox rows to the broker.
//!
//! One batch is one database transaction: claim up to `batch_size` *due*
//! unpublished rows in id order with `FOR UPDATE SKIP LOCKED` (so several
//! replicas share the outbox without publishing a row twice at once),
//! publish them all, await the broker's confirms together, then mark as
//! published exactly the rows the broker confirmed, and record each refusal
//! on its own row, in that same transaction. A row without a confirm stays
//! unpublished and is tried again; a crash between the confirm and the
//! commit republishes, which the consumers' inbox absorbs.
//!
//! # A refused row holds up nothing
//! The broker refuses one message by nacking it (a queue it routes to will
//! not take it: full with `x-overflow: reject-publish`, or without a
//! majority) or by returning it (mandatory and unroutable). That is the
//! row's problem, not the relay's: the row gets another attempt counted,
//! the broker's answer as its `last_error`, and a `next_attempt_at` after a
//! backoff of its own (1 s doubling to 5 min by default); the rest of the
//! batch is published and the relay carries on at once. The claim skips
//! rows that are not due, so the rows behind a refused one go out in the
//! next batches instead of waiting behind it. After `max_attempts` refusals
//! (20 by default: about an hour, so a broker-wide refusal such as a quorum
//! queue without a majority is ridden out) the row is *parked*: never
//! claimed again until an operator unparks it
//! ([`crate::outbox::unpark`]); `/metrics` counts parked rows. A refused
//! row is thus published after rows written later than it: no consumer
//! relies on the order of publication (without refusals, one relay
//! publishes in id order).
//!
//! # What holds up the whole relay
//! A failure that is not about one row: the database, the channel or the
//! connection (this includes a publish the broker answers by closing the
//! channel, such as a missing exchange, or a routing key the service's
//! broker user may not write to: lapin cannot tell which message it was),
//! or a batch whose confirms did not all come within `confirm_timeout`.
//! Rows without a confirm stay unpublished with no attempt counted; the
//! channel is dropped (and so closed) and a new one opened; the relay backs
//! off, 100 ms doubling to 5 s.
//!
//! # Waking up
//! The relay wakes when a writer in its own process calls [`wake_relays`]
//! after committing, on `NOTIFY` (for rows written from outside the
//! process, and [`crate::outbox::unpark`]), when a row it refused is due
//! again, and also polls, so an idle system publishes at once and a lost
//! wake-up strands nothing. Replicas sharing an outbox each wake on their
//! own writes; the poll covers any other row.
//!
//! The writers do not `NOTIFY` from their transactions: PostgreSQL
//! serialises every notifying commit in the cluster on one lock held through
//! the WAL flush, which capped the whole checkout at about 230 orders/s on
//! two cores (see the README's Performance section).
//!
//! # Shutdown and housekeeping
//! The batch under way when shutdown comes is finished within
//! `shutdown_timeout`, and abandoned after that: its transaction rolls
//! back, so its rows stay unpublished (whatever reached the broker is
//! published again after the restart, and absorbed by the inboxes). When
//! idle, the relay prunes the messaging tables every ten minutes
//! ([`crate::retention`]).

use crate::metrics::{MESSAGES_PUBLISHED, OUTBOX_REFUSALS};
use crate::outbox::NOTIFY_CHANNEL;
use crate::retention::{self, PRUNE_EVERY, Retention};
use checkout_telemetry::propagation::{adopt_parent, context_from_map, inject_amqp};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use lapin::{Confirmation, PublisherConfirm};
use sqlx::postgres::PgListener;
use sqlx::types::Json;
use sqlx::{FromRow, PgPool};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};
use uuid::Uuid;

/// Why a batch was not (fully) published. A row the broker refused is not
/// one of these: it is recorded on the row (see the module docs).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading or marking outbox rows failed.
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The channel or connection failed.
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    /// The broker did not confirm (or refuse) every message of the batch in
    /// time; those rows stay unpublished, with no attempt counted.
    #[error("the broker did not answer for {unconfirmed} of {claimed} messages within {timeout:?}")]
    ConfirmTimeout {
        /// Rows of the batch left without a confirm (unsent ones included).
        unconfirmed: usize,
        /// How many rows the batch claimed.
        claimed: usize,
        /// The relay's confirm timeout.
        timeout: Duration,
    },
    /// Opening a channel in confirm mode took longer than the confirm timeout.
    #[error("the broker did not open a channel within {0:?}")]
    ChannelTimeout(Duration),
    /// The channel passed to [`Relay::publish_batch`] was not put in
    /// confirm mode, so the broker confirmed nothing.
    #[error("the channel is not in confirm mode")]
    NotConfirming,
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
    /// Refusals so far.
    attempts: i32,
}

/// What one batch did, for the relay's loop.
#[derive(Debug, Default)]
struct Batch {
    /// Rows claimed: a full batch means more may be waiting.
    claimed: usize,
    /// Rows confirmed and marked published.
    published: usize,
    /// The shortest backoff given to a refused row that was not parked:
    /// when to look again even if nothing else wakes the relay.
    retry_in: Option<Duration>,
}

/// The refusals of one batch, as the columns of one `UPDATE … FROM unnest`.
#[derive(Debug, Default)]
struct Refusals {
    ids: Vec<i64>,
    errors: Vec<String>,
    delays_secs: Vec<f64>,
    park: Vec<bool>,
}

/// Claims due rows in id order. `next_attempt_at` is the second column of
/// the partial index `outbox_claimable`, so rows waiting out a backoff are
/// skipped inside the index, and parked rows are not in it.
const CLAIM: &str = "SELECT id, event_id, event_type, routing_key, envelope::text AS envelope, \
                            trace_context, attempts \
                     FROM outbox \
                     WHERE published_at IS NULL AND parked_at IS NULL AND next_attempt_at <= now() \
                     ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED";

/// Publishes a service's outbox; see the module docs for the guarantees.
#[derive(Debug, Clone)]
pub struct Relay {
    pool: PgPool,
    exchange: String,
    batch_size: i64,
    poll_interval: Duration,
    retention: Retention,
    max_attempts: u32,
    first_refusal_backoff: Duration,
    max_refusal_backoff: Duration,
    confirm_timeout: Duration,
    shutdown_timeout: Duration,
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

/// Refusals after which a row is parked, by default.
const DEFAULT_MAX_ATTEMPTS: u32 = 20;
/// A refused row's first wait, by default…
const DEFAULT_FIRST_REFUSAL_BACKOFF: Duration = Duration::from_secs(1);
/// …doubling up to this.
const DEFAULT_MAX_REFUSAL_BACKOFF: Duration = Duration::from_secs(300);

/// The longest wait the relay schedules, whatever the builder was given:
/// keeps `Instant` arithmetic and PostgreSQL's intervals far from overflow.
const LONGEST_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The relay's backoff after a failed batch (not a refused row) starts here…
const FIRST_BATCH_BACKOFF: Duration = Duration::from_millis(100);
/// …and doubles up to this.
const MAX_BATCH_BACKOFF: Duration = Duration::from_secs(5);

impl Relay {
    /// A relay publishing `pool`'s outbox to `exchange`, with batches of
    /// 256, a 1 s poll, refused rows retried after 1 s doubling to 5 min
    /// and parked after 20 attempts, confirms awaited 30 s, 10 s to finish
    /// a batch at shutdown, published outbox rows kept 7 days and inbox
    /// rows 14 days.
    pub fn new(pool: PgPool, exchange: impl Into<String>) -> Self {
        Self {
            pool,
            exchange: exchange.into(),
            batch_size: 256,
            poll_interval: Duration::from_secs(1),
            retention: Retention::default(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            first_refusal_backoff: DEFAULT_FIRST_REFUSAL_BACKOFF,
            max_refusal_backoff: DEFAULT_MAX_REFUSAL_BACKOFF,
            confirm_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(10),
        }
    }

    /// How many rows one batch claims at most.
    pub fn with_batch_size(mut self, batch_size: u16) -> Self {
        self.batch_size = i64::from(batch_size.max(1));
        self
    }

    /// How long the relay sleeps without a notification before it looks anyway.
    pub fn with_poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval.min(LONGEST_WAIT);
        self
    }

    /// How long published outbox rows are kept before they are pruned.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention.outbox = retention;
        self
    }

    /// How long inbox rows (`processed_events`) are kept before they are
    /// pruned; see [`Retention::inbox`] for why it must outlast every way a
    /// duplicate can arrive.
    pub fn with_inbox_retention(mut self, retention: Duration) -> Self {
        self.retention.inbox = retention;
        self
    }

    /// After how many refusals a row is parked (at least 1). With the
    /// default backoff, 20 attempts span about an hour.
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// How long a refused row waits before its next attempt: `first` after
    /// the first refusal, doubled after each further one, never more than
    /// `max`.
    pub fn with_refusal_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_refusal_backoff = first.min(LONGEST_WAIT);
        self.max_refusal_backoff = max.max(first).min(LONGEST_WAIT);
        self
    }

    /// How long a batch waits for the broker's confirms (from its first
    /// publish), and for a new channel. On expiry the unconfirmed rows stay
    /// unpublished, and the channel is dropped and a new one opened: a
    /// broker that has stopped answering on a channel must not hold the
    /// relay for ever (the connection's heartbeat only notices a dead
    /// connection, not a stuck channel).
    pub fn with_confirm_timeout(mut self, confirm_timeout: Duration) -> Self {
        self.confirm_timeout = confirm_timeout.min(LONGEST_WAIT);
        self
    }

    /// How long the batch under way when shutdown comes may take to
    /// finish (closing the channel included); after that it is abandoned
    /// and its rows stay unpublished, which is safe.
    pub fn with_shutdown_timeout(mut self, shutdown_timeout: Duration) -> Self {
        self.shutdown_timeout = shutdown_timeout.min(LONGEST_WAIT);
        self
    }

    /// Publishes until `shutdown` is cancelled (`Ok`) or the broker
    /// connection is lost (`Err`, so a supervisor can reconnect). Other
    /// failures are logged and retried with capped backoff on a fresh
    /// channel; the batch under way when shutdown comes is finished within
    /// the shutdown timeout.
    pub async fn run(
        self,
        connection: Arc<Connection>,
        shutdown: CancellationToken,
    ) -> Result<(), lapin::Error> {
        let mut listener = self.listen().await;
        let mut channel: Option<Channel> = None;
        let mut backoff = FIRST_BATCH_BACKOFF;
        let mut last_prune: Option<Instant> = None;
        // When the earliest row this relay refused is due again. Rows that
        // other replicas refused are found by the poll.
        let mut next_retry: Option<Instant> = None;
        // Set when shutdown comes mid-batch: everything left must be done by then.
        let mut stop_by: Option<Instant> = None;
        let mut outcome = Ok(());

        while !shutdown.is_cancelled() {
            // Registered before the batch's claim, so a commit during the
            // batch (whose row the claim may have missed) still wakes us.
            let woken = WAKE.notified();
            let attempt = async {
                let ch = self.confirm_channel(&connection, &mut channel).await?;
                self.batch(ch).await
            };
            let Some(result) =
                finish_within(attempt, &shutdown, self.shutdown_timeout, &mut stop_by).await
            else {
                tracing::warn!(
                    timeout = ?self.shutdown_timeout,
                    "outbox relay: the batch under way at shutdown did not finish in time; \
                     abandoned, its rows stay unpublished"
                );
                // Dropping the channel closes it without waiting for the broker.
                channel = None;
                break;
            };
            match result {
                Ok(batch) => {
                    backoff = FIRST_BATCH_BACKOFF;
                    if let Some(delay) = batch.retry_in {
                        let at = Instant::now() + delay;
                        next_retry = Some(next_retry.map_or(at, |t| t.min(at)));
                    }
                    // A full batch: there may be more behind it.
                    if batch.claimed as i64 == self.batch_size {
                        continue;
                    }
                    if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                        tokio::select! {
                            _ = shutdown.cancelled() => {}
                            _ = retention::prune_and_log(&self.pool, self.retention) => {}
                        }
                        last_prune = Some(Instant::now());
                    }
                    let poll_at = Instant::now() + self.poll_interval;
                    let until = next_retry.map_or(poll_at, |t| t.min(poll_at));
                    self.wait_for_work(&mut listener, woken, &shutdown, until)
                        .await;
                    if next_retry.is_some_and(|t| t <= Instant::now()) {
                        next_retry = None;
                    }
                }
                Err(RelayError::Broker(error)) if !connection.status().connected() => {
                    tracing::warn!(%error, "outbox relay: broker connection lost");
                    channel = None;
                    outcome = Err(error);
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "outbox relay: batch failed");
                    // A fresh channel after any failure: the old one may be
                    // closed, stuck, or still owe confirms for this batch.
                    channel = None;
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BATCH_BACKOFF);
                }
            }
        }
        if let Some(channel) = channel {
            let by = stop_by.unwrap_or_else(|| Instant::now() + self.shutdown_timeout);
            let closed = channel.close(200, ShortString::from("relay stopped"));
            if tokio::time::timeout_at(by, closed).await.is_err() {
                tracing::warn!("outbox relay: the broker did not confirm closing the channel");
            }
        }
        tracing::info!("outbox relay stopped");
        outcome
    }

    /// Claims, publishes and marks one batch on `channel`, which must be in
    /// confirm mode, and returns how many rows were published. A row the
    /// broker refuses is not an error: its refusal is recorded on it in the
    /// same transaction (see the module docs) and it is not counted.
    pub async fn publish_batch(&self, channel: &Channel) -> Result<usize, RelayError> {
        self.batch(channel).await.map(|batch| batch.published)
    }

    async fn batch(&self, channel: &Channel) -> Result<Batch, RelayError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<PendingRow> = sqlx::query_as(CLAIM)
            .bind(self.batch_size)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            return Ok(Batch::default());
        }
        let claimed = rows.len();
        let deadline = Instant::now() + self.confirm_timeout;

        // Send everything first, then await the confirms together: one
        // round trip per batch instead of one per message.
        let mut in_flight = Vec::with_capacity(claimed);
        let mut failure: Option<RelayError> = None;
        let mut timed_out = false;
        for row in &rows {
            let span = producer_span(&self.exchange, row);
            let send = self.send(channel, row, &span).instrument(span.clone());
            match tokio::time::timeout_at(deadline, send).await {
                Ok(Ok(confirm)) => in_flight.push((row, confirm, span)),
                Ok(Err(error)) => {
                    failure = Some(error.into());
                    break;
                }
                Err(_) => {
                    timed_out = true;
                    break;
                }
            }
        }

        let mut published = Vec::with_capacity(in_flight.len());
        let mut refusals = Refusals::default();
        let mut retry_in: Option<Duration> = None;
        for (row, confirm, span) in in_flight {
            // Past the deadline this still takes a confirm that has come
            // (the future is polled before the deadline is checked).
            let confirmation = match tokio::time::timeout_at(deadline, confirm).await {
                Ok(Ok(confirmation)) => confirmation,
                Ok(Err(error)) => {
                    failure.get_or_insert(error.into());
                    continue;
                }
                Err(_) => {
                    timed_out = true;
                    continue;
                }
            };
            let reason = match confirmation {
                Confirmation::Ack(None) => {
                    published.push(row.id);
                    metrics::counter!(MESSAGES_PUBLISHED, "event_type" => row.event_type.clone())
                        .increment(1);
                    continue;
                }
                Confirmation::Ack(Some(returned)) => format!(
                    "returned as unroutable: {} {}",
                    returned.reply_code,
                    returned.reply_text.as_str()
                ),
                Confirmation::Nack(_) => "nacked by the broker: a queue it routes to refused it \
                                          (full with reject-publish, or unavailable)"
                    .to_owned(),
                Confirmation::NotRequested => {
                    failure.get_or_insert(RelayError::NotConfirming);
                    continue;
                }
            };
            let attempts = u32::try_from(row.attempts).unwrap_or(0).saturating_add(1);
            let park = attempts >= self.max_attempts;
            let delay = refusal_backoff(
                self.first_refusal_backoff,
                self.max_refusal_backoff,
                attempts,
            );
            span.in_scope(|| {
                if park {
                    tracing::error!(
                        attempts,
                        %reason,
                        "the broker refused an outbox row on its last attempt: parked until \
                         an operator unparks it"
                    );
                } else {
                    tracing::warn!(attempts, retry_in = ?delay, %reason, "the broker refused an outbox row");
                }
            });
            let outcome = if park { "parked" } else { "retry" };
            metrics::counter!(OUTBOX_REFUSALS, "event_type" => row.event_type.clone(), "outcome" => outcome)
                .increment(1);
            if !park {
                retry_in = Some(retry_in.map_or(delay, |d| d.min(delay)));
            }
            refusals.ids.push(row.id);
            refusals.errors.push(reason);
            refusals.delays_secs.push(delay.as_secs_f64());
            refusals.park.push(park);
        }

        if !published.is_empty() {
            // A published row keeps no secret (Event::SECRET_FIELDS): the
            // broker has the event, and the outbox copy is kept for days.
            sqlx::query(
                "UPDATE outbox SET published_at = now(), \
                     envelope = CASE WHEN secret_fields IS NULL THEN envelope \
                         ELSE jsonb_set(envelope, '{data}', (envelope -> 'data') - secret_fields) END \
                 WHERE id = ANY($1)",
            )
                .bind(&published)
                .execute(&mut *tx)
                .await?;
        }
        if !refusals.ids.is_empty() {
            sqlx::query(
                "UPDATE outbox AS o SET attempts = o.attempts + 1, last_error = r.error, \
                        next_attempt_at = now() + make_interval(secs => r.delay), \
                        parked_at = CASE WHEN r.park THEN now() END \
                 FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::bool[]) \
                      AS r(id, error, delay, park) \
                 WHERE o.id = r.id",
            )
            .bind(&refusals.ids)
            .bind(&refusals.errors)
            .bind(&refusals.delays_secs)
            .bind(&refusals.park)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;

        if let Some(error) = failure {
            return Err(error);
        }
        if timed_out {
            return Err(RelayError::ConfirmTimeout {
                unconfirmed: claimed - published.len() - refusals.ids.len(),
                claimed,
                timeout: self.confirm_timeout,
            });
        }
        Ok(Batch {
            claimed,
            published: published.len(),
            retry_in,
        })
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
    ) -> Result<&'c Channel, RelayError> {
        if let Some(ch) = channel.as_ref()
            && !ch.status().connected()
        {
            *channel = None;
        }
        if channel.is_none() {
            let open = async {
                let ch = connection.create_channel().await?;
                ch.confirm_select(ConfirmSelectOptions::default()).await?;
                Ok::<_, lapin::Error>(ch)
            };
            let ch = tokio::time::timeout(self.confirm_timeout, open)
                .await
                .map_err(|_| RelayError::ChannelTimeout(self.confirm_timeout))??;
            *channel = Some(ch);
        }
        channel.as_ref().ok_or_else(|| {
            lapin::Error::from(std::io::Error::other("relay channel unavailable")).into()
        })
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
        until: Instant,
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
            _ = tokio::time::sleep_until(until) => {}
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

/// The wait after a row's `attempts`-th refusal: `first`, doubled for each
/// further refusal, never more than `max`.
fn refusal_backoff(first: Duration, max: Duration, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(31);
    first.saturating_mul(1u32 << doublings).min(max)
}

/// Runs `work` to its end, unless shutdown comes first: then it has until
/// `grace` after the shutdown (`stop_by`, shared with what follows) to
/// finish, and is dropped (`None`) after that.
async fn finish_within<F: Future>(
    work: F,
    shutdown: &CancellationToken,
    grace: Duration,
    stop_by: &mut Option<Instant>,
) -> Option<F::Output> {
    tokio::pin!(work);
    tokio::select! {
        done = &mut work => Some(done),
        _ = shutdown.cancelled() => {
            let by = *stop_by.get_or_insert_with(|| Instant::now() + grace);
            tokio::time::timeout_at(by, work).await.ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_row_waits_twice_as_long_after_each_refusal_up_to_the_cap() {
        let first = Duration::from_secs(1);
        let max = Duration::from_secs(300);
        let waits: Vec<u64> = (1..=11)
            .map(|attempts| refusal_backoff(first, max, attempts).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(refusal_backoff(first, max, u32::MAX), max, "no overflow");
        assert_eq!(refusal_backoff(first, max, 0), first);
    }

    #[test]
    fn by_default_a_row_is_parked_about_an_hour_after_its_first_refusal() {
        // The waits between the first attempt and the last.
        let span: Duration = (1..DEFAULT_MAX_ATTEMPTS)
            .map(|attempts| {
                refusal_backoff(
                    DEFAULT_FIRST_REFUSAL_BACKOFF,
                    DEFAULT_MAX_REFUSAL_BACKOFF,
                    attempts,
                )
            })
            .sum();
        assert_eq!(span, Duration::from_secs(511 + 10 * 300), "58.5 minutes");
    }
}
