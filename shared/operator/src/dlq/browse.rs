//! Reading a dead-letter queue without consuming it: fetch, then give
//! everything back at once (see the [`super`] docs for why that is safe);
//! and purging it.

use super::DeadLetter;
use lapin::Channel;
use lapin::options::{BasicGetOptions, BasicNackOptions, QueuePurgeOptions};
use lapin::types::ShortString;
use std::time::Duration;

/// Reads up to `limit` messages of `queue` without removing them (each is
/// fetched, then returned to the queue).
pub async fn peek(
    channel: &Channel,
    queue: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>, lapin::Error> {
    let mut taken = Vec::new();
    let mut letters = Vec::new();
    while letters.len() < limit {
        let Some(message) = channel
            .basic_get(ShortString::from(queue), BasicGetOptions::default())
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        letters.push(DeadLetter::from_delivery(
            delivery.properties,
            delivery.data,
        ));
        taken.push(delivery.acker);
    }
    // Give them all back at once, so none is fetched twice above.
    give_back(channel, queue, taken).await?;
    Ok(letters)
}

/// Finds the first dead letter of `queue` whose message id is `message_id`,
/// without removing anything. Messages are fetched one at a time and only
/// their id is kept until the match, so memory does not grow with the
/// queue; the search stops at the match, and everything fetched is given
/// back (the messages after the match are never fetched).
pub async fn find(
    channel: &Channel,
    queue: &str,
    message_id: &str,
) -> Result<Option<DeadLetter>, lapin::Error> {
    let mut taken = Vec::new();
    let mut found = None;
    while let Some(message) = channel
        .basic_get(ShortString::from(queue), BasicGetOptions::default())
        .await?
    {
        let delivery = message.delivery;
        taken.push(delivery.acker);
        let letter = DeadLetter::from_delivery(delivery.properties, delivery.data);
        if letter.message_id.as_deref() == Some(message_id) {
            found = Some(letter);
            break;
        }
    }
    give_back(channel, queue, taken).await?;
    Ok(found)
}

/// Returns fetched messages to their queue and waits (bounded) until the
/// queue counts them again, on top of those that were never fetched.
///
/// A quorum queue applies a requeue asynchronously: without the wait, a
/// `list` followed at once by a `show` or `replay` — or anything reading the
/// queue's depth — could miss the messages that were only being looked at.
pub(super) async fn give_back(
    channel: &Channel,
    queue: &str,
    ackers: Vec<lapin::Acker>,
) -> Result<(), lapin::Error> {
    if ackers.is_empty() {
        return Ok(());
    }
    let returned = ackers.len() + ready_count(channel, queue).await?;
    for acker in ackers {
        acker
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await?;
    }
    let deadline = tokio::time::Instant::now() + GIVE_BACK_WAIT;
    while ready_count(channel, queue).await? < returned {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                queue,
                returned,
                "the broker has not requeued every message yet"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// How long [`give_back`] waits for the broker to count requeued messages.
const GIVE_BACK_WAIT: Duration = Duration::from_secs(5);

/// The number of messages ready in `queue`.
pub(super) async fn ready_count(channel: &Channel, queue: &str) -> Result<usize, lapin::Error> {
    Ok(checkout_messaging::depth::ready(channel, queue).await? as usize)
}

/// Removes every message of `queue`; returns how many.
pub async fn purge(channel: &Channel, queue: &str) -> Result<u32, lapin::Error> {
    channel
        .queue_purge(ShortString::from(queue), QueuePurgeOptions::default())
        .await
}
