//! Driving the load: an open loop at a fixed rate or a closed loop of N
//! clients, for a bounded time, with progress on stderr.
//!
//! - **Open loop** (`--rate`): one order is due every `1/rate` seconds
//!   whatever the system does, the way independent customers arrive. A slot
//!   is skipped (and counted) only when `max_in_flight` POSTs are already
//!   outstanding, so a stalled service cannot make the tool queue without
//!   bound. Finals are awaited after the load stops.
//! - **Closed loop** (`--clients`): each client places an order, waits until
//!   it is *final*, then places the next. The rate it reaches is the
//!   throughput the whole saga sustains with that many orders in flight,
//!   with no backlog building up in the queues.
//!
//! Either way, after the load stops the run waits up to `drain` for the
//! orders still pending, then reports those as not final.

use crate::follow::{Follower, Tracker};
use crate::mix::Mix;
use crate::stats::Report;
use anyhow::Context as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;
use uuid::Uuid;

/// How to load the checkout.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// A fixed arrival rate, orders per second.
    Open {
        /// Orders per second.
        rate: f64,
        /// The most POSTs outstanding at once before slots are skipped.
        max_in_flight: usize,
    },
    /// N clients, each waiting for its order to be final before the next.
    Closed {
        /// How many clients.
        clients: usize,
    },
}

/// A whole run's settings.
#[derive(Debug, Clone)]
pub struct Run {
    /// The Order service's base URL (loopback only).
    pub order_url: String,
    /// The broker the checkout publishes to.
    pub amqp_url: String,
    /// The checkout's exchange (`<namespace>.events`).
    pub exchange: String,
    /// Open or closed loop.
    pub load: Load,
    /// How long orders are placed.
    pub duration: Duration,
    /// How long to wait for pending orders once the load stops.
    pub drain: Duration,
    /// Which orders.
    pub mix: Mix,
    /// Print a progress line every second on stderr.
    pub progress: bool,
}

/// Shared by every task of a run.
#[derive(Debug)]
struct Ctx {
    http: reqwest::Client,
    orders_url: String,
    mix: Mix,
    tracker: Tracker,
    next: AtomicU64,
}

impl Run {
    /// Runs the load and reports what it measured.
    pub async fn execute(self) -> anyhow::Result<Report> {
        let connection = checkout_messaging::connect(&self.amqp_url, "checkout-load")
            .await
            .with_context(|| format!("cannot connect to the broker at {}", self.amqp_url))?;
        let follower = Follower::bind(&connection, &self.exchange).await?;
        let tracker = Tracker::new();
        let following = tokio::spawn(follower.run(tracker.clone()));

        let ctx = Arc::new(Ctx {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(4096)
                .build()?,
            orders_url: format!("{}/orders", self.order_url.trim_end_matches('/')),
            mix: self.mix.clone(),
            tracker: tracker.clone(),
            next: AtomicU64::new(0),
        });

        let progress = self
            .progress
            .then(|| tokio::spawn(progress(tracker.clone(), Instant::now())));
        let started = Instant::now();
        let deadline = started + self.duration;
        let (mode, load) = match self.load {
            Load::Open {
                rate,
                max_in_flight,
            } => {
                open_loop(&ctx, rate, max_in_flight, deadline).await;
                ("open", rate)
            }
            Load::Closed { clients } => {
                closed_loop(&ctx, clients, deadline, self.drain).await;
                ("closed", clients as f64)
            }
        };
        let duration = started.elapsed();
        tracker.load_over();

        let drain_until = Instant::now() + self.drain;
        while tracker.pending() > 0 && Instant::now() < drain_until {
            if following.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(progress) = progress {
            progress.abort();
        }
        let stats = tracker.finish_run();
        following.abort();
        let _ = connection.close(200, "load done".into()).await;
        Ok(Report {
            mode,
            load,
            duration,
            stats,
        })
    }
}

impl Ctx {
    /// Places the next order, due at `due`. Returns the receiver of its
    /// final state if it was accepted.
    async fn place(
        &self,
        due: Instant,
    ) -> Option<tokio::sync::oneshot::Receiver<crate::follow::Outcome>> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let kind = self.mix.kind(n);
        let body = self.mix.body(n, kind);
        let result = self.http.post(&self.orders_url).json(&body).send().await;
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                let what = if error.is_timeout() {
                    "timeout"
                } else if error.is_connect() {
                    "connect"
                } else {
                    "transport"
                };
                self.error(what);
                return None;
            }
        };
        let status = response.status();
        if status != reqwest::StatusCode::ACCEPTED {
            self.error(&format!("HTTP {}", status.as_u16()));
            return None;
        }
        let id = match response.json::<serde_json::Value>().await {
            Ok(body) => body
                .get("id")
                .and_then(|id| id.as_str())
                .and_then(|id| Uuid::parse_str(id).ok()),
            Err(_) => None,
        };
        let Some(id) = id else {
            self.error("202 without an order id");
            return None;
        };
        self.tracker
            .with_stats(|stats| stats.post.record(due.elapsed()));
        Some(self.tracker.accepted(id, kind, due))
    }

    fn error(&self, what: &str) {
        self.tracker.with_stats(|stats| {
            *stats.errors.entry(what.to_owned()).or_default() += 1;
        });
    }
}

async fn open_loop(ctx: &Arc<Ctx>, rate: f64, max_in_flight: usize, deadline: Instant) {
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut ticks = tokio::time::interval(period);
    // A late tick is still an order that was due: send the missed ones at
    // once rather than quietly lowering the rate.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let due = ticks.tick().await.into_std();
        if due >= deadline {
            break;
        }
        if in_flight.load(Ordering::Relaxed) >= max_in_flight {
            ctx.tracker.with_stats(|stats| stats.skipped += 1);
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (ctx, in_flight) = (ctx.clone(), in_flight.clone());
        tasks.spawn(async move {
            let _ = ctx.place(due).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

async fn closed_loop(ctx: &Arc<Ctx>, clients: usize, deadline: Instant, wait: Duration) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let ctx = ctx.clone();
        tasks.spawn(async move {
            while Instant::now() < deadline {
                let due = Instant::now();
                match ctx.place(due).await {
                    // Give up on an order that never ends (it is reported
                    // as not final) rather than stalling the client for good.
                    Some(done) => {
                        let _ = tokio::time::timeout(wait, done).await;
                    }
                    // Do not hammer a failing service in a tight loop.
                    None => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// One line a second: totals and the last second's rates.
async fn progress(tracker: Tracker, started: Instant) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    let (mut last_accepted, mut last_final) = (0, 0);
    loop {
        ticks.tick().await;
        let (accepted, finals, errors) =
            tracker.with_stats(|s| (s.accepted, s.finals(), s.error_count()));
        eprintln!(
            "{:>4.0}s  accepted {accepted:>8} ({:>5}/s)  final {finals:>8} ({:>5}/s)  pending {:>6}  errors {errors}",
            started.elapsed().as_secs_f64(),
            accepted - last_accepted,
            finals - last_final,
            tracker.pending(),
        );
        (last_accepted, last_final) = (accepted, finals);
    }
}

/// Whether `url` points at this machine: the tool loads loopback only.
pub fn is_loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn only_loopback_targets_are_loaded() {
        assert!(is_loopback("http://127.0.0.1:8080"));
        assert!(is_loopback("http://localhost:8080/"));
        assert!(is_loopback("http://[::1]:8080"));
        assert!(!is_loopback("http://10.0.0.5:8080"));
        assert!(!is_loopback("http://example.com"));
        assert!(!is_loopback("not a url"));
    }
}
