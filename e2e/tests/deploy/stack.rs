//! The rest of the stack: the broker's volume, the databases' init script, Prometheus and the files compose mounts.

use super::*;

#[test]
fn rabbitmq_keeps_its_messages_when_the_container_is_recreated() {
    let compose = compose();
    let rabbitmq = service(&compose, "rabbitmq");
    assert!(
        rabbitmq.hostname.is_some(),
        "rabbitmq needs a fixed hostname: its data directory is named after it"
    );
    let volume = compose_spec::service::volumes::into_long_iter(rabbitmq.volumes.clone())
        .find_map(|mount| match mount {
            compose_spec::service::volumes::Mount::Volume(volume)
                if volume.common.target.as_path() == Path::new("/var/lib/rabbitmq") =>
            {
                volume.source
            }
            _ => None,
        })
        .expect("a named volume at /var/lib/rabbitmq");
    assert!(
        compose.volumes.contains_key(&volume),
        "{volume} is declared under the top-level volumes"
    );
}

#[test]
fn the_init_script_creates_one_database_and_role_per_service() {
    let databases = init_script_databases();
    let expected: BTreeSet<&str> = SERVICES.iter().map(|(info, _)| info.database).collect();
    let created: BTreeSet<&str> = databases.keys().map(String::as_str).collect();
    assert_eq!(created, expected);
    let roles: BTreeSet<&str> = databases.values().map(|(role, _)| role.as_str()).collect();
    assert_eq!(
        roles.len(),
        databases.len(),
        "one role per database: {databases:?}"
    );
    let script = read(&deploy("postgres/init-databases.sh"));
    assert!(script.contains(r#"REVOKE ALL ON DATABASE :"db" FROM PUBLIC"#));
}

#[test]
fn prometheus_scrapes_every_service_on_its_port() {
    let compose = compose();
    let config: serde_yaml::Value =
        serde_yaml::from_str(&read(&deploy("prometheus/prometheus.yml"))).expect("YAML");
    let mut targets = BTreeSet::new();
    for job in config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
    {
        assert_eq!(
            job["metrics_path"].as_str().unwrap_or("/metrics"),
            "/metrics"
        );
        for static_config in job["static_configs"].as_sequence().expect("static_configs") {
            for target in static_config["targets"].as_sequence().expect("targets") {
                targets.insert(target.as_str().expect("a host:port").to_owned());
            }
        }
    }
    let expected: BTreeSet<String> = SERVICES
        .iter()
        .map(|(info, _)| format!("{}:{}", info.name, info.http_port))
        .collect();
    assert_eq!(
        targets, expected,
        "one target per service, on its HTTP port"
    );
    for target in &targets {
        let host = target.split(':').next().unwrap_or_default();
        service(&compose, host);
    }

    // Every rule file it names is mounted beside it, from deploy/prometheus.
    let prometheus = service(&compose, "prometheus");
    let mounts = bind_mounts(prometheus);
    let rule_files = config["rule_files"].as_sequence().expect("rule_files");
    assert!(!rule_files.is_empty(), "the alert rules are loaded");
    for file in rule_files {
        let file = file.as_str().expect("a path");
        assert_eq!(
            mounts.get(&Path::new("/etc/prometheus").join(file)),
            Some(&PathBuf::from(format!("./prometheus/{file}"))),
            "prometheus: {file} is mounted"
        );
    }
}

#[test]
fn every_file_the_compose_file_mounts_exists() {
    let compose = compose();
    for (name, service) in &compose.services {
        for mount in compose_spec::service::volumes::into_long_iter(service.volumes.clone()) {
            if let compose_spec::service::volumes::Mount::Bind(bind) = mount {
                let source = bind.source.as_path();
                if source.is_relative() {
                    assert!(
                        deploy("").join(source).exists(),
                        "{name}: {} does not exist",
                        source.display()
                    );
                }
            }
        }
    }
}
