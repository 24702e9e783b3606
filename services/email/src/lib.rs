//! The Email service: tells customers how their order ended.
//!
//! It consumes `OrderConfirmed` and `OrderCancelled` and records exactly one
//! notification per order and kind (recipient, subject, body), which
//! `GET /emails?order_id=` shows. With `SMTP_URL` set, a [sender] task
//! delivers the recorded mails over SMTP, at least once. It owns no other
//! state and emits no events.

pub mod handler;
mod notification;
mod routes;
mod sender;
pub mod settings;
mod store;

use checkout_events::{EmailInbox, Inbox as _};
use checkout_runtime::{Config, Runtime, ServiceInfo, Switch};

pub use checkout_runtime::Application;
use sqlx::migrate::Migrator;
use std::sync::Arc;
use tokio::sync::Notify;

/// Who this service is: its queue, binary, database and port.
pub const SERVICE: ServiceInfo = ServiceInfo {
    name: EmailInbox::SERVICE,
    binary: "email-service",
    database: "email",
    http_port: 8083,
};

/// The service's own tables (the messaging tables come with the runtime).
pub static MIGRATOR: Migrator = sqlx::migrate!();

pub use notification::{Kind, Notification};
pub use settings::Settings;

/// Starts the service with its [`Settings`] from the environment (see
/// [`build_with`]).
pub async fn build(config: Config) -> anyhow::Result<Application> {
    // A bad setting stays a ConfigError inside the error, so `launch`
    // reports it as a configuration error.
    let settings = Settings::from_env()?;
    build_with(config, settings).await
}

/// Starts the service: connects, migrates, declares the topology, starts
/// the consumer and, if `mail` names an SMTP server, the sender. Serve it
/// with [`Application::run_until_stopped`].
pub async fn build_with(config: Config, mail: Settings) -> anyhow::Result<Application> {
    let mut runtime = Runtime::start(SERVICE, config, &MIGRATOR).await?;
    let wake = Arc::new(Notify::new());
    runtime.register_consumer(handler::Notifier::new(wake.clone()));
    let faults = runtime.offer_faults(&[Switch::SmtpRefuse]);
    match mail.transport.clone() {
        Some(transport) => {
            let sender = sender::Sender::new(runtime.pool().clone(), transport, mail, faults, wake);
            runtime.spawn_task(sender.run(runtime.shutdown_token()));
        }
        None => tracing::info!("SMTP_URL is not set: mails are recorded, not sent"),
    }
    let api = routes::api(runtime.pool().clone());
    Ok(runtime.with_api(api))
}
