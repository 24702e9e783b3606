//! Waiting for an eventually consistent system without sleeping blindly.
//!
//! Nothing in the checkout happens at the moment the HTTP reply arrives: an
//! order is accepted, then events travel. So a test never sleeps "long
//! enough"; it asks the same question again every [`POLL_INTERVAL`] until the
//! answer is the expected one or the deadline passes, and then fails saying
//! what it waited for and what it saw last.

use std::fmt::Debug;
use std::time::Duration;
use tokio::time::Instant;

/// How long to wait between two looks at the system.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What one look at the system found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe<T> {
    /// The condition holds; here is what the caller asked for.
    Done(T),
    /// Not yet; what was seen instead (quoted if the deadline passes).
    NotYet(String),
}

impl<T> Probe<T> {
    /// Not yet, and this is what was seen instead.
    pub fn not_yet(seen: impl Debug) -> Self {
        Probe::NotYet(format!("{seen:?}"))
    }
}

/// Asks `probe` every [`POLL_INTERVAL`] until it is [`Probe::Done`] or
/// `timeout` has passed.
///
/// An `Err` from `probe` (a service answered 500, a request failed) ends the
/// wait at once: something is broken, and waiting would only hide it.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> anyhow::Result<Probe<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match probe().await? {
            Probe::Done(value) => return Ok(value),
            Probe::NotYet(seen) => seen,
        };
        if Instant::now() >= deadline {
            anyhow::bail!("waited {timeout:?} for {what}; last seen: {seen}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
