//! The consuming side: deliveries in, handler effects and inbox row
//! committed together, ack after commit.
//!
//! For every delivery the consumer
//! 1. decodes the [`Envelope`] — a body that is not one is *poison*: it goes
//!    straight to the dead-letter queue with the decode error;
//! 2. opens a CONSUMER span whose parent is the producer's context from the
//!    message headers, so the handler's work and the events it emits join
//!    the producer's trace;
//! 3. in one transaction inserts `processed_events (event_id, handler)` and
//!    runs the [`Handler`]; a conflict on that insert means the event was
//!    already applied, so it is acked and nothing else happens;
//! 4. acks only after the commit.
//!
//! A transient failure is retried through the service's delay queues (the
//! delivery is acked once a copy with `x-retry-count + 1` is safely in the
//! delay queue), so the messages behind it keep flowing; after the last
//! retry, or on a permanent failure, the message is dead-lettered with the
//! reason in its headers (see [`crate::dead_letter`]).
//!
//! Deliveries are handled concurrently, bounded by the prefetch count, so a
//! slow handler for one order does not hold up the others. Handlers that
//! touch the same row must lock it (`SELECT … FOR UPDATE`).

use crate::dead_letter::{self, Reason, publish_confirmed, set_int, set_str};
use crate::metrics::{
    HANDLER_DURATION, MESSAGE_RETRIES, MESSAGES_CONSUMED, MESSAGES_DEAD_LETTERED,
};
use crate::retry::RetryPolicy;
use crate::topology::Topology;
use checkout_events::{DecodeError, Envelope};
use checkout_telemetry::propagation::{adopt_parent, extract_amqp};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, message::Delivery};
use sqlx::{PgConnection, PgPool};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

/// What a handler did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The event was applied; its effects and inbox row commit together.
    Applied,
    /// The event is of a type this handler does not act on (forward
    /// compatibility); nothing is written.
    Ignored,
}

/// Why a handler failed, which decides what happens to the message.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth trying again later: a lost connection, a deadlock, a
    /// serialization failure, a mail server down. Retried with backoff.
    #[error("transient: {0}")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The payload cannot be read (unknown version, missing field):
    /// dead-lettered at once.
    #[error("poison: {0}")]
    Poison(String),
    /// Will fail the same way every time: dead-lettered at once.
    #[error("rejected: {0}")]
    Permanent(String),
}

impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        if is_transient(&error) {
            HandlerError::Transient(Box::new(error))
        } else {
            HandlerError::Permanent(error.to_string())
        }
    }
}

impl From<DecodeError> for HandlerError {
    fn from(error: DecodeError) -> Self {
        HandlerError::Poison(error.to_string())
    }
}

/// Whether a database error may go away by itself.
fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception, 40: transaction rollback (serialization
            // failure, deadlock), 53: insufficient resources, 57: operator
            // intervention (e.g. admin shutdown, terminated backend).
            ["08", "40", "53", "57"]
                .iter()
                .any(|class| code.starts_with(class))
        }),
        _ => false,
    }
}

/// A service's reaction to the events bound to its queue.
pub trait Handler: Send + Sync + 'static {
    /// Applies `envelope` inside `tx`. Everything written through `tx`
    /// (state, outbox rows) commits together with the inbox row, or not at all.
    fn handle(
        &self,
        envelope: &Envelope,
        tx: &mut PgConnection,
    ) -> impl Future<Output = Result<Outcome, HandlerError>> + Send;
}

/// Consumes one service's queue with one handler.
#[derive(Debug)]
pub struct Consumer<H> {
    pool: PgPool,
    handler: Arc<H>,
    service: String,
    topology: Topology,
    retries: RetryPolicy,
    prefetch: u16,
    drain_timeout: Duration,
}

impl<H> Clone for Consumer<H> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            handler: self.handler.clone(),
            service: self.service.clone(),
            topology: self.topology.clone(),
            retries: self.retries.clone(),
            prefetch: self.prefetch,
            drain_timeout: self.drain_timeout,
        }
    }
}

/// What becomes of a delivery.
#[derive(Debug)]
enum Verdict {
    Ack(&'static str),
    Retry(String),
    DeadLetter(Reason, String),
}

/// The channels one consumer session works with.
struct Session {
    /// Publishes retries and dead letters, in confirm mode.
    publisher: Channel,
}

impl<H: Handler> Consumer<H> {
    /// A consumer of `service`'s queue in `topology`, recording processed
    /// events under the name `service`, with the default retry policy and
    /// prefetch 64.
    pub fn new(pool: PgPool, handler: H, topology: &Topology, service: &str) -> Self {
        Self {
            pool,
            handler: Arc::new(handler),
            service: service.to_owned(),
            topology: topology.clone(),
            retries: RetryPolicy::default(),
            prefetch: 64,
            drain_timeout: Duration::from_secs(10),
        }
    }

    /// How many unacknowledged deliveries (and so concurrent handlers) at most.
    pub fn with_prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// When transient failures are retried; the delay queues must have been
    /// declared for the same policy ([`Topology::declare_retries`]).
    pub fn with_retries(mut self, retries: RetryPolicy) -> Self {
        self.retries = retries;
        self
    }

    /// How long in-flight handlers may take to finish at shutdown.
    pub fn with_drain_timeout(mut self, drain_timeout: Duration) -> Self {
        self.drain_timeout = drain_timeout;
        self
    }

    /// Consumes until `shutdown` is cancelled, then stops taking deliveries,
    /// lets in-flight handlers finish (bounded by the drain timeout) and
    /// closes its channels. Returns an error if the broker ends the stream
    /// (e.g. the connection was lost), after the same draining.
    pub async fn run(
        self,
        connection: Arc<Connection>,
        shutdown: CancellationToken,
    ) -> Result<(), lapin::Error> {
        let queue = self.topology.queue(&self.service);
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions { global: false })
            .await?;
        let publisher = connection.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut deliveries = channel
            .basic_consume(
                ShortString::from(queue.as_str()),
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::info!(%queue, prefetch = self.prefetch, "consuming");

        let this = Arc::new(self);
        let session = Arc::new(Session { publisher });
        let permits = Arc::new(Semaphore::new(usize::from(this.prefetch)));
        let mut in_flight = JoinSet::new();
        let outcome = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                next = deliveries.next() => match next {
                    Some(Ok(delivery)) => {
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            break Ok(());
                        };
                        let (this, session) = (this.clone(), session.clone());
                        in_flight.spawn(async move {
                            this.process(&session, delivery).await;
                            drop(permit);
                        });
                    }
                    Some(Err(error)) => break Err(error),
                    None => break Err(lapin::Error::from(std::io::Error::other(
                        "the broker ended the consumer",
                    ))),
                },
            }
        };

        // Stop new deliveries, finish what is under way; anything not acked
        // by then is redelivered when the channel closes.
        let _ = channel
            .basic_cancel(deliveries.tag(), BasicCancelOptions::default())
            .await;
        let drained = tokio::time::timeout(this.drain_timeout, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(%queue, "handlers still running at shutdown; their messages will be redelivered");
            in_flight.abort_all();
        }
        let _ = channel
            .close(200, ShortString::from("consumer stopped"))
            .await;
        let _ = session
            .publisher
            .close(200, ShortString::from("consumer stopped"))
            .await;
        tracing::info!(%queue, "consumer stopped");
        outcome
    }

    async fn process(&self, session: &Session, delivery: Delivery) {
        let started = Instant::now();
        let envelope: Envelope = match serde_json::from_slice(&delivery.data) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(
                    routing_key = %delivery.routing_key,
                    %error,
                    "not an event envelope; dead-lettering"
                );
                let verdict =
                    Verdict::DeadLetter(Reason::Poison, format!("not an event envelope: {error}"));
                self.settle(session, &delivery, verdict, "unknown").await;
                return;
            }
        };

        let span = self.consumer_span(&delivery, &envelope);
        async {
            let verdict = match self.apply(&envelope).await {
                Ok(Some(Outcome::Applied)) => Verdict::Ack("applied"),
                Ok(Some(Outcome::Ignored)) => {
                    tracing::debug!(event_type = %envelope.event_type, "event type not handled here; ignored");
                    Verdict::Ack("ignored")
                }
                Ok(None) => {
                    tracing::info!("already processed; acknowledged without effect");
                    Verdict::Ack("duplicate")
                }
                Err(HandlerError::Transient(error)) => Verdict::Retry(error.to_string()),
                Err(HandlerError::Poison(error)) => Verdict::DeadLetter(Reason::Poison, error),
                Err(HandlerError::Permanent(error)) => Verdict::DeadLetter(Reason::Rejected, error),
            };
            self.settle(session, &delivery, verdict, &envelope.event_type)
                .await;
            metrics::histogram!(HANDLER_DURATION, "event_type" => envelope.event_type.clone())
                .record(started.elapsed().as_secs_f64());
        }
        .instrument(span)
        .await;
    }

    /// Runs the handler with the inbox row in one transaction. `Ok(None)`
    /// means the event had already been processed.
    async fn apply(&self, envelope: &Envelope) -> Result<Option<Outcome>, HandlerError> {
        let mut tx = self.pool.begin().await?;
        let fresh = sqlx::query(
            "INSERT INTO processed_events (event_id, handler) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(envelope.id)
        .bind(&self.service)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            return Ok(None);
        }
        let outcome = self.handler.handle(envelope, &mut tx).await?;
        match outcome {
            Outcome::Applied => {
                // Handlers emit their replies into the outbox.
                crate::outbox::commit(tx).await?;
            }
            // Not recording it keeps the inbox to what was really done.
            Outcome::Ignored => tx.rollback().await?,
        }
        Ok(Some(outcome))
    }

    /// Acks, retries through a delay queue, or dead-letters — each only
    /// after the copy it needs is confirmed by the broker, so a message is
    /// never both gone and unsaved. A failure to settle needs no handling:
    /// the broker redelivers, and the inbox absorbs the repeat.
    async fn settle(
        &self,
        session: &Session,
        delivery: &Delivery,
        verdict: Verdict,
        event_type: &str,
    ) {
        let headers = delivery.properties.headers().as_ref();
        let retries_so_far = dead_letter::header_int(headers, dead_letter::RETRY_COUNT)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        let verdict = match verdict {
            Verdict::Retry(error) if self.retries.delay(retries_so_far).is_none() => {
                Verdict::DeadLetter(Reason::Exhausted, error)
            }
            other => other,
        };
        let outcome = match verdict {
            Verdict::Ack(outcome) => {
                ack(delivery).await;
                outcome
            }
            Verdict::Retry(error) => {
                let delay = self.retries.delay(retries_so_far).unwrap_or_default();
                let mut headers = self.carried_headers(delivery);
                set_int(
                    &mut headers,
                    dead_letter::RETRY_COUNT,
                    i64::from(retries_so_far) + 1,
                );
                set_str(&mut headers, dead_letter::ERROR, &truncate(&error));
                let queue = self.topology.retry_queue(&self.service, delay);
                tracing::warn!(%error, retry = retries_so_far + 1, ?delay, "transient failure; retrying later");
                self.forward(session, delivery, &queue, headers).await;
                metrics::counter!(MESSAGE_RETRIES, "event_type" => event_type.to_owned())
                    .increment(1);
                "retried"
            }
            Verdict::DeadLetter(reason, error) => {
                let mut headers = self.carried_headers(delivery);
                set_str(&mut headers, dead_letter::REASON, reason.as_str());
                set_str(&mut headers, dead_letter::ERROR, &truncate(&error));
                set_str(&mut headers, dead_letter::HANDLER, &self.service);
                set_int(
                    &mut headers,
                    dead_letter::ATTEMPTS,
                    i64::from(retries_so_far) + 1,
                );
                set_str(&mut headers, dead_letter::FAILED_AT, &now_rfc3339());
                tracing::error!(%error, reason = reason.as_str(), "dead-lettering");
                let queue = self.topology.dead_letter_queue(&self.service);
                self.forward(session, delivery, &queue, headers).await;
                metrics::counter!(MESSAGES_DEAD_LETTERED, "reason" => reason.as_str()).increment(1);
                "dead_lettered"
            }
        };
        metrics::counter!(MESSAGES_CONSUMED, "event_type" => event_type.to_owned(), "outcome" => outcome)
            .increment(1);
    }

    /// The delivery's headers plus where it was first published, which a
    /// retry (routed through the default exchange) would otherwise lose.
    fn carried_headers(&self, delivery: &Delivery) -> FieldTable {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        if !headers.contains_key(dead_letter::ORIGINAL_ROUTING_KEY) {
            set_str(
                &mut headers,
                dead_letter::ORIGINAL_EXCHANGE,
                delivery.exchange.as_str(),
            );
            set_str(
                &mut headers,
                dead_letter::ORIGINAL_ROUTING_KEY,
                delivery.routing_key.as_str(),
            );
        }
        headers
    }

    /// Puts a copy of the delivery in `queue`, then acks the original. If
    /// the copy is not confirmed, the original is rejected instead, which
    /// the work queue dead-letters: nothing is lost either way.
    async fn forward(
        &self,
        session: &Session,
        delivery: &Delivery,
        queue: &str,
        headers: FieldTable,
    ) {
        let properties = delivery.properties.clone().with_headers(headers);
        match publish_confirmed(&session.publisher, "", queue, &delivery.data, properties).await {
            Ok(()) => ack(delivery).await,
            Err(error) => {
                tracing::warn!(%error, %queue, "could not forward; rejecting to the queue's dead-letter exchange");
                if let Err(error) = delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await
                {
                    tracing::warn!(%error, "could not reject; the message will be redelivered");
                }
            }
        }
    }

    fn consumer_span(&self, delivery: &Delivery, envelope: &Envelope) -> Span {
        let queue = self.topology.queue(&self.service);
        let span = tracing::info_span!(
            "process",
            otel.name = format!("{queue} process"),
            otel.kind = "consumer",
            messaging.system = "rabbitmq",
            messaging.operation.type = "process",
            messaging.destination.name = delivery.exchange.as_str(),
            messaging.rabbitmq.destination.routing_key = delivery.routing_key.as_str(),
            messaging.consumer.group.name = queue.as_str(),
            messaging.message.id = %envelope.id,
            event.type = envelope.event_type.as_str(),
            correlation_id = %envelope.correlation_id,
            trace_id = tracing::field::Empty,
        );
        let parent = delivery
            .properties
            .headers()
            .as_ref()
            .map(extract_amqp)
            .unwrap_or_default();
        adopt_parent(&span, parent);
        span
    }
}

async fn ack(delivery: &Delivery) {
    if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
        tracing::warn!(%error, "could not ack; the message will be redelivered");
    }
}

/// Keeps error headers readable and well under frame limits.
fn truncate(error: &str) -> String {
    const MAX: usize = 2000;
    match error.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &error[..at]),
        None => error.to_owned(),
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
