//! The Payment service: takes the money for an order, and gives it back.
//!
//! It consumes `PaymentRequested` (the only event that carries the card
//! token; `OrderCreated` does not come here) and charges the order's total through a
//! simulated, deterministic provider (the card token `tok_decline`
//! declines), answering `PaymentCaptured` or `PaymentFailed`. It consumes
//! `OrderCancelled` and refunds a captured payment (`PaymentRefunded`), or
//! leaves a tombstone when the cancellation arrives first. It owns the
//! `payments` table, one row per order, which `GET /payments?order_id=`
//! shows; it never stores card tokens.

mod handler;
pub mod provider;
mod routes;
mod store;

use checkout_events::{Inbox as _, PaymentInbox};
use checkout_messaging::Outbox;
use checkout_runtime::{Config, Runtime, ServiceInfo, Switch};
use sqlx::migrate::Migrator;

/// Who this service is: its queue, binary, database and port.
pub const SERVICE: ServiceInfo = ServiceInfo {
    name: PaymentInbox::SERVICE,
    binary: "payment-service",
    database: "payments",
    http_port: 8081,
};

/// Where the service's events go: its outbox, in its own database.
const OUTBOX: Outbox = Outbox::new(SERVICE.binary);

/// The service's own tables (the messaging tables come with the runtime).
pub static MIGRATOR: Migrator = sqlx::migrate!();

pub use checkout_runtime::Application;
pub use handler::PaymentHandler;

/// Starts the service: connects, migrates, declares the topology, starts
/// the relay and the consumer. Serve it with [`Application::run_until_stopped`].
pub async fn build(config: Config) -> anyhow::Result<Application> {
    let mut runtime = Runtime::start(SERVICE, config, &MIGRATOR).await?;
    runtime.register_relay();
    let faults = runtime.offer_faults(&[
        Switch::Decline,
        Switch::FailTransient,
        Switch::FailPermanent,
    ]);
    runtime.register_consumer(PaymentHandler::new(faults));
    let api = routes::api(runtime.pool().clone());
    Ok(runtime.with_api(api))
}
