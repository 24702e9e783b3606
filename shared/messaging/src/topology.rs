//! The broker topology: every exchange, queue and binding of the checkout,
//! with its exact arguments, described once ([`Plan`]) and declared from
//! that description by the administrator ([`Topology::provision`]) and by
//! each service for its own names ([`Topology::declare_own`]). The broker
//! definitions of a deployment ([`crate::access::definitions`]) are made
//! from the same plan.
//!
//! The shape:
//!
//! - one durable topic exchange for all events, `<ns>.events`, whose
//!   alternate exchange `<ns>.unroutable` keeps what no binding matched;
//! - per service: a quorum work queue `<ns>.<service>` bound to the routing
//!   keys it consumes, a dead-letter queue `<ns>.<service>.dlq`, delay
//!   queues `<ns>.<service>.retry.<delay>`, and two exchanges of its own:
//!   `<ns>.<service>.retry` (into a delay queue, and from it back to the
//!   work queue) and `<ns>.<service>.dead-letter` (into the DLQ; the work
//!   queue's dead-letter exchange too).
//!
//! **Nothing publishes to the default exchange.** Publishing there needs
//! write permission on `amq.default`, which would let a service put
//! anything into any queue by name, another service's included. A
//! service's retries and dead letters go through its own exchanges, each
//! bound to its own queues only, so its broker user needs write permission
//! on nothing but the events exchange (topic-restricted) and its own names
//! (see [`crate::access`]). Dead-lettering done by the broker itself (a
//! delay queue's TTL, a work queue's delivery limit) needs no permission of
//! the user who published the message.
//!
//! **Who declares what.** A service's user may not declare the shared
//! exchanges or another service's queue, yet an event published before its
//! consumer first ran must wait in that consumer's queue (this is how the
//! Order service learns the catalog whatever order the services start in).
//! So an administrator provisions the whole plan before the services start
//! (`checkoutctl broker provision`, a definitions file at broker boot, the
//! test harnesses); each service then checks that the events exchange is
//! there and declares its own names again (idempotent, and a check that
//! what was provisioned has the arguments this version expects). The
//! bindings from the events exchange are the administrator's alone: a
//! service cannot read from the events exchange, so it cannot bind its
//! queue to keys it was not given.
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
//! closes the channel. A dead-letter or unroutable queue left by an older
//! version is kept as it is, with one warning naming the queue and what to
//! do, and declaring goes on (on a new channel) with the rest. A work
//! queue with other arguments stops the declaration: its dead-letter
//! target decides where failed messages go, and must be this version's.

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
///
/// Namespaces must not nest: with `shop` and `shop.order` on one broker,
/// `shop.order.events` would be both the second one's exchange and a name
/// of the first one's Order service.
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

/// Every exchange, queue and binding of a topology (or of one service's
/// part of it), with the exact arguments, in an order that can be declared
/// as listed: exchanges, then queues, then bindings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The exchanges, all durable.
    pub exchanges: Vec<ExchangeSpec>,
    /// The queues, all durable.
    pub queues: Vec<QueueSpec>,
    /// The bindings of queues to exchanges.
    pub bindings: Vec<BindingSpec>,
}

/// One durable exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeSpec {
    /// Its name.
    pub name: String,
    /// `topic`, `direct` or `fanout`.
    pub kind: ExchangeKind,
    /// Its arguments (`alternate-exchange` on the events exchange).
    pub arguments: FieldTable,
}

/// One durable queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    /// Its name.
    pub name: String,
    /// Its arguments, queue type included (none means a classic queue).
    pub arguments: FieldTable,
    /// Whether a queue of this name left by an older version with other
    /// arguments is kept as it is (dead-letter and unroutable queues:
    /// replacing them would drop what they hold) rather than an error.
    pub kept_if_legacy: bool,
}

/// One binding of a queue to an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingSpec {
    /// The exchange.
    pub exchange: String,
    /// The queue.
    pub queue: String,
    /// The routing key (a pattern, on the topic exchange).
    pub routing_key: String,
}

/// Why a service could not declare its part of the topology.
#[derive(Debug, thiserror::Error)]
pub enum DeclareError {
    /// The administrator's part is missing: the events exchange does not
    /// exist.
    #[error(
        "the exchange {exchange} does not exist: the broker has not been provisioned for \
         namespace {namespace:?} (`checkoutctl broker provision`, or the deployment's definitions)"
    )]
    NotProvisioned {
        /// The missing exchange.
        exchange: String,
        /// The namespace.
        namespace: String,
    },
    /// The broker refused a declaration (a queue with other arguments, a
    /// permission the service's user lacks) or the connection failed.
    #[error(transparent)]
    Broker(#[from] lapin::Error),
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

    /// The `x-delivery-limit` of every work queue: a message redelivered
    /// this often (a consumer that crashes on it every time) is
    /// dead-lettered by the broker instead of cycling forever.
    pub const WORK_DELIVERY_LIMIT: i32 = 20;

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

    /// The namespace every name starts with.
    pub fn namespace(&self) -> &str {
        &self.namespace
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

    /// `service`'s own direct exchange for retries: a message published
    /// with a delay queue's name as routing key waits there; one published
    /// (or dead-lettered by a delay queue) with the work queue's name goes
    /// back to the work queue. Bound to nothing but `service`'s queues.
    pub fn retry_exchange(&self, service: &str) -> String {
        format!("{}.{service}.retry", self.namespace)
    }

    /// `service`'s own direct exchange for dead letters, bound only to its
    /// dead-letter queue (routing key: the DLQ's name); also the work
    /// queue's dead-letter exchange.
    pub fn dead_letter_exchange(&self, service: &str) -> String {
        format!("{}.{service}.dead-letter", self.namespace)
    }

    /// The exchange (and queue) that keeps messages no binding matched.
    pub fn unroutable(&self) -> String {
        format!("{}.unroutable", self.namespace)
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

    /// The arguments of `service`'s work queue: quorum; what the broker
    /// dead-letters (a reject, the delivery limit passed) goes to the
    /// service's own dead-letter exchange and from there to its DLQ.
    pub fn work_queue_arguments(&self, service: &str) -> FieldTable {
        let mut args = quorum();
        set_str(
            &mut args,
            "x-dead-letter-exchange",
            &self.dead_letter_exchange(service),
        );
        set_str(
            &mut args,
            "x-dead-letter-routing-key",
            &self.dead_letter_queue(service),
        );
        args.insert(
            ShortString::from("x-delivery-limit"),
            AMQPValue::LongInt(Self::WORK_DELIVERY_LIMIT),
        );
        args
    }

    /// The arguments of `service`'s delay queue for `delay`: a classic
    /// queue whose messages expire after `delay` and are then dead-lettered
    /// by the broker through the service's retry exchange back to its work
    /// queue. (Every message in one has the same TTL, so they expire in
    /// order at the head, which is all a delay needs.)
    pub fn retry_queue_arguments(&self, service: &str, delay: Duration) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert(
            ShortString::from("x-message-ttl"),
            AMQPValue::LongLongInt(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
        );
        set_str(
            &mut args,
            "x-dead-letter-exchange",
            &self.retry_exchange(service),
        );
        set_str(&mut args, "x-dead-letter-routing-key", &self.queue(service));
        args
    }

    /// Everything of `service`'s own: its two exchanges, its work, delay
    /// and dead-letter queues, and the bindings among them. What its broker
    /// user may declare, and what [`Topology::declare_own`] declares. The
    /// work queue's bindings to the events exchange are not in it.
    pub fn own_plan(&self, service: &str, retries: &RetryPolicy) -> Plan {
        let work = self.queue(service);
        let dead_letters = self.dead_letter_queue(service);
        let retry_exchange = self.retry_exchange(service);
        let dead_letter_exchange = self.dead_letter_exchange(service);
        let mut plan = Plan {
            exchanges: vec![
                ExchangeSpec {
                    name: retry_exchange.clone(),
                    kind: ExchangeKind::Direct,
                    arguments: FieldTable::default(),
                },
                ExchangeSpec {
                    name: dead_letter_exchange.clone(),
                    kind: ExchangeKind::Direct,
                    arguments: FieldTable::default(),
                },
            ],
            queues: vec![
                QueueSpec {
                    name: dead_letters.clone(),
                    arguments: Self::dead_letter_queue_arguments(),
                    kept_if_legacy: true,
                },
                QueueSpec {
                    name: work.clone(),
                    arguments: self.work_queue_arguments(service),
                    kept_if_legacy: false,
                },
            ],
            bindings: vec![
                BindingSpec {
                    exchange: dead_letter_exchange,
                    queue: dead_letters.clone(),
                    routing_key: dead_letters,
                },
                BindingSpec {
                    exchange: retry_exchange.clone(),
                    queue: work.clone(),
                    routing_key: work,
                },
            ],
        };
        for delay in retries.delays() {
            let queue = self.retry_queue(service, *delay);
            plan.queues.push(QueueSpec {
                name: queue.clone(),
                arguments: self.retry_queue_arguments(service, *delay),
                kept_if_legacy: false,
            });
            plan.bindings.push(BindingSpec {
                exchange: retry_exchange.clone(),
                queue: queue.clone(),
                routing_key: queue,
            });
        }
        plan
    }

    /// The whole topology for `subscriptions`, each service with delay
    /// queues for `retries`: the events and unroutable exchanges, the
    /// unroutable queue, every service's [own plan](Topology::own_plan) and
    /// its work queue's bindings to the events exchange.
    pub fn plan(&self, subscriptions: &[Subscription], retries: &RetryPolicy) -> Plan {
        let exchange = self.exchange();
        let unroutable = self.unroutable();
        let mut events_arguments = FieldTable::default();
        set_str(&mut events_arguments, "alternate-exchange", &unroutable);
        let mut plan = Plan {
            exchanges: vec![
                // Before the events exchange, which names it.
                ExchangeSpec {
                    name: unroutable.clone(),
                    kind: ExchangeKind::Fanout,
                    arguments: FieldTable::default(),
                },
                ExchangeSpec {
                    name: exchange.clone(),
                    kind: ExchangeKind::Topic,
                    arguments: events_arguments,
                },
            ],
            queues: vec![QueueSpec {
                name: unroutable.clone(),
                arguments: Self::unroutable_queue_arguments(),
                kept_if_legacy: true,
            }],
            bindings: vec![BindingSpec {
                exchange: unroutable.clone(),
                queue: unroutable,
                routing_key: String::new(),
            }],
        };
        for subscription in subscriptions {
            let own = self.own_plan(subscription.service, retries);
            plan.exchanges.extend(own.exchanges);
            plan.queues.extend(own.queues);
            plan.bindings.extend(own.bindings);
            let work = self.queue(subscription.service);
            plan.bindings
                .extend(subscription.routing_keys.iter().map(|key| BindingSpec {
                    exchange: exchange.clone(),
                    queue: work.clone(),
                    routing_key: (*key).to_owned(),
                }));
        }
        plan
    }

    /// Declares the whole [plan](Topology::plan) on channels of its own
    /// from `connection` — an administrator's: it declares the shared
    /// exchanges and every service's queues. Safe to run concurrently and
    /// repeatedly. A dead-letter or unroutable queue left by an older
    /// version with other arguments is kept as it is, with one warning that
    /// names it and says how to replace it, and declaring goes on; any
    /// other difference fails (`PRECONDITION_FAILED`).
    pub async fn provision(
        &self,
        connection: &Connection,
        subscriptions: &[Subscription],
        retries: &RetryPolicy,
    ) -> Result<(), lapin::Error> {
        declare_plan(connection, &self.plan(subscriptions, retries)).await
    }

    /// What a service declares at start with its own broker user: checks
    /// (passively) that the events exchange exists, then declares
    /// `service`'s [own plan](Topology::own_plan) with delay queues for
    /// `retries` — idempotent, and a check that the provisioned queues have
    /// this version's arguments. It declares nothing the service's user may
    /// not: no shared exchange, no other service's name, no binding from
    /// the events exchange.
    pub async fn declare_own(
        &self,
        connection: &Connection,
        service: &str,
        retries: &RetryPolicy,
    ) -> Result<(), DeclareError> {
        let exchange = self.exchange();
        let probe = connection.create_channel().await?;
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..ExchangeDeclareOptions::default()
        };
        match probe
            .exchange_declare(
                name(&exchange),
                ExchangeKind::Topic,
                passive,
                FieldTable::default(),
            )
            .await
        {
            Ok(()) => {
                let _ = probe.close(200, ShortString::from("checked")).await;
            }
            Err(error) if soft_error(&error) == Some(AMQPSoftError::NOTFOUND) => {
                return Err(DeclareError::NotProvisioned {
                    exchange,
                    namespace: self.namespace.clone(),
                });
            }
            Err(error) => return Err(error.into()),
        }
        declare_plan(connection, &self.own_plan(service, retries)).await?;
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

    /// Deletes everything [`Topology::provision`] (and the services'
    /// [`Topology::declare_own`]) made for `subscriptions` and `retries`,
    /// messages included (tests use it to leave nothing behind).
    pub async fn delete(
        &self,
        channel: &Channel,
        subscriptions: &[Subscription],
        retries: &RetryPolicy,
    ) -> Result<(), lapin::Error> {
        let plan = self.plan(subscriptions, retries);
        for queue in &plan.queues {
            channel
                .queue_delete(name(&queue.name), QueueDeleteOptions::default())
                .await?;
        }
        for exchange in &plan.exchanges {
            channel
                .exchange_delete(name(&exchange.name), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }
}

/// Declares `plan` on channels of its own from `connection`, keeping
/// legacy queues that may be kept (see [`QueueSpec::kept_if_legacy`]).
async fn declare_plan(connection: &Connection, plan: &Plan) -> Result<(), lapin::Error> {
    let mut declarer = Declarer {
        connection,
        channel: connection.create_channel().await?,
    };
    let declared = declarer.declare(plan).await;
    let _ = declarer
        .channel
        .close(200, ShortString::from("topology declared"))
        .await;
    declared
}

/// The channel declarations go through, and the connection to open a new
/// one on when the broker closes it over a queue kept from an older version.
struct Declarer<'c> {
    connection: &'c Connection,
    channel: Channel,
}

impl Declarer<'_> {
    async fn declare(&mut self, plan: &Plan) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        for exchange in &plan.exchanges {
            self.channel
                .exchange_declare(
                    name(&exchange.name),
                    exchange.kind.clone(),
                    durable,
                    exchange.arguments.clone(),
                )
                .await?;
        }
        for queue in &plan.queues {
            if queue.kept_if_legacy {
                self.declare_kept_queue(&queue.name, queue.arguments.clone())
                    .await?;
            } else {
                declare_queue(&self.channel, &queue.name, queue.arguments.clone()).await?;
            }
        }
        for binding in &plan.bindings {
            self.channel
                .queue_bind(
                    name(&binding.queue),
                    name(&binding.exchange),
                    name(&binding.routing_key),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// Declares a queue that an older version may have declared with other
    /// arguments (a dead-letter or the unroutable queue). Such a queue is
    /// kept as it is, with a warning: it still works, and replacing it
    /// would drop its messages.
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
             letters) or move its messages, then `rabbitmqctl delete_queue {queue}` and \
             provision again (see the README: Dead letters)"
        );
        self.channel = self.connection.create_channel().await?;
        Ok(())
    }
}

/// The queue-type argument every queue but the delay queues carries.
fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    // Quorum queues replicate across a cluster and are durable by nature.
    set_str(&mut args, "x-queue-type", "quorum");
    args
}

fn set_str(args: &mut FieldTable, key: &str, value: &str) {
    args.insert(
        ShortString::from(key),
        AMQPValue::LongString(LongString::from(value)),
    );
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
        assert_eq!(t.retry_exchange("payment"), "checkout.payment.retry");
        assert_eq!(
            t.dead_letter_exchange("payment"),
            "checkout.payment.dead-letter"
        );
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

    #[test]
    fn a_service_plan_holds_only_its_own_names_and_the_whole_plan_every_binding() {
        let t = Topology::new("ns").expect("valid");
        let retries = RetryPolicy::parse("1s,5s").expect("valid");
        let own = t.own_plan("payment", &retries);
        let names = own
            .exchanges
            .iter()
            .map(|e| &e.name)
            .chain(own.queues.iter().map(|q| &q.name))
            .chain(own.bindings.iter().flat_map(|b| [&b.exchange, &b.queue]));
        for name in names {
            assert!(
                name == "ns.payment" || name.starts_with("ns.payment."),
                "{name} is not the payment service's"
            );
        }
        assert_eq!(own.queues.len(), 4, "work, DLQ and two delay queues");

        let subscriptions = [Subscription {
            service: "payment",
            routing_keys: &["order.created", "order.cancelled"],
        }];
        let plan = t.plan(&subscriptions, &retries);
        let from_events: Vec<&str> = plan
            .bindings
            .iter()
            .filter(|b| b.exchange == "ns.events")
            .map(|b| b.routing_key.as_str())
            .collect();
        assert_eq!(from_events, ["order.created", "order.cancelled"]);
        assert!(plan.queues.iter().any(|q| q.name == "ns.unroutable"));
        // Every delay queue returns to the work queue through a binding of
        // the retry exchange.
        for queue in plan.queues.iter().filter(|q| q.name.contains(".retry.")) {
            let back = queue.arguments.inner().get("x-dead-letter-routing-key");
            assert_eq!(back, Some(&AMQPValue::LongString("ns.payment".into())));
            assert!(plan.bindings.contains(&BindingSpec {
                exchange: "ns.payment.retry".into(),
                queue: "ns.payment".into(),
                routing_key: "ns.payment".into(),
            }));
        }
    }
}
