//! Publishing one message and waiting for the broker's confirm: how the
//! consumer forwards a delivery to a retry or dead-letter queue, and how the
//! operator tool replays a dead letter. The relay publishes in batches and
//! does not use it.

use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation};

/// Publishes `body` to `exchange` with `routing_key` (a mandatory publish:
/// unroutable is a failure) and waits for the broker's confirm. `channel`
/// must be in confirm mode.
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), String> {
    let exchange = ShortString::try_new(exchange).map_err(|e| e.to_string())?;
    let routing_key = ShortString::try_new(routing_key).map_err(|e| e.to_string())?;
    let confirm = channel
        .basic_publish(
            exchange,
            routing_key,
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            properties,
        )
        .await
        .map_err(|e| e.to_string())?;
    match confirm.await.map_err(|e| e.to_string())? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err("returned as unroutable".to_owned()),
        Confirmation::Nack(_) => Err("nacked by the broker".to_owned()),
        Confirmation::NotRequested => Err("channel not in confirm mode".to_owned()),
    }
}
