//! Publishing to a test's broker namespace as a producer would (or as a
//! misbehaving one would: any bytes).

use checkout_events::{Envelope, Event};
use checkout_messaging::Topology;
use checkout_runtime::config::Config;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation};
use uuid::Uuid;

/// Publishes `event` in a fresh envelope to `config`'s exchange, as its
/// owner's relay would (the envelope's `source` is the owner's, without
/// trace headers), and returns the envelope.
pub async fn publish<E: Event>(config: &Config, event: &E) -> anyhow::Result<Envelope> {
    let source = checkout_events::owner_of(E::TYPE).map_or("test", |owner| owner.source);
    let envelope = Envelope::new(event, source, Uuid::now_v7(), None)?;
    publish_raw(config, E::ROUTING_KEY, &serde_json::to_vec(&envelope)?).await?;
    Ok(envelope)
}

/// Publishes `body` with `routing_key` to `config`'s exchange and waits for
/// the broker's confirm: a misbehaving producer's bytes, or an envelope.
pub async fn publish_raw(config: &Config, routing_key: &str, body: &[u8]) -> anyhow::Result<()> {
    let topology = Topology::new(config.broker_namespace.as_str())?;
    let connection = checkout_messaging::connect(&config.amqp_url, "test-publisher").await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let confirmation = channel
        .basic_publish(
            ShortString::from(topology.exchange()),
            ShortString::try_new(routing_key.to_owned())
                .map_err(|_| anyhow::anyhow!("routing key too long: {routing_key}"))?,
            BasicPublishOptions::default(),
            body,
            BasicProperties::default()
                .with_content_type(ShortString::from("application/json"))
                .with_delivery_mode(2),
        )
        .await?
        .await?;
    connection
        .close(200, ShortString::from("published"))
        .await?;
    match confirmation {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        other => anyhow::bail!("the broker did not take the message: {other:?}"),
    }
}
