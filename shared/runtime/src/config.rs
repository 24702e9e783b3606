//! Configuration from the environment.
//!
//! Every variable has a default that works on a developer machine with
//! PostgreSQL and RabbitMQ on localhost; a malformed value fails start-up
//! with one line naming the variable. `ADMIN_TOKEN` is the exception that
//! proves the rule: unset, the admin endpoints are off (403), and a value
//! never appears in an error message.

use crate::admin::AdminToken;
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
    "ADMIN_TOKEN",
    "HTTP_HEADER_TIMEOUT",
    "HTTP_REQUEST_TIMEOUT",
    "HTTP_MAX_CONCURRENT_REQUESTS",
    "FAULTS_ENABLED",
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
    /// `ADMIN_TOKEN`: the bearer token of the admin and operator endpoints;
    /// `None` turns those endpoints off (they answer 403).
    pub admin_token: Option<AdminToken>,
    /// `HTTP_HEADER_TIMEOUT`, `HTTP_REQUEST_TIMEOUT`,
    /// `HTTP_MAX_CONCURRENT_REQUESTS`: what one client may hold of the
    /// HTTP server.
    pub http_limits: HttpLimits,
    /// `FAULTS_ENABLED`: `true` serves the fault switches (`/faults`) for a
    /// demo; unset or `false`, they are refused (403) and never strike.
    pub faults_enabled: bool,
}

/// Bounds on what clients may hold of a service's HTTP server, so a slow
/// or greedy client cannot take it from everyone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// `HTTP_HEADER_TIMEOUT`: a connection that has not sent a whole
    /// request head this long after it opened (or after its previous
    /// response) is closed. Also the keep-alive idle timeout.
    pub header_timeout: Duration,
    /// `HTTP_REQUEST_TIMEOUT`: a request not answered in this time (body
    /// reading included) is answered 503 and its handler cancelled.
    pub request_timeout: Duration,
    /// `HTTP_MAX_CONCURRENT_REQUESTS`: requests handled at once at most;
    /// one more is answered 503 at once instead of waiting in a queue.
    pub max_concurrent_requests: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 512,
        }
    }
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
            admin_token: get("ADMIN_TOKEN")
                .map(|raw| AdminToken::parse(&raw).map_err(|e| invalid("ADMIN_TOKEN", e)))
                .transpose()?,
            http_limits: HttpLimits::from_lookup(get)?,
            faults_enabled: flag("FAULTS_ENABLED", get("FAULTS_ENABLED"))?,
        })
    }
}

impl HttpLimits {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let positive = |variable: &'static str, default: Duration| match get(variable) {
            None => Ok(default),
            Some(raw) => match duration(variable, &raw)? {
                zero if zero.is_zero() => Err(invalid(variable, "must be longer than 0s")),
                positive => Ok(positive),
            },
        };
        let header_timeout = positive("HTTP_HEADER_TIMEOUT", defaults.header_timeout)?;
        let request_timeout = positive("HTTP_REQUEST_TIMEOUT", defaults.request_timeout)?;
        let max_concurrent_requests = parse(
            "HTTP_MAX_CONCURRENT_REQUESTS",
            get("HTTP_MAX_CONCURRENT_REQUESTS"),
            defaults.max_concurrent_requests,
        )?;
        if max_concurrent_requests == 0 {
            return Err(invalid(
                "HTTP_MAX_CONCURRENT_REQUESTS",
                "must be at least 1",
            ));
        }
        Ok(Self {
            header_timeout,
            request_timeout,
            max_concurrent_requests,
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

/// `true` or `false` (any case); unset is `false`.
fn flag(variable: &'static str, raw: Option<String>) -> Result<bool, ConfigError> {
    match raw.as_deref().map(str::trim) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(invalid(
            variable,
            format!("expected true or false, got {v:?}"),
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
        assert!(config.admin_token.is_none(), "admin endpoints are off");
        assert_eq!(config.http_limits, HttpLimits::default());
        assert_eq!(config.http_limits.header_timeout, Duration::from_secs(5));
        assert_eq!(config.http_limits.request_timeout, Duration::from_secs(10));
        assert_eq!(config.http_limits.max_concurrent_requests, 512);
        assert!(!config.faults_enabled, "fault switches are off");
    }

    #[test]
    fn fault_switches_are_enabled_only_by_true() {
        assert!(
            config(&[("FAULTS_ENABLED", "true")])
                .expect("valid")
                .faults_enabled
        );
        assert!(
            config(&[("FAULTS_ENABLED", "TRUE")])
                .expect("valid")
                .faults_enabled
        );
        assert!(
            !config(&[("FAULTS_ENABLED", "false")])
                .expect("valid")
                .faults_enabled
        );
    }

    #[test]
    fn the_http_limits_are_read_from_their_variables() {
        let config = config(&[
            ("HTTP_HEADER_TIMEOUT", "750ms"),
            ("HTTP_REQUEST_TIMEOUT", "2m"),
            ("HTTP_MAX_CONCURRENT_REQUESTS", "8"),
        ])
        .expect("valid");
        assert_eq!(
            config.http_limits,
            HttpLimits {
                header_timeout: Duration::from_millis(750),
                request_timeout: Duration::from_secs(120),
                max_concurrent_requests: 8,
            }
        );
    }

    #[test]
    fn an_admin_token_is_read_and_never_shown() {
        let token = "a-demo-token-of-32-characters-xx";
        let config = config(&[("ADMIN_TOKEN", token)]).expect("valid");
        let admin = config.admin_token.as_ref().expect("set");
        assert!(admin.matches(token.as_bytes()));
        assert!(!format!("{config:?}").contains(token), "Debug hides it");
    }

    #[test]
    fn a_short_or_unprintable_admin_token_is_refused_without_echoing_it() {
        for bad in [
            "short-secret",
            "fifteen-chars!!",
            "sixteen chars ok",
            "tab\tin-a-long-token",
        ] {
            let error = config(&[("ADMIN_TOKEN", bad)]).expect_err("must be refused");
            assert_eq!(error.variable, "ADMIN_TOKEN");
            assert!(error.to_string().starts_with("ADMIN_TOKEN: "), "{error}");
            assert!(
                !error.to_string().contains(bad),
                "echoes the token: {error}"
            );
        }
        let sixteen = config(&[("ADMIN_TOKEN", "exactly-16-chars")]).expect("16 is enough");
        assert!(sixteen.admin_token.is_some());
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
            ("ADMIN_TOKEN", "too-short"),
            ("HTTP_HEADER_TIMEOUT", "soon"),
            ("HTTP_HEADER_TIMEOUT", "0s"),
            ("HTTP_REQUEST_TIMEOUT", "0ms"),
            ("HTTP_MAX_CONCURRENT_REQUESTS", "0"),
            ("HTTP_MAX_CONCURRENT_REQUESTS", "lots"),
            ("FAULTS_ENABLED", "yes"),
        ] {
            let error = config(&[(variable, value)]).expect_err("must be refused");
            assert_eq!(error.variable, variable);
            assert!(error.to_string().starts_with(variable), "{error}");
        }
    }
}
