//! The broker's vhost, users, permissions and topology as the RabbitMQ
//! messaging-topology-operator's resources, made from the same description
//! as everything else on the broker: `access::definitions` of the code's
//! `Topology::plan` and `access::deployment_users` — the function that
//! writes compose's `deploy/rabbitmq/definitions.json`. Only the vhost
//! differs: a cluster gets a vhost of its own, `checkout`.

use checkout_events::SUBSCRIPTIONS;
use checkout_messaging::access::{self, BrokerUser, Permissions, TopicPermission};
use checkout_messaging::{RetryPolicy, Topology};
use serde_json::{Value, json};

/// The vhost of the cluster deployment.
pub(crate) const VHOST: &str = "checkout";
/// The RabbitmqCluster every topology resource belongs to.
pub(crate) const CLUSTER: &str = "broker";

/// The generated files, relative to `deploy/kubernetes/`, and their text.
pub(crate) fn generated() -> [(&'static str, String); 2] {
    let topology = Topology::new(Topology::DEFAULT_NAMESPACE).expect("the default namespace");
    let plan = topology.plan(SUBSCRIPTIONS, &RetryPolicy::default());
    let users: Vec<(BrokerUser, String)> = users(&topology)
        .into_iter()
        .map(|(user, secret)| (user, secret.to_owned()))
        .collect();
    // The passwords stay in the Secrets: the definitions' password field
    // carries the Secret's name instead, for `user_resource`.
    let definitions = access::definitions(&plan, &users);
    let list = |key: &str| definitions[key].as_array().cloned().unwrap_or_default();
    let mut access_docs = vec![vhost()];
    access_docs.extend(list("users").iter().map(user_resource));
    access_docs.extend(list("permissions").iter().map(permission));
    access_docs.extend(list("topic_permissions").iter().map(topic_permission));
    let mut topology_docs: Vec<Value> = list("exchanges").iter().map(exchange).collect();
    topology_docs.extend(list("queues").iter().map(queue));
    topology_docs.extend(list("bindings").iter().map(binding));
    [
        ("broker/users.yaml", render(USERS_HEADER, &access_docs)),
        (
            "broker/topology.yaml",
            render(TOPOLOGY_HEADER, &topology_docs),
        ),
    ]
}

/// Every broker user of the cluster deployment and the Secret holding its
/// credentials: the code's users (one per service, the console's and the
/// operator's), and the autoscaler's.
pub(crate) fn users(topology: &Topology) -> Vec<(BrokerUser, &'static str)> {
    let mut users: Vec<(BrokerUser, &'static str)> =
        access::deployment_users(topology, Some("operator"))
            .into_iter()
            .map(|(user, variable)| {
                let secret = match variable.as_str() {
                    "BROKER_ORDER_PASSWORD" => "order-broker",
                    "BROKER_PAYMENT_PASSWORD" => "payment-broker",
                    "BROKER_INVENTORY_PASSWORD" => "inventory-broker",
                    "BROKER_EMAIL_PASSWORD" => "email-broker",
                    "BROKER_OPERATOR_PASSWORD" => "operator-broker",
                    "BROKER_CONSOLE_PASSWORD" => "console-broker",
                    other => panic!("a broker user this deployment has no Secret for: {other}"),
                };
                (user, secret)
            })
            .collect();
    users.push((autoscaler_user(topology), "autoscaler-broker"));
    users
}

/// The user KEDA reads queue depths with. A passive `queue.declare`, which
/// answers with the depth, needs no permission at all (tried on RabbitMQ
/// 3.10: a user with `^$` everywhere gets the depth and is refused a
/// `basic.get`), so it has access to the vhost and nothing in it.
pub(crate) fn autoscaler_user(topology: &Topology) -> BrokerUser {
    BrokerUser {
        name: access::service_user_name(topology, "autoscaler"),
        tags: Vec::new(),
        permissions: Permissions {
            configure: "^$".to_owned(),
            write: "^$".to_owned(),
            read: "^$".to_owned(),
        },
        topic: Some(TopicPermission {
            exchange: topology.exchange(),
            write: "^$".to_owned(),
            read: "^$".to_owned(),
        }),
    }
}

const USERS_HEADER: &str = "\
# GENERATED from the code by e2e/tests/kubernetes (broker.rs) — do not edit.
# Regenerate: CHECKOUT_WRITE_KUBERNETES=1 cargo test -p e2e --test kubernetes
#
# The vhost, the broker users and their permissions, as the RabbitMQ
# messaging-topology-operator's resources: the same users, permissions and
# topic permissions as shared/messaging/src/access.rs gives compose's
# deploy/rabbitmq/definitions.json (README \"The broker: a user per
# service\"), in the vhost `checkout`. Each User takes its name and password
# from its Secret (secrets.yaml) when it is created.
";

const TOPOLOGY_HEADER: &str = "\
# GENERATED from the code by e2e/tests/kubernetes (broker.rs) — do not edit.
# Regenerate: CHECKOUT_WRITE_KUBERNETES=1 cargo test -p e2e --test kubernetes
#
# Every exchange, queue and binding of Topology::plan (shared/messaging/src/
# topology.rs) with its exact arguments, as the messaging-topology-operator's
# resources: provisioned by an administrator before the services start, as
# compose's definitions.json is. The services check the events exchange and
# declare their own queues again at start (idempotent). Arguments cannot be
# changed on an existing queue: a new version that changes one needs a new
# queue name, as it would anywhere.
";

fn render(header: &str, documents: &[Value]) -> String {
    let mut out = header.to_owned();
    for document in documents {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(document).expect("YAML"));
    }
    out
}

fn resource(kind: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "rabbitmq.com/v1beta1",
        "kind": kind,
        "metadata": {
            "name": name,
            "labels": { "app.kubernetes.io/part-of": "checkout" },
        },
        "spec": spec,
    })
}

fn cluster() -> Value {
    json!({ "name": CLUSTER })
}

fn vhost() -> Value {
    resource(
        "Vhost",
        VHOST,
        json!({ "name": VHOST, "rabbitmqClusterReference": cluster() }),
    )
}

fn user_resource(user: &Value) -> Value {
    let name = user["name"].as_str().expect("a user name");
    let mut spec = json!({
        "importCredentialsSecret": { "name": user["password"] },
        "rabbitmqClusterReference": cluster(),
    });
    let tags = user["tags"].as_array().cloned().unwrap_or_default();
    if !tags.is_empty() {
        spec["tags"] = Value::Array(tags);
    }
    resource("User", name, spec)
}

fn permission(permission: &Value) -> Value {
    let user = permission["user"].as_str().expect("a user");
    resource(
        "Permission",
        user,
        json!({
            "vhost": VHOST,
            "userReference": { "name": user },
            "permissions": {
                "configure": permission["configure"],
                "write": permission["write"],
                "read": permission["read"],
            },
            "rabbitmqClusterReference": cluster(),
        }),
    )
}

fn topic_permission(permission: &Value) -> Value {
    let user = permission["user"].as_str().expect("a user");
    resource(
        "TopicPermission",
        user,
        json!({
            "vhost": VHOST,
            "userReference": { "name": user },
            "permissions": {
                "exchange": permission["exchange"],
                "write": permission["write"],
                "read": permission["read"],
            },
            "rabbitmqClusterReference": cluster(),
        }),
    )
}

fn exchange(exchange: &Value) -> Value {
    let name = exchange["name"].as_str().expect("an exchange name");
    let mut spec = json!({
        "name": name,
        "vhost": VHOST,
        "type": exchange["type"],
        "durable": true,
        "autoDelete": false,
        "rabbitmqClusterReference": cluster(),
    });
    if exchange["arguments"]
        .as_object()
        .is_some_and(|a| !a.is_empty())
    {
        spec["arguments"] = exchange["arguments"].clone();
    }
    resource("Exchange", name, spec)
}

fn queue(queue: &Value) -> Value {
    let name = queue["name"].as_str().expect("a queue name");
    let mut arguments = queue["arguments"].as_object().cloned().unwrap_or_default();
    let kind = arguments.remove("x-queue-type");
    let mut spec = json!({
        "name": name,
        "vhost": VHOST,
        "durable": true,
        "autoDelete": false,
        "rabbitmqClusterReference": cluster(),
    });
    // The operator declares `type` as x-queue-type; none is a classic queue.
    if let Some(kind) = kind {
        spec["type"] = kind;
    }
    if !arguments.is_empty() {
        spec["arguments"] = Value::Object(arguments);
    }
    resource("Queue", name, spec)
}

fn binding(binding: &Value) -> Value {
    let source = binding["source"].as_str().expect("a source");
    let destination = binding["destination"].as_str().expect("a destination");
    let key = binding["routing_key"].as_str().unwrap_or_default();
    let mut name = format!("{source}.to.{destination}");
    if !key.is_empty() && key != destination {
        name.push_str(".on.");
        name.push_str(key);
    }
    let name: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '.' | '-' => c,
            _ => '-',
        })
        .collect();
    resource(
        "Binding",
        &name,
        json!({
            "vhost": VHOST,
            "source": source,
            "destination": destination,
            "destinationType": binding["destination_type"],
            "routingKey": key,
            "rabbitmqClusterReference": cluster(),
        }),
    )
}
