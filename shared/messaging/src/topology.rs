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
//!
//! The names and arguments are here; [`Plan`] (what a deployment or one
//! service declares) is in `plan`, declaring and deleting in `declare`.

mod declare;
mod plan;

pub use plan::{BindingSpec, ExchangeSpec, Plan, QueueSpec};

use crate::retry::DelayName;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
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
}
