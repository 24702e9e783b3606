//! The broker topology: one durable topic exchange for all events, a quorum
//! queue per service bound to the routing keys it consumes, a dead-letter
//! queue per service, and an alternate exchange that keeps unroutable
//! messages instead of dropping them.
//!
//! Every service declares the whole topology at start. Declaring is
//! idempotent, and declaring the other services' queues too means an event
//! published before its consumer first started waits in that consumer's
//! queue (this is how the Order service learns the catalog whatever order
//! the services start in).

use crate::retry::{DelayName, RetryPolicy};
use checkout_events::Subscription;
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use std::time::Duration;

/// A namespace that would make invalid or overlong AMQP names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a broker namespace is 1 to 100 characters of a-z, 0-9, '-', '_' and '.', got {0:?}")]
pub struct InvalidNamespace(pub String);

/// Names every exchange and queue under one namespace, so that several
/// systems (or parallel tests) can share a broker without meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    namespace: String,
}

impl Topology {
    /// The namespace of the demo: its exchange is `checkout.events`.
    pub const DEFAULT_NAMESPACE: &'static str = "checkout";

    /// The longest namespace accepted; it keeps every derived name within
    /// AMQP's 255-byte limit.
    pub const MAX_NAMESPACE_LEN: usize = 100;

    /// A topology whose names all start with `namespace.`; the namespace is
    /// 1–100 characters of `a-z`, `0-9`, `-`, `_` and `.`.
    pub fn new(namespace: impl Into<String>) -> Result<Self, InvalidNamespace> {
        let namespace = namespace.into();
        let valid = (1..=Self::MAX_NAMESPACE_LEN).contains(&namespace.len())
            && namespace.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if valid {
            Ok(Self { namespace })
        } else {
            Err(InvalidNamespace(namespace))
        }
    }

    /// The topic exchange every event is published to.
    pub fn exchange(&self) -> String {
        format!("{}.events", self.namespace)
    }

    /// The work queue of `service`.
    pub fn queue(&self, service: &str) -> String {
        format!("{}.{service}", self.namespace)
    }

    /// Where `service`'s rejected messages end up.
    pub fn dead_letter_queue(&self, service: &str) -> String {
        format!("{}.{service}.dlq", self.namespace)
    }

    /// The queue where `service`'s messages wait `delay` before a retry.
    pub fn retry_queue(&self, service: &str, delay: Duration) -> String {
        format!("{}.{service}.retry.{}", self.namespace, DelayName(delay))
    }

    /// The exchange (and queue) that keeps messages no binding matched.
    pub fn unroutable(&self) -> String {
        format!("{}.unroutable", self.namespace)
    }

    fn dead_letter_exchange(&self) -> String {
        format!("{}.dead-letter", self.namespace)
    }

    /// Declares everything `subscriptions` needs. Safe to run concurrently
    /// and repeatedly.
    pub async fn declare(
        &self,
        channel: &Channel,
        subscriptions: &[Subscription],
    ) -> Result<(), lapin::Error> {
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };

        let unroutable = self.unroutable();
        channel
            .exchange_declare(
                name(&unroutable),
                ExchangeKind::Fanout,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;
        self.declare_queue(channel, &unroutable, FieldTable::default())
            .await?;
        bind(channel, &unroutable, &unroutable, "").await?;

        let mut exchange_args = FieldTable::default();
        exchange_args.insert(
            ShortString::from("alternate-exchange"),
            AMQPValue::LongString(LongString::from(unroutable.as_str())),
        );
        let exchange = self.exchange();
        channel
            .exchange_declare(
                name(&exchange),
                ExchangeKind::Topic,
                durable_exchange,
                exchange_args,
            )
            .await?;

        let dead_letter_exchange = self.dead_letter_exchange();
        channel
            .exchange_declare(
                name(&dead_letter_exchange),
                ExchangeKind::Direct,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;

        for subscription in subscriptions {
            let queue = self.queue(subscription.service);
            let dead_letters = self.dead_letter_queue(subscription.service);
            self.declare_queue(channel, &dead_letters, FieldTable::default())
                .await?;
            bind(channel, &dead_letters, &dead_letter_exchange, &queue).await?;

            // A message the consumer rejects goes to the DLQ, routed by the
            // queue's own name; the delivery limit stops a message that
            // keeps failing from cycling forever.
            let mut args = FieldTable::default();
            args.insert(
                ShortString::from("x-dead-letter-exchange"),
                AMQPValue::LongString(LongString::from(dead_letter_exchange.as_str())),
            );
            args.insert(
                ShortString::from("x-dead-letter-routing-key"),
                AMQPValue::LongString(LongString::from(queue.as_str())),
            );
            args.insert(
                ShortString::from("x-delivery-limit"),
                AMQPValue::LongInt(20),
            );
            self.declare_queue(channel, &queue, args).await?;
            for routing_key in subscription.routing_keys {
                bind(channel, &queue, &exchange, routing_key).await?;
            }
        }
        Ok(())
    }

    /// Declares `service`'s delay queues, one per delay of `retries`: a
    /// message waits there for the queue's TTL, then is dead-lettered back
    /// to the work queue through the default exchange. Only the service
    /// itself declares them, so replicas with the same policy agree.
    pub async fn declare_retries(
        &self,
        channel: &Channel,
        service: &str,
        retries: &RetryPolicy,
    ) -> Result<(), lapin::Error> {
        let work_queue = self.queue(service);
        for delay in retries.delays() {
            let mut args = FieldTable::default();
            args.insert(
                ShortString::from("x-message-ttl"),
                AMQPValue::LongLongInt(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            );
            args.insert(
                ShortString::from("x-dead-letter-exchange"),
                AMQPValue::LongString(LongString::from("")),
            );
            args.insert(
                ShortString::from("x-dead-letter-routing-key"),
                AMQPValue::LongString(LongString::from(work_queue.as_str())),
            );
            // Classic queues: every message in one has the same TTL, so
            // they expire in order at the head, which is all a delay needs.
            let options = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare(name(&self.retry_queue(service, *delay)), options, args)
                .await?;
        }
        Ok(())
    }

    /// Deletes everything [`Topology::declare`] and
    /// [`Topology::declare_retries`] made (tests use it to leave nothing behind).
    pub async fn delete(
        &self,
        channel: &Channel,
        subscriptions: &[Subscription],
        retries: &RetryPolicy,
    ) -> Result<(), lapin::Error> {
        for subscription in subscriptions {
            let retry_queues = retries
                .delays()
                .iter()
                .map(|delay| self.retry_queue(subscription.service, *delay));
            for queue in [
                self.queue(subscription.service),
                self.dead_letter_queue(subscription.service),
            ]
            .into_iter()
            .chain(retry_queues)
            {
                channel
                    .queue_delete(name(&queue), QueueDeleteOptions::default())
                    .await?;
            }
        }
        channel
            .queue_delete(name(&self.unroutable()), QueueDeleteOptions::default())
            .await?;
        for exchange in [
            self.exchange(),
            self.dead_letter_exchange(),
            self.unroutable(),
        ] {
            channel
                .exchange_delete(name(&exchange), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }

    async fn declare_queue(
        &self,
        channel: &Channel,
        queue: &str,
        mut args: FieldTable,
    ) -> Result<(), lapin::Error> {
        // Quorum queues replicate across a cluster and are durable by nature.
        args.insert(
            ShortString::from("x-queue-type"),
            AMQPValue::LongString(LongString::from("quorum")),
        );
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel.queue_declare(name(queue), options, args).await?;
        Ok(())
    }
}

async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> Result<(), lapin::Error> {
    channel
        .queue_bind(
            name(queue),
            name(exchange),
            name(routing_key),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// An AMQP short string. Every name here is a validated namespace (at most
/// [`Topology::MAX_NAMESPACE_LEN`] bytes) plus a short constant suffix, so it
/// always fits the 255-byte limit.
fn name(value: &str) -> ShortString {
    ShortString::from(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_live_under_the_namespace() {
        let t = Topology::new(Topology::DEFAULT_NAMESPACE).expect("valid");
        assert_eq!(t.exchange(), "checkout.events");
        assert_eq!(t.queue("payment"), "checkout.payment");
        assert_eq!(t.dead_letter_queue("payment"), "checkout.payment.dlq");
        assert_eq!(t.unroutable(), "checkout.unroutable");
        assert_eq!(
            t.retry_queue("payment", Duration::from_secs(30)),
            "checkout.payment.retry.30s"
        );
        assert!(Topology::new("").is_err());
        assert!(Topology::new("Has Space").is_err());
        assert!(Topology::new("a".repeat(101)).is_err());
    }
}
