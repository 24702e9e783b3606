//! Queue depths as gauges: how many messages wait in the unroutable queue
//! and in a service's dead-letter queue. Both should be 0; a dashboard or an
//! alert on them is how a person learns that something left the flow.
//!
//! The depth is read with a passive declare (the broker's `message_count`,
//! which counts ready messages, not those a `checkoutctl` is looking at).
//! It does not declare anything: the topology is the runtime's job.

use crate::metrics::{DEAD_LETTERS, UNROUTABLE_MESSAGES};
use crate::topology::Topology;
use lapin::options::QueueDeclareOptions;
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Every `every`, on a channel of its own, reads the depth of the
/// unroutable queue and of `service`'s dead-letter queue into the gauges
/// [`UNROUTABLE_MESSAGES`] and [`DEAD_LETTERS`] (`service` label), from
/// the first tick on, until `shutdown` is cancelled (`Ok`) or the
/// connection is lost (`Err`, so a supervisor can reconnect).
///
/// A channel error (a queue deleted by hand makes the passive declare fail
/// with `NOT_FOUND`, which closes the channel) is logged; the next tick
/// opens a new channel. The gauges then keep their last value.
pub async fn watch_depths(
    connection: Arc<Connection>,
    topology: Topology,
    service: &'static str,
    every: Duration,
    shutdown: CancellationToken,
) -> Result<(), lapin::Error> {
    let unroutable = topology.unroutable();
    let dead_letters = topology.dead_letter_queue(service);
    let unroutable_gauge = metrics::gauge!(UNROUTABLE_MESSAGES);
    let dead_letters_gauge = metrics::gauge!(DEAD_LETTERS, "service" => service);
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut channel: Option<Channel> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let measured = async {
            let ch = match channel.as_ref().filter(|ch| ch.status().connected()) {
                Some(ch) => ch,
                None => channel.insert(connection.create_channel().await?),
            };
            let unroutable = ready(ch, &unroutable).await?;
            let dead_letters = ready(ch, &dead_letters).await?;
            Ok::<_, lapin::Error>((unroutable, dead_letters))
        }
        .await;
        match measured {
            Ok((unroutable, dead_letters)) => {
                unroutable_gauge.set(f64::from(unroutable));
                dead_letters_gauge.set(f64::from(dead_letters));
            }
            Err(error) if !connection.status().connected() => {
                tracing::warn!(%error, "queue depths: broker connection lost");
                return Err(error);
            }
            Err(error) => {
                tracing::warn!(%error, %unroutable, %dead_letters, "queue depths: cannot read; trying again");
                channel = None;
            }
        }
    }
    if let Some(channel) = channel {
        let _ = channel.close(200, ShortString::from("stopped")).await;
    }
    Ok(())
}

/// Messages ready in `queue` (not counting those delivered and unacked),
/// asked with a passive declare: an error if the queue does not exist.
pub async fn ready(channel: &Channel, queue: &str) -> Result<u32, lapin::Error> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let name = ShortString::try_new(queue)
        .map_err(|e| lapin::Error::from(std::io::Error::other(e.to_string())))?;
    Ok(channel
        .queue_declare(name, passive, FieldTable::default())
        .await?
        .message_count())
}
