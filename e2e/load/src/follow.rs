//! Following orders to their final state.
//!
//! The checkout announces every final state as an event (`order.confirmed`,
//! `order.cancelled`), so the load tool binds a private, exclusive queue to
//! the checkout's exchange and listens, rather than polling
//! `GET /orders/{id}` (which at 1,000 orders/s would be a second load on the
//! Order service). The event is published by the Order service's relay after
//! the order's final state committed, so "POST → final" here is what a
//! downstream consumer sees: the saga plus one relay hop.
//!
//! An event can arrive before the POST's response does (the response and
//! the saga race); the [`Tracker`] keeps such early finals until the POST
//! reports its order id. Finals of orders this run did not place (another
//! client's) are never matched and do not count.

use crate::mix::Kind;
use crate::stats::Stats;
use futures::StreamExt as _;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::oneshot;
use uuid::Uuid;

/// How an order ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `OrderConfirmed` was published.
    Confirmed,
    /// `OrderCancelled` was published.
    Cancelled,
}

#[derive(Debug)]
struct Pending {
    kind: Kind,
    due: Instant,
    done: Option<oneshot::Sender<Outcome>>,
}

#[derive(Debug, Default)]
struct State {
    pending: HashMap<Uuid, Pending>,
    early: HashMap<Uuid, Outcome>,
    stats: Stats,
    load_running: bool,
}

/// Matches accepted orders with their final events and keeps the counts.
#[derive(Debug, Clone, Default)]
pub struct Tracker(Arc<Mutex<State>>);

impl Tracker {
    /// A tracker that counts finals as "during load" until [`Tracker::load_over`].
    pub fn new() -> Self {
        let tracker = Self::default();
        tracker.lock().load_running = true;
        tracker
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain counters behind;
        // reading them is still sound.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the counters.
    pub fn with_stats<T>(&self, f: impl FnOnce(&mut Stats) -> T) -> T {
        f(&mut self.lock().stats)
    }

    /// Stops counting finals as arriving during the load.
    pub fn load_over(&self) {
        self.lock().load_running = false;
    }

    /// How many accepted orders are not final yet.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// Records an accepted order, due at `due`; the receiver fires when it
    /// is final.
    pub fn accepted(&self, id: Uuid, kind: Kind, due: Instant) -> oneshot::Receiver<Outcome> {
        let (done, receiver) = oneshot::channel();
        let mut state = self.lock();
        state.stats.accepted += 1;
        let pending = Pending {
            kind,
            due,
            done: Some(done),
        };
        match state.early.remove(&id) {
            Some(outcome) => state.finish(pending, outcome),
            None => {
                state.pending.insert(id, pending);
            }
        }
        receiver
    }

    /// Records that order `id` ended with `outcome`.
    pub fn finished(&self, id: Uuid, outcome: Outcome) {
        let mut state = self.lock();
        match state.pending.remove(&id) {
            Some(pending) => state.finish(pending, outcome),
            None => {
                state.early.insert(id, outcome);
            }
        }
    }

    /// Gives up on the orders still pending and returns the final counts.
    pub fn finish_run(&self) -> Stats {
        let mut state = self.lock();
        state.stats.not_final = state.pending.len() as u64;
        state.stats.clone()
    }
}

impl State {
    fn finish(&mut self, mut pending: Pending, outcome: Outcome) {
        let elapsed = pending.due.elapsed();
        let stats = &mut self.stats;
        if self.load_running {
            stats.final_during_load += 1;
        }
        stats.to_final.record(elapsed);
        match outcome {
            Outcome::Confirmed => {
                stats.confirmed += 1;
                stats.to_confirmed.record(elapsed);
            }
            Outcome::Cancelled => {
                stats.cancelled += 1;
                stats.to_cancelled.record(elapsed);
            }
        }
        if pending.kind.should_confirm() != (outcome == Outcome::Confirmed) {
            stats.unexpected += 1;
        }
        if let Some(done) = pending.done.take() {
            // The client may have stopped waiting; nothing to tell then.
            let _ = done.send(outcome);
        }
    }
}

/// A private queue receiving the checkout's final-state events.
#[derive(Debug)]
pub struct Follower {
    channel: Channel,
    queue: String,
}

impl Follower {
    /// Declares an exclusive, server-named queue bound to `exchange` for
    /// `order.confirmed` and `order.cancelled`. Fails if the exchange does
    /// not exist (no checkout running in that broker namespace).
    pub async fn bind(connection: &Connection, exchange: &str) -> anyhow::Result<Self> {
        let channel = connection.create_channel().await?;
        let queue = channel
            .queue_declare(
                ShortString::from(""),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let queue = queue.name().as_str().to_owned();
        for key in ["order.confirmed", "order.cancelled"] {
            channel
                .queue_bind(
                    ShortString::from(queue.as_str()),
                    ShortString::from(exchange),
                    ShortString::from(key),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot bind to the exchange {exchange:?} ({e}); is a checkout running \
                         with that BROKER_NAMESPACE (--namespace)?"
                    )
                })?;
        }
        channel
            .basic_qos(2048, BasicQosOptions { global: false })
            .await?;
        Ok(Self { channel, queue })
    }

    /// Feeds every final event into `tracker` until the channel closes.
    /// Deliveries are auto-acked: the queue is this run's own and dies with it.
    pub async fn run(self, tracker: Tracker) -> anyhow::Result<()> {
        let mut deliveries = self
            .channel
            .basic_consume(
                ShortString::from(self.queue.as_str()),
                ShortString::from("checkout-load"),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        while let Some(delivery) = deliveries.next().await {
            let delivery = delivery?;
            if let Some((id, outcome)) = parse(&delivery.data) {
                tracker.finished(id, outcome);
            }
        }
        Ok(())
    }
}

/// The order id and outcome of an `OrderConfirmed`/`OrderCancelled`
/// envelope; `None` for anything else.
fn parse(body: &[u8]) -> Option<(Uuid, Outcome)> {
    let envelope: serde_json::Value = serde_json::from_slice(body).ok()?;
    let outcome = match envelope.get("type")?.as_str()? {
        "OrderConfirmed" => Outcome::Confirmed,
        "OrderCancelled" => Outcome::Cancelled,
        _ => return None,
    };
    let id = envelope.get("data")?.get("order_id")?.as_str()?;
    Some((Uuid::parse_str(id).ok()?, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_early_final_is_matched_when_the_post_answers() {
        let tracker = Tracker::new();
        let id = Uuid::now_v7();
        tracker.finished(id, Outcome::Confirmed);
        drop(tracker.accepted(id, Kind::Good, Instant::now() - Duration::from_millis(5)));
        let stats = tracker.finish_run();
        assert_eq!(
            (stats.confirmed, stats.not_final, stats.unexpected),
            (1, 0, 0)
        );
    }

    #[test]
    fn a_declined_order_that_confirms_is_unexpected() {
        let tracker = Tracker::new();
        let id = Uuid::now_v7();
        drop(tracker.accepted(id, Kind::Declined, Instant::now()));
        tracker.finished(id, Outcome::Confirmed);
        assert_eq!(tracker.finish_run().unexpected, 1);
    }

    #[test]
    fn orders_never_finished_are_reported() {
        let tracker = Tracker::new();
        drop(tracker.accepted(Uuid::now_v7(), Kind::Good, Instant::now()));
        tracker.load_over();
        assert_eq!(tracker.finish_run().not_final, 1);
    }

    #[test]
    fn only_final_order_events_parse() {
        let id = Uuid::now_v7();
        let body = serde_json::json!({ "type": "OrderCancelled", "data": { "order_id": id } });
        assert_eq!(
            parse(body.to_string().as_bytes()),
            Some((id, Outcome::Cancelled))
        );
        let other = serde_json::json!({ "type": "OrderCreated", "data": { "order_id": id } });
        assert_eq!(parse(other.to_string().as_bytes()), None);
        assert_eq!(parse(b"not json"), None);
    }
}
