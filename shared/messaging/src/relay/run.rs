//! The relay's loop: batches (pipelined) whenever there is work, a wait (for a wake-up,
//! a `NOTIFY`, a refused row falling due, or the poll) when there is none,
//! a fresh channel and a capped backoff after a failed batch, and pruning
//! when idle.

use super::pipeline::Drained;
use super::{FIRST_BATCH_BACKOFF, MAX_BATCH_BACKOFF, Relay, RelayError, WAKE};
use crate::outbox::NOTIFY_CHANNEL;
use crate::retention::{self, PRUNE_EVERY};
use lapin::options::ConfirmSelectOptions;
use lapin::types::ShortString;
use lapin::{Channel, Connection};
use sqlx::postgres::PgListener;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::futures::Notified;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the loop carries from one batch to the next.
#[derive(Debug)]
struct Cycle {
    channel: Option<Channel>,
    backoff: Duration,
    last_prune: Option<Instant>,
    /// When the earliest row this relay refused is due again. Rows that
    /// other replicas refused are found by the poll.
    next_retry: Option<Instant>,
    /// Set when shutdown comes mid-batch: everything left must be done by then.
    stop_by: Option<Instant>,
}

impl Relay {
    /// Publishes until `shutdown` is cancelled (`Ok`) or the broker
    /// connection is lost (`Err`, so a supervisor can reconnect). Other
    /// failures are logged and retried with capped backoff on a fresh
    /// channel; the batches under way when shutdown comes are finished
    /// within the shutdown timeout.
    pub async fn run(
        self,
        connection: Arc<Connection>,
        shutdown: CancellationToken,
    ) -> Result<(), lapin::Error> {
        let mut listener = self.listen().await;
        let mut cycle = Cycle {
            channel: None,
            backoff: FIRST_BATCH_BACKOFF,
            last_prune: None,
            next_retry: None,
            stop_by: None,
        };
        let mut outcome = Ok(());
        while !shutdown.is_cancelled() {
            // Registered before the first claim, so a commit during the
            // batches (whose row a claim may have missed) still wakes us.
            let woken = WAKE.notified();
            let attempt = async {
                match self.confirm_channel(&connection, &mut cycle.channel).await {
                    Ok(ch) => self.drain(ch, &shutdown).await,
                    Err(error) => Drained::failed(error),
                }
            };
            let finished = finish_within(
                attempt,
                &shutdown,
                self.shutdown_timeout,
                &mut cycle.stop_by,
            )
            .await;
            let Some(drained) = finished else {
                tracing::warn!(
                    timeout = ?self.shutdown_timeout,
                    "outbox relay: the batches under way at shutdown did not finish in time; \
                     abandoned, their rows stay unpublished"
                );
                // Dropping the channel closes it without waiting for the broker.
                cycle.channel = None;
                break;
            };
            if let Some(delay) = drained.retry_in {
                let at = Instant::now() + delay;
                cycle.next_retry = Some(cycle.next_retry.map_or(at, |t| t.min(at)));
            }
            match drained.failure {
                None => {
                    self.after_batches(&mut cycle, &mut listener, woken, &shutdown)
                        .await;
                }
                Some(RelayError::Broker(error)) if !connection.status().connected() => {
                    tracing::warn!(%error, "outbox relay: broker connection lost");
                    cycle.channel = None;
                    outcome = Err(error);
                    break;
                }
                Some(error) => self.after_failure(&error, &mut cycle, &shutdown).await,
            }
        }
        self.close(cycle).await;
        tracing::info!("outbox relay stopped");
        outcome
    }

    /// After batches that went through, the last of them short (nothing
    /// more was due): prune (now and then) and wait for work.
    async fn after_batches(
        &self,
        cycle: &mut Cycle,
        listener: &mut Option<PgListener>,
        woken: Notified<'static>,
        shutdown: &CancellationToken,
    ) {
        cycle.backoff = FIRST_BATCH_BACKOFF;
        if cycle.last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = retention::prune_and_log(&self.pool, self.retention) => {}
            }
            cycle.last_prune = Some(Instant::now());
        }
        let poll_at = Instant::now() + self.poll_interval;
        let until = cycle.next_retry.map_or(poll_at, |t| t.min(poll_at));
        self.wait_for_work(listener, woken, shutdown, until).await;
        if cycle.next_retry.is_some_and(|t| t <= Instant::now()) {
            cycle.next_retry = None;
        }
    }

    /// After a failed batch: a fresh channel, after a capped backoff.
    async fn after_failure(
        &self,
        error: &RelayError,
        cycle: &mut Cycle,
        shutdown: &CancellationToken,
    ) {
        tracing::warn!(%error, retry_in = ?cycle.backoff, "outbox relay: batch failed");
        // A fresh channel after any failure: the old one may be closed,
        // stuck, or still owe confirms for this batch.
        cycle.channel = None;
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(cycle.backoff) => {}
        }
        cycle.backoff = (cycle.backoff * 2).min(MAX_BATCH_BACKOFF);
    }

    /// Closes the channel, within what is left of the shutdown timeout.
    async fn close(&self, cycle: Cycle) {
        if let Some(channel) = cycle.channel {
            let by = cycle
                .stop_by
                .unwrap_or_else(|| Instant::now() + self.shutdown_timeout);
            let closed = channel.close(200, ShortString::from("relay stopped"));
            if tokio::time::timeout_at(by, closed).await.is_err() {
                tracing::warn!("outbox relay: the broker did not confirm closing the channel");
            }
        }
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
