//! The Kubernetes manifests in `deploy/kubernetes/`, checked against the
//! code without a cluster, as `deploy.rs` checks compose: every variable
//! each service is given is one its code reads, with a value its code
//! accepts; ports, probes and shutdown times are the code's; each service
//! logs in to its own database and as its own broker user; the broker's
//! users, permissions, exchanges, queues and bindings are generated from
//! the code's access plan and topology; KEDA scales each service on its own
//! queue; the network policies let each service reach only what it needs.
//! The manifests' shape (every field of every kind, core and the
//! operators') is validated against the schemas by `scripts/check-kubernetes`.

mod broker;
#[path = "../support/deployment.rs"]
mod deployment;
mod manifests;
mod network;
mod platform;

use deployment::{SERVICES, console_readable, readable, url_parts};
use manifests::{Manifests, folder, references, resources};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// The console's port.
const CONSOLE_PORT: u16 = console_service::SERVICE.http_port;

/// Besides the consumers' drain: closing the HTTP server, the relay's last
/// batch, flushing spans (the same allowance `deploy.rs` gives compose).
const REST_OF_SHUTDOWN: Duration = Duration::from_secs(10);

/// Every workload: the four services and the console.
fn workloads() -> Vec<(&'static str, u16)> {
    SERVICES
        .iter()
        .map(|(info, _)| (info.name, info.http_port))
        .chain([("console", CONSOLE_PORT)])
        .collect()
}

#[test]
fn the_kustomization_lists_every_manifest_and_each_object_once() {
    let listed: BTreeSet<String> = resources().into_iter().collect();
    let mut on_disk = BTreeSet::new();
    let mut folders = vec![folder()];
    while let Some(dir) = folders.pop() {
        for entry in std::fs::read_dir(&dir).expect("a readable folder") {
            let path = entry.expect("an entry").path();
            let relative = path
                .strip_prefix(folder())
                .expect("inside")
                .to_string_lossy()
                .into_owned();
            if path.is_dir() && relative != "crds" {
                folders.push(path);
            } else if relative.ends_with(".yaml") && relative != "kustomization.yaml" {
                on_disk.insert(relative);
            }
        }
    }
    assert_eq!(listed, on_disk, "kustomization.yaml resources vs the files");
    let manifests = Manifests::load();
    let mut seen = BTreeSet::new();
    for object in &manifests.objects {
        assert!(
            seen.insert((object.kind().to_owned(), object.name().to_owned())),
            "{}: {} {} twice",
            object.file,
            object.kind(),
            object.name()
        );
        assert!(
            object.value["metadata"]["namespace"].is_null(),
            "{}: the namespace comes from kustomization.yaml",
            object.file
        );
    }
}

#[test]
fn each_service_gets_only_variables_its_code_reads_with_working_values() {
    let manifests = Manifests::load();
    for (info, own) in SERVICES {
        let env = manifests.environment(info.name);
        let readable = readable(own);
        check_variables(&manifests, info.name, &env, &readable);
        for required in [
            "DATABASE_URL",
            "AMQP_URL",
            "HTTP_ADDR",
            "ADMIN_TOKEN",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_SERVICE_NAME",
        ] {
            assert!(env.contains_key(required), "{}: {required}", info.name);
        }
        assert_eq!(env["OTEL_SERVICE_NAME"], info.binary, "{}", info.name);
        let config = checkout_runtime::Config::from_lookup(&info, |name| env.get(name).cloned())
            .unwrap_or_else(|e| panic!("{}: {e}", info.name));
        assert_eq!(config.http_addr.port(), info.http_port, "{}", info.name);
        assert!(
            config.admin_token.is_some(),
            "{}: admin endpoints on",
            info.name
        );
        if info.name == "order" {
            let settings = order_service::Settings::from_lookup(|name| env.get(name).cloned())
                .unwrap_or_else(|e| panic!("order: {e}"));
            assert!(settings.order_deadline >= Duration::from_secs(5));
        }
        if info.name == "email" {
            let mail = email_service::Settings::from_lookup(|name| env.get(name).cloned())
                .unwrap_or_else(|e| panic!("email: {e}"));
            assert!(mail.transport.is_some(), "email: SMTP_URL is set");
            let (_, _, host, port, _) = url_parts(&env["SMTP_URL"]);
            let service = manifests.get("Service", &host);
            assert!(service_port(service, port.expect("a port")), "SMTP {host}");
        }
        // Spans go to the collector's OTLP/HTTP port.
        let (_, _, host, port, _) = url_parts(&env["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        assert_eq!((host.as_str(), port), ("otel-collector", Some(4318)));
        assert!(service_port(manifests.get("Service", &host), 4318));
    }
}

#[test]
fn the_console_gets_only_the_variables_its_code_reads() {
    let manifests = Manifests::load();
    let env = manifests.environment("console");
    let readable = console_readable();
    check_variables(&manifests, "console", &env, &readable);
    assert_eq!(env["OTEL_SERVICE_NAME"], "console");
    assert_eq!(env["HTTP_ADDR"], format!("0.0.0.0:{CONSOLE_PORT}"));
    for (info, _) in SERVICES {
        let variable = format!("{}_URL", info.name.to_ascii_uppercase());
        let (_, _, host, port, _) = url_parts(&env[&variable]);
        assert_eq!((host.as_str(), port), (info.name, Some(info.http_port)));
        assert!(service_port(
            manifests.get("Service", &host),
            info.http_port
        ));
    }
    assert_eq!(
        env["ADMIN_TOKEN"],
        manifests.environment("order")["ADMIN_TOKEN"],
        "the console holds the services' admin token"
    );
}

/// Every variable is one the code reads, except a password taken from a
/// Secret only to be spliced into a URL further down.
fn check_variables(
    manifests: &Manifests,
    name: &str,
    env: &std::collections::BTreeMap<String, String>,
    readable: &BTreeSet<&str>,
) {
    let container = manifests.container(name);
    let raw: Vec<(String, String)> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let key = v["name"].as_str().unwrap_or_default().to_owned();
            (key, v["value"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    let spliced: BTreeSet<String> = raw.iter().flat_map(|(_, v)| references(v)).collect();
    let secrets = manifests.secret_variables(name);
    for variable in env.keys() {
        if readable.contains(variable.as_str()) {
            continue;
        }
        assert!(
            spliced.contains(variable) && secrets.contains(variable),
            "{name}: {variable} is set but no code reads it (readable: {readable:?})"
        );
    }
    for secret in secrets.iter().filter(|s| spliced.contains(*s)) {
        let value = &env[secret];
        assert!(
            value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{name}: {secret} goes into a URL unescaped and must be URL-safe"
        );
    }
}

fn service_port(service: &manifests::Object, port: u16) -> bool {
    service.spec()["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["port"].as_u64() == Some(u64::from(port)))
}

#[test]
fn ports_probes_and_services_are_the_codes() {
    let manifests = Manifests::load();
    for (name, port) in workloads() {
        let container = manifests.container(name);
        let ports = container["ports"].as_array().expect("ports");
        assert_eq!(ports.len(), 1, "{name}: one port");
        assert_eq!(ports[0]["name"], "http", "{name}");
        assert_eq!(ports[0]["containerPort"].as_u64(), Some(u64::from(port)));
        for (probe, path) in [
            ("readinessProbe", "/health/ready"),
            ("livenessProbe", "/health/live"),
        ] {
            let get = &container[probe]["httpGet"];
            assert_eq!(get["path"], path, "{name}: {probe}");
            assert_eq!(get["port"], "http", "{name}: {probe}");
        }
        let service = manifests.get("Service", name);
        let pod_labels =
            &manifests.get("Deployment", name).spec()["template"]["metadata"]["labels"];
        for (key, value) in service.spec()["selector"].as_object().expect("a selector") {
            assert_eq!(
                &pod_labels[key], value,
                "{name}: the Service selects its pods"
            );
        }
        let service_ports = service.spec()["ports"].as_array().expect("ports");
        assert_eq!(service_ports.len(), 1, "{name}");
        assert_eq!(service_ports[0]["port"].as_u64(), Some(u64::from(port)));
        assert_eq!(service_ports[0]["targetPort"], "http");
    }
}

#[test]
fn replicas_budgets_and_time_to_drain() {
    let manifests = Manifests::load();
    for (name, _) in workloads() {
        let deployment = manifests.get("Deployment", name);
        let expected = if name == "console" { 1 } else { 2 };
        assert_eq!(
            deployment.spec()["replicas"].as_u64(),
            Some(expected),
            "{name}"
        );
        let budget = manifests.get("PodDisruptionBudget", name);
        assert_eq!(budget.spec()["maxUnavailable"].as_u64(), Some(1), "{name}");
        assert_eq!(
            budget.spec()["selector"],
            deployment.spec()["selector"],
            "{name}: the budget covers its pods"
        );
        let pod = &deployment.spec()["template"]["spec"];
        let container = manifests.container(name);
        let pause = match container["lifecycle"]["preStop"]["exec"]["command"]
            .as_array()
            .map(|c| c.iter().filter_map(Value::as_str).collect::<Vec<_>>())
            .as_deref()
        {
            Some(["sleep", seconds]) => Duration::from_secs(seconds.parse().expect("seconds")),
            other => panic!("{name}: preStop is not a pause: {other:?}"),
        };
        assert!(
            pause >= Duration::from_secs(3),
            "{name}: endpoints need time"
        );
        let env = manifests.environment(name);
        let shutdown = match env.get("SHUTDOWN_TIMEOUT") {
            Some(raw) => checkout_runtime::config::duration("SHUTDOWN_TIMEOUT", raw)
                .unwrap_or_else(|e| panic!("{name}: {e}")),
            None => Duration::ZERO,
        };
        let grace = Duration::from_secs(
            pod["terminationGracePeriodSeconds"]
                .as_u64()
                .expect("terminationGracePeriodSeconds"),
        );
        assert!(
            grace >= pause + shutdown + REST_OF_SHUTDOWN,
            "{name}: grace {grace:?} < preStop {pause:?} + SHUTDOWN_TIMEOUT {shutdown:?} + {REST_OF_SHUTDOWN:?}"
        );
    }
}

/// The `restricted` Pod Security Standard for every pod of the checkout's
/// own, resources from measurements, pinned images.
#[test]
fn every_pod_of_ours_is_restricted_sized_and_pinned() {
    let manifests = Manifests::load();
    for deployment in manifests.of_kind("Deployment") {
        let name = deployment.name();
        let pod = &deployment.spec()["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert!(
            pod["securityContext"]["runAsUser"].as_u64() > Some(0),
            "{name}"
        );
        for container in pod["containers"].as_array().expect("containers") {
            let context = &container["securityContext"];
            assert_eq!(context["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(context["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(context["capabilities"]["drop"], serde_json::json!(["ALL"]));
            for bound in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(
                        container["resources"][bound][resource].is_string(),
                        "{name}: resources.{bound}.{resource}"
                    );
                }
            }
            let image = container["image"].as_str().expect("an image");
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
            assert!(
                tag.chars().any(|c| c.is_ascii_digit()) && !tag.contains("latest"),
                "{name}: {image} is not pinned"
            );
        }
    }
}
