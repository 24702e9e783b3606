//! A built service and its run: serve HTTP next to the supervised broker
//! sessions until SIGTERM, then stop in reverse order (see [`crate::Runtime`]
//! for the order things start in).

use crate::admin::AdminGate;
use crate::config::Config;
use crate::http::{
    MAX_BODY_BYTES, health_routes, method_not_allowed, no_such_route, trace_request,
};
use crate::metrics;
use crate::runtime::Runtime;
use crate::session::{BrokerSessions, supervise};
use crate::{server, signal};
use axum::Router;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::sync::CancellationToken;

/// A built service, started but not yet serving: what each service's
/// `build` returns, what `main` runs and what tests start on port 0.
#[derive(Debug)]
pub struct Application {
    runtime: Runtime,
    routes: Router,
    shutdown: CancellationToken,
}

impl Application {
    /// `runtime` with the service's own `routes`.
    pub(crate) fn new(runtime: Runtime, routes: Router) -> Self {
        Self {
            shutdown: runtime.shutdown.clone(),
            runtime,
            routes,
        }
    }

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
    pub fn config(&self) -> &Config {
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
            mut runtime,
            routes,
            shutdown,
        } = self;
        if !runtime.relay {
            runtime.tasks.spawn(checkout_messaging::retention::run(
                runtime.pool.clone(),
                checkout_messaging::retention::Retention::default(),
                shutdown.clone(),
            ));
        }
        let app = router(&mut runtime, routes);
        let supervisor = tokio::spawn(supervise(
            BrokerSessions {
                service: runtime.service,
                amqp_url: runtime.config.amqp_url.clone(),
                topology: runtime.topology.clone(),
                retries: runtime.config.retry_delays.clone(),
                roles: std::mem::take(&mut runtime.roles),
                broker_up: runtime.broker_up.clone(),
            },
            shutdown.clone(),
        ));

        let stop = shutdown.clone();
        let header_timeout = runtime.config.http_limits.header_timeout;
        server::serve(runtime.listener, app, header_timeout, async move {
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

/// The service's routes with the operations every service has (health,
/// `/metrics`), the limits, the admin gate, the server span and request
/// metrics, and the problem+json fallbacks.
fn router(runtime: &mut Runtime, routes: Router) -> Router {
    let operations =
        health_routes(runtime.pool.clone(), runtime.broker_up.clone()).merge(metrics::routes(
            runtime.service.binary,
            runtime.pool.clone(),
            std::mem::take(&mut runtime.collectors),
        ));
    // The span and the request metrics wrap the limits, so a request
    // refused for time or capacity is traced and counted as the 503 it is.
    server::assemble(
        routes,
        operations,
        &runtime.config.http_limits,
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
    .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
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
