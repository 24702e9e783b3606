//! The consuming side: deliveries in, handler effects and inbox row
//! committed together, ack after commit.
//!
//! For every delivery the consumer
//! 1. decodes the [`Envelope`] — a body that is not one is *poison*: it goes
//!    straight to the dead-letter queue with the decode error;
//! 2. opens a CONSUMER span `process <queue>` whose parent is the
//!    producer's context from the message headers, and which links to it
//!    ([`crate::spans`]), so the handler's work and the events it emits join
//!    the producer's trace;
//! 3. refuses an event whose envelope `source` is not the owner of its
//!    `type` ([`checkout_events::owner_of`]): it is dead-lettered at once
//!    with reason `forbidden` and changes nothing. The broker already lets
//!    each service's user publish only its own routing keys; this is the
//!    second lock, against a message published with some other
//!    credentials (an operator's, a replay, a misconfigured user);
//! 4. applies it together with the deliveries that arrived with it, in one
//!    transaction ([`batch`]): the inbox rows `processed_events (event_id,
//!    handler)` of the batch are inserted in one statement — an event whose
//!    row is already there was applied before, so it is acked and nothing
//!    else happens — and each fresh event's [`Handler`] runs; a failing
//!    one is rolled back alone (the batch is tried without savepoints
//!    first, then the rest with one each: see [`batch`]);
//! 5. acks only after the commit — a run of settled deliveries with one
//!    `multiple` ack when that is safe (`acks`).
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
//! Handlers run one batch at a time, and the batch before commits and
//! settles while the next one runs; at most the prefetch count of
//! deliveries is unacked. Handlers that touch the same row must lock it
//! (`SELECT … FOR UPDATE`), because other transactions (another replica,
//! an HTTP request) may touch it too.

//!
//! One file per job: [`handler`] (what a service implements), `dispatch`
//! (decode, refuse forgeries, turn an outcome into a verdict), [`batch`]
//! (apply deliveries together, wait out outages), `verdict` (ack, retry
//! or dead-letter, each forward in a span) and `acks` (which acks may go
//! as one).

mod acks;
mod batch;
mod dispatch;
mod handler;
mod verdict;

pub use handler::{Handler, HandlerError, Outcome, is_outage};

use crate::pause::Pause;
use crate::retry::RetryPolicy;
use crate::spans::Peer;
use crate::topology::Topology;
use acks::Acks;
use futures::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, Consumer as Deliveries};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Consumes one service's queue with one handler.
#[derive(Debug)]
pub struct Consumer<H> {
    pool: PgPool,
    handler: Arc<H>,
    service: String,
    topology: Topology,
    retries: RetryPolicy,
    prefetch: u16,
    batch_limit: u16,
    linger: Duration,
    drain_timeout: Duration,
    forward_timeout: Duration,
    peer: Peer,
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
            batch_limit: self.batch_limit,
            linger: self.linger,
            drain_timeout: self.drain_timeout,
            forward_timeout: self.forward_timeout,
            peer: self.peer.clone(),
        }
    }
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
    /// Held by the one batch whose handlers run (see [`batch`]).
    lane: Arc<Mutex<()>>,
    /// The consuming channel's unsettled deliveries (see `acks`).
    acks: Acks,
}

impl<H: Handler> Consumer<H> {
    /// A consumer of `service`'s queue in `topology`, recording processed
    /// events under the name `service`, with the default retry policy,
    /// prefetch 64 and batches of up to 32 deliveries taken without linger.
    pub fn new(pool: PgPool, handler: H, topology: &Topology, service: &str) -> Self {
        Self {
            pool,
            handler: Arc::new(handler),
            service: service.to_owned(),
            topology: topology.clone(),
            retries: RetryPolicy::default(),
            prefetch: 64,
            batch_limit: batch::MAX_BATCH,
            linger: Duration::ZERO,
            drain_timeout: Duration::from_secs(10),
            forward_timeout: Duration::from_secs(30),
            peer: Peer::unknown(),
        }
    }

    /// How many unacknowledged deliveries at most.
    pub fn with_prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// How many deliveries one transaction applies at most (1 to 32, and
    /// never more than the prefetch); 1 applies each on its own.
    pub fn with_batch_limit(mut self, limit: u16) -> Self {
        self.batch_limit = limit.clamp(1, batch::MAX_BATCH);
        self
    }

    /// How long a batch waits for more deliveries after its first one
    /// (default zero: it takes what has already arrived, so a lone
    /// delivery is not held back). Tests use it to make batches certain.
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
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

    /// The broker its spans name (`server.address`, `server.port`).
    pub fn with_peer(mut self, peer: Peer) -> Self {
        self.peer = peer;
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
        let (channel, mut deliveries) = self.subscribe(&consume, &queue).await?;
        let publisher = publish.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        tracing::info!(%queue, prefetch = self.prefetch, "consuming");

        let pause = Pause::new(self.pool.clone(), &self.service, shutdown.child_token());
        let this = Arc::new(self);
        let session = Arc::new(Session {
            publisher,
            pause,
            shutdown: shutdown.clone(),
            lane: Arc::default(),
            acks: Acks::new(this.prefetch),
        });
        let mut in_flight = JoinSet::new();
        let outcome = this
            .clone()
            .take_deliveries(&mut deliveries, &session, &mut in_flight, &shutdown)
            .await;

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
        for channel in [&channel, &session.publisher] {
            let _ = channel
                .close(200, ShortString::from("consumer stopped"))
                .await;
        }
        tracing::info!(%queue, "consumer stopped");
        outcome
    }

    /// A channel with the prefetch set, consuming `queue`.
    async fn subscribe(
        &self,
        connection: &Connection,
        queue: &str,
    ) -> Result<(Channel, Deliveries), lapin::Error> {
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions { global: false })
            .await?;
        let deliveries = channel
            .basic_consume(
                ShortString::from(queue),
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((channel, deliveries))
    }

    /// Gathers the deliveries that are ready into a batch whenever the
    /// lane is free and hands it to a task of its own, until `shutdown`
    /// (`Ok`) or the broker ends the stream (`Err`).
    async fn take_deliveries(
        self: Arc<Self>,
        deliveries: &mut Deliveries,
        session: &Arc<Session>,
        in_flight: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) -> Result<(), lapin::Error> {
        let limit = usize::from(self.batch_limit.min(self.prefetch));
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
                next = deliveries.next() => match next {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(error)) => return Err(error),
                    None => return Err(ended()),
                },
            };
            // Deliveries that arrive while the previous batch's handlers
            // run join this one.
            let lane = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                lane = session.lane.clone().lock_owned() => lane,
            };
            let (batch, ended) = batch::gather(first, deliveries, limit, self.linger).await;
            // Before any of them can be settled (see `acks`).
            session.acks.open(&batch).await;
            let (this, session) = (self.clone(), session.clone());
            in_flight.spawn(async move { this.run_batch(&session, batch, lane).await });
            if let Some(error) = ended {
                return Err(error);
            }
        }
    }
}

/// The error of a consumer stream the broker ended.
fn ended() -> lapin::Error {
    lapin::Error::from(std::io::Error::other("the broker ended the consumer"))
}
