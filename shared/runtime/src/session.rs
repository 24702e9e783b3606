//! Broker sessions: two connections (one consumes and acks, one publishes),
//! the service's own names declared on them, and the registered roles
//! (relay, consumers, depth gauges) running on them — supervised, so a
//! lost connection ends the session and a new one starts after a capped,
//! jittered backoff (see the [`crate::Runtime`] docs).

use crate::config::ServiceInfo;
use crate::http::ErrorChain;
use anyhow::Context as _;
use checkout_messaging::Topology;
use futures::future::BoxFuture;
use lapin::Connection;
use lapin::types::ShortString;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A broker session's two connections.
#[derive(Clone)]
pub(crate) struct Connections {
    /// Deliveries and acks; never publishes.
    pub(crate) consume: Arc<Connection>,
    /// Publishes (relay, retries, dead letters).
    pub(crate) publish: Arc<Connection>,
}

/// A role that runs on a broker session's connections until its token is
/// cancelled (`Ok`) or a connection fails (`Err`).
pub(crate) type Role = Box<
    dyn Fn(Connections, CancellationToken) -> BoxFuture<'static, Result<(), lapin::Error>>
        + Send
        + Sync,
>;

/// Everything a broker session needs.
pub(crate) struct BrokerSessions {
    pub(crate) service: ServiceInfo,
    pub(crate) amqp_url: String,
    pub(crate) topology: Topology,
    pub(crate) retries: checkout_messaging::RetryPolicy,
    pub(crate) roles: Vec<Role>,
    pub(crate) broker_up: Arc<AtomicBool>,
}

/// How often the dead-letter and unroutable queue depths are read.
pub(crate) const DEPTH_EVERY: Duration = Duration::from_secs(15);

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// Runs broker sessions until `shutdown`, reconnecting after each lost one.
pub(crate) async fn supervise(sessions: BrokerSessions, shutdown: CancellationToken) {
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        match sessions.run(&shutdown, &mut failures).await {
            Ok(()) => break,
            Err(error) => {
                sessions.broker_up.store(false, Ordering::SeqCst);
                failures = failures.saturating_add(1);
                let delay = backoff(failures);
                tracing::warn!(
                    error = %ErrorChain(error.as_ref()),
                    retry_in = ?delay,
                    "broker session ended; reconnecting"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

impl BrokerSessions {
    /// Connects both connections and declares the service's own names on
    /// them; on failure closes whatever it opened.
    async fn open(&self) -> anyhow::Result<Connections> {
        // The namespace in the name lets an operator (or a test) close the
        // connections of one deployment only.
        let name = format!("{} ({})", self.service.binary, self.topology.exchange());
        let connect = async |role: &str| {
            checkout_messaging::connect(&self.amqp_url, &format!("{name} {role}"))
                .await
                .map(Arc::new)
                .context("cannot connect to the broker at AMQP_URL")
        };
        let consume = connect("consume").await?;
        let publish = match connect("publish").await {
            Ok(publish) => publish,
            Err(error) => {
                let _ = consume
                    .close(200, ShortString::from("session failed"))
                    .await;
                return Err(error);
            }
        };
        let connections = Connections { consume, publish };
        // Only the service's own names: the shared exchanges, the other
        // services' queues and the bindings were provisioned by an
        // administrator, and this service's broker user may not declare
        // them. On the connection, not a channel: a dead-letter queue left
        // by an older version with other arguments closes the channel that
        // declares it, and declaring goes on with a new one.
        if let Err(error) = self
            .topology
            .declare_own(&connections.consume, self.service.name, &self.retries)
            .await
        {
            for connection in [&connections.consume, &connections.publish] {
                let _ = connection
                    .close(200, ShortString::from("session failed"))
                    .await;
            }
            return Err(anyhow::Error::new(error).context("cannot declare the service's queues"));
        }
        Ok(connections)
    }

    /// One session: `Ok` when it ended because of `shutdown`, `Err` when
    /// the broker was unreachable or the connection was lost.
    async fn run(&self, shutdown: &CancellationToken, failures: &mut u32) -> anyhow::Result<()> {
        let connections = self.open().await?;
        tracing::info!(exchange = %self.topology.exchange(), "broker session started");
        *failures = 0;
        self.broker_up.store(true, Ordering::SeqCst);

        let stop = shutdown.child_token();
        let mut roles = JoinSet::new();
        for role in &self.roles {
            roles.spawn(role(connections.clone(), stop.clone()));
        }
        let ended = tokio::select! {
            _ = shutdown.cancelled() => Ok(()),
            Some(result) = roles.join_next() => match result {
                Ok(Ok(())) => Err(anyhow::anyhow!("a broker role stopped unexpectedly")),
                Ok(Err(error)) => Err(anyhow::Error::new(error).context("broker connection lost")),
                Err(panic) => Err(anyhow::anyhow!("a broker role panicked: {panic}")),
            },
        };
        self.broker_up.store(false, Ordering::SeqCst);
        stop.cancel();
        while roles.join_next().await.is_some() {}
        for connection in [connections.consume, connections.publish] {
            let _ = connection
                .close(200, ShortString::from("session ended"))
                .await;
        }
        ended
    }
}

/// Exponential backoff from 250 ms, capped at 15 s, with jitter: a random
/// point in the upper half of the window, so replicas that lost the broker
/// together do not reconnect in lockstep.
fn backoff(failures: u32) -> Duration {
    let window = FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
        .min(MAX_BACKOFF);
    let random = RandomState::new().hash_one(failures);
    let half = window / 2;
    half + Duration::from_nanos(random % (half.as_nanos().max(1) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        for failures in 1..40 {
            let window = FIRST_BACKOFF
                .saturating_mul(2u32.saturating_pow(failures - 1))
                .min(MAX_BACKOFF);
            let delay = backoff(failures);
            assert!(
                delay >= window / 2 && delay <= window,
                "{failures}: {delay:?}"
            );
        }
        assert!(backoff(30) <= MAX_BACKOFF);
    }
}
