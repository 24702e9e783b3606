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
//!
//! Two queues carry arguments that settle what the broker does when they
//! fill or are read many times, the same way on RabbitMQ 3.10 and 4.x:
//!
//! - a dead-letter queue has an explicit `x-delivery-limit` of `i32::MAX`.
//!   `checkoutctl dlq list/show/replay` read it by fetching and requeueing,
//!   and a quorum queue counts every requeue as a delivery; RabbitMQ 4
//!   gives a quorum queue without the argument a limit of 20, and a DLQ has
//!   no dead-letter target of its own, so the 21st look would delete the
//!   dead letter. The limit is never reached; the queue stays quorum
//!   (replicated in a cluster).
//! - the unroutable queue holds at most [`Topology::UNROUTABLE_MAX_LENGTH`]
//!   messages and then refuses more (`x-overflow: reject-publish`): the
//!   publisher's confirm is a nack, so the relay keeps the outbox row
//!   unpublished and tries again later. Nothing is dropped, and a routing
//!   mistake cannot fill the broker's disk.
//!
//! A broker keeps a queue's arguments from its first declaration, and
//! declaring it again with others fails with `PRECONDITION_FAILED`, which
//! closes the channel. [`Topology::declare_on`] copes with a dead-letter or
//! unroutable queue left by an older version: it logs one warning naming
//! the queue and what to do, and goes on (on a new channel) with the rest.

use crate::retry::{DelayName, RetryPolicy};
use checkout_events::Subscription;
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ErrorKind, ExchangeKind};
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

/// What the broker holds under a queue name, compared with what this
/// version declares ([`Topology::check_dead_letter_queue`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueState {
    /// The queue exists with the arguments this version declares.
    Current,
    /// The queue exists with other arguments (an older version declared
    /// it); the broker's explanation.
    Legacy(String),
    /// No such queue.
    Missing,
}

impl Topology {
    /// The namespace of the demo: its exchange is `checkout.events`.
    pub const DEFAULT_NAMESPACE: &'static str = "checkout";

    /// The longest namespace accepted; it keeps every derived name within
    /// AMQP's 255-byte limit.
    pub const MAX_NAMESPACE_LEN: usize = 100;

    /// The `x-delivery-limit` of every dead-letter queue: so high that
    /// looking at a dead letter (fetch, then requeue) never uses it up.
    /// `i32::MAX` rather than RabbitMQ 4's "-1 = unlimited", which 3.10
    /// accepts too but reads as a limit already passed.
    pub const DEAD_LETTER_DELIVERY_LIMIT: i32 = i32::MAX;

    /// How many messages the unroutable queue holds before the broker
    /// refuses (nacks) further unroutable publishes.
    pub const UNROUTABLE_MAX_LENGTH: i32 = 10_000;

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

    /// The arguments every dead-letter queue is declared with (queue type
    /// included): quorum, with [`Topology::DEAD_LETTER_DELIVERY_LIMIT`].
    pub fn dead_letter_queue_arguments() -> FieldTable {
        let mut args = quorum();
        args.insert(
            ShortString::from("x-delivery-limit"),
            AMQPValue::LongInt(Self::DEAD_LETTER_DELIVERY_LIMIT),
        );
        args
    }

    /// The arguments the unroutable queue is declared with (queue type
    /// included): quorum, at most [`Topology::UNROUTABLE_MAX_LENGTH`]
    /// messages, then `reject-publish`.
    pub fn unroutable_queue_arguments() -> FieldTable {
        let mut args = quorum();
        args.insert(
            ShortString::from("x-max-length"),
            AMQPValue::LongInt(Self::UNROUTABLE_MAX_LENGTH),
        );
        args.insert(
            ShortString::from("x-overflow"),
            AMQPValue::LongString(LongString::from("reject-publish")),
        );
        args
    }

    /// Declares everything `subscriptions` needs on `channel`. Safe to run
    /// concurrently and repeatedly.
    ///
    /// A dead-letter or unroutable queue left by an older version with other
    /// arguments makes this fail (after a warning naming the queue): the
    /// broker has closed `channel` by then. [`Topology::declare_on`] goes on
    /// instead.
    pub async fn declare(
        &self,
        channel: &Channel,
        subscriptions: &[Subscription],
    ) -> Result<(), lapin::Error> {
        let mut declarer = Declarer {
            connection: None,
            channel: channel.clone(),
        };
        self.declare_all(&mut declarer, subscriptions).await
    }

    /// Declares everything `subscriptions` needs on channels of its own
    /// from `connection`, and closes them. Like [`Topology::declare`],
    /// except that a dead-letter or unroutable queue left by an older
    /// version with other arguments is kept as it is, with one warning that
    /// names it and says how to replace it, and declaring goes on.
    pub async fn declare_on(
        &self,
        connection: &Connection,
        subscriptions: &[Subscription],
    ) -> Result<(), lapin::Error> {
        let mut declarer = Declarer {
            connection: Some(connection),
            channel: connection.create_channel().await?,
        };
        let declared = self.declare_all(&mut declarer, subscriptions).await;
        let _ = declarer
            .channel
            .close(200, ShortString::from("topology declared"))
            .await;
        declared
    }

    async fn declare_all(
        &self,
        declarer: &mut Declarer<'_>,
        subscriptions: &[Subscription],
    ) -> Result<(), lapin::Error> {
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };

        let unroutable = self.unroutable();
        declarer
            .channel
            .exchange_declare(
                name(&unroutable),
                ExchangeKind::Fanout,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;
        declarer
            .declare_kept_queue(&unroutable, Self::unroutable_queue_arguments())
            .await?;
        bind(&declarer.channel, &unroutable, &unroutable, "").await?;

        let mut exchange_args = FieldTable::default();
        exchange_args.insert(
            ShortString::from("alternate-exchange"),
            AMQPValue::LongString(LongString::from(unroutable.as_str())),
        );
        let exchange = self.exchange();
        declarer
            .channel
            .exchange_declare(
                name(&exchange),
                ExchangeKind::Topic,
                durable_exchange,
                exchange_args,
            )
            .await?;

        let dead_letter_exchange = self.dead_letter_exchange();
        declarer
            .channel
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
            declarer
                .declare_kept_queue(&dead_letters, Self::dead_letter_queue_arguments())
                .await?;
            bind(
                &declarer.channel,
                &dead_letters,
                &dead_letter_exchange,
                &queue,
            )
            .await?;

            // A message the consumer rejects goes to the DLQ, routed by the
            // queue's own name; the delivery limit stops a message that
            // keeps failing from cycling forever.
            let mut args = quorum();
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
            declare_queue(&declarer.channel, &queue, args).await?;
            for routing_key in subscription.routing_keys {
                bind(&declarer.channel, &queue, &exchange, routing_key).await?;
            }
        }
        Ok(())
    }

    /// Whether `service`'s dead-letter queue exists with the arguments this
    /// version declares — above all the delivery limit that keeps looking
    /// at it from deleting dead letters on RabbitMQ 4. It asks on channels
    /// of its own: a passive declare (is it there?), then a declare with the
    /// current arguments, which the broker refuses if they differ.
    pub async fn check_dead_letter_queue(
        &self,
        connection: &Connection,
        service: &str,
    ) -> Result<QueueState, lapin::Error> {
        let queue = self.dead_letter_queue(service);
        let probe = connection.create_channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match probe
            .queue_declare(name(&queue), passive, FieldTable::default())
            .await
        {
            Ok(_) => {
                let _ = probe.close(200, ShortString::from("checked")).await;
            }
            Err(error) if soft_error(&error) == Some(AMQPSoftError::NOTFOUND) => {
                return Ok(QueueState::Missing);
            }
            Err(error) => return Err(error),
        }
        let probe = connection.create_channel().await?;
        match declare_queue(&probe, &queue, Self::dead_letter_queue_arguments()).await {
            Ok(()) => {
                let _ = probe.close(200, ShortString::from("checked")).await;
                Ok(QueueState::Current)
            }
            Err(error) if soft_error(&error) == Some(AMQPSoftError::PRECONDITIONFAILED) => {
                Ok(QueueState::Legacy(error_text(&error)))
            }
            Err(error) => Err(error),
        }
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
}

/// The channel declarations go through, and the connection to open a new
/// one on when the broker closes it over a queue kept from an older version.
struct Declarer<'c> {
    connection: Option<&'c Connection>,
    channel: Channel,
}

impl Declarer<'_> {
    /// Declares a queue that an older version may have declared with other
    /// arguments (a dead-letter or the unroutable queue). With a connection
    /// to reopen the channel on, such a queue is kept as it is, with a
    /// warning: it still works, and replacing it would drop its messages.
    async fn declare_kept_queue(
        &mut self,
        queue: &str,
        args: FieldTable,
    ) -> Result<(), lapin::Error> {
        let error = match declare_queue(&self.channel, queue, args).await {
            Ok(()) => return Ok(()),
            Err(error) if soft_error(&error) == Some(AMQPSoftError::PRECONDITIONFAILED) => error,
            Err(error) => return Err(error),
        };
        tracing::warn!(
            queue,
            broker = %error_text(&error),
            "queue {queue} was declared by an older version with other arguments; keeping it \
             as it is. Replace it when it is empty: check with `checkoutctl dlq list` (dead \
             letters) or move its messages, then `rabbitmqctl delete_queue {queue}` and restart \
             one service (see the README: Dead letters)"
        );
        match self.connection {
            Some(connection) => {
                self.channel = connection.create_channel().await?;
                Ok(())
            }
            None => Err(error),
        }
    }
}

/// The queue-type argument every queue but the delay queues carries.
fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    // Quorum queues replicate across a cluster and are durable by nature.
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args
}

async fn declare_queue(
    channel: &Channel,
    queue: &str,
    args: FieldTable,
) -> Result<(), lapin::Error> {
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel.queue_declare(name(queue), options, args).await?;
    Ok(())
}

/// The channel-level error the broker answered with, if that is what `error` is.
pub(crate) fn soft_error(error: &lapin::Error) -> Option<AMQPSoftError> {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(soft) => Some(soft.clone()),
            AMQPErrorKind::Hard(_) => None,
        },
        _ => None,
    }
}

/// The broker's text for a protocol error, else the error's own.
fn error_text(error: &lapin::Error) -> String {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => amqp.get_message().to_string(),
        _ => error.to_string(),
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

    #[test]
    fn dead_letter_and_unroutable_queues_settle_their_limits_explicitly() {
        let get = |args: &FieldTable, key: &str| args.inner().get(key).cloned();
        let dlq = Topology::dead_letter_queue_arguments();
        assert_eq!(
            get(&dlq, "x-queue-type"),
            Some(AMQPValue::LongString("quorum".into()))
        );
        assert_eq!(
            get(&dlq, "x-delivery-limit"),
            Some(AMQPValue::LongInt(i32::MAX))
        );
        let unroutable = Topology::unroutable_queue_arguments();
        assert_eq!(
            get(&unroutable, "x-max-length"),
            Some(AMQPValue::LongInt(10_000))
        );
        assert_eq!(
            get(&unroutable, "x-overflow"),
            Some(AMQPValue::LongString("reject-publish".into()))
        );
    }
}
