//! How to start a [`System`](super::System): replicas, deadlines, and where
//! PostgreSQL and RabbitMQ are.

use crate::process::Service;
use std::time::Duration;

/// How to start a [`System`].
#[derive(Debug, Clone)]
pub struct Options {
    /// How many processes of each consumer service (Payment, Inventory,
    /// Email) to run against the same database and queue. The Order
    /// service, which the test talks to, runs once. Default 1.
    pub consumer_replicas: usize,
    /// How long any wait (readiness, an order's outcome, a trace) may take
    /// before the test fails. Default 30 s.
    pub timeout: Duration,
    /// The PostgreSQL server, without a database name; the role must be
    /// allowed to create databases. Default `$E2E_POSTGRES_URL`, else
    /// `postgres://postgres@127.0.0.1:5432`.
    pub postgres_url: String,
    /// The broker, as an administrator: the harness provisions each
    /// system's namespace and users with it (and `rabbitmqctl`), and the
    /// services get users of their own. Default `$E2E_AMQP_URL`, else
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub amqp_url: String,
    /// `RUST_LOG` of every service. Default `$E2E_RUST_LOG`, else `info`.
    pub rust_log: String,
    /// The Order service's `ORDER_DEADLINE`. Default 30 s, the service's own.
    pub order_deadline: Duration,
    /// Whether the services serve their fault switches (`FAULTS_ENABLED`).
    /// Default off, as in production.
    pub fault_switches: bool,
}

impl Default for Options {
    fn default() -> Self {
        let env = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        Self {
            consumer_replicas: 1,
            timeout: Duration::from_secs(30),
            postgres_url: env("E2E_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432"),
            amqp_url: env("E2E_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            rust_log: env("E2E_RUST_LOG", "info"),
            order_deadline: Duration::from_secs(30),
            fault_switches: false,
        }
    }
}

impl Options {
    /// Runs `replicas` processes of each consumer service.
    pub fn with_consumer_replicas(mut self, replicas: usize) -> Self {
        self.consumer_replicas = replicas.max(1);
        self
    }

    /// Cancels orders still pending after `deadline`.
    pub fn with_order_deadline(mut self, deadline: Duration) -> Self {
        self.order_deadline = deadline;
        self
    }

    /// Starts the services with `FAULTS_ENABLED=true`, so a test can flip
    /// their fault switches ([`System::switch_fault`](super::System::switch_fault)).
    pub fn with_fault_switches(mut self) -> Self {
        self.fault_switches = true;
        self
    }

    pub(super) fn replicas(&self, service: Service) -> usize {
        match service {
            Service::Order => 1,
            Service::Payment | Service::Inventory | Service::Email => self.consumer_replicas.max(1),
        }
    }
}
