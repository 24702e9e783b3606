//! What a handler is given and what it answers: the [`Handler`] trait, its
//! [`Outcome`], and [`HandlerError`] — whose variant decides what becomes of
//! the message — with the classification of database errors behind it.

use checkout_events::{DecodeError, Envelope};
use sqlx::PgConnection;
use std::future::Future;

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
    #[error("permanent: {0}")]
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
