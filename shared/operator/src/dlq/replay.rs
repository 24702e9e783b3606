//! Sending dead letters back to the queue of the service that failed them.

use super::browse::{give_back, ready_count};
use super::{DeadLetter, Route};
use checkout_events::Subscription;
use checkout_messaging::Topology;
use checkout_messaging::dead_letter::{
    DEATH, NOT_REPLAYED_HEADERS, ORIGINAL_EXCHANGE, ORIGINAL_ROUTING_KEY, set_str,
};
use checkout_messaging::publish::publish_confirmed;
use lapin::options::{BasicAckOptions, BasicGetOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel};

/// What [`replay`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Replayed {
    /// Messages sent back to the failing service's queue and removed from
    /// the dead-letter queue.
    pub replayed: usize,
    /// Messages left in the dead-letter queue: not selected, or selected
    /// but not replayable (those are in `not_replayed`).
    pub left: usize,
    /// The selected messages left in the queue, and why.
    pub not_replayed: Vec<NotReplayed>,
}

/// A selected dead letter that [`replay`] left in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReplayed {
    /// Its message id, if it has one.
    pub message_id: Option<String>,
    /// Why it stays.
    pub why: String,
}

/// Sends the dead letters of `subscription.service` that `select` picks
/// back to that service's own queue — through the service's retry
/// exchange, which routes the work queue's name to the work queue only, so
/// no other subscriber of the event sees it again — and removes each from
/// the dead-letter queue once the broker confirmed the publish.
///
/// A message is replayed only if its original routing key (see
/// [`DeadLetter::original_route`]) is one the service is bound to; others
/// stay in the queue and are reported in [`Replayed::not_replayed`]. The
/// replay keeps the body, properties and trace context, drops the
/// failure's headers (reason, error, attempts, retry count, `x-death`) and
/// records the original route, so a second failure dead-letters it the
/// same way. The service's inbox still deduplicates, so replaying an event
/// that was in fact applied is harmless.
pub async fn replay(
    channel: &Channel,
    topology: &Topology,
    subscription: &Subscription,
    select: impl Fn(&DeadLetter) -> bool,
) -> Result<Replayed, lapin::Error> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let queue = topology.dead_letter_queue(subscription.service);
    let mut outcome = Replayed::default();
    let mut keep = Vec::new();
    // Only the messages there now: a replayed one that fails again comes
    // back behind them, and is not looked at twice.
    let total = ready_count(channel, &queue).await?;
    for _ in 0..total {
        let Some(message) = channel
            .basic_get(
                ShortString::from(queue.as_str()),
                BasicGetOptions::default(),
            )
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        let letter = DeadLetter::from_delivery(delivery.properties, delivery.data);
        if !select(&letter) {
            keep.push(delivery.acker);
            continue;
        }
        match send_back(channel, topology, subscription, &letter).await {
            Ok(()) => {
                delivery.acker.ack(BasicAckOptions::default()).await?;
                outcome.replayed += 1;
            }
            Err(why) => {
                tracing::warn!(message_id = ?letter.message_id, %why, "not replayed; the message stays in the queue");
                outcome.not_replayed.push(NotReplayed {
                    message_id: letter.message_id.clone(),
                    why,
                });
                keep.push(delivery.acker);
            }
        }
    }
    outcome.left = keep.len();
    give_back(channel, &queue, keep).await?;
    Ok(outcome)
}

/// Publishes one selected letter to its service's queue through the
/// service's retry exchange, if its original route is one the service is
/// bound to; `Err` says why it stays in the dead-letter queue.
async fn send_back(
    channel: &Channel,
    topology: &Topology,
    subscription: &Subscription,
    letter: &DeadLetter,
) -> Result<(), String> {
    let work_queue = topology.queue(subscription.service);
    let route = letter.original_route(&work_queue).ok_or_else(|| {
        format!(
            "no original route: neither {ORIGINAL_ROUTING_KEY} nor an {DEATH} entry for {work_queue}"
        )
    })?;
    if !subscribed(subscription, &route.routing_key) {
        return Err(format!(
            "routing key {:?} is not bound to {work_queue}",
            route.routing_key
        ));
    }
    publish_confirmed(
        channel,
        &topology.retry_exchange(subscription.service),
        &work_queue,
        &letter.body,
        replay_properties(letter, &route),
    )
    .await
}

/// The letter's properties for its replay: the failure's and the broker's
/// headers removed, the original route recorded.
fn replay_properties(letter: &DeadLetter, route: &Route) -> BasicProperties {
    let mut inner = letter.headers.inner().clone();
    for key in NOT_REPLAYED_HEADERS {
        inner.remove(*key);
    }
    let mut headers = FieldTable::from(inner);
    set_str(&mut headers, ORIGINAL_EXCHANGE, &route.exchange);
    set_str(&mut headers, ORIGINAL_ROUTING_KEY, &route.routing_key);
    letter.properties().clone().with_headers(headers)
}

/// Whether one of `subscription`'s bindings matches `routing_key`, with the
/// topic exchange's rules (`*` one word, `#` zero or more).
fn subscribed(subscription: &Subscription, routing_key: &str) -> bool {
    subscription
        .routing_keys
        .iter()
        .any(|pattern| topic_matches(pattern, routing_key))
}

fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(pattern: &[&str], key: &[&str]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&"#", rest)) => (0..=key.len()).any(|skip| go(rest, &key[skip..])),
            Some((word, rest)) => key
                .split_first()
                .is_some_and(|(k, key_rest)| (*word == "*" || word == k) && go(rest, key_rest)),
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    go(&pattern, &key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_match_routing_keys_as_a_topic_exchange_does() {
        for (pattern, key, matches) in [
            ("payment.captured", "payment.captured", true),
            ("payment.captured", "payment.failed", false),
            ("payment.*", "payment.failed", true),
            ("payment.*", "payment.failed.late", false),
            ("payment.#", "payment", true),
            ("payment.#", "payment.failed.late", true),
            ("#", "anything.at.all", true),
            ("*.created", "order.created", true),
            ("*.created", "created", false),
        ] {
            assert_eq!(topic_matches(pattern, key), matches, "{pattern} ~ {key}");
        }
    }
}
