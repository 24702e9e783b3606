//! Pausing a consumer while its database is down.
//!
//! An outage of the service's own database is not the message's fault, so
//! it must not use up the message's retries: otherwise an outage longer
//! than the retry budget dead-letters every message that arrives during it
//! (and strands their orders). Instead, the first handler that meets the
//! outage [reports](Pause::report) it; from then on every handler
//! [waits](Pause::wait_until_available) before it starts, one probe asks
//! the database with capped backoff, and when it answers every waiting
//! handler tries its delivery again. Deliveries stay unacked meanwhile, and
//! since no more than the prefetch count are ever unacked, the consumer
//! takes no new ones: the messages wait in the broker.
//!
//! An outage longer than RabbitMQ's `consumer_timeout` (30 min by default)
//! makes the broker close the channel; the session reconnects and the
//! unacked deliveries come again, still without counting an attempt of ours.

use crate::metrics::CONSUMER_PAUSED;
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const FIRST_PROBE_DELAY: Duration = Duration::from_millis(100);
const MAX_PROBE_DELAY: Duration = Duration::from_secs(5);

/// Whether the consumer's database is available, shared by its handlers.
#[derive(Debug, Clone)]
pub(crate) struct Pause {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    service: String,
    available: watch::Sender<bool>,
    probing: AtomicBool,
    shutdown: CancellationToken,
}

impl Pause {
    /// Available to begin with; `shutdown` ends any probe and wait.
    pub(crate) fn new(pool: PgPool, service: &str, shutdown: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                service: service.to_owned(),
                available: watch::Sender::new(true),
                probing: AtomicBool::new(false),
                shutdown,
            }),
        }
    }

    /// Waits until the database is available. `false` if shutdown came first.
    pub(crate) async fn wait_until_available(&self) -> bool {
        let mut available = self.inner.available.subscribe();
        tokio::select! {
            _ = self.inner.shutdown.cancelled() => false,
            up = available.wait_for(|up| *up) => up.is_ok(),
        }
    }

    /// A handler met an outage: pause every handler and start the one
    /// probe that ends the pause (unless one is already running).
    pub(crate) fn report(&self, error: &(dyn std::error::Error + 'static)) {
        self.inner.available.send_replace(false);
        if self.inner.probing.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::warn!(
            service = %self.inner.service,
            %error,
            "database unavailable; consumer paused until it answers again (no attempt is counted)"
        );
        metrics::gauge!(CONSUMER_PAUSED, "service" => self.inner.service.clone()).set(1.0);
        tokio::spawn(self.clone().probe());
    }

    async fn probe(self) {
        let started = Instant::now();
        let mut delay = FIRST_PROBE_DELAY;
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
            match sqlx::query("SELECT 1").execute(&self.inner.pool).await {
                Ok(_) => {
                    tracing::info!(
                        service = %self.inner.service,
                        paused_for = ?started.elapsed(),
                        "database available again; consumer resumed"
                    );
                    break;
                }
                Err(error) => {
                    tracing::debug!(%error, retry_in = ?delay, "database still unavailable");
                    delay = (delay * 2).min(MAX_PROBE_DELAY);
                }
            }
        }
        metrics::gauge!(CONSUMER_PAUSED, "service" => self.inner.service.clone()).set(0.0);
        // Cleared before opening the gate: a handler that meets the outage
        // again right after must be able to start a new probe.
        self.inner.probing.store(false, Ordering::SeqCst);
        self.inner.available.send_replace(true);
    }
}
