//! The console in compose, and the demo stack's fixes.

use super::*;

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
    let readable = console_readable();
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
