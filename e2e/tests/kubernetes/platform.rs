//! What the services run on: the broker's generated resources and each
//! service's user on it, the databases, the autoscaling, the network.

use crate::broker::{self, CLUSTER, VHOST};
use crate::deployment::{SERVICES, url_parts};
use crate::manifests::{Manifests, folder, read};
use crate::network::{NAMESPACE, Pod, allowed};
use checkout_messaging::{Topology, access};

/// The broker's files are exactly what the code generates. With
/// `CHECKOUT_WRITE_KUBERNETES=1` they are written first.
#[test]
fn the_broker_resources_are_the_codes() {
    let write = std::env::var("CHECKOUT_WRITE_KUBERNETES").is_ok_and(|v| v == "1");
    for (file, expected) in broker::generated() {
        let path = folder().join(file);
        if write {
            std::fs::write(&path, &expected).expect("write the generated file");
        }
        assert!(
            read(&path) == expected,
            "deploy/kubernetes/{file} is not what the code makes; regenerate it:\n  \
             CHECKOUT_WRITE_KUBERNETES=1 cargo test -p e2e --test kubernetes"
        );
    }
}

/// Each service logs in as its own broker user, the User resource imports
/// that user's name and password from the Secret the service reads, and
/// the user's permissions are the access plan's.
#[test]
fn each_service_is_its_own_broker_user_with_the_access_plans_permissions() {
    let manifests = Manifests::load();
    let topology = Topology::new(Topology::DEFAULT_NAMESPACE).expect("valid");
    manifests.get("RabbitmqCluster", CLUSTER);
    let users = broker::users(&topology);
    for (info, _) in SERVICES {
        let env = manifests.environment(info.name);
        assert_eq!(env["BROKER_NAMESPACE"], topology.namespace());
        let (user, password, host, port, vhost) = url_parts(&env["AMQP_URL"]);
        assert_eq!(
            (host.as_str(), port),
            (CLUSTER, Some(5672)),
            "{}",
            info.name
        );
        assert_eq!(vhost, VHOST, "{}: the vhost", info.name);
        assert_eq!(user, access::service_user_name(&topology, info.name));
        let (expected, secret) = users
            .iter()
            .find(|(u, _)| u.name == user)
            .unwrap_or_else(|| panic!("no broker user {user}"));
        let resource = manifests.get("User", &user);
        assert_eq!(
            resource.spec()["importCredentialsSecret"]["name"],
            *secret,
            "{user}"
        );
        assert_eq!(manifests.data("Secret", secret, "username"), user);
        assert_eq!(manifests.data("Secret", secret, "password"), password);
        let permission = &manifests.get("Permission", &user).spec()["permissions"];
        let code = access::service_user(
            &topology,
            checkout_events::PUBLISHERS
                .iter()
                .find(|p| p.service == info.name)
                .expect("a publisher"),
        );
        assert_eq!(&code, expected);
        assert_eq!(permission["write"], code.permissions.write, "{user}");
        assert_eq!(permission["read"], code.permissions.read, "{user}");
        assert_eq!(permission["configure"], code.permissions.configure);
        let topic = code.topic.expect("topic permissions");
        let resource = &manifests.get("TopicPermission", &user).spec()["permissions"];
        assert_eq!(resource["exchange"], topic.exchange);
        assert_eq!(resource["write"], topic.write, "{user}: routing keys");
        assert_eq!(resource["read"], topic.read);
    }
    let console = manifests.environment("console");
    let (user, password, _, _, vhost) = url_parts(&console["AMQP_URL"]);
    assert_eq!((user.as_str(), vhost.as_str()), ("checkout.console", VHOST));
    assert_eq!(
        manifests.data("Secret", "console-broker", "password"),
        password
    );
}

/// One CloudNativePG cluster per service, owning the one database its
/// code expects, bootstrapped with the role and password it logs in with.
#[test]
fn each_service_owns_one_database_on_its_own_cluster() {
    let manifests = Manifests::load();
    let clusters: Vec<&str> = manifests.of_kind("Cluster").map(|c| c.name()).collect();
    assert_eq!(clusters.len(), SERVICES.len(), "{clusters:?}");
    let max_replicas = manifests
        .of_kind("ScaledObject")
        .filter_map(|s| s.spec()["maxReplicaCount"].as_u64())
        .max()
        .expect("ScaledObjects");
    for (info, _) in SERVICES {
        let env = manifests.environment(info.name);
        let (user, password, host, port, database) = url_parts(&env["DATABASE_URL"]);
        assert_eq!(database, info.database, "{}", info.name);
        let name = format!("{}-db", info.database);
        assert_eq!((host, port), (format!("{name}-rw"), Some(5432)));
        let cluster = manifests.get("Cluster", &name).spec();
        assert!(cluster["instances"].as_u64() >= Some(3), "{name}: HA");
        let initdb = &cluster["bootstrap"]["initdb"];
        assert_eq!(initdb["database"], info.database, "{name}");
        assert_eq!(initdb["owner"], user.as_str(), "{name}");
        let secret = initdb["secret"]["name"].as_str().expect("a secret");
        assert_eq!(manifests.data("Secret", secret, "username"), user);
        assert_eq!(manifests.data("Secret", secret, "password"), password);
        assert_eq!(
            manifests.get("Secret", secret).value["type"],
            "kubernetes.io/basic-auth"
        );
        // Every replica KEDA may start gets its pool.
        let config =
            checkout_runtime::Config::from_lookup(&info, |v| env.get(v).cloned()).expect("valid");
        let max_connections: u64 = cluster["postgresql"]["parameters"]["max_connections"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("max_connections");
        let needed = max_replicas * u64::from(config.database_max_connections);
        assert!(
            needed + 20 <= max_connections,
            "{name}: {needed} pooled connections + 20 for the operator and replication > {max_connections}"
        );
    }
}

/// KEDA scales each service on the depth of its own work queue, with the
/// depth-only broker user.
#[test]
fn each_service_scales_on_its_own_queue() {
    let manifests = Manifests::load();
    let topology = Topology::new(Topology::DEFAULT_NAMESPACE).expect("valid");
    for (info, _) in SERVICES {
        let scaled = manifests.get("ScaledObject", info.name).spec();
        assert_eq!(scaled["scaleTargetRef"]["name"], info.name);
        let min = scaled["minReplicaCount"].as_u64().expect("min");
        let deployment = manifests.get("Deployment", info.name).spec();
        assert_eq!(Some(min), deployment["replicas"].as_u64(), "{}", info.name);
        assert!(min >= 2 && scaled["maxReplicaCount"].as_u64() > Some(min));
        let triggers = scaled["triggers"].as_array().expect("triggers");
        let queue = triggers
            .iter()
            .find(|t| t["type"] == "rabbitmq")
            .unwrap_or_else(|| panic!("{}: no queue trigger", info.name));
        let name = topology.queue(info.name);
        assert_eq!(queue["metadata"]["queueName"], name.as_str());
        assert_eq!(manifests.get("Queue", &name).spec()["name"], name.as_str());
        let auth = queue["authenticationRef"]["name"].as_str().expect("auth");
        let refs = manifests.get("TriggerAuthentication", auth).spec()["secretTargetRef"]
            .as_array()
            .expect("secretTargetRef")
            .clone();
        for r in &refs {
            assert_eq!(r["name"], "autoscaler-broker", "only the depth reader");
        }
        let (_, _, host, port, vhost) =
            url_parts(&manifests.data("Secret", "autoscaler-broker", "host"));
        assert_eq!((host.as_str(), port), ("broker.checkout.svc", Some(5672)));
        assert_eq!(vhost, VHOST);
        if info.name == "order" {
            assert!(triggers.iter().any(|t| t["type"] == "cpu"), "order on CPU");
        }
    }
    let autoscaler = broker::autoscaler_user(&topology);
    let permission = &manifests.get("Permission", &autoscaler.name).spec()["permissions"];
    for right in ["configure", "write", "read"] {
        assert_eq!(
            permission[right], "^$",
            "the autoscaler may {right} nothing"
        );
    }
}

fn pods(manifests: &Manifests) -> Vec<Pod> {
    let mut pods: Vec<Pod> = manifests
        .of_kind("Deployment")
        .map(|d| {
            let labels = d.spec()["template"]["metadata"]["labels"]
                .as_object()
                .expect("labels");
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()))
                .collect();
            Pod::new(d.name(), NAMESPACE, &labels)
        })
        .collect();
    for cluster in manifests.of_kind("Cluster") {
        pods.push(Pod::new(
            cluster.name(),
            NAMESPACE,
            &[
                ("cnpg.io/cluster", cluster.name()),
                ("cnpg.io/podRole", "instance"),
            ],
        ));
    }
    pods.push(Pod::new(
        "broker",
        NAMESPACE,
        &[
            ("app.kubernetes.io/name", CLUSTER),
            ("app.kubernetes.io/component", "rabbitmq"),
        ],
    ));
    pods.push(Pod::new("stranger", NAMESPACE, &[("app", "stranger")]));
    pods.push(Pod::new("elsewhere", "default", &[]));
    pods
}

/// Each service reaches its own database, the broker and the collector and
/// nothing else of ours; nothing but its service reaches a database; the
/// console reaches the services' admin APIs.
#[test]
fn the_network_policies_allow_exactly_the_needed_paths() {
    let manifests = Manifests::load();
    let pods = pods(&manifests);
    let pod = |name: &str| {
        pods.iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pod {name}"))
    };
    let databases: Vec<String> = SERVICES
        .iter()
        .map(|(info, _)| format!("{}-db", info.database))
        .collect();
    for (database, owner) in databases.iter().zip(SERVICES.iter().map(|(i, _)| i.name)) {
        for source in &pods {
            let expected = source.name == owner || source.name == *database;
            assert_eq!(
                allowed(&manifests, source, pod(database), 5432),
                expected,
                "{} -> {database}:5432",
                source.name
            );
        }
    }
    for (info, _) in SERVICES {
        let service = pod(info.name);
        assert!(allowed(&manifests, service, pod("broker"), 5672));
        assert!(allowed(&manifests, service, pod("otel-collector"), 4318));
        assert!(!allowed(&manifests, service, pod("jaeger"), 4317));
        assert!(allowed(&manifests, pod("console"), service, info.http_port));
        for other in SERVICES.iter().filter(|(o, _)| o.name != info.name) {
            assert!(
                !allowed(&manifests, service, pod(other.0.name), other.0.http_port),
                "{} -> {}",
                info.name,
                other.0.name
            );
        }
        let stranger_reaches = allowed(&manifests, pod("stranger"), service, info.http_port);
        assert_eq!(
            stranger_reaches,
            info.name == "order",
            "only Order is public"
        );
    }
    assert!(allowed(&manifests, pod("console"), pod("broker"), 5672));
    assert!(!allowed(&manifests, pod("stranger"), pod("broker"), 5672));
    assert!(!allowed(&manifests, pod("elsewhere"), pod("broker"), 15672));
    assert!(allowed(
        &manifests,
        pod("otel-collector"),
        pod("jaeger"),
        4317
    ));
    assert!(allowed(&manifests, pod("email"), pod("mailpit"), 1025));
    assert!(!allowed(&manifests, pod("order"), pod("mailpit"), 1025));
    let keda = Pod::new("keda", "keda", &[("app", "keda-operator")]);
    assert!(allowed(&manifests, &keda, pod("broker"), 5672));
    let cnpg = Pod::new("cnpg", "cnpg-system", &[]);
    assert!(allowed(&manifests, &cnpg, pod("orders-db"), 8000));
    assert!(!allowed(&manifests, &cnpg, pod("orders-db"), 5432));
}
