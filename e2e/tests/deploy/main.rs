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

#[path = "../support/deployment.rs"]
mod deployment;

use deployment::{SERVICES, console_readable, readable, url_parts};

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

/// A service's bind mounts, target → source (named volumes left out): what
/// a container sees of the repository's files, and where.
fn bind_mounts(service: &Service) -> BTreeMap<PathBuf, PathBuf> {
    compose_spec::service::volumes::into_long_iter(service.volumes.clone())
        .filter_map(|mount| match mount {
            compose_spec::service::volumes::Mount::Bind(bind) => Some((
                bind.common.target.as_path().to_path_buf(),
                bind.source.as_path().to_path_buf(),
            )),
            _ => None,
        })
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

fn service_has_healthcheck(compose: &Compose, name: &str) -> bool {
    matches!(
        service(compose, name).healthcheck,
        Some(Healthcheck::Command(_))
    )
}

mod broker;
mod console;
mod services;
mod stack;
