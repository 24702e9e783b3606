//! The Docker Compose demo in `deploy/`, checked against the code without a
//! Docker engine: the compose file is parsed strictly (`compose_spec`: an
//! unknown key or condition is an error) and every name, port, variable,
//! database, role, broker user and scrape target in it is compared with
//! what the services, the init script, the broker definitions and the
//! Prometheus config really say.

use checkout_events::SUBSCRIPTIONS;
use checkout_messaging::access;
use checkout_messaging::{RetryPolicy, Topology};
use compose_spec::service::{Condition, Healthcheck, Restart, ports};
use compose_spec::{Compose, Service, ShortOrLong};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[path = "support/deployment.rs"]
mod deployment;

use deployment::{SERVICES, readable, url_parts};

/// The fault-switch contract's variable (`GET/PUT /faults` answer 403
/// without it), which the demo sets for the four services.
const FAULTS_VARIABLE: &str = "FAULTS_ENABLED";

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn compose() -> Compose {
    let text = read(&deploy("compose.yaml"));
    let compose = Compose::options()
        .apply_merge(true)
        .from_yaml_str(&text)
        .unwrap_or_else(|e| panic!("deploy/compose.yaml does not parse strictly: {e}"));
    compose
        .validate_all()
        .unwrap_or_else(|e| panic!("deploy/compose.yaml is inconsistent: {e}"));
    compose
}

fn service<'a>(compose: &'a Compose, name: &str) -> &'a Service {
    compose
        .services
        .iter()
        .find(|(id, _)| id.as_str() == name)
        .map(|(_, service)| service)
        .unwrap_or_else(|| panic!("compose has no service {name:?}"))
}

/// The service's environment as the container gets it: `${VARIABLE}`s
/// resolved from the root `.env`, as `docker compose` does.
fn environment(service: &Service) -> BTreeMap<String, String> {
    let dot_env = dot_env();
    raw_environment(service)
        .into_iter()
        .map(|(key, value)| (key, interpolate(&value, &dot_env)))
        .collect()
}

/// The service's environment as the compose file writes it.
fn raw_environment(service: &Service) -> BTreeMap<String, String> {
    service
        .environment
        .clone()
        .into_map()
        .expect("environment is a map")
        .into_iter()
        .map(|(key, value)| {
            let value = value.map(|v| v.to_string()).unwrap_or_default();
            (key.as_str().to_owned(), value)
        })
        .collect()
}

/// The root `.env`, as compose reads it: `NAME=value` lines, comments skipped.
fn dot_env() -> BTreeMap<String, String> {
    read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../.env"))
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.trim().to_owned(), value.to_owned()))
        .collect()
}

/// [`interpolate`] with the root `.env`.
fn interpolated(value: &str) -> String {
    interpolate(value, &dot_env())
}

/// `value` with each `${NAME}` replaced by `.env`'s value, as compose
/// interpolates it; a variable `.env` does not set fails the test (compose
/// would only warn and use an empty value).
fn interpolate(value: &str, dot_env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .unwrap_or_else(|| panic!("an unclosed ${{ in {value:?}"));
        let name = &after[..end];
        assert!(
            !name.contains([':', '-', '?']),
            "{value:?}: only plain ${{NAME}} is resolved here"
        );
        let set = dot_env
            .get(name)
            .unwrap_or_else(|| panic!("{value}: .env does not set {name}"));
        out.push_str(set);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The init script's `create DATABASE ROLE "$PASSWORD_VARIABLE"` lines.
fn init_script_databases() -> BTreeMap<String, (String, String)> {
    read(&deploy("postgres/init-databases.sh"))
        .lines()
        .filter_map(|line| line.strip_prefix("create "))
        .map(|args| {
            let words: Vec<&str> = args.split_whitespace().collect();
            let [database, role, variable] = words[..] else {
                panic!("init script: cannot read `create {args}`");
            };
            let variable = variable.trim_matches('"').trim_start_matches('$');
            (database.to_owned(), (role.to_owned(), variable.to_owned()))
        })
        .collect()
}

#[test]
fn the_root_env_file_points_compose_at_deploy() {
    let env = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../.env"));
    assert!(
        env.lines()
            .any(|line| line == "COMPOSE_FILE=deploy/compose.yaml"),
        ".env must set COMPOSE_FILE=deploy/compose.yaml:\n{env}"
    );
}

#[test]
fn every_service_gets_the_admin_token_from_the_env_file_where_it_is_marked_as_a_demo_value() {
    let compose = compose();
    let dot_env = dot_env();
    let token = dot_env
        .get("ADMIN_TOKEN")
        .expect(".env sets ADMIN_TOKEN for the compose stack");
    for (info, _) in SERVICES {
        let service = service(&compose, info.name);
        assert_eq!(
            raw_environment(service)
                .get("ADMIN_TOKEN")
                .map(String::as_str),
            Some("${ADMIN_TOKEN}"),
            "{}: the token comes from .env, not from the compose file",
            info.name
        );
        let env = environment(service);
        let config = checkout_runtime::Config::from_lookup(&info, |name| env.get(name).cloned())
            .unwrap_or_else(|e| panic!("{}: {e}", info.name));
        let admin = config
            .admin_token
            .unwrap_or_else(|| panic!("{}: the admin endpoints are on", info.name));
        assert_eq!(admin.secret(), token, "{}", info.name);
    }
    // The comment right above the value says that it is a demo value.
    let text = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../.env"));
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|line| line.starts_with("ADMIN_TOKEN="))
        .expect("the ADMIN_TOKEN line");
    let comment: String = lines[..at]
        .iter()
        .rev()
        .take_while(|line| line.starts_with('#'))
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        comment.to_lowercase().contains("demo value"),
        ".env says the ADMIN_TOKEN is a demo value: {comment:?}"
    );
}

#[test]
fn every_image_is_pinned_to_a_version() {
    let compose = compose();
    for (name, service) in &compose.services {
        match (&service.image, &service.build) {
            (Some(image), _) => {
                let tag = image.tag().unwrap_or_default();
                assert!(
                    image.digest().is_some()
                        || (tag.chars().any(|c| c.is_ascii_digit()) && tag != "latest"),
                    "{name}: image {image} is not pinned to a version"
                );
            }
            (None, Some(_)) => {}
            (None, None) => panic!("{name} has neither an image nor a build"),
        }
    }
    // The Dockerfile's base images too (an ARG default counts as the image).
    let dockerfile = read(&deploy("Dockerfile"));
    let args: BTreeMap<&str, &str> = dockerfile
        .lines()
        .filter_map(|line| line.strip_prefix("ARG "))
        .filter_map(|arg| arg.split_once('='))
        .collect();
    for line in dockerfile.lines().filter(|l| l.starts_with("FROM ")) {
        let image = line.split_whitespace().nth(1).expect("FROM names an image");
        let image = image
            .strip_prefix("${")
            .and_then(|arg| arg.strip_suffix('}'))
            .map_or(image, |arg| args.get(arg).copied().unwrap_or(image));
        let stage = ["chef", "planner", "builder"].contains(&image);
        let tag = image
            .rsplit_once(':')
            .map(|(_, tag)| tag)
            .unwrap_or_default();
        assert!(
            stage || (tag.chars().any(|c| c.is_ascii_digit()) && !tag.contains("latest")),
            "Dockerfile: {line} is not pinned"
        );
    }
}

#[test]
fn each_service_gets_only_variables_its_code_reads_with_working_values() {
    let compose = compose();
    let (postgres, rabbitmq) = (service(&compose, "postgres"), service(&compose, "rabbitmq"));
    let postgres_env = environment(postgres);
    let rabbitmq_env = environment(rabbitmq);
    let databases = init_script_databases();
    let known: BTreeSet<&str> = compose.services.keys().map(|id| id.as_str()).collect();

    for (info, own) in SERVICES {
        let service = service(&compose, info.name);
        let raw = raw_environment(service);
        let env: BTreeMap<String, String> = raw
            .iter()
            .map(|(name, value)| (name.clone(), interpolated(value)))
            .collect();
        let readable = readable(own);
        for variable in env.keys() {
            assert!(
                readable.contains(variable.as_str()),
                "{}: {variable} is set but no code reads it (readable: {readable:?})",
                info.name
            );
        }
        for required in [
            "DATABASE_URL",
            "AMQP_URL",
            "HTTP_ADDR",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_SERVICE_NAME",
        ] {
            assert!(
                env.contains_key(required),
                "{}: {required} is not set",
                info.name
            );
        }
        assert_eq!(env["OTEL_SERVICE_NAME"], info.binary, "{}", info.name);

        // The values are the ones the code accepts.
        let config = checkout_runtime::Config::from_lookup(&info, |name| env.get(name).cloned())
            .unwrap_or_else(|e| panic!("{}: {e}", info.name));
        assert_eq!(
            config.http_addr.port(),
            info.http_port,
            "{}: HTTP_ADDR",
            info.name
        );
        if info.name == "order" {
            let settings = order_service::Settings::from_lookup(|name| env.get(name).cloned())
                .unwrap_or_else(|e| panic!("order: {e}"));
            assert!(
                settings.order_deadline >= std::time::Duration::from_secs(5),
                "order: ORDER_DEADLINE leaves the saga time to finish"
            );
        }
        if info.name == "email" {
            let mail = email_service::Settings::from_lookup(|name| env.get(name).cloned())
                .unwrap_or_else(|e| panic!("email: {e}"));
            assert!(mail.transport.is_some(), "email: SMTP_URL is set");
            let (_, _, host, port, _) = url_parts(&env["SMTP_URL"]);
            assert!(known.contains(host.as_str()), "SMTP_URL names {host}");
            assert_eq!(port, Some(1025), "Mailpit's SMTP port");
        }

        // Its own database, as its own role, with the password PostgreSQL got.
        let (user, password, host, port, database) = url_parts(&config.database_url);
        assert_eq!(
            (host.as_str(), port),
            ("postgres", Some(5432)),
            "{}",
            info.name
        );
        assert_eq!(
            database, info.database,
            "{}: the database its code expects",
            info.name
        );
        let (role, variable) = databases
            .get(&database)
            .unwrap_or_else(|| panic!("the init script does not create {database}"));
        assert_eq!(&user, role, "{}: role of {database}", info.name);
        assert_eq!(
            postgres_env.get(variable),
            Some(&password),
            "{}: password of {role} ({variable})",
            info.name
        );
        // Its own broker user, with the password from .env that the
        // broker's definitions get too; the collector a compose service.
        let (user, password, host, _, _) = url_parts(&config.amqp_url);
        assert_eq!(host, "rabbitmq", "{}", info.name);
        let topology = Topology::new(config.broker_namespace.as_str()).expect("a namespace");
        assert_eq!(
            user,
            access::service_user_name(&topology, info.name),
            "{}: its own broker user",
            info.name
        );
        let variable = access::password_variable(info.name);
        assert!(
            raw["AMQP_URL"].contains(&format!("${{{variable}}}")),
            "{}: the broker password comes from .env ({variable})",
            info.name
        );
        assert_eq!(
            rabbitmq_env.get(&variable).map(|v| interpolated(v)),
            Some(password),
            "{}: rabbitmq is given {variable}",
            info.name
        );
        let (_, _, host, port, _) = url_parts(&env["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        assert_eq!(
            (host.as_str(), port),
            ("jaeger", Some(4318)),
            "OTLP over HTTP"
        );

        // Published on its own port; built from the one Dockerfile.
        let published: Vec<(u16, Option<u16>)> = ports::into_long_iter(service.ports.clone())
            .map(|port| (port.target, port.published.map(|range| range.start())))
            .collect();
        assert_eq!(
            published,
            [(info.http_port, Some(info.http_port))],
            "{}",
            info.name
        );
        let Some(ShortOrLong::Long(build)) = &service.build else {
            panic!("{}: not built from deploy/Dockerfile", info.name);
        };
        let args = build.args.clone().into_map().expect("build args");
        let service_arg = args
            .iter()
            .find(|(key, _)| key.as_str() == "SERVICE")
            .and_then(|(_, value)| value.as_ref())
            .map(ToString::to_string);
        assert_eq!(
            service_arg.as_deref(),
            Some(info.binary),
            "{}: SERVICE",
            info.name
        );
    }
}

#[test]
fn services_wait_for_healthy_dependencies_and_restart() {
    let compose = compose();
    for (info, _) in SERVICES {
        let service = service(&compose, info.name);
        assert_eq!(
            service.restart,
            Some(Restart::UnlessStopped),
            "{}",
            info.name
        );
        assert!(
            matches!(service.healthcheck, Some(Healthcheck::Command(_))),
            "{}: no healthcheck",
            info.name
        );
        let ShortOrLong::Long(depends_on) = &service.depends_on else {
            panic!("{}: depends_on must name conditions", info.name);
        };
        for needed in ["postgres", "rabbitmq"] {
            let dependency = depends_on
                .iter()
                .find(|(id, _)| id.as_str() == needed)
                .map(|(_, dependency)| dependency)
                .unwrap_or_else(|| panic!("{} does not depend on {needed}", info.name));
            assert_eq!(
                dependency.condition,
                Condition::ServiceHealthy,
                "{}",
                info.name
            );
            // What it waits for must be able to become healthy.
            assert!(
                service_has_healthcheck(&compose, needed),
                "{needed} has no healthcheck"
            );
        }
    }
}

#[test]
fn services_have_time_to_drain_before_they_are_killed() {
    let compose = compose();
    // Besides the consumers' drain: closing the HTTP server, the relay's
    // last batch, flushing spans.
    const REST_OF_SHUTDOWN: Duration = Duration::from_secs(10);
    for (info, _) in SERVICES {
        let service = service(&compose, info.name);
        let env = environment(service);
        let config = checkout_runtime::Config::from_lookup(&info, |name| env.get(name).cloned())
            .unwrap_or_else(|e| panic!("{}: {e}", info.name));
        let grace = service.stop_grace_period.unwrap_or(Duration::from_secs(10)); // compose's default
        assert!(
            grace >= config.shutdown_timeout + REST_OF_SHUTDOWN,
            "{}: stop_grace_period {grace:?} leaves no time beyond SHUTDOWN_TIMEOUT {:?}",
            info.name,
            config.shutdown_timeout
        );
    }
}

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

fn service_has_healthcheck(compose: &Compose, name: &str) -> bool {
    matches!(
        service(compose, name).healthcheck,
        Some(Healthcheck::Command(_))
    )
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
    let mounts: BTreeMap<PathBuf, PathBuf> =
        compose_spec::service::volumes::into_long_iter(prometheus.volumes.clone())
            .filter_map(|mount| match mount {
                compose_spec::service::volumes::Mount::Bind(bind) => Some((
                    bind.common.target.as_path().to_path_buf(),
                    bind.source.as_path().to_path_buf(),
                )),
                _ => None,
            })
            .collect();
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
    let mounts: BTreeMap<PathBuf, PathBuf> =
        compose_spec::service::volumes::into_long_iter(rabbitmq.volumes.clone())
            .filter_map(|mount| match mount {
                compose_spec::service::volumes::Mount::Bind(bind) => Some((
                    bind.common.target.as_path().to_path_buf(),
                    bind.source.as_path().to_path_buf(),
                )),
                _ => None,
            })
            .collect();
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

/// The console gets only variables it reads, with values it accepts: its
/// own broker user (the dead-letter queues only) with the password .env
/// gives the broker, the four services at their compose names and ports,
/// the Jaeger UI, its port 8084 — and the DLQ tool inside its image.
#[test]
fn the_console_reads_the_services_and_the_dead_letters_as_its_own_user() {
    let compose = compose();
    let console = service(&compose, console_service::SERVICE.name);
    let raw = raw_environment(console);
    let env = environment(console);
    let readable: BTreeSet<&str> = console_service::settings::VARIABLES
        .iter()
        .chain(console_service::settings::RUNTIME_VARIABLES)
        .chain(checkout_telemetry::VARIABLES)
        .chain([&checkout_runtime::config::SERVICE_NAME_VARIABLE])
        .copied()
        .collect();
    for variable in env.keys() {
        assert!(
            readable.contains(variable.as_str()),
            "console: {variable} is set but not read"
        );
    }
    assert_eq!(
        env.get("OTEL_SERVICE_NAME").map(String::as_str),
        Some("console")
    );
    let settings = console_service::Settings::from_lookup(|name| env.get(name).cloned())
        .unwrap_or_else(|e| panic!("console: {e}"));
    assert_eq!(
        raw["ADMIN_TOKEN"], "${ADMIN_TOKEN}",
        "the token comes from .env"
    );
    assert!(
        settings.jaeger_ui_url.is_some(),
        "console: JAEGER_UI_URL is set"
    );
    for (info, _) in SERVICES {
        let url = settings.services.of(info.name).expect("a service URL");
        let (_, _, host, port, _) = url_parts(url);
        assert_eq!(
            (host.as_str(), port),
            (info.name, Some(info.http_port)),
            "console: {url}"
        );
        service(&compose, info.name);
    }
    let config = checkout_runtime::Config::from_lookup(&console_service::SERVICE, |name| {
        env.get(name).cloned()
    })
    .unwrap_or_else(|e| panic!("console: {e}"));
    assert_eq!(config.http_addr.port(), 8084);
    let published: Vec<(u16, Option<u16>)> = ports::into_long_iter(console.ports.clone())
        .map(|port| (port.target, port.published.map(|range| range.start())))
        .collect();
    assert_eq!(published, [(8084, Some(8084))]);

    let (user, password, host, _, _) = url_parts(&config.amqp_url);
    let topology = Topology::new(config.broker_namespace.as_str()).expect("a namespace");
    assert_eq!(host, "rabbitmq");
    assert_eq!(user, access::console_user(&topology).name);
    let variable = access::password_variable("console");
    assert!(
        raw["AMQP_URL"].contains(&format!("${{{variable}}}")),
        "console: {variable}"
    );
    let rabbitmq_env = raw_environment(service(&compose, "rabbitmq"));
    assert_eq!(
        rabbitmq_env.get(&variable).map(|v| interpolated(v)),
        Some(password)
    );

    let dockerfile = read(&deploy("Dockerfile"));
    for binary in ["console-service", "checkoutctl"] {
        assert!(
            dockerfile.contains(&format!("target/release/{binary}")),
            "the image build copies {binary}"
        );
    }
    assert!(
        dockerfile.contains("/usr/local/bin/checkoutctl"),
        "checkoutctl is in the images"
    );
}

/// Fixes from the images' documentation: PostgreSQL's healthcheck asks
/// over TCP (over the socket it passes while the init-time server runs),
/// the project is named `checkout`, and the demo's services take fault
/// switches.
#[test]
fn the_demo_stack_is_named_checked_over_tcp_and_takes_fault_switches() {
    assert_eq!(
        dot_env().get("COMPOSE_PROJECT_NAME").map(String::as_str),
        Some("checkout")
    );
    let compose = compose();
    let Some(Healthcheck::Command(check)) = &service(&compose, "postgres").healthcheck else {
        panic!("postgres has no healthcheck command");
    };
    let test = format!("{:?}", check.test);
    assert!(
        test.contains("pg_isready") && test.contains("127.0.0.1"),
        "over TCP: {test}"
    );
    for (info, _) in SERVICES {
        let env = environment(service(&compose, info.name));
        assert_eq!(
            env.get(FAULTS_VARIABLE).map(String::as_str),
            Some("true"),
            "{}",
            info.name
        );
    }
}
