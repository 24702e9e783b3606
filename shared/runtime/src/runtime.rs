//! The life of a service process: start in dependency order, run the
//! outbox relay and consumers in a supervised *broker session* next to the
//! HTTP server, and on SIGTERM stop in reverse order.
//!
//! A broker session is two connections: one that consumes and acks, one
//! that publishes (the relay, retries, dead letters). RabbitMQ blocks a
//! connection that publishes while a memory or disk alarm lasts, acks and
//! all; apart, a blocked publisher does not also stop the consumers. A
//! session connects, declares the service's own queues, and runs the relay and
//! consumers on their own channels. The topology it declares is the
//! service's own part only; the rest must have been provisioned (see
//! `checkout_messaging::topology`), and until it is the session fails and
//! is tried again like a lost connection. When a connection is lost the session
//! ends, `/health/ready` reports not-ready, and a new session starts after
//! a capped, jittered exponential backoff. Nothing is lost meanwhile:
//! unpublished rows wait in the outbox, unacked deliveries are redelivered
//! (and deduplicated by the inbox). The database pool reconnects by itself;
//! a consumer whose database is down pauses until it is back (see
//! `checkout_messaging::consumer`).

use crate::application::Application;
use crate::config::{Config, ServiceInfo};
use crate::faults::{Faults, Switch, delivery::Faulty};
use crate::metrics::{self, Collector};
use crate::session::{DEPTH_EVERY, Role};
use anyhow::Context as _;
use axum::Router;
use checkout_messaging::{Consumer, Handler, Peer, Relay, Topology};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A started service: listener bound, database migrated. Add the relay and
/// consumers, then [`with_routes`](Runtime::with_routes) and run.
pub struct Runtime {
    pub(crate) service: ServiceInfo,
    pub(crate) config: Config,
    pub(crate) listener: TcpListener,
    pub(crate) pool: PgPool,
    pub(crate) topology: Topology,
    pub(crate) roles: Vec<Role>,
    /// Whether a relay runs: it also prunes the messaging tables; without
    /// one, a task of its own does.
    pub(crate) relay: bool,
    pub(crate) collectors: Vec<Collector>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    pub(crate) broker_up: Arc<AtomicBool>,
    pub(crate) faults: Faults,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("service", &self.service.binary)
            .field("listener", &self.listener)
            .field("roles", &self.roles.len())
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Binds the listener first (so a test can pass port 0 and read the
    /// port back), then connects and migrates the database (messaging
    /// tables, then `migrator`). The broker is connected when the service
    /// runs, and reconnected whenever it is lost.
    pub async fn start(
        service: ServiceInfo,
        config: Config,
        migrator: &Migrator,
    ) -> anyhow::Result<Self> {
        metrics::install(service.binary);
        let topology = Topology::new(config.broker_namespace.as_str())
            .context("BROKER_NAMESPACE is not usable")?;
        let listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot listen on HTTP_ADDR {}", config.http_addr))?;

        let pool = PgPoolOptions::new()
            .max_connections(config.database_max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&config.database_url)
            .await
            .context("cannot connect to the database at DATABASE_URL")?;
        checkout_messaging::migrate(&pool)
            .await
            .context("cannot migrate the messaging tables")?;
        migrator
            .run(&pool)
            .await
            .context("cannot migrate the service's tables")?;

        let faults_enabled = config.faults_enabled;
        let mut runtime = Self {
            service,
            config,
            listener,
            pool,
            topology,
            roles: Vec::new(),
            relay: false,
            collectors: vec![metrics::outbox_backlog],
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            broker_up: Arc::new(AtomicBool::new(false)),
            faults: Faults::new(service.name, faults_enabled),
        };
        runtime.watch_depths();
        Ok(runtime)
    }

    /// The port the HTTP server listens on.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The service's database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The broker names in use.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Cancelling this token stops the service as SIGTERM would; the
    /// service's own tasks ([`spawn_task`](Runtime::spawn_task)) end on it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs a service's own background `task` next to the relay and
    /// consumers: shutdown waits for it, so it must end once
    /// [`shutdown_token`](Runtime::shutdown_token) is cancelled.
    pub fn spawn_task<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Adds a gauge (or several) that `/metrics` reads from the service's
    /// database at every scrape, next to the outbox backlog.
    pub fn with_collector(mut self, collector: Collector) -> Self {
        self.collectors.push(collector);
        self
    }

    /// Reports the depth of this service's dead-letter queue and of the
    /// unroutable queue as gauges, in every broker session.
    fn watch_depths(&mut self) {
        let (topology, service) = (self.topology.clone(), self.service.name);
        self.roles.push(Box::new(move |connections, stop| {
            Box::pin(checkout_messaging::watch_depths(
                connections.consume,
                topology.clone(),
                service,
                DEPTH_EVERY,
                stop,
            ))
        }));
    }

    /// Registers the outbox relay of this service's database: it runs in
    /// every broker session once the service runs
    /// ([`Application::run_until_stopped`]); nothing starts here.
    pub fn register_relay(&mut self) {
        self.relay = true;
        let relay = Relay::new(self.pool.clone(), self.topology.exchange())
            .with_shutdown_timeout(self.config.shutdown_timeout)
            .with_peer(self.peer());
        self.roles.push(Box::new(move |connections, stop| {
            Box::pin(relay.clone().run(connections.publish, stop))
        }));
    }

    /// The service's fault switches, offering `switches` besides `delay`
    /// and `crash_before_ack` (see [`crate::faults`]).
    pub fn offer_faults(&self, switches: &[Switch]) -> Faults {
        self.faults.offer(switches);
        self.faults.clone()
    }

    /// Registers a consumer of this service's queue with `handler` (behind
    /// the delivery fault switches): it runs in every broker session once
    /// the service runs.
    pub fn register_consumer<H: Handler>(&mut self, handler: H) {
        let consumer = Consumer::new(
            self.pool.clone(),
            Faulty::new(handler, self.faults.clone()),
            &self.topology,
            self.service.name,
        )
        .with_prefetch(self.config.consumer_prefetch)
        .with_retries(self.config.retry_delays.clone())
        .with_drain_timeout(self.config.shutdown_timeout)
        .with_peer(self.peer());
        self.roles.push(Box::new(move |connections, stop| {
            Box::pin(
                consumer
                    .clone()
                    .run(connections.consume, connections.publish, stop),
            )
        }));
    }

    /// The broker, as the messaging spans name it.
    fn peer(&self) -> Peer {
        Peer::from_amqp_url(&self.config.amqp_url).unwrap_or_else(Peer::unknown)
    }

    /// The service ready to run: this runtime plus the service's own routes.
    pub fn with_routes(self, routes: Router) -> Application {
        Application::new(self, routes)
    }

    /// The service ready to run, with its documented routes: `api`'s
    /// routes plus `/faults`, `/openapi.json` and `/docs` (see the
    /// `openapi` module).
    pub fn with_api(self, api: utoipa_axum::router::OpenApiRouter) -> Application {
        let api = api.merge(crate::faults::api::api(self.faults.clone()));
        let routes = crate::openapi::router(&self.service, api);
        self.with_routes(routes)
    }
}
