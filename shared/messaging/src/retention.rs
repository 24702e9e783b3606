//! How long the messaging tables keep what they no longer need, and the
//! pruning that enforces it.
//!
//! - Published outbox rows are kept [`DEFAULT_OUTBOX`] (7 days): nothing
//!   reads them again; they are there for a person asking "was this event
//!   ever published, and when?". Unpublished rows, parked ones included,
//!   are never pruned, however old: they are events still owed.
//! - Inbox rows (`processed_events`) are kept [`DEFAULT_INBOX`] (14 days);
//!   [`Retention::inbox`] says why that is long enough.
//!
//! The relay prunes both tables every [`PRUNE_EVERY`] when it is idle, so a
//! service that runs a relay needs nothing more. A service without a relay
//! (one that only consumes) runs [`run`] instead, or its inbox grows for
//! ever. Deletes go in chunks of [`CHUNK`] rows, each its own short
//! statement (an index range scan, then a delete by row address: 6–10 ms
//! per chunk measured on 1.2 M inbox and 300 k outbox rows), so a first
//! prune of a large table neither holds locks nor writes WAL in one long
//! burst, and stopping between chunks loses nothing.

use sqlx::PgPool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long published outbox rows are kept, by default.
pub const DEFAULT_OUTBOX: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long inbox rows are kept, by default; see [`Retention::inbox`].
pub const DEFAULT_INBOX: Duration = Duration::from_secs(14 * 24 * 3600);
/// How often the relay (or [`run`]) prunes.
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Rows deleted per statement.
pub const CHUNK: i64 = 10_000;
/// A retention longer than this keeps rows as long as this: "for ever"
/// (`Duration::MAX`) would overflow PostgreSQL's interval.
const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How long each messaging table keeps the rows it no longer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Published outbox rows older than this (since publishing) are deleted.
    pub outbox: Duration,
    /// Inbox rows older than this (since the event was handled) are deleted.
    ///
    /// An inbox row is what turns a second copy of an event into a no-op,
    /// so it must outlive every way a second copy can arrive:
    /// - the relay republishes a row whose confirm it did not see (a crash
    ///   or a confirm timeout between publishing and marking): seconds;
    /// - the broker redelivers an unacked delivery after a consumer's
    ///   connection is lost, and the retry delay queues send a copy back
    ///   after at most the longest retry delay: seconds to minutes;
    /// - an operator replays a dead-letter queue (`checkoutctl dlq replay`)
    ///   after fixing a cause: days — a dead letter left over a long
    ///   weekend or a holiday. The replay goes to the queue of the service
    ///   that failed it, which may have applied the event on an earlier
    ///   delivery (a failure after its commit, before its ack).
    ///
    /// Two weeks covers the last with room to spare; a copy arriving later
    /// than that would be applied a second time. Make it longer (never
    /// shorter) if dead letters may wait longer before a replay.
    pub inbox: Duration,
}

impl Default for Retention {
    /// [`DEFAULT_OUTBOX`] and [`DEFAULT_INBOX`].
    fn default() -> Self {
        Self {
            outbox: DEFAULT_OUTBOX,
            inbox: DEFAULT_INBOX,
        }
    }
}

/// One chunk of published outbox rows: a range scan of the partial index
/// `outbox_published_at`, then a delete by physical row address (a TID
/// scan). The `ORDER BY` makes the planner use the index for the range:
/// without it, the generic plan of a plain `DELETE … IN (SELECT … LIMIT)`
/// seq-scanned the table (259 ms per chunk of a 1.2 M-row inbox, against
/// 6–10 ms). A row's address cannot be reused while the statement runs
/// (its snapshot keeps the row from being vacuumed), and published rows
/// are never updated.
const PRUNE_OUTBOX: &str = "DELETE FROM outbox WHERE ctid = ANY(ARRAY( \
                                SELECT ctid FROM outbox \
                                WHERE published_at < now() - make_interval(secs => $1) \
                                ORDER BY published_at LIMIT $2))";

/// One chunk of inbox rows, the same way, on the primary key: event ids
/// are UUID v7, whose first 48 bits are the event's creation time in
/// milliseconds, so `event_id < $1` (the smallest id of the cutoff's
/// millisecond) is a range scan of the old rows, with no index on
/// `processed_at` to slow every consumer's insert (a bare-insert pgbench
/// here: 5–38 % fewer commits/s with one). `processed_at` stays the rule:
/// an event is created before it is handled, so a row handled before the
/// cutoff is inside the id range, and a row handled after it (a replay of
/// an old event) is kept. An id that is not v7 is never pruned early; it
/// may be kept for ever, which only an envelope that breaks the contract
/// (ids are UUID v7) can cause.
const PRUNE_INBOX: &str = "DELETE FROM processed_events WHERE ctid = ANY(ARRAY( \
                               SELECT ctid FROM processed_events \
                               WHERE event_id < $1 \
                                 AND processed_at < now() - make_interval(secs => $2) \
                               ORDER BY event_id LIMIT $3))";

/// The smallest UUID v7 of `at`'s millisecond (the nil UUID for no time,
/// which selects nothing): every v7 id created before `at` is below it.
fn uuid_v7_floor(at: Option<SystemTime>) -> Uuid {
    let millis = at
        .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_millis());
    // 48 bits of milliseconds last until the year 10889.
    let millis = u64::try_from(millis).unwrap_or(u64::MAX).min((1 << 48) - 1);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

/// How many rows one [`prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Published outbox rows.
    pub outbox: u64,
    /// Inbox (`processed_events`) rows.
    pub inbox: u64,
}

/// Deletes published outbox rows and inbox rows older than `retention`
/// says, [`CHUNK`] rows per statement, until none is left. Unpublished
/// outbox rows are never deleted. Safe next to running relays, consumers
/// and other replicas pruning at the same time.
pub async fn prune(pool: &PgPool, retention: Retention) -> Result<Pruned, sqlx::Error> {
    let mut pruned = Pruned::default();
    loop {
        let done = sqlx::query(PRUNE_OUTBOX)
            .bind(retention.outbox.min(LONGEST).as_secs_f64())
            .bind(CHUNK)
            .execute(pool)
            .await?;
        pruned.outbox += done.rows_affected();
        if done.rows_affected() < CHUNK as u64 {
            break;
        }
    }
    let inbox = retention.inbox.min(LONGEST);
    loop {
        let done = sqlx::query(PRUNE_INBOX)
            .bind(uuid_v7_floor(SystemTime::now().checked_sub(inbox)))
            .bind(inbox.as_secs_f64())
            .bind(CHUNK)
            .execute(pool)
            .await?;
        pruned.inbox += done.rows_affected();
        if done.rows_affected() < CHUNK as u64 {
            break;
        }
    }
    Ok(pruned)
}

/// [`prune`], logging what it did; failures are logged and left to the
/// next round (the rows are still there then).
pub(crate) async fn prune_and_log(pool: &PgPool, retention: Retention) {
    match prune(pool, retention).await {
        Ok(pruned) if pruned != Pruned::default() => tracing::info!(
            outbox_rows = pruned.outbox,
            inbox_rows = pruned.inbox,
            "pruned published outbox rows and processed events"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "pruning the messaging tables failed"),
    }
}

/// Prunes now and then every [`PRUNE_EVERY`] until `shutdown` is
/// cancelled; for a service that runs no relay (the relay prunes by itself).
/// A shutdown in the middle of a prune stops it at once: the chunk under
/// way is one short statement that commits or not on its own, and the
/// next prune takes up whatever is left.
pub async fn run(pool: PgPool, retention: Retention, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = prune_and_log(&pool, retention) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_v7_id_created_before_the_cutoff_is_below_its_floor() {
        let cutoff = UNIX_EPOCH + Duration::from_millis(1_780_000_000_123);
        let floor = uuid_v7_floor(Some(cutoff));
        let before = Uuid::new_v7(uuid::Timestamp::from_unix_time(
            1_780_000_000,
            122_000_000,
            0,
            0,
        ));
        let same_ms = Uuid::new_v7(uuid::Timestamp::from_unix_time(
            1_780_000_000,
            123_000_000,
            0,
            0,
        ));
        assert!(before < floor);
        assert!(same_ms >= floor, "the cutoff's own millisecond is kept");
        assert_eq!(
            uuid_v7_floor(None),
            Uuid::nil(),
            "no cutoff selects nothing"
        );
    }
}
