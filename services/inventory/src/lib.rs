//! The Inventory service: owns the catalog and the stock, and holds stock
//! for orders.
//!
//! It consumes `OrderCreated` and reserves every line or none
//! (`InventoryReserved` or `InventoryFailed`), `OrderConfirmed` and ships
//! what was reserved, and `OrderCancelled` and gives it back
//! (`InventoryReleased`), or leaves a tombstone when the cancellation
//! arrives first. It tells the rest of the system about its products with
//! `ProductUpdated`: on every change, and for the whole catalog on every
//! start. `GET /products` and `GET /reservations?order_id=` show its state;
//! `PUT /products/{sku}` creates or changes a product.

pub mod catalog;
mod handler;
mod reservation;
mod routes;
mod store;

use anyhow::Context as _;
use checkout_events::{Inbox as _, InventoryInbox};
use checkout_messaging::Outbox;
use checkout_runtime::{Config, Runtime, ServiceInfo, Switch};
use sqlx::migrate::Migrator;

/// Who this service is: its queue, binary, database and port.
pub const SERVICE: ServiceInfo = ServiceInfo {
    name: InventoryInbox::SERVICE,
    binary: "inventory-service",
    database: "inventory",
    http_port: 8082,
};

/// Where the service's events go: its outbox, in its own database.
const OUTBOX: Outbox = Outbox::new(SERVICE.binary);

/// The service's own tables and the demo catalog (the messaging tables
/// come with the runtime).
pub static MIGRATOR: Migrator = sqlx::migrate!();

pub use checkout_runtime::Application;
pub use handler::InventoryHandler;
pub use reservation::{Reservation, decide};

/// Starts the service: connects, migrates, declares the topology,
/// announces the catalog, starts the relay (which publishes the
/// announcement) and the consumer. Serve it with
/// [`Application::run_until_stopped`].
pub async fn build(config: Config) -> anyhow::Result<Application> {
    let mut runtime = Runtime::start(SERVICE, config, &MIGRATOR).await?;
    // Before the relay and consumer start, so a failure here leaves no task
    // running; the relay publishes the backlog as soon as it starts.
    catalog::announce(runtime.pool())
        .await
        .context("cannot announce the catalog")?;
    runtime.register_relay();
    runtime.offer_faults(&[Switch::FailTransient, Switch::FailPermanent]);
    runtime.register_consumer(InventoryHandler);
    let api = routes::api(runtime.pool().clone());
    Ok(runtime.with_api(api))
}
