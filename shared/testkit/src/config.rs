//! A service's configuration for a test: a free port, broker names and an
//! admin token of its own.

use crate::TestDatabase;
use checkout_messaging::RetryPolicy;
use checkout_runtime::admin::AdminToken;
use checkout_runtime::config::{Config, ServiceInfo};
use std::net::SocketAddr;
use uuid::Uuid;

/// A configuration for `service` on `database`: a free port on loopback,
/// a broker namespace of its own, and an `ADMIN_TOKEN` of its own
/// (`config.admin_token`; send it with [`admin_authorization`]).
pub fn isolated_config(service: &ServiceInfo, database: &TestDatabase) -> Config {
    Config {
        database_url: database.url().to_owned(),
        amqp_url: std::env::var("AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        broker_namespace: format!("test-{}-{}", service.name, Uuid::now_v7().simple()),
        database_max_connections: 5,
        consumer_prefetch: 16,
        retry_delays: RetryPolicy::parse("100ms,200ms").unwrap_or_default(),
        shutdown_timeout: std::time::Duration::from_secs(5),
        admin_token: Some(new_admin_token()),
        http_limits: checkout_runtime::HttpLimits::default(),
        // Every switch starts off; tests may switch them on through /faults.
        faults_enabled: true,
    }
}

/// A fresh admin token for a test service: different on every call (a
/// UUID v7), not a secret worth more than that.
pub fn new_admin_token() -> AdminToken {
    AdminToken::parse(&format!("test-{}", Uuid::now_v7().simple()))
        .expect("37 visible characters are a valid token")
}

/// `config`'s admin token as a client sends it, the value of the
/// `Authorization` header: `Bearer <token>`. Panics when there is none.
pub fn admin_authorization(config: &Config) -> String {
    let token = config
        .admin_token
        .as_ref()
        .expect("the configuration has an ADMIN_TOKEN");
    format!("Bearer {}", token.secret())
}

/// Asserts that `read` asks its lookup for exactly the `declared`
/// variables, in that order, when every one is unset. A service's settings
/// declare the variables they read (for the deploy checks and the start-up
/// line); this keeps the declaration and the reading from drifting apart.
/// Panics, too, when the defaults alone are refused.
pub fn assert_reads_exactly<T, E: std::fmt::Debug>(
    declared: &[&str],
    read: impl FnOnce(&dyn Fn(&str) -> Option<String>) -> Result<T, E>,
) {
    let asked = std::cell::RefCell::new(Vec::new());
    let lookup = |name: &str| {
        asked.borrow_mut().push(name.to_owned());
        None
    };
    read(&lookup).expect("the defaults are valid");
    assert_eq!(asked.into_inner(), declared, "the variables read");
}
