//! The Email service: tells customers how their order ended.
//!
//! It consumes `OrderConfirmed` and `OrderCancelled` and records exactly one
//! notification per order and kind (recipient, subject, body), which
//! `GET /emails?order_id=` shows. With `SMTP_URL` set, a [sender] task
//! delivers the recorded mails over SMTP, at least once. It owns no other
//! state and emits no events.

pub mod config;
pub mod handler;
mod notification;
mod routes;
mod sender;

use checkout_runtime::{Config, Runtime, ServiceInfo, Switch};

pub use checkout_runtime::Application;
use sqlx::migrate::Migrator;

/// Who this service is: its queue, binary, database and port.
pub const SERVICE: ServiceInfo = ServiceInfo {
    name: "email",
    binary: "email-service",
    database: "email",
    http_port: 8083,
};

/// The service's own tables (the messaging tables come with the runtime).
pub static MIGRATOR: Migrator = sqlx::migrate!();

pub use config::MailConfig;
pub use notification::{Kind, Notification};

/// Starts the service with its mail settings from the environment (see
/// [`build_with`]).
pub async fn build(config: Config) -> anyhow::Result<Application> {
    let mail = MailConfig::from_env().map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
    build_with(config, mail).await
}

/// Starts the service: connects, migrates, declares the topology, starts
/// the consumer and, if `mail` names an SMTP server, the sender. Serve it
/// with [`Application::run_until_stopped`].
pub async fn build_with(config: Config, mail: MailConfig) -> anyhow::Result<Application> {
    let mut runtime = Runtime::start(SERVICE, config, &MIGRATOR).await?;
    runtime.spawn_consumer(handler::Notifier);
    let faults = runtime.offer_faults(&[Switch::SmtpRefuse]);
    match mail.transport.clone() {
        Some(transport) => {
            let sender = sender::Sender::new(runtime.pool().clone(), transport, mail, faults);
            runtime.spawn_task(sender.run(runtime.shutdown_token()));
        }
        None => tracing::info!("SMTP_URL is not set: mails are recorded, not sent"),
    }
    let api = routes::api(runtime.pool().clone());
    Ok(runtime.with_api(api))
}
