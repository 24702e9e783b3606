//! Who may do what on the broker: one user per service, allowed only its
//! own names, publishing only the routing keys of the events it owns; and
//! the broker definitions (RabbitMQ's JSON of users, permissions, topic
//! permissions, exchanges, queues and bindings) that provision a deployment
//! from the same description as the code.
//!
//! A service's user, in namespace `ns` (each pattern a regular expression
//! RabbitMQ matches against a resource name):
//!
//! | | pattern | lets it |
//! | --- | --- | --- |
//! | configure | `^ns\.svc($\|\.)` | declare (and delete) its own queues and exchanges |
//! | write | `^ns\.(events$\|svc($\|\.))` | publish to the events exchange and its own exchanges; bind its own queues |
//! | read | `^ns\.svc($\|\.)` | consume its own queues; bind from its own exchanges |
//! | topic, on `ns.events` | write `^(order)\.[^.]+$`, read `^$` | publish only its aggregates' events |
//!
//! Nothing matches `amq.default`, so no service can publish through the
//! default exchange (which would let it put a message into any queue by
//! name), and nothing matches another service's queue or the events
//! exchange for reading, so it can neither consume another's queue nor bind
//! its own to keys it was not given. A service that publishes nothing
//! (Email) has no write permission on the events exchange at all.
//!
//! People use a separate operator user ([`operator`]): an administrator
//! with every permission, held by no process. The console has its own
//! ([`console_user`]), narrowed to the dead-letter queues.

mod definitions;

pub use definitions::definitions;

use crate::topology::Topology;
use checkout_events::Publisher;

/// A user's permissions in the virtual host: three regular expressions
/// over resource names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Which queues and exchanges it may declare and delete.
    pub configure: String,
    /// Which exchanges it may publish to, which queues it may bind.
    pub write: String,
    /// Which queues it may consume (get, purge), which exchanges it may bind from.
    pub read: String,
}

/// A user's topic permissions on one topic exchange: regular expressions
/// over routing keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPermission {
    /// The topic exchange.
    pub exchange: String,
    /// The routing keys it may publish with.
    pub write: String,
    /// The binding keys it may bind with.
    pub read: String,
}

/// A broker user and everything it is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUser {
    /// Its name.
    pub name: String,
    /// RabbitMQ user tags (`administrator` opens the management UI).
    pub tags: Vec<String>,
    /// Its permissions in the virtual host `/`.
    pub permissions: Permissions,
    /// Its topic permissions, if any (none means unrestricted routing keys
    /// wherever it may write).
    pub topic: Option<TopicPermission>,
}

/// The user of `service` in `topology`'s namespace: `<ns>.<service>`.
pub fn service_user_name(topology: &Topology, service: &str) -> String {
    format!("{}.{service}", topology.namespace())
}

/// The broker user of the service `publisher` describes, in `topology`'s
/// namespace (see the module documentation for what each pattern allows).
pub fn service_user(topology: &Topology, publisher: &Publisher) -> BrokerUser {
    let ns = regex_literal(topology.namespace());
    let service = regex_literal(publisher.service);
    let own = format!("^{ns}\\.{service}($|\\.)");
    let publishes = !publisher.aggregates.is_empty();
    let write = if publishes {
        format!("^{ns}\\.(events$|{service}($|\\.))")
    } else {
        own.clone()
    };
    let topic_write = if publishes {
        let aggregates: Vec<String> = publisher
            .aggregates
            .iter()
            .map(|a| regex_literal(a))
            .collect();
        format!("^({})\\.[^.]+$", aggregates.join("|"))
    } else {
        NOTHING.to_owned()
    };
    BrokerUser {
        name: service_user_name(topology, publisher.service),
        tags: Vec::new(),
        permissions: Permissions {
            configure: own.clone(),
            write,
            read: own,
        },
        topic: Some(TopicPermission {
            exchange: topology.exchange(),
            write: topic_write,
            // Bindings from the events exchange are the administrator's.
            read: NOTHING.to_owned(),
        }),
    }
}

/// The operator: the user people (and `checkoutctl`) use. An administrator
/// with every permission in `/`; no service holds it.
pub fn operator(name: &str) -> BrokerUser {
    BrokerUser {
        name: name.to_owned(),
        tags: vec!["administrator".to_owned()],
        permissions: Permissions {
            configure: ".*".to_owned(),
            write: ".*".to_owned(),
            read: ".*".to_owned(),
        },
        topic: None,
    }
}

/// The console's user (`<ns>.console`): what `checkoutctl dlq` does, and
/// nothing else. On the services' dead-letter queues (`<ns>.<svc>.dlq`)
/// it may read (get, ack, nack, purge) and configure — the delivery-limit
/// check declares the queue with its arguments, which the broker refuses
/// if they differ and which needs configure — and it may write to the
/// services' retry exchanges (`<ns>.<svc>.retry`), the replay path, which
/// route a message only to that service's own queue. No events exchange,
/// no work queue, no topic routing key.
pub fn console_user(topology: &Topology) -> BrokerUser {
    let ns = regex_literal(topology.namespace());
    let services: Vec<String> = checkout_events::SUBSCRIPTIONS
        .iter()
        .map(|s| regex_literal(s.service))
        .collect();
    let services = services.join("|");
    let dead_letter_queues = format!("^{ns}\\.({services})\\.dlq$");
    BrokerUser {
        name: service_user_name(topology, "console"),
        tags: Vec::new(),
        permissions: Permissions {
            configure: dead_letter_queues.clone(),
            write: format!("^{ns}\\.({services})\\.(dlq|retry)$"),
            read: dead_letter_queues,
        },
        topic: Some(TopicPermission {
            exchange: topology.exchange(),
            write: NOTHING.to_owned(),
            read: NOTHING.to_owned(),
        }),
    }
}

/// The environment variable a deployment keeps `service`'s broker password
/// in: `BROKER_ORDER_PASSWORD` for `order`.
pub fn password_variable(service: &str) -> String {
    format!(
        "BROKER_{}_PASSWORD",
        service.to_ascii_uppercase().replace(['-', '.'], "_")
    )
}

/// The users of a deployment of `topology`: one per service of
/// [`PUBLISHERS`](checkout_events::PUBLISHERS), the console's
/// ([`console_user`], `BROKER_CONSOLE_PASSWORD`), and the operator named
/// `operator` if given — each with the environment variable its password
/// is kept in ([`password_variable`]; the operator's is
/// `BROKER_OPERATOR_PASSWORD`).
pub fn deployment_users(topology: &Topology, operator: Option<&str>) -> Vec<(BrokerUser, String)> {
    let mut users: Vec<(BrokerUser, String)> = checkout_events::PUBLISHERS
        .iter()
        .map(|publisher| {
            (
                service_user(topology, publisher),
                password_variable(publisher.service),
            )
        })
        .collect();
    users.push((console_user(topology), password_variable("console")));
    if let Some(name) = operator {
        users.push((self::operator(name), password_variable("operator")));
    }
    users
}

/// A pattern that matches no resource name (RabbitMQ reads an empty
/// pattern as this too, but says it explicitly).
const NOTHING: &str = "^$";

/// `text` as a regular expression that matches exactly it. Namespaces and
/// service names are `[a-z0-9._-]`, so only the dot needs escaping; the
/// rest is escaped anyway, should a name ever carry more.
fn regex_literal(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if !(c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkout_events::PUBLISHERS;

    fn user(service: &str) -> BrokerUser {
        let topology = Topology::new("shop.eu").expect("valid");
        let publisher = PUBLISHERS
            .iter()
            .find(|p| p.service == service)
            .expect("a publisher");
        service_user(&topology, publisher)
    }

    #[test]
    fn a_service_user_is_confined_to_its_own_names() {
        let payment = user("payment");
        assert_eq!(payment.name, "shop.eu.payment");
        assert_eq!(payment.permissions.configure, r"^shop\.eu\.payment($|\.)");
        assert_eq!(
            payment.permissions.write,
            r"^shop\.eu\.(events$|payment($|\.))"
        );
        assert_eq!(payment.permissions.read, r"^shop\.eu\.payment($|\.)");
        let topic = payment.topic.expect("topic permissions");
        assert_eq!(topic.exchange, "shop.eu.events");
        assert_eq!(topic.write, r"^(payment)\.[^.]+$");
        assert_eq!(topic.read, "^$");

        let inventory = user("inventory").topic.expect("topic permissions");
        assert_eq!(inventory.write, r"^(inventory|product)\.[^.]+$");
        let email = user("email");
        assert_eq!(email.permissions.write, r"^shop\.eu\.email($|\.)");
        assert_eq!(email.topic.expect("topic").write, "^$");
    }

    /// Whether RabbitMQ's (unanchored) search for `pattern` finds `name`.
    fn allows(pattern: &str, name: &str) -> bool {
        regex_automata::meta::Regex::new(pattern)
            .expect("a valid pattern")
            .is_match(name)
    }

    #[test]
    fn each_service_reaches_its_own_names_and_the_events_it_owns_only() {
        let topology = Topology::new("shop.eu").expect("valid");
        let retries = crate::RetryPolicy::parse("1s,2m").expect("valid");
        let plan = topology.plan(checkout_events::SUBSCRIPTIONS, &retries);
        let all_names: Vec<String> = plan
            .exchanges
            .iter()
            .map(|e| e.name.clone())
            .chain(plan.queues.iter().map(|q| q.name.clone()))
            .chain(["amq.default", "amq.direct", "amq.topic"].map(str::to_owned))
            .collect();
        for publisher in PUBLISHERS {
            let user = service_user(&topology, publisher);
            let own = topology.own_plan(publisher.service, &retries);
            let own_names: Vec<&String> = own
                .exchanges
                .iter()
                .map(|e| &e.name)
                .chain(own.queues.iter().map(|q| &q.name))
                .collect();
            let p = &user.permissions;
            for name in &all_names {
                let is_own = own_names.contains(&name);
                let is_events = *name == topology.exchange();
                assert_eq!(
                    allows(&p.configure, name),
                    is_own,
                    "{} configure {name}",
                    user.name
                );
                assert_eq!(allows(&p.read, name), is_own, "{} read {name}", user.name);
                let publishes = !publisher.aggregates.is_empty();
                assert_eq!(
                    allows(&p.write, name),
                    is_own || (is_events && publishes),
                    "{} write {name}",
                    user.name
                );
            }
            let topic = user.topic.as_ref().expect("topic permissions");
            for (event_type, key) in checkout_events::EVENTS {
                let owned = checkout_events::owner_of(event_type) == Some(publisher);
                assert_eq!(
                    allows(&topic.write, key),
                    owned,
                    "{} publishing {key}",
                    user.name
                );
                assert!(!allows(&topic.read, key), "{} binding {key}", user.name);
            }
            assert!(!allows(&topic.write, "#"));
        }
    }
}
