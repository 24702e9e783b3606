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

use crate::admin::AdminGate;
use crate::config::{Config, ServiceInfo};
use crate::faults::{Faults, Switch, delivery::Faulty};
use crate::http::{
    ErrorChain, MAX_BODY_BYTES, health_routes, method_not_allowed, no_such_route, trace_request,
};
use crate::metrics::{self, Collector};
use crate::{server, signal};
use anyhow::Context as _;
use axum::Router;
use checkout_messaging::{Consumer, Handler, Relay, Topology};
use futures::future::BoxFuture;
use lapin::Connection;
use lapin::types::ShortString;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A broker session's two connections.
#[derive(Clone)]
struct Connections {
    /// Deliveries and acks; never publishes.
    consume: Arc<Connection>,
    /// Publishes (relay, retries, dead letters).
    publish: Arc<Connection>,
}

/// A role that runs on a broker session's connections until its token is
/// cancelled (`Ok`) or a connection fails (`Err`).
type Role = Box<
    dyn Fn(Connections, CancellationToken) -> BoxFuture<'static, Result<(), lapin::Error>>
        + Send
        + Sync,
>;

/// A started service: listener bound, database migrated. Add the relay and
/// consumers, then [`with_routes`](Runtime::with_routes) and run.
pub struct Runtime {
    service: ServiceInfo,
    config: Config,
    listener: TcpListener,
    pool: PgPool,
    topology: Topology,
    roles: Vec<Role>,
    /// Whether a relay runs: it also prunes the messaging tables; without
    /// one, a task of its own does.
    relay: bool,
    collectors: Vec<Collector>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    broker_up: Arc<AtomicBool>,
    faults: Faults,
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

    /// Runs the outbox relay of this service's database in every broker session.
    pub fn spawn_relay(&mut self) {
        self.relay = true;
        let relay = Relay::new(self.pool.clone(), self.topology.exchange())
            .with_shutdown_timeout(self.config.shutdown_timeout);
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

    /// Consumes this service's queue with `handler` (behind the delivery
    /// fault switches) in every broker session.
    pub fn spawn_consumer<H: Handler>(&mut self, handler: H) {
        let consumer = Consumer::new(
            self.pool.clone(),
            Faulty::new(handler, self.faults.clone()),
            &self.topology,
            self.service.name,
        )
        .with_prefetch(self.config.consumer_prefetch)
        .with_retries(self.config.retry_delays.clone())
        .with_drain_timeout(self.config.shutdown_timeout);
        self.roles.push(Box::new(move |connections, stop| {
            Box::pin(
                consumer
                    .clone()
                    .run(connections.consume, connections.publish, stop),
            )
        }));
    }

    /// The service ready to run: this runtime plus the service's own routes.
    pub fn with_routes(self, routes: Router) -> Application {
        Application {
            shutdown: self.shutdown.clone(),
            runtime: self,
            routes,
        }
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

/// A built service, started but not yet serving: what each service's
/// `build` returns, what `main` runs and what tests start on port 0.
#[derive(Debug)]
pub struct Application {
    runtime: Runtime,
    routes: Router,
    shutdown: CancellationToken,
}

impl Application {
    /// The HTTP port (useful when configured with port 0).
    pub fn port(&self) -> u16 {
        self.runtime.port()
    }

    /// Cancelling this token stops the service as SIGTERM would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The configuration it was started with (tests provision its broker
    /// namespace from it).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn config(&self) -> &Config {
        &self.runtime.config
    }

    /// Whether a broker session is running: topology declared, consumers
    /// and relay started (what `/health/ready` reports besides the database).
    pub fn broker_status(&self) -> BrokerStatus {
        BrokerStatus(self.runtime.broker_up.clone())
    }

    /// Serves the routes (plus health routes, `/metrics` and a problem+json
    /// 404) within the configured [`HttpLimits`](crate::HttpLimits), and
    /// runs broker sessions until SIGTERM, Ctrl-C or the shutdown token;
    /// then stops taking requests, lets consumers and the relay finish,
    /// and closes the broker connection and the pool.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            runtime,
            routes,
            shutdown,
        } = self;
        let broker_up = runtime.broker_up.clone();
        if !runtime.relay {
            runtime.tasks.spawn(checkout_messaging::retention::run(
                runtime.pool.clone(),
                checkout_messaging::retention::Retention::default(),
                shutdown.clone(),
            ));
        }
        let limits = runtime.config.http_limits;
        let operations =
            health_routes(runtime.pool.clone(), broker_up.clone()).merge(metrics::routes(
                runtime.service.binary,
                runtime.pool.clone(),
                runtime.collectors,
            ));
        // The span and the request metrics wrap the limits, so a request
        // refused for time or capacity is traced and counted as the 503 it is.
        let app = server::assemble(
            routes,
            operations,
            &limits,
            AdminGate(runtime.config.admin_token.clone()),
            |service| {
                service
                    .route_layer(axum::middleware::from_fn(trace_request))
                    .route_layer(axum::middleware::from_fn(metrics::record_request))
            },
        )
        // After every merge: it applies to the routes present now.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(no_such_route)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES));

        let supervisor = tokio::spawn(supervise(
            BrokerSessions {
                service: runtime.service,
                amqp_url: runtime.config.amqp_url.clone(),
                topology: runtime.topology.clone(),
                retries: runtime.config.retry_delays.clone(),
                roles: runtime.roles,
                broker_up,
            },
            shutdown.clone(),
        ));

        let stop = shutdown.clone();
        server::serve(runtime.listener, app, limits.header_timeout, async move {
            tokio::select! {
                _ = signal::terminate() => {}
                _ = stop.cancelled() => {}
            }
            stop.cancel();
        })
        .await;
        // The HTTP server has stopped; make sure the broker session sees it too.
        shutdown.cancel();
        if let Err(error) = supervisor.await {
            tracing::error!(%error, "broker supervisor panicked");
        }
        runtime.tasks.close();
        runtime.tasks.wait().await;
        runtime.pool.close().await;
        tracing::info!(service = runtime.service.binary, "stopped");
        Ok(())
    }
}

/// A live view of whether the service has a broker session.
#[derive(Debug, Clone)]
pub struct BrokerStatus(Arc<AtomicBool>);

impl BrokerStatus {
    /// True while a session is up.
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Everything a broker session needs.
struct BrokerSessions {
    service: ServiceInfo,
    amqp_url: String,
    topology: Topology,
    retries: checkout_messaging::RetryPolicy,
    roles: Vec<Role>,
    broker_up: Arc<AtomicBool>,
}

/// How often the dead-letter and unroutable queue depths are read.
const DEPTH_EVERY: Duration = Duration::from_secs(15);

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// Runs broker sessions until `shutdown`, reconnecting after each lost one.
async fn supervise(sessions: BrokerSessions, shutdown: CancellationToken) {
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        match sessions.run(&shutdown, &mut failures).await {
            Ok(()) => break,
            Err(error) => {
                sessions.broker_up.store(false, Ordering::SeqCst);
                failures = failures.saturating_add(1);
                let delay = backoff(failures);
                tracing::warn!(
                    error = %ErrorChain(error.as_ref()),
                    retry_in = ?delay,
                    "broker session ended; reconnecting"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

impl BrokerSessions {
    /// One session: `Ok` when it ended because of `shutdown`, `Err` when
    /// the broker was unreachable or the connection was lost.
    async fn run(&self, shutdown: &CancellationToken, failures: &mut u32) -> anyhow::Result<()> {
        // The namespace in the name lets an operator (or a test) close the
        // connections of one deployment only.
        let name = format!("{} ({})", self.service.binary, self.topology.exchange());
        let connect = async |role: &str| {
            checkout_messaging::connect(&self.amqp_url, &format!("{name} {role}"))
                .await
                .map(Arc::new)
                .context("cannot connect to the broker at AMQP_URL")
        };
        let consume = connect("consume").await?;
        let publish = match connect("publish").await {
            Ok(publish) => publish,
            Err(error) => {
                let _ = consume
                    .close(200, ShortString::from("session failed"))
                    .await;
                return Err(error);
            }
        };
        let connections = Connections { consume, publish };
        // Only the service's own names: the shared exchanges, the other
        // services' queues and the bindings were provisioned by an
        // administrator, and this service's broker user may not declare
        // them. On the connection, not a channel: a dead-letter queue left
        // by an older version with other arguments closes the channel that
        // declares it, and declaring goes on with a new one.
        if let Err(error) = self
            .topology
            .declare_own(&connections.consume, self.service.name, &self.retries)
            .await
        {
            for connection in [&connections.consume, &connections.publish] {
                let _ = connection
                    .close(200, ShortString::from("session failed"))
                    .await;
            }
            return Err(anyhow::Error::new(error).context("cannot declare the service's queues"));
        }
        tracing::info!(exchange = %self.topology.exchange(), "broker session started");
        *failures = 0;
        self.broker_up.store(true, Ordering::SeqCst);

        let stop = shutdown.child_token();
        let mut roles = JoinSet::new();
        for role in &self.roles {
            roles.spawn(role(connections.clone(), stop.clone()));
        }
        let ended = tokio::select! {
            _ = shutdown.cancelled() => Ok(()),
            Some(result) = roles.join_next() => match result {
                Ok(Ok(())) => Err(anyhow::anyhow!("a broker role stopped unexpectedly")),
                Ok(Err(error)) => Err(anyhow::Error::new(error).context("broker connection lost")),
                Err(panic) => Err(anyhow::anyhow!("a broker role panicked: {panic}")),
            },
        };
        self.broker_up.store(false, Ordering::SeqCst);
        stop.cancel();
        while roles.join_next().await.is_some() {}
        for connection in [connections.consume, connections.publish] {
            let _ = connection
                .close(200, ShortString::from("session ended"))
                .await;
        }
        ended
    }
}

/// Exponential backoff from 250 ms, capped at 15 s, with jitter: a random
/// point in the upper half of the window, so replicas that lost the broker
/// together do not reconnect in lockstep.
fn backoff(failures: u32) -> Duration {
    let window = FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
        .min(MAX_BACKOFF);
    let random = RandomState::new().hash_one(failures);
    let half = window / 2;
    half + Duration::from_nanos(random % (half.as_nanos().max(1) as u64))
}

/// The whole of a service's `main`: read the configuration, start
/// telemetry, run `app` on a multi-threaded runtime, flush spans, and turn
/// the outcome into an exit code. A configuration error is one line on
/// stderr naming the variable (exit 2); a failure logs its cause chain (exit 1).
pub fn launch<F, Fut>(service: ServiceInfo, app: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = match Config::from_env(&service) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{}: configuration error: {error}", service.binary);
            return ExitCode::from(2);
        }
    };
    let service_name = std::env::var(crate::config::SERVICE_NAME_VARIABLE)
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| service.binary.to_owned());
    let telemetry = match checkout_telemetry::init(&service_name) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{}: configuration error: {error}", service.binary);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!(
                "{}: cannot start the async runtime: {error}",
                service.binary
            );
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(app(config));
    drop(runtime);
    let code = match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let error: &(dyn std::error::Error + 'static) = error.as_ref();
            tracing::error!(error = %ErrorChain(error), "{} failed", service.binary);
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        for failures in 1..40 {
            let window = FIRST_BACKOFF
                .saturating_mul(2u32.saturating_pow(failures - 1))
                .min(MAX_BACKOFF);
            let delay = backoff(failures);
            assert!(
                delay >= window / 2 && delay <= window,
                "{failures}: {delay:?}"
            );
        }
        assert!(backoff(30) <= MAX_BACKOFF);
    }
}
