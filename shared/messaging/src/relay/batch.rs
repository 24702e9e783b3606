//! One batch: claim due rows, publish them all, await the confirms
//! together, then mark the confirmed rows published and record each
//! refusal on its row — in the claim's transaction (see the [`super`] docs).

use super::send::Sent;
use super::{Relay, RelayError};
use crate::metrics::{MESSAGES_PUBLISHED, OUTBOX_REFUSALS};
use crate::spans;
use lapin::{Channel, Confirmation};
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, Postgres, Transaction};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Span;
use uuid::Uuid;

#[derive(Debug, FromRow)]
pub(super) struct PendingRow {
    pub(super) id: i64,
    pub(super) event_id: Uuid,
    pub(super) event_type: String,
    pub(super) routing_key: String,
    /// The envelope as PostgreSQL renders the jsonb: published as it is,
    /// rather than parsed into a `serde_json::Value` and serialised again.
    pub(super) envelope: String,
    pub(super) trace_context: Json<HashMap<String, String>>,
    /// The envelope's correlation id (`messaging.message.conversation_id`).
    pub(super) correlation_id: Option<String>,
    /// Refusals so far.
    pub(super) attempts: i32,
}

/// What one batch did, for the relay's loop.
#[derive(Debug, Default)]
pub(super) struct Batch {
    /// Rows confirmed and marked published.
    pub(super) published: usize,
    /// The shortest backoff given to a refused row that was not parked:
    /// when to look again even if nothing else wakes the relay.
    pub(super) retry_in: Option<Duration>,
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
                            trace_context, attempts, envelope ->> 'correlation_id' AS correlation_id \
                     FROM outbox \
                     WHERE published_at IS NULL AND parked_at IS NULL AND next_attempt_at <= now() \
                     ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED";

/// A batch claimed and sent, its confirms still to come: the claim's
/// transaction (holding the rows' locks) travels with it to be marked and
/// committed by [`Relay::settle`]. Dropping it rolls the claim back.
pub(super) struct Claimed {
    tx: Transaction<'static, Postgres>,
    claimed: usize,
    sent: Sent,
    /// When the confirms are due: `confirm_timeout` after the first publish.
    deadline: Instant,
}

/// What the broker answered for a batch.
#[derive(Default)]
struct Settled {
    published: Vec<i64>,
    refusals: Refusals,
    retry_in: Option<Duration>,
    failure: Option<RelayError>,
    timed_out: bool,
}

impl Claimed {
    /// Whether another batch should be claimed at once: this one was full
    /// (more may be waiting) and every row of it went out.
    pub(super) fn wants_next(&self, batch_size: i64) -> bool {
        self.claimed as i64 == batch_size && self.sent.failure.is_none() && !self.sent.timed_out
    }
}

impl Relay {
    /// One batch from claim to commit, alone on `channel`.
    pub(super) async fn batch(&self, channel: &Channel) -> Result<Batch, RelayError> {
        match self.claim_and_send(channel).await? {
            Some(claimed) => self.settle(claimed).await,
            None => Ok(Batch::default()),
        }
    }

    /// The first half of a batch: claims due rows and publishes them all,
    /// without waiting for a confirm (`None`: nothing is due). Another
    /// batch's claim may follow at once: its `SKIP LOCKED` passes over
    /// these rows, locked until [`Relay::settle`] commits or the
    /// [`Claimed`] is dropped.
    pub(super) async fn claim_and_send(
        &self,
        channel: &Channel,
    ) -> Result<Option<Claimed>, RelayError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<PendingRow> = sqlx::query_as(CLAIM)
            .bind(self.batch_size)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let claimed = rows.len();
        let deadline = Instant::now() + self.confirm_timeout;
        // Send everything first, then await the confirms together: one
        // round trip per batch instead of one per message.
        let sent = self.send_all(channel, rows, deadline).await;
        Ok(Some(Claimed {
            tx,
            claimed,
            sent,
            deadline,
        }))
    }

    /// The second half: awaits the batch's confirms, marks the confirmed
    /// rows and records the refusals, and commits.
    pub(super) async fn settle(&self, batch: Claimed) -> Result<Batch, RelayError> {
        let Claimed {
            mut tx,
            claimed,
            sent,
            deadline,
        } = batch;
        let settled = self.await_confirms(sent, deadline).await;
        mark(&mut tx, &settled).await?;
        tx.commit().await?;

        if let Some(error) = settled.failure {
            return Err(error);
        }
        if settled.timed_out {
            return Err(RelayError::ConfirmTimeout {
                unconfirmed: claimed - settled.published.len() - settled.refusals.ids.len(),
                claimed,
                timeout: self.confirm_timeout,
            });
        }
        Ok(Batch {
            published: settled.published.len(),
            retry_in: settled.retry_in,
        })
    }

    /// Awaits the confirm of every row sent; a refusal is recorded for its
    /// row (see [`Relay::refused`]), anything else fails the batch.
    async fn await_confirms(&self, sent: Sent, deadline: Instant) -> Settled {
        let mut settled = Settled {
            published: Vec::with_capacity(sent.in_flight.len()),
            failure: sent.failure,
            timed_out: sent.timed_out,
            ..Settled::default()
        };
        for (row, confirm, span) in sent.in_flight {
            // Past the deadline this still takes a confirm that has come
            // (the future is polled before the deadline is checked).
            let confirmation = match tokio::time::timeout_at(deadline, confirm).await {
                Ok(Ok(confirmation)) => confirmation,
                Ok(Err(error)) => {
                    spans::failed(&span, "channel_error", &error.to_string());
                    settled.failure.get_or_insert(error.into());
                    continue;
                }
                Err(_) => {
                    spans::failed(&span, "timeout", "no confirm within the confirm timeout");
                    settled.timed_out = true;
                    continue;
                }
            };
            let reason = match confirmation {
                Confirmation::Ack(None) => {
                    settled.published.push(row.id);
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
                    settled.failure.get_or_insert(RelayError::NotConfirming);
                    continue;
                }
            };
            self.refused(&row, &span, reason, &mut settled);
        }
        settled
    }

    /// Records the broker's refusal of `row`: another attempt after its
    /// backoff, or parked after the last one.
    fn refused(&self, row: &PendingRow, span: &Span, reason: String, settled: &mut Settled) {
        let attempts = u32::try_from(row.attempts).unwrap_or(0).saturating_add(1);
        let park = attempts >= self.max_attempts;
        let delay = refusal_backoff(
            self.first_refusal_backoff,
            self.max_refusal_backoff,
            attempts,
        );
        spans::failed(span, "refused", &reason);
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
            settled.retry_in = Some(settled.retry_in.map_or(delay, |d| d.min(delay)));
        }
        let refusals = &mut settled.refusals;
        refusals.ids.push(row.id);
        refusals.errors.push(reason);
        refusals.delays_secs.push(delay.as_secs_f64());
        refusals.park.push(park);
    }
}

/// Marks the confirmed rows published and records the refusals, in the
/// batch's transaction.
async fn mark(tx: &mut PgConnection, settled: &Settled) -> Result<(), sqlx::Error> {
    if !settled.published.is_empty() {
        // A published row keeps no secret (Event::SECRET_FIELDS): the
        // broker has the event, and the outbox copy is kept for days.
        sqlx::query(
            "UPDATE outbox SET published_at = now(), \
                 envelope = CASE WHEN secret_fields IS NULL THEN envelope \
                     ELSE jsonb_set(envelope, '{data}', (envelope -> 'data') - secret_fields) END \
             WHERE id = ANY($1)",
        )
        .bind(&settled.published)
        .execute(&mut *tx)
        .await?;
    }
    let refusals = &settled.refusals;
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
    Ok(())
}

/// The wait after a row's `attempts`-th refusal: `first`, doubled for each
/// further refusal, never more than `max`.
fn refusal_backoff(first: Duration, max: Duration, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(31);
    first.saturating_mul(1u32 << doublings).min(max)
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
        let span: Duration = (1..super::super::DEFAULT_MAX_ATTEMPTS)
            .map(|attempts| {
                refusal_backoff(
                    super::super::DEFAULT_FIRST_REFUSAL_BACKOFF,
                    super::super::DEFAULT_MAX_REFUSAL_BACKOFF,
                    attempts,
                )
            })
            .sum();
        assert_eq!(span, Duration::from_secs(511 + 10 * 300), "58.5 minutes");
    }
}
