//! What a deployment declares, or one service of it: every exchange, queue
//! and binding, with the exact arguments, in an order that can be declared
//! as listed.

use super::{Topology, set_str};
use crate::retry::RetryPolicy;
use checkout_events::Subscription;
use lapin::ExchangeKind;
use lapin::types::FieldTable;

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

impl Topology {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::AMQPValue;

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
