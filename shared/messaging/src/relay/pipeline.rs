//! Batches in flight together: while the confirms of one batch are
//! outstanding, the next is claimed and published on the same channel
//! (see the [`super`] docs for why that keeps every guarantee).

use super::batch::Batch;
use super::{Relay, RelayError};
use futures::stream::{FuturesUnordered, StreamExt};
use lapin::Channel;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a run of batches did, for the relay's loop.
#[derive(Debug, Default)]
pub(super) struct Drained {
    /// Rows confirmed and marked published.
    pub(super) published: usize,
    /// The shortest backoff given to a refused row that was not parked.
    pub(super) retry_in: Option<Duration>,
    /// The first failure. Every batch in flight when it came still settled
    /// on its own: marked what its confirms covered, left the rest.
    pub(super) failure: Option<RelayError>,
}

impl Drained {
    pub(super) fn failed(error: RelayError) -> Self {
        Self {
            failure: Some(error),
            ..Self::default()
        }
    }

    fn add(&mut self, settled: Result<Batch, RelayError>) {
        match settled {
            Ok(batch) => {
                self.published += batch.published;
                if let Some(delay) = batch.retry_in {
                    self.retry_in = Some(self.retry_in.map_or(delay, |d| d.min(delay)));
                }
            }
            Err(error) => {
                self.failure.get_or_insert(error);
            }
        }
    }
}

impl Relay {
    /// Claims and publishes batches on `channel`, with up to
    /// `batches_in_flight` of them awaiting their confirms at once, until a
    /// batch is not full (nothing more is due), one fails, or `shutdown`;
    /// returns once every batch it started has committed.
    ///
    /// The next batch is claimed only after the last one's claim, and sent
    /// after all its messages: one relay still publishes in id order.
    pub(super) async fn drain(&self, channel: &Channel, shutdown: &CancellationToken) -> Drained {
        let mut settling = FuturesUnordered::new();
        let mut drained = Drained::default();
        let mut more = true;
        loop {
            let start = more
                && drained.failure.is_none()
                && !shutdown.is_cancelled()
                && settling.len() < self.batches_in_flight
                // A dead channel's batches fail by themselves: start none on it.
                && channel.status().connected();
            if !start {
                match settling.next().await {
                    Some(settled) => drained.add(settled),
                    None => return drained,
                }
                continue;
            }
            // The batches before it keep settling while this one claims and
            // sends (they may commit in any order: each has its own rows).
            let next = self.claim_and_send(channel);
            tokio::pin!(next);
            let started = loop {
                tokio::select! {
                    biased;
                    started = &mut next => break started,
                    Some(settled) = settling.next() => drained.add(settled),
                }
            };
            match started {
                Ok(Some(claimed)) => {
                    more = claimed.wants_next(self.batch_size);
                    settling.push(self.settle(claimed));
                }
                Ok(None) => more = false,
                Err(error) => drained.add(Err(error)),
            }
        }
    }
}
