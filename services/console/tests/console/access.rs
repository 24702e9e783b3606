//! The console's broker user, on the real broker: its dead-letter queues
//! yes, anything else no.

use crate::Harness;
use checkout_messaging::access;
use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::types::ShortString;

#[tokio::test]
async fn the_console_user_reaches_the_dead_letter_queues_and_nothing_else() {
    let harness = Harness::start().await;
    let user = access::console_user(&harness.topology).name;
    let url = format!(
        "amqp://{user}:{}@127.0.0.1:5672/%2f",
        harness.console_password
    );
    let connection = checkout_messaging::connect(&url, "console acl test")
        .await
        .expect("it connects");
    for service in ["order", "payment", "inventory", "email"] {
        let channel = connection.create_channel().await.expect("channel");
        let queue = harness.topology.dead_letter_queue(service);
        channel
            .basic_get(
                ShortString::from(queue.as_str()),
                BasicGetOptions::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{queue}: {e}"));
    }
    // A work queue: refused (the channel closes with ACCESS_REFUSED).
    let channel = connection.create_channel().await.expect("channel");
    let work = harness.topology.queue("payment");
    let refused = channel
        .basic_get(ShortString::from(work.as_str()), BasicGetOptions::default())
        .await;
    assert!(
        refused.is_err_and(|e| e.to_string().contains("ACCESS_REFUSED")),
        "{work} is not the console's"
    );
    // The events exchange: refused.
    let channel = connection.create_channel().await.expect("channel");
    let published = channel
        .basic_publish(
            ShortString::from(harness.topology.exchange().as_str()),
            ShortString::from("order.created"),
            BasicPublishOptions::default(),
            b"{}",
            BasicProperties::default(),
        )
        .await;
    let refused = match published {
        Err(error) => error.to_string(),
        // The refusal closes the channel asynchronously: the next call sees it.
        Ok(_) => channel
            .basic_get(
                ShortString::from("amq.rabbitmq.reply-to"),
                BasicGetOptions::default(),
            )
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default(),
    };
    assert!(
        refused.contains("ACCESS_REFUSED"),
        "publishing events: {refused}"
    );
    let _ = connection.close(200, ShortString::from("done")).await;
    harness.finish().await;
}
