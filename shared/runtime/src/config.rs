//! Configuration from the environment.
//!
//! Every variable has a default that works on a developer machine with
//! PostgreSQL and RabbitMQ on localhost; a malformed value fails start-up
//! with one line naming the variable.

use checkout_messaging::RetryPolicy;
use std::net::SocketAddr;
use std::time::Duration;

/// Every environment variable [`Config::from_env`] reads (a test checks the
/// list against the code), for tools that check a deployment's settings.
pub const VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "AMQP_URL",
    "HTTP_ADDR",
    "BROKER_NAMESPACE",
    "DATABASE_MAX_CONNECTIONS",
    "CONSUMER_PREFETCH",
    "RETRY_DELAYS",
    "SHUTDOWN_TIMEOUT",
];

/// `OTEL_SERVICE_NAME`: the service name in traces, read by
/// [`launch`](crate::launch); the binary's name when unset.
pub const SERVICE_NAME_VARIABLE: &str = "OTEL_SERVICE_NAME";

/// The fixed facts of one service, from which its defaults follow.
#[derive(Debug, Clone, Copy)]
pub struct ServiceInfo {
    /// Short name: queue name, inbox handler name (`order`).
    pub name: &'static str,
    /// Binary and trace service name, outbox `source` (`order-service`).
    pub binary: &'static str,
    /// The default database name (`orders`).
    pub database: &'static str,
    /// The default HTTP port (8080).
    pub http_port: u16,
}

/// A variable that is set but unusable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// What every service reads from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`: the service's own database.
    pub database_url: String,
    /// `AMQP_URL`: the broker.
    pub amqp_url: String,
    /// `HTTP_ADDR`: where the HTTP server listens (port 0 picks a free one).
    pub http_addr: SocketAddr,
    /// `BROKER_NAMESPACE`: prefix of every exchange and queue name.
    pub broker_namespace: String,
    /// `DATABASE_MAX_CONNECTIONS`: the pool's size.
    pub database_max_connections: u32,
    /// `CONSUMER_PREFETCH`: unacked deliveries, and so concurrent handlers, at most.
    pub consumer_prefetch: u16,
    /// `RETRY_DELAYS`: when transient failures are retried, e.g. `1s,5s,30s,2m`.
    pub retry_delays: RetryPolicy,
    /// `SHUTDOWN_TIMEOUT`: how long in-flight handlers may take at SIGTERM, e.g. `10s`.
    pub shutdown_timeout: Duration,
}

impl Config {
    /// Reads the configuration of `service` from the process environment.
    pub fn from_env(service: &ServiceInfo) -> Result<Self, ConfigError> {
        Self::from_lookup(service, |name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (tests pass a map).
    pub fn from_lookup(
        service: &ServiceInfo,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let database_url = get("DATABASE_URL")
            .unwrap_or_else(|| format!("postgres://postgres@127.0.0.1:5432/{}", service.database));
        if !database_url.starts_with("postgres://") && !database_url.starts_with("postgresql://") {
            return Err(invalid(
                "DATABASE_URL",
                "must start with postgres:// or postgresql://",
            ));
        }
        let amqp_url =
            get("AMQP_URL").unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
        if !amqp_url.starts_with("amqp://") && !amqp_url.starts_with("amqps://") {
            return Err(invalid("AMQP_URL", "must start with amqp:// or amqps://"));
        }
        Ok(Self {
            database_url,
            amqp_url,
            http_addr: parse(
                "HTTP_ADDR",
                get("HTTP_ADDR"),
                SocketAddr::from(([0, 0, 0, 0], service.http_port)),
            )?,
            broker_namespace: get("BROKER_NAMESPACE").unwrap_or_else(|| "checkout".to_owned()),
            database_max_connections: parse(
                "DATABASE_MAX_CONNECTIONS",
                get("DATABASE_MAX_CONNECTIONS"),
                10,
            )?,
            consumer_prefetch: parse("CONSUMER_PREFETCH", get("CONSUMER_PREFETCH"), 64)?,
            retry_delays: match get("RETRY_DELAYS") {
                None => RetryPolicy::default(),
                Some(raw) => {
                    RetryPolicy::parse(&raw).map_err(|e| invalid("RETRY_DELAYS", e.to_string()))?
                }
            },
            shutdown_timeout: match get("SHUTDOWN_TIMEOUT") {
                None => Duration::from_secs(10),
                Some(raw) => duration("SHUTDOWN_TIMEOUT", &raw)?,
            },
        })
    }
}

/// Reads `variable`'s value `raw` as one duration in the `RETRY_DELAYS`
/// syntax (`500ms`, `10s`, `2m`), for a service's own settings too.
pub fn duration(variable: &'static str, raw: &str) -> Result<Duration, ConfigError> {
    match RetryPolicy::parse(raw)
        .map(|p| p.delays().to_vec())
        .as_deref()
    {
        Ok([one]) => Ok(*one),
        _ => Err(invalid(
            variable,
            format!("expected one duration like 10s, got {raw:?}"),
        )),
    }
}

fn invalid(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

fn parse<T>(variable: &'static str, raw: Option<String>, default: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match raw {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| invalid(variable, format!("cannot parse {raw:?}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ORDER: ServiceInfo = ServiceInfo {
        name: "order",
        binary: "order-service",
        database: "orders",
        http_port: 8080,
    };

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(&ORDER, |name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_work_on_a_developer_machine() {
        let config = config(&[]).expect("defaults are valid");
        assert_eq!(
            config.database_url,
            "postgres://postgres@127.0.0.1:5432/orders"
        );
        assert_eq!(config.http_addr.port(), 8080);
        assert_eq!(config.broker_namespace, "checkout");
    }

    #[test]
    fn reads_exactly_the_variables_it_declares() {
        let asked = std::cell::RefCell::new(Vec::new());
        Config::from_lookup(&ORDER, |name| {
            asked.borrow_mut().push(name.to_owned());
            None
        })
        .expect("defaults are valid");
        assert_eq!(asked.into_inner(), VARIABLES);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (variable, value) in [
            ("HTTP_ADDR", "localhost"),
            ("DATABASE_URL", "mysql://x"),
            ("AMQP_URL", "http://x"),
            ("CONSUMER_PREFETCH", "-1"),
            ("DATABASE_MAX_CONNECTIONS", "many"),
            ("RETRY_DELAYS", "1s,soon"),
            ("SHUTDOWN_TIMEOUT", "1s,2s"),
        ] {
            let error = config(&[(variable, value)]).expect_err("must be refused");
            assert_eq!(error.variable, variable);
            assert!(error.to_string().starts_with(variable), "{error}");
        }
    }
}
