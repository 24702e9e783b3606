//! A service's user reaches no other service's queue: it can neither put
//! anything into one, nor consume, purge or delete it.

use crate::permissions::*;
use lapin::ExchangeKind;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, ExchangeBindOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{FieldTable, ShortString};

#[tokio::test]
async fn the_payment_service_cannot_put_anything_into_another_services_queue() {
    let env = Secured::new().await;
    let payment = env.connect_as("payment").await;
    let admin = connect_as_admin().await;
    let t = &env.topology;
    let order_queue = t.queue("order");
    let body = envelope(&captured(), "payment-service");

    // By name, through the default exchange: the pitfall the topology avoids.
    let default_exchange = publish(&payment, "", &order_queue, &body).await;
    // Through the Order service's own exchanges.
    let order_retry = publish(&payment, &t.retry_exchange("order"), &order_queue, &body).await;
    let order_dead_letter = publish(
        &payment,
        &t.dead_letter_exchange("order"),
        &t.dead_letter_queue("order"),
        &body,
    )
    .await;
    // Through the broker's predeclared exchanges.
    let amq_direct = publish(&payment, "amq.direct", &order_queue, &body).await;
    let amq_topic = publish(&payment, "amq.topic", "#", &body).await;
    // By binding the Order queue to an exchange of its own…
    let bind_other_queue = fresh(&payment)
        .await
        .queue_bind(
            ShortString::from(order_queue.as_str()),
            ShortString::from(t.retry_exchange("payment")),
            ShortString::from("sneak"),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await;
    // …or its own queue (or exchange) to more of the events exchange.
    let bind_own_queue = fresh(&payment)
        .await
        .queue_bind(
            ShortString::from(t.queue("payment")),
            ShortString::from(t.exchange()),
            ShortString::from("#"),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await;
    let sneaky = format!("{}.sneaky", t.queue("payment"));
    let own_exchange = fresh(&payment)
        .await
        .exchange_declare(
            ShortString::from(sneaky.as_str()),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
    let bind_own_exchange = fresh(&payment)
        .await
        .exchange_bind(
            ShortString::from(sneaky.as_str()),
            ShortString::from(t.exchange()),
            ShortString::from("order.#"),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await;
    // Nor by dead-lettering: a queue of its own whose dead-letter
    // exchange is the default exchange (or another service's) would have
    // the broker move its expired messages into the Order queue; RabbitMQ
    // asks for write permission on the dead-letter exchange at declare.
    let dead_letter_through = |exchange: String| {
        let payment = &payment;
        let queue = format!("{}.trap", t.queue("payment"));
        let order_queue = order_queue.clone();
        async move {
            let mut args = FieldTable::default();
            for (key, value) in [
                ("x-dead-letter-exchange", exchange),
                ("x-dead-letter-routing-key", order_queue),
            ] {
                args.insert(
                    ShortString::from(key),
                    lapin::types::AMQPValue::LongString(value.as_str().into()),
                );
            }
            args.insert(
                ShortString::from("x-message-ttl"),
                lapin::types::AMQPValue::LongLongInt(1),
            );
            fresh(payment)
                .await
                .queue_declare(
                    ShortString::from(queue.as_str()),
                    lapin::options::QueueDeclareOptions::default(),
                    args,
                )
                .await
                .map(|_| ())
        }
    };
    let trap_default = dead_letter_through(String::new()).await;
    let trap_order = dead_letter_through(t.retry_exchange("order")).await;
    // Nor can it declare the shared names.
    let declare_events = fresh(&payment)
        .await
        .exchange_declare(
            ShortString::from(t.exchange()),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    let order_depth = depth(&admin, &order_queue).await;
    let order_dlq_depth = depth(&admin, &t.dead_letter_queue("order")).await;

    let _ = fresh(&admin)
        .await
        .exchange_delete(ShortString::from(sneaky.as_str()), Default::default())
        .await;
    // Only there if the broker wrongly let it be declared.
    let _ = fresh(&admin)
        .await
        .queue_delete(
            ShortString::from(format!("{}.trap", t.queue("payment"))),
            Default::default(),
        )
        .await;
    let _ = admin.close(200, ShortString::from("done")).await;
    let _ = payment.close(200, ShortString::from("done")).await;
    env.cleanup().await;

    refused(&default_exchange, "the default exchange");
    assert!(
        default_exchange
            .expect_err("refused")
            .contains("access to exchange 'amq.default'")
    );
    refused(&order_retry, "the Order service's retry exchange");
    refused(
        &order_dead_letter,
        "the Order service's dead-letter exchange",
    );
    refused(&amq_direct, "amq.direct");
    refused(&amq_topic, "amq.topic");
    let refused_op = |result: Result<(), lapin::Error>, what: &str| {
        refused(&result.map_err(|e| e.to_string()), what);
    };
    refused_op(bind_other_queue, "binding the Order queue");
    refused_op(bind_own_queue, "binding its own queue to #");
    own_exchange.expect("an exchange of its own name is its own");
    refused_op(bind_own_exchange, "binding its own exchange to order.#");
    refused_op(declare_events, "declaring the events exchange");
    refused_op(
        trap_default,
        "a queue dead-lettering to the default exchange",
    );
    refused_op(
        trap_order,
        "a queue dead-lettering to the Order retry exchange",
    );
    assert_eq!(
        (order_depth, order_dlq_depth),
        (0, 0),
        "nothing reached the Order service"
    );
}

#[tokio::test]
async fn the_payment_service_cannot_consume_purge_or_delete_another_services_queue() {
    let env = Secured::new().await;
    let payment = env.connect_as("payment").await;
    let order_queue = env.topology.queue("order");
    let name = || ShortString::from(order_queue.as_str());

    let consume = fresh(&payment)
        .await
        .basic_consume(
            name(),
            ShortString::from(""),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map(|_| ());
    let get = fresh(&payment)
        .await
        .basic_get(name(), BasicGetOptions::default())
        .await
        .map(|_| ());
    let purge = fresh(&payment)
        .await
        .queue_purge(name(), QueuePurgeOptions::default())
        .await
        .map(|_| ());
    let delete = fresh(&payment)
        .await
        .queue_delete(name(), QueueDeleteOptions::default())
        .await
        .map(|_| ());
    let dlq = fresh(&payment)
        .await
        .basic_get(
            ShortString::from(env.topology.dead_letter_queue("order")),
            BasicGetOptions::default(),
        )
        .await
        .map(|_| ());
    let own = fresh(&payment)
        .await
        .basic_get(
            ShortString::from(env.topology.queue("payment")),
            BasicGetOptions::default(),
        )
        .await
        .map(|_| ());

    let _ = payment.close(200, ShortString::from("done")).await;
    env.cleanup().await;
    for (what, result) in [
        ("consume", consume),
        ("get", get),
        ("purge", purge),
        ("delete", delete),
        ("read the Order DLQ", dlq),
    ] {
        refused(&result.map_err(|e| e.to_string()), what);
    }
    own.expect("its own queue is readable");
}
