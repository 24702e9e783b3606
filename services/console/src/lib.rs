//! The operator console: a fifth binary (`console-service`, port 8084)
//! that shows the checkout as an operator needs it, in server-rendered
//! pages — the orders, one order's path across the four services next to
//! its dead letters and its trace, the dead-letter queues grouped by cause
//! with replay and purge, and the services' fault switches.
//!
//! It owns no data and reads no database: everything comes from the four
//! services' HTTP APIs (with the `ADMIN_TOKEN`, see [`services`]) and, for
//! dead letters, from the broker through the code of `checkoutctl dlq`
//! (see [`dlq`]). Whoever opens it needs the same token ([`auth`]).

mod api;
mod auth;
mod dead_letters;
mod dlq;
mod orders;
mod pages;
mod services;
pub mod settings;
mod timeline;

pub use settings::Settings;

use anyhow::Context as _;
use axum::extract::Request;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use checkout_messaging::Topology;
use checkout_runtime::{Config, ServiceInfo};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Who the console is: its binary and port (it has no database or queue).
pub const SERVICE: ServiceInfo = ServiceInfo {
    name: "console",
    binary: "console-service",
    database: "none",
    http_port: 8084,
};

/// The console, bound and ready to serve.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
}

impl Application {
    /// Binds `HTTP_ADDR` (port 0 works: ask [`Application::port`]) and
    /// prepares the pages; the broker is connected on first use.
    pub async fn build(config: Config, settings: Settings) -> anyhow::Result<Self> {
        let topology = Topology::new(config.broker_namespace.as_str())
            .context("BROKER_NAMESPACE is not usable")?;
        let listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot listen on HTTP_ADDR {}", config.http_addr))?;
        let broker = dlq::Broker::new(config.amqp_url.clone(), topology);
        let state = pages::AppState {
            services: services::Services::new(
                settings.services.clone(),
                settings.admin_token.clone(),
            )?,
            broker: broker.clone(),
            gate: Arc::new(auth::Gate::new(settings.admin_token.clone())),
            settings: Arc::new(settings),
        };
        let router = pages::router(state)
            .route_layer(axum::middleware::from_fn(
                checkout_runtime::http::trace_request,
            ))
            .merge(health(broker))
            .fallback(|| async { (StatusCode::NOT_FOUND, "No such page.\n") })
            .layer(axum::extract::DefaultBodyLimit::max(
                checkout_runtime::http::MAX_BODY_BYTES,
            ))
            .layer(axum::middleware::from_fn_with_state(
                config.http_limits.request_timeout,
                time_limit,
            ));
        Ok(Self {
            listener,
            router,
            header_timeout: config.http_limits.header_timeout,
            shutdown: CancellationToken::new(),
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Cancelling this token stops the console as SIGTERM would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until SIGTERM, Ctrl-C or the shutdown token, then lets the
    /// requests in flight finish.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let stop = self.shutdown.clone();
        tracing::info!(port = self.port(), "console listening");
        checkout_runtime::serve(
            self.listener,
            self.router,
            self.header_timeout,
            async move {
                tokio::select! {
                    _ = checkout_runtime::terminate() => {}
                    _ = stop.cancelled() => {}
                }
            },
        )
        .await;
        tracing::info!("console stopped");
        Ok(())
    }
}

/// `/health/live` (the process answers) and `/health/ready` (the broker
/// answers: the services' APIs are each page's own business, shown there).
fn health(broker: dlq::Broker) -> Router {
    async fn ready(State(broker): State<dlq::Broker>) -> (StatusCode, Json<Value>) {
        let up = broker.reachable().await;
        let (status, word) = match up {
            true => (StatusCode::OK, "ready"),
            false => (StatusCode::SERVICE_UNAVAILABLE, "not ready"),
        };
        (
            status,
            Json(json!({ "status": word, "checks": { "broker": up } })),
        )
    }
    Router::new()
        .route(
            "/health/live",
            get(|| async { Json(json!({ "status": "live" })) }),
        )
        .route("/health/ready", get(ready))
        .with_state(broker)
}

/// Middleware: a page not rendered within `HTTP_REQUEST_TIMEOUT` (a broker
/// or service that hangs past the console's own call timeouts) is a 503.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The page was not ready in time (HTTP_REQUEST_TIMEOUT); try again.\n",
        )
            .into_response(),
    }
}
