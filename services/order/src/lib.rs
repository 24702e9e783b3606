//! The Order service: takes orders over HTTP and joins the saga.
//!
//! `POST /orders` prices the order from the local catalog and writes it,
//! PENDING, together with OrderCreated. Payment and Inventory answer; the
//! [`handler`] (the consumer) applies their replies to the order's
//! [`saga`] state machine, which decides CONFIRMED or CANCELLED, and emits
//! OrderConfirmed or OrderCancelled; the [`deadline`] cancels an
//! order that no reply decided in time. The catalog is a local table kept
//! from Inventory's ProductUpdated events.

pub mod catalog;
mod deadline;
pub mod handler;
mod idempotency;
pub mod metrics;
mod place;
mod request;
mod routes;
pub mod saga;
pub mod settings;
mod store;
mod timeline;
mod view;

use checkout_events::{Inbox as _, OrderInbox};
use checkout_messaging::Outbox;
use checkout_runtime::{Config, Runtime, ServiceInfo};
pub use settings::Settings;

pub use checkout_runtime::Application;
use sqlx::migrate::Migrator;

/// Who this service is: its queue, binary, database and port.
pub const SERVICE: ServiceInfo = ServiceInfo {
    name: OrderInbox::SERVICE,
    binary: "order-service",
    database: "orders",
    http_port: 8080,
};

/// Where the service's events go: its outbox, in its own database.
const OUTBOX: Outbox = Outbox::new(SERVICE.binary);

/// The service's own tables (the messaging tables come with the runtime).
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Starts the service with its [`Settings`] from the environment; see
/// [`build_with`].
pub async fn build(config: Config) -> anyhow::Result<Application> {
    // A bad setting stays a ConfigError inside the error, so `launch`
    // reports it as a configuration error.
    let settings = Settings::from_env()?;
    build_with(config, settings).await
}

/// Starts the service: connects, migrates, declares the topology, starts
/// its background tasks. Serve it with [`Application::run_until_stopped`].
pub async fn build_with(config: Config, settings: Settings) -> anyhow::Result<Application> {
    let mut runtime = Runtime::start(SERVICE, config, &MIGRATOR)
        .await?
        .with_collector(metrics::orders_by_status);
    metrics::describe(settings.order_deadline);
    runtime.register_relay();
    runtime.register_consumer(handler::OrderHandler);
    let deadline = settings.order_deadline;
    runtime.spawn_task(deadline::run(
        runtime.pool().clone(),
        deadline,
        deadline::interval(deadline),
        runtime.shutdown_token(),
    ));
    let api = routes::api(runtime.pool().clone(), settings);
    Ok(runtime.with_api(api))
}
