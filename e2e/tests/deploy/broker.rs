//! The broker's users, permissions and topology in deploy/rabbitmq are the code's.

use super::*;

/// The users, permissions, topic permissions and topology in
/// `deploy/rabbitmq/definitions.json` are exactly what the code makes for
/// the demo's namespace and retry delays, with the passwords left to .env.
#[test]
fn the_broker_definitions_are_the_codes() {
    let topology = Topology::new(Topology::DEFAULT_NAMESPACE).expect("the default namespace");
    let users: Vec<(access::BrokerUser, String)> =
        access::deployment_users(&topology, Some("operator"))
            .into_iter()
            .map(|(user, variable)| (user, format!("${{{variable}}}")))
            .collect();
    let plan = topology.plan(SUBSCRIPTIONS, &RetryPolicy::default());
    let expected = access::definitions(&plan, &users);
    let file: serde_json::Value =
        serde_json::from_str(&read(&deploy("rabbitmq/definitions.json"))).expect("JSON");
    assert!(
        file == expected,
        "deploy/rabbitmq/definitions.json is not what the code makes; regenerate it:\n  \
         scripts/checkoutctl broker definitions --operator operator --password-placeholders \
         > deploy/rabbitmq/definitions.json"
    );
    // Every password it names is one .env sets and compose hands the broker.
    let compose = compose();
    let rabbitmq_env = raw_environment(service(&compose, "rabbitmq"));
    let env = dot_env();
    for (_, placeholder) in &users {
        let variable = placeholder.trim_start_matches("${").trim_end_matches('}');
        assert!(env.contains_key(variable), ".env sets {variable}");
        assert_eq!(
            rabbitmq_env.get(variable).map(String::as_str),
            Some(placeholder.as_str()),
            "rabbitmq gets {variable} from .env"
        );
    }
}

/// The broker loads the definitions at boot, after the passwords are
/// filled in, and no longer seeds a default administrator.
#[test]
fn the_broker_loads_the_definitions_at_boot() {
    let compose = compose();
    let rabbitmq = service(&compose, "rabbitmq");
    let env = environment(rabbitmq);
    for seeded in ["RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"] {
        assert!(
            !env.contains_key(seeded),
            "{seeded}: a node that loads definitions ignores it"
        );
    }
    let mounts = bind_mounts(rabbitmq);
    let conf = read(&deploy("rabbitmq/20-checkout.conf"));
    let loaded = conf
        .lines()
        .find_map(|line| line.strip_prefix("load_definitions = "))
        .expect("20-checkout.conf sets load_definitions");
    assert_eq!(
        mounts.get(Path::new("/etc/rabbitmq/conf.d/20-checkout.conf")),
        Some(&PathBuf::from("./rabbitmq/20-checkout.conf"))
    );
    assert_eq!(
        mounts.get(Path::new("/etc/checkout/definitions.json")),
        Some(&PathBuf::from("./rabbitmq/definitions.json"))
    );
    assert_eq!(
        mounts.get(Path::new("/etc/checkout/render-definitions.sh")),
        Some(&PathBuf::from("./rabbitmq/render-definitions.sh"))
    );
    let script = read(&deploy("rabbitmq/render-definitions.sh"));
    assert!(
        script.contains(&format!("DEFINITIONS_OUT:-{loaded}}}")),
        "render-definitions.sh writes where the broker loads from ({loaded})"
    );
    let command = format!("{:?}", rabbitmq.command);
    assert!(
        command.contains("/etc/checkout/render-definitions.sh")
            && command.contains("docker-entrypoint.sh")
            && command.contains("rabbitmq-server"),
        "rabbitmq renders the definitions, then starts as the image does: {command}"
    );
}

/// A service's events carry its binary's name as their `source`, and
/// consumers dead-letter an event whose source is not its owner's: a
/// renamed binary would have every event it publishes refused.
#[test]
fn each_service_publishes_under_the_source_that_owns_its_events() {
    for (info, _) in SERVICES {
        let publisher = checkout_events::PUBLISHERS
            .iter()
            .find(|p| p.service == info.name)
            .unwrap_or_else(|| panic!("{} is not among the publishers", info.name));
        assert_eq!(publisher.source, info.binary, "{}", info.name);
    }
    assert_eq!(checkout_events::PUBLISHERS.len(), SERVICES.len());
}
