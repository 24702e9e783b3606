//! The broker definitions of a deployment: RabbitMQ's JSON of users,
//! permissions, topic permissions, exchanges, queues and bindings, from the
//! same [`Plan`] and [`BrokerUser`]s the code declares and checks.

use super::BrokerUser;
use crate::topology::Plan;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Map, Value, json};

/// The virtual host everything is defined in.
const VHOST: &str = "/";

/// The RabbitMQ definitions of `plan` and `users` (each with its password,
/// in plain text: the broker hashes it at import) in the virtual host `/`,
/// as `rabbitmqctl import_definitions` and `load_definitions` read them.
/// The virtual host is included: a node that loads definitions at boot
/// creates neither the default user nor the default virtual host.
pub fn definitions(plan: &Plan, users: &[(BrokerUser, String)]) -> Value {
    let users_json: Vec<Value> = users
        .iter()
        .map(|(user, password)| {
            json!({ "name": user.name, "password": password, "tags": user.tags })
        })
        .collect();
    let (permissions, topic_permissions) = permissions_json(users);
    let (exchanges, queues, bindings) = topology_json(plan);
    json!({
        "users": users_json,
        "vhosts": [{ "name": VHOST }],
        "permissions": permissions,
        "topic_permissions": topic_permissions,
        "exchanges": exchanges,
        "queues": queues,
        "bindings": bindings,
    })
}

/// Each user's permissions, and topic permissions where it has them.
fn permissions_json(users: &[(BrokerUser, String)]) -> (Vec<Value>, Vec<Value>) {
    let permissions = users
        .iter()
        .map(|(user, _)| {
            json!({
                "user": user.name,
                "vhost": VHOST,
                "configure": user.permissions.configure,
                "write": user.permissions.write,
                "read": user.permissions.read,
            })
        })
        .collect();
    let topic_permissions = users
        .iter()
        .filter_map(|(user, _)| {
            let topic = user.topic.as_ref()?;
            Some(json!({
                "user": user.name,
                "vhost": VHOST,
                "exchange": topic.exchange,
                "write": topic.write,
                "read": topic.read,
            }))
        })
        .collect();
    (permissions, topic_permissions)
}

/// The plan's exchanges, queues and bindings, all durable.
fn topology_json(plan: &Plan) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let exchanges = plan
        .exchanges
        .iter()
        .map(|exchange| {
            json!({
                "name": exchange.name,
                "vhost": VHOST,
                "type": exchange_type(&exchange.kind),
                "durable": true,
                "auto_delete": false,
                "internal": false,
                "arguments": table_json(&exchange.arguments),
            })
        })
        .collect();
    let queues = plan
        .queues
        .iter()
        .map(|queue| {
            json!({
                "name": queue.name,
                "vhost": VHOST,
                "durable": true,
                "auto_delete": false,
                "arguments": table_json(&queue.arguments),
            })
        })
        .collect();
    let bindings = plan
        .bindings
        .iter()
        .map(|binding| {
            json!({
                "source": binding.exchange,
                "vhost": VHOST,
                "destination": binding.queue,
                "destination_type": "queue",
                "routing_key": binding.routing_key,
                "arguments": {},
            })
        })
        .collect();
    (exchanges, queues, bindings)
}

fn exchange_type(kind: &lapin::ExchangeKind) -> &str {
    match kind {
        lapin::ExchangeKind::Direct => "direct",
        lapin::ExchangeKind::Fanout => "fanout",
        lapin::ExchangeKind::Headers => "headers",
        lapin::ExchangeKind::Topic => "topic",
        lapin::ExchangeKind::Custom(custom) => custom,
    }
}

/// A table of queue or exchange arguments as definitions JSON. The
/// arguments this crate declares are strings and integers only.
fn table_json(table: &FieldTable) -> Value {
    let map: Map<String, Value> = table
        .inner()
        .iter()
        .map(|(key, value)| (key.to_string(), value_json(value)))
        .collect();
    Value::Object(map)
}

fn value_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::LongString(s) => Value::from(String::from_utf8_lossy(s.as_bytes()).as_ref()),
        AMQPValue::ShortString(s) => Value::from(s.as_str()),
        AMQPValue::Boolean(b) => Value::from(*b),
        AMQPValue::ShortShortInt(n) => Value::from(*n),
        AMQPValue::ShortShortUInt(n) => Value::from(*n),
        AMQPValue::ShortInt(n) => Value::from(*n),
        AMQPValue::ShortUInt(n) => Value::from(*n),
        AMQPValue::LongInt(n) => Value::from(*n),
        AMQPValue::LongUInt(n) => Value::from(*n),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::FieldTable(table) => table_json(table),
        AMQPValue::FieldArray(items) => {
            Value::Array(items.as_slice().iter().map(value_json).collect())
        }
        other => Value::from(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{password_variable, service_user};
    use crate::topology::Topology;
    use checkout_events::PUBLISHERS;

    #[test]
    fn definitions_carry_names_arguments_and_permissions_as_rabbitmq_reads_them() {
        let topology = Topology::new("ns").expect("valid");
        let plan = topology.plan(
            checkout_events::SUBSCRIPTIONS,
            &crate::RetryPolicy::parse("1s").expect("valid"),
        );
        let order = PUBLISHERS.iter().find(|p| p.service == "order");
        let users = vec![(
            service_user(&topology, order.expect("order")),
            "pw".to_owned(),
        )];
        let defs = definitions(&plan, &users);
        let queue = defs["queues"]
            .as_array()
            .and_then(|queues| queues.iter().find(|q| q["name"] == "ns.order"))
            .expect("the order queue");
        assert_eq!(queue["arguments"]["x-delivery-limit"], 20);
        assert_eq!(
            queue["arguments"]["x-dead-letter-exchange"],
            "ns.order.dead-letter"
        );
        assert_eq!(defs["users"][0]["password"], "pw");
        assert_eq!(defs["topic_permissions"][0]["exchange"], "ns.events");
        assert_eq!(password_variable("order"), "BROKER_ORDER_PASSWORD");
    }
}
