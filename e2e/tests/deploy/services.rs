//! The services in compose: their variables, images, health checks, restarts and drain time.

use super::*;

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
