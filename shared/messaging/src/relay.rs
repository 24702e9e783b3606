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
//! # Batches in flight together
//! While the confirms of one batch are outstanding, the next batch is
//! claimed (its own transaction: `SKIP LOCKED` passes over the rows the
//! earlier ones still hold) and published on the same channel; at most
//! three batches await their confirms at once
//! ([`Relay::with_batches_in_flight`]), each holding a pool connection.
//! Awaiting each batch's confirms before claiming the next left the broker
//! idle for a claim, a mark and a commit per batch. Measured with
//! `checkout-bench relay` (20,000 messages, 14 alternating runs each, on a
//! busy two-core machine), the relay's rate over a raw pipelined
//! publisher's had a median of 0.64 one batch at a time, 0.65 with two in
//! flight and 0.76 with three; handing a batch's publishes to lapin before
//! awaiting any (`send`) then halved the relay's own CPU per message, to
//! the raw loop's 15–18 µs. Each batch still settles alone: its
//! confirmed rows marked and its refusals recorded in its own transaction,
//! whichever commits first. A batch is claimed only after the previous
//! claim, and its messages are sent after all of the previous batch's, so
//! one relay still publishes in id order when nothing is refused. A
//! failure stops new claims; the batches already in flight settle as any
//! batch does (a channel failure fails each of their pending confirms, so
//! none marks a row it has no confirm for), and only then is the channel
//! replaced.
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
//! When shutdown comes no batch is claimed any more; the batches under way
//! are finished within `shutdown_timeout`, and abandoned after that: their
//! transactions roll back, so their rows stay unpublished (whatever reached the broker is
//! published again after the restart, and absorbed by the inboxes). When
//! idle, the relay prunes the messaging tables every ten minutes
//! ([`crate::retention`]).

//!
//! # Where the code is
//! `batch` (claim and publish, then confirm and mark: one transaction),
//! `send` (the publishing), `pipeline` (batches in flight together) and
//! `run` (the loop, waiting, backoff, shutdown).

mod batch;
mod pipeline;
mod run;
mod send;

use crate::retention::Retention;
use crate::spans::Peer;
use lapin::Channel;
use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
    batches_in_flight: usize,
    peer: Peer,
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

/// Batches awaiting their confirms at once, by default (see the module docs).
const DEFAULT_BATCHES_IN_FLIGHT: u8 = 3;

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
    /// a batch at shutdown, three batches in flight at most, published
    /// outbox rows kept 7 days and inbox rows 14 days.
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
            batches_in_flight: usize::from(DEFAULT_BATCHES_IN_FLIGHT),
            peer: Peer::unknown(),
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

    /// How many batches may await their confirms at once (at least 1;
    /// 3 by default). Each holds a database connection until it commits.
    pub fn with_batches_in_flight(mut self, batches: u8) -> Self {
        self.batches_in_flight = usize::from(batches.max(1));
        self
    }

    /// The broker its spans name (`server.address`, `server.port`).
    pub fn with_peer(mut self, peer: Peer) -> Self {
        self.peer = peer;
        self
    }

    /// How long the batch under way when shutdown comes may take to
    /// finish (closing the channel included); after that it is abandoned
    /// and its rows stay unpublished, which is safe.
    pub fn with_shutdown_timeout(mut self, shutdown_timeout: Duration) -> Self {
        self.shutdown_timeout = shutdown_timeout.min(LONGEST_WAIT);
        self
    }

    /// Claims, publishes and marks one batch on `channel`, which must be in
    /// confirm mode, and returns how many rows were published. A row the
    /// broker refuses is not an error: its refusal is recorded on it in the
    /// same transaction (see the module docs) and it is not counted.
    pub async fn publish_batch(&self, channel: &Channel) -> Result<usize, RelayError> {
        self.batch(channel).await.map(|batch| batch.published)
    }

    /// Publishes everything due on `channel`, which must be in confirm
    /// mode, as the relay's loop does: batch after batch, with up to
    /// [`Relay::with_batches_in_flight`] of them awaiting their confirms at
    /// once, until a batch comes back short. Returns how many rows were
    /// published, or the first failure (after every batch in flight has
    /// settled: marked what the broker confirmed, recorded its refusals).
    pub async fn publish_pending(&self, channel: &Channel) -> Result<usize, RelayError> {
        let drained = self.drain(channel, &CancellationToken::new()).await;
        match drained.failure {
            Some(error) => Err(error),
            None => Ok(drained.published),
        }
    }
}
