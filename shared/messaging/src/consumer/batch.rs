//! Deliveries that arrive together are applied in one transaction.
//!
//! A batch is what the broker has already handed over when the consumer is
//! ready for more (plus, if configured, what arrives within a short
//! linger), up to the batch limit. In one transaction the consumer claims
//! every event's inbox row in one statement, then runs each fresh event's
//! handler. One commit then makes the rest durable, and only then is
//! anything acked: a crash or a failed commit leaves the whole batch
//! unacked, the broker delivers it again and the inbox absorbs what had
//! been applied.
//!
//! A failing (or panicking) handler is rolled back alone and gets its own
//! verdict, as it would outside a batch. That takes a savepoint per event,
//! which is a statement (a round trip) per event and a subtransaction in
//! PostgreSQL; since nearly every batch succeeds whole, a batch is first
//! applied without savepoints ([`Isolation::None`]). If a handler does not
//! apply its event, that transaction is rolled back (nothing of it was
//! committed or acked), the event keeps the verdict its handler gave, as
//! it would have under a savepoint, and the rest of the batch is applied
//! again with a savepoint per event ([`Isolation::PerEvent`]). So a
//! failing event's handler runs once per delivery, as outside a batch;
//! only the events ahead of it in the batch run a second time, and their
//! first run left nothing behind.
//!
//! Handlers of one consumer run one batch at a time (the *lane*), while the
//! batch before may still be committing and settling. A batch holds the
//! row locks of all its events until its commit, so two batches executing
//! at once could wait for each other in a circle (a deadlock); a batch
//! that is committing waits for no lock, so overlapping its commit with
//! the next batch's handlers is safe.

use super::dispatch::{Applied, Pending};
use super::{Consumer, Handler, HandlerError, Outcome, Session};
use crate::outbox;
use futures::FutureExt as _;
use futures::future::join_all;
use lapin::Consumer as Deliveries;
use lapin::message::Delivery;
use sqlx::{PgConnection, Postgres, Transaction};
use std::collections::{HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;
use tracing::Instrument;
use uuid::Uuid;

/// Subtransactions a batch may open at most. PostgreSQL caches 64
/// subtransaction ids per backend; a transaction with more makes every
/// other backend's snapshots consult `pg_subtrans`, which is slow.
pub(super) const MAX_BATCH: u16 = 32;

/// How the handlers of one transaction are kept apart (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isolation {
    /// No savepoints: the first event a handler does not apply ends the
    /// transaction, which is rolled back; that event keeps its verdict and
    /// the others are applied again [`PerEvent`](Isolation::PerEvent).
    None,
    /// A savepoint per event: one that is not applied is rolled back alone.
    PerEvent,
}

/// Why a batch's transaction as a whole did not commit.
enum Failure {
    /// The database is unavailable: wait it out, then try the same batch again.
    Outage(Box<dyn std::error::Error + Send + Sync>),
    /// Anything else (the commit refused, a savepoint lost): which event is
    /// to blame is unknown, so each is tried again in a transaction alone.
    Batch(HandlerError),
    /// The handler of the event at `position`, in a batch applied without
    /// savepoints, did not apply it: the transaction was rolled back, the
    /// event's verdict is `outcome`, and the others are to be applied again.
    Alone { position: usize, outcome: Applied },
}

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Self {
        match HandlerError::from(error) {
            HandlerError::Unavailable(error) => Failure::Outage(error),
            other => Failure::Batch(other),
        }
    }
}

/// Takes `first` and whatever else is ready, up to `limit` deliveries:
/// what the broker has already handed over, and what arrives within
/// `linger` (zero: don't wait at all, so a lone delivery goes at once).
/// Also returns the error that ended the stream, if it ended.
pub(super) async fn gather(
    first: Delivery,
    deliveries: &mut Deliveries,
    limit: usize,
    linger: Duration,
) -> (Vec<Delivery>, Option<lapin::Error>) {
    use futures::StreamExt as _;
    let mut batch = vec![first];
    let until = tokio::time::Instant::now() + linger;
    while batch.len() < limit {
        // `timeout_at` polls the stream before the clock, so a buffered
        // delivery is taken even when the deadline has already passed.
        match tokio::time::timeout_at(until, deliveries.next()).await {
            Err(_elapsed) => break,
            Ok(Some(Ok(delivery))) => batch.push(delivery),
            Ok(Some(Err(error))) => return (batch, Some(error)),
            Ok(None) => return (batch, Some(super::ended())),
        }
    }
    (batch, None)
}

impl<H: Handler> Consumer<H> {
    /// Admits, applies and settles one batch. `lane` is this consumer's
    /// right to run handlers, already taken by the caller.
    pub(super) async fn run_batch(
        &self,
        session: &Session,
        deliveries: Vec<Delivery>,
        lane: OwnedMutexGuard<()>,
    ) {
        let (mut pending, mut refused) = (Vec::new(), Vec::new());
        for delivery in deliveries {
            match self.admit(delivery) {
                Ok(admitted) => pending.push(admitted),
                Err(refusal) => refused.push(refusal),
            }
        }
        let refusals = join_all(refused.into_iter().map(|r| self.refuse(session, r)));
        let applied = async {
            let applied = self.apply_all(session, pending, lane).await;
            join_all(
                applied
                    .into_iter()
                    .map(|(pending, applied)| self.conclude(session, pending, applied)),
            )
            .await
        };
        tokio::join!(refusals, applied);
    }

    /// Applies `pending` in one transaction, waiting out outages (no
    /// attempt counted) and splitting the batch into transactions of one
    /// event if the batch as a whole fails. At shutdown during an outage
    /// returns only what was decided; the rest stays unacked.
    async fn apply_all(
        &self,
        session: &Session,
        pending: Vec<Pending>,
        lane: OwnedMutexGuard<()>,
    ) -> Vec<(Pending, Applied)> {
        let mut lane = Some(lane);
        let mut groups = VecDeque::from([(pending, Isolation::None)]);
        let mut decided = Vec::new();
        while let Some((group, isolation)) = groups.pop_front() {
            if group.is_empty() {
                continue;
            }
            if !session.pause.wait_until_available().await {
                break;
            }
            let lane = match lane.take() {
                Some(lane) => lane,
                None => session.lane.clone().lock_owned().await,
            };
            match self.transact(&group, isolation, lane).await {
                Ok(applied) => decided.extend(group.into_iter().zip(applied)),
                Err(Failure::Outage(_)) if session.shutdown.is_cancelled() => break,
                Err(Failure::Outage(error)) => {
                    session.pause.report(&*error);
                    groups.push_front((group, isolation));
                }
                Err(Failure::Alone { position, outcome }) => {
                    let mut rest = group;
                    decided.push((rest.remove(position), outcome));
                    groups.push_front((rest, Isolation::PerEvent));
                }
                Err(Failure::Batch(error)) if group.len() > 1 => {
                    tracing::warn!(%error, size = group.len(), "the batch failed as a whole; applying its events one by one");
                    for single in group.into_iter().rev() {
                        groups.push_front((vec![single], Isolation::None));
                    }
                }
                Err(Failure::Batch(error)) => {
                    // A batch of one: the failure is that event's own, as
                    // it would be outside a batch.
                    if let Some(single) = group.into_iter().next() {
                        decided.push((single, Err(error)));
                    }
                }
            }
        }
        decided
    }

    /// One transaction for `group`: the inbox rows, each fresh event's
    /// handler (under a savepoint of its own if `isolation` says so), one
    /// commit, then the `committed` hook of every applied event. Gives up
    /// `lane` before committing.
    async fn transact(
        &self,
        group: &[Pending],
        isolation: Isolation,
        lane: OwnedMutexGuard<()>,
    ) -> Result<Vec<Applied>, Failure> {
        // Not getting a connection at all is an outage whatever the error
        // says (a database that refuses connections answers 55000, say).
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| Failure::Outage(Box::new(e)))?;
        let mut fresh = self.claim_inbox(&mut tx, group).await?;
        // Ids whose row an earlier copy in this batch claimed and gave back.
        let mut given_back = HashSet::new();
        let mut applied = Vec::with_capacity(group.len());
        for pending in group {
            let id = pending.envelope.id;
            // A second copy of an event in the same batch finds its id
            // taken by the first: a duplicate, like any redelivery — unless
            // the first failed, when it is tried on its own account, as it
            // would have been in a transaction of its own.
            let claimed = fresh.remove(&id)
                || (given_back.remove(&id) && self.claim_one(&mut tx, id).await?);
            let outcome = if claimed {
                let span = pending.span.clone();
                self.apply_one(&mut tx, pending, isolation)
                    .instrument(span)
                    .await?
            } else {
                Ok(None)
            };
            let not_applied = claimed && !matches!(outcome, Ok(Some(Outcome::Applied)));
            if not_applied && isolation == Isolation::None && group.len() > 1 {
                // Without a savepoint its writes cannot be undone alone.
                tx.rollback().await?;
                return Err(Failure::Alone {
                    position: applied.len(),
                    outcome,
                });
            }
            applied.push(outcome);
            if not_applied {
                // Alone in the transaction (no savepoint), nothing will be
                // kept: the rollback below takes its inbox row back.
                given_back.insert(id);
            }
        }
        drop(lane);
        let committed: Vec<&Pending> = group
            .iter()
            .zip(&applied)
            .filter(|(_, outcome)| matches!(outcome, Ok(Some(Outcome::Applied))))
            .map(|(pending, _)| pending)
            .collect();
        if committed.is_empty() {
            // Nothing to keep: the inbox rows of ignored or failed events
            // were taken back, duplicates wrote none.
            tx.rollback().await?;
        } else {
            // Handlers emit their replies into the outbox.
            outbox::commit(tx).await?;
            for pending in committed {
                pending
                    .span
                    .in_scope(|| self.handler.committed(&pending.envelope));
            }
        }
        Ok(applied)
    }

    /// Inserts the inbox rows of the whole group in one statement and
    /// returns the ids that were new (the others were processed before).
    async fn claim_inbox(
        &self,
        tx: &mut PgConnection,
        group: &[Pending],
    ) -> Result<HashSet<Uuid>, sqlx::Error> {
        let ids: Vec<Uuid> = group.iter().map(|pending| pending.envelope.id).collect();
        // In id order, so two transactions claiming overlapping ids (a
        // redelivery on another replica) wait for each other in one order.
        let fresh: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO processed_events (event_id, handler) \
             SELECT id, $2 FROM unnest($1::uuid[]) AS id ORDER BY id \
             ON CONFLICT DO NOTHING RETURNING event_id",
        )
        .bind(&ids)
        .bind(&self.service)
        .fetch_all(&mut *tx)
        .await?;
        Ok(fresh.into_iter().collect())
    }

    /// Inserts the inbox row of one event; whether it was new.
    async fn claim_one(&self, tx: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO processed_events (event_id, handler) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(&self.service)
        .execute(&mut *tx)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Runs the handler of one fresh event, under a savepoint if
    /// `isolation` says so. Applied: its writes stay. Ignored or failed:
    /// under a savepoint, rolled back to it and its inbox row taken back,
    /// so the inbox holds only what was really done and a retry is not
    /// mistaken for a duplicate; without one, left for the caller to roll
    /// the whole transaction back. An outage fails the whole batch.
    async fn apply_one(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        pending: &Pending,
        isolation: Isolation,
    ) -> Result<Applied, Failure> {
        if isolation == Isolation::PerEvent {
            // Not released after success: the next event's savepoint nests
            // in this one, and rolling back to the newest undoes only the
            // newest event. One statement per event fewer.
            sqlx::query("SAVEPOINT delivery").execute(&mut **tx).await?;
        }
        let handled = AssertUnwindSafe(self.handler.handle(&pending.envelope, &mut *tx))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(panicked(&*panic)));
        match handled {
            Ok(Outcome::Applied) => Ok(Ok(Some(Outcome::Applied))),
            Err(HandlerError::Unavailable(error)) => Err(Failure::Outage(error)),
            other if isolation == Isolation::None => Ok(other.map(Some)),
            other => {
                sqlx::query("ROLLBACK TO SAVEPOINT delivery")
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("DELETE FROM processed_events WHERE event_id = $1 AND handler = $2")
                    .bind(pending.envelope.id)
                    .bind(&self.service)
                    .execute(&mut **tx)
                    .await?;
                Ok(other.map(Some))
            }
        }
    }
}

/// A panicking handler is a transient failure: its savepoint (or its
/// transaction, dropped) undoes what it did.
fn panicked(panic: &(dyn std::any::Any + Send)) -> HandlerError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned());
    HandlerError::Transient(format!("the handler panicked: {message}").into())
}
