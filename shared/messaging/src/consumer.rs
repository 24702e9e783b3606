//! The consuming side: deliveries in, handler effects and inbox row
//! committed together, ack after commit.
//!
//! For every delivery the consumer
//! 1. decodes the [`Envelope`] — a body that is not one is *poison*: it goes
//!    straight to the dead-letter queue with the decode error;
//! 2. opens a CONSUMER span whose parent is the producer's context from the
//!    message headers, so the handler's work and the events it emits join
//!    the producer's trace;
//! 3. refuses an event whose envelope `source` is not the owner of its
//!    `type` ([`checkout_events::owner_of`]): it is dead-lettered at once
//!    with reason `forbidden` and changes nothing. The broker already lets
//!    each service's user publish only its own routing keys; this is the
//!    second lock, against a message published with some other
//!    credentials (an operator's, a replay, a misconfigured user);
//! 4. in one transaction inserts `processed_events (event_id, handler)` and
//!    runs the [`Handler`]; a conflict on that insert means the event was
//!    already applied, so it is acked and nothing else happens;
//! 5. acks only after the commit.
//!
//! Failures are of three kinds, and only a failure of the handler itself
//! costs the message an attempt:
//!
//! - **The service's own infrastructure is unavailable** (its database
//!   unreachable, the pool exhausted, a backend terminated): the consumer
//!   *pauses* ([`crate::pause`]). The delivery stays unacked, no new one is
//!   started, one probe waits for the database with backoff, and then the
//!   same delivery is tried again. An outage of any length delays work and
//!   never dead-letters it.
//! - **A transient failure of the handler** (a deadlock, a serialization
//!   failure, a panic) is retried through the service's delay queues (the
//!   delivery is acked once a copy with `x-retry-count + 1` is safely in the
//!   delay queue), so the messages behind it keep flowing;
//! - after the last retry, or on a **permanent** failure (a bug, a constraint
//!   the data breaks) or a **poison** message, it is dead-lettered with the
//!   reason in its headers (see [`crate::dead_letter`]).
//!
//! Deliveries and acks use one broker connection; retries and dead letters
//! are published on another (the relay's), so a broker that blocks
//! publishers (a memory or disk alarm) does not also stop acks. Retries go
//! to the service's own retry exchange and dead letters to its own
//! dead-letter exchange — never through the default exchange, which the
//! service's broker user may not write to (see [`crate::topology`]).
//!
//! Deliveries are handled concurrently, bounded by the prefetch count, so a
//! slow handler for one order does not hold up the others. Handlers that
//! touch the same row must lock it (`SELECT … FOR UPDATE`).

use crate::dead_letter::{self, Reason, publish_confirmed, set_int, set_str};
use crate::metrics::{
    HANDLER_DURATION, MESSAGE_RETRIES, MESSAGES_CONSUMED, MESSAGES_DEAD_LETTERED,
};
use crate::pause::Pause;
use crate::retry::RetryPolicy;
use crate::topology::Topology;
use checkout_events::{DecodeError, Envelope};
use checkout_telemetry::propagation::{adopt_parent, extract_amqp};
use futures::{FutureExt as _, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, message::Delivery};
use sqlx::{PgConnection, PgPool};
use std::future::Future;
use std::panic::AssertUnwindSafe;
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
    /// The service's own infrastructure is down (database unreachable,
    /// pool exhausted, connection lost): not the message's fault. The
    /// consumer pauses until the database answers again and then tries the
    /// same delivery again, without counting an attempt.
    #[error("unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Worth trying again later, but not an outage: a deadlock, a
    /// serialization failure. Retried with backoff through the delay
    /// queues; each try counts against the retry budget.
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
        match classify(&error) {
            Class::Unavailable => HandlerError::Unavailable(Box::new(error)),
            Class::Transient => HandlerError::Transient(Box::new(error)),
            Class::Permanent => HandlerError::Permanent(error.to_string()),
        }
    }
}

impl From<DecodeError> for HandlerError {
    fn from(error: DecodeError) -> Self {
        HandlerError::Poison(error.to_string())
    }
}

/// Whether a database error says the database itself is unavailable (no
/// connection, lost connection, shutting down, refusing connections, out of
/// resources), as opposed to a fault of the statement or the data. The
/// consumer pauses on these; an HTTP handler answers 503 with
/// `Retry-After` instead of 500.
pub fn is_outage(error: &sqlx::Error) -> bool {
    matches!(classify(error), Class::Unavailable)
}

/// What a database error says about whose fault it is.
enum Class {
    Unavailable,
    Transient,
    Permanent,
}

fn classify(error: &sqlx::Error) -> Class {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => Class::Unavailable,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            match code.as_ref() {
                // 08: connection exception; 53: insufficient resources (too
                // many connections, disk full); 57P: the server is shutting
                // down, terminated the backend or cannot take connections
                // yet; 55000: the database does not accept connections
                // (ALLOW_CONNECTIONS false).
                c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57P") => {
                    Class::Unavailable
                }
                "55000" => Class::Unavailable,
                // 40: serialization failure, deadlock; 57014: the statement
                // was cancelled (statement_timeout, pg_cancel_backend).
                c if c.starts_with("40") || c == "57014" => Class::Transient,
                _ => Class::Permanent,
            }
        }
        _ => Class::Permanent,
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

    /// Called once the transaction of an applied `envelope` has committed,
    /// before its delivery is acked: the window in which a crash makes the
    /// broker deliver an applied event again. Nothing by default (the
    /// runtime's `crash_before_ack` fault switch exits here).
    fn committed(&self, _envelope: &Envelope) {}
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
    forward_timeout: Duration,
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
            forward_timeout: self.forward_timeout,
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

/// What one consumer session works with.
struct Session {
    /// Publishes retries and dead letters, in confirm mode, on the
    /// publishing connection.
    publisher: Channel,
    /// Holds every handler while the database is down.
    pause: Pause,
    /// Cancelled at shutdown: a handler waiting out an outage gives up and
    /// leaves its delivery unacked (the broker redelivers it).
    shutdown: CancellationToken,
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
            forward_timeout: Duration::from_secs(30),
        }
    }

    /// How many unacknowledged deliveries (and so concurrent handlers) at most.
    pub fn with_prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// When transient failures are retried; the delay queues must have been
    /// declared for the same policy ([`Topology::declare_own`]).
    pub fn with_retries(mut self, retries: RetryPolicy) -> Self {
        self.retries = retries;
        self
    }

    /// How long in-flight handlers may take to finish at shutdown.
    pub fn with_drain_timeout(mut self, drain_timeout: Duration) -> Self {
        self.drain_timeout = drain_timeout;
        self
    }

    /// How long forwarding a delivery to a retry or dead-letter queue may
    /// wait for the broker's confirm (default 30 s). Past it — a broker
    /// that blocks publishers, say — the delivery is returned to its queue
    /// and handled again later.
    pub fn with_forward_timeout(mut self, forward_timeout: Duration) -> Self {
        self.forward_timeout = forward_timeout;
        self
    }

    /// Consumes from `consume` until `shutdown` is cancelled, then stops
    /// taking deliveries, lets in-flight handlers finish (bounded by the
    /// drain timeout) and closes its channels. Retries and dead letters are
    /// published on `publish`, which may be the same connection (tests) but
    /// should be another one: RabbitMQ blocks a connection that publishes
    /// during a resource alarm, acks included. Returns an error if the
    /// broker ends the stream (e.g. the connection was lost), after the
    /// same draining.
    pub async fn run(
        self,
        consume: Arc<Connection>,
        publish: Arc<Connection>,
        shutdown: CancellationToken,
    ) -> Result<(), lapin::Error> {
        let queue = self.topology.queue(&self.service);
        let channel = consume.create_channel().await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions { global: false })
            .await?;
        let publisher = publish.create_channel().await?;
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

        let pause = Pause::new(self.pool.clone(), &self.service, shutdown.child_token());
        let this = Arc::new(self);
        let session = Arc::new(Session {
            publisher,
            pause,
            shutdown: shutdown.clone(),
        });
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
            if let Some(why) = forged(&envelope) {
                tracing::warn!(
                    event_type = %envelope.event_type,
                    source = %envelope.source,
                    "{why}; dead-lettering"
                );
                let verdict = Verdict::DeadLetter(Reason::Forbidden, why);
                self.settle(session, &delivery, verdict, &envelope.event_type)
                    .await;
                return;
            }
            let Some(applied) = self.apply_when_available(session, &envelope).await else {
                // Shutdown during an outage: the broker redelivers it.
                return;
            };
            let verdict = match applied {
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
                // Not reached: outages are waited out above.
                Err(HandlerError::Unavailable(error)) => Verdict::Retry(error.to_string()),
                Err(HandlerError::Poison(error)) => Verdict::DeadLetter(Reason::Poison, error),
                Err(HandlerError::Permanent(error)) => Verdict::DeadLetter(Reason::Rejected, error),
            };
            // Labels take only known types: the broker's string is anyone's.
            let event_type = checkout_events::event_type_label(&envelope.event_type);
            self.settle(session, &delivery, verdict, event_type).await;
            metrics::histogram!(HANDLER_DURATION, "event_type" => event_type)
                .record(started.elapsed().as_secs_f64());
        }
        .instrument(span)
        .await;
    }

    /// [`apply`](Self::apply), waiting out outages of the database: while
    /// it is down the same delivery is tried again once it is back, without
    /// counting an attempt. A panicking handler is a transient failure (its
    /// transaction is rolled back by the drop). `None` at shutdown.
    async fn apply_when_available(
        &self,
        session: &Session,
        envelope: &Envelope,
    ) -> Option<Result<Option<Outcome>, HandlerError>> {
        loop {
            if !session.pause.wait_until_available().await {
                return None;
            }
            let applied = AssertUnwindSafe(self.apply(envelope))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a non-string payload".to_owned());
                    Err(HandlerError::Transient(
                        format!("the handler panicked: {message}").into(),
                    ))
                });
            match applied {
                Err(HandlerError::Unavailable(_)) if session.shutdown.is_cancelled() => {
                    return None;
                }
                Err(HandlerError::Unavailable(error)) => session.pause.report(&*error),
                other => return Some(other),
            }
        }
    }

    /// Runs the handler with the inbox row in one transaction. `Ok(None)`
    /// means the event had already been processed.
    async fn apply(&self, envelope: &Envelope) -> Result<Option<Outcome>, HandlerError> {
        // Not getting a connection at all is an outage whatever the error
        // says (a database that refuses connections answers 55000, say).
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| HandlerError::Unavailable(Box::new(e)))?;
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
                self.handler.committed(envelope);
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
                let exchange = self.topology.retry_exchange(&self.service);
                let queue = self.topology.retry_queue(&self.service, delay);
                tracing::warn!(%error, retry = retries_so_far + 1, ?delay, "transient failure; retrying later");
                self.forward(session, delivery, &exchange, &queue, headers)
                    .await;
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
                let exchange = self.topology.dead_letter_exchange(&self.service);
                let queue = self.topology.dead_letter_queue(&self.service);
                self.forward(session, delivery, &exchange, &queue, headers)
                    .await;
                metrics::counter!(MESSAGES_DEAD_LETTERED, "reason" => reason.as_str()).increment(1);
                "dead_lettered"
            }
        };
        metrics::counter!(MESSAGES_CONSUMED, "event_type" => event_type.to_owned(), "outcome" => outcome)
            .increment(1);
    }

    /// The delivery's headers plus where it was first published, which a
    /// retry (routed through the service's retry exchange) would otherwise lose.
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

    /// Puts a copy of the delivery in `queue` through `exchange` (one of the
    /// service's own, bound to `queue` by its name), then acks the
    /// original. If the copy is refused, the original is rejected instead,
    /// which the work queue dead-letters; if the broker does not answer in
    /// time (it blocks publishers during an alarm), the original goes back
    /// to its queue to be handled again. Nothing is lost either way.
    async fn forward(
        &self,
        session: &Session,
        delivery: &Delivery,
        exchange: &str,
        queue: &str,
        headers: FieldTable,
    ) {
        let properties = delivery.properties.clone().with_headers(headers);
        let published = tokio::time::timeout(
            self.forward_timeout,
            publish_confirmed(
                &session.publisher,
                exchange,
                queue,
                &delivery.data,
                properties,
            ),
        )
        .await;
        match published {
            Ok(Ok(())) => ack(delivery).await,
            Err(_elapsed) => {
                tracing::warn!(%queue, timeout = ?self.forward_timeout, "the broker did not confirm the forward in time; returning the delivery to its queue");
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                };
                if let Err(error) = delivery.acker.nack(requeue).await {
                    tracing::warn!(%error, "could not return it; the message will be redelivered");
                }
            }
            Ok(Err(error)) => {
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

/// Why `envelope` is refused as forged: its `source` is not the service
/// that owns its `type`. `None` for an event from its owner, and for a type
/// this code does not know (which no handler acts on).
fn forged(envelope: &Envelope) -> Option<String> {
    let owner = checkout_events::owner_of(&envelope.event_type)?;
    (envelope.source != owner.source).then(|| {
        format!(
            "forbidden: {} is published only by {}, this one says it comes from {:?}",
            envelope.event_type, owner.source, envelope.source
        )
    })
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
