//! A service served in a task of the test, as its binary serves it: its
//! broker namespace provisioned first, stopped cleanly at the end with its
//! database and broker names removed.

use crate::{TestDatabase, admin_authorization, isolated_config};
use anyhow::Context as _;
use checkout_events::SUBSCRIPTIONS;
use checkout_messaging::Topology;
use checkout_runtime::Application;
use checkout_runtime::config::{Config, ServiceInfo};
use lapin::types::ShortString;
use sqlx::migrate::Migrator;
use std::future::Future;

/// An application serving in a task of the test; see [`serve`].
#[derive(Debug)]
pub struct Serving {
    shutdown: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Provisions `config`'s whole broker namespace — every service's queues,
/// the shared exchanges, the bindings — as an administrator does before
/// the services start (a service declares only its own names). The test's
/// `AMQP_URL` is an administrator's. Idempotent.
pub async fn provision(config: &Config) -> anyhow::Result<()> {
    let topology = Topology::new(config.broker_namespace.as_str())?;
    let connection = checkout_messaging::connect(&config.amqp_url, "test-provision").await?;
    let provisioned = topology
        .provision(&connection, SUBSCRIPTIONS, &config.retry_delays)
        .await;
    let _ = connection
        .close(200, ShortString::from("provisioned"))
        .await;
    provisioned.context("provision the test's broker namespace")
}

/// Provisions `app`'s broker namespace ([`provision`]), serves `app` in a
/// task, waits until its broker session is up (as a client waits for
/// `/health/ready`), and returns its base URL (`http://127.0.0.1:<port>`)
/// and the handle that stops it.
pub async fn serve(app: Application) -> (String, Serving) {
    provision(app.config())
        .await
        .expect("the broker namespace is provisioned (RabbitMQ at AMQP_URL)");
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_token();
    let broker = app.broker_status();
    let server = tokio::spawn(app.run_until_stopped());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !broker.is_up() {
        assert!(
            std::time::Instant::now() < deadline,
            "the service did not connect to the broker within 15 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    (address, Serving { shutdown, server })
}

impl Serving {
    /// Stops the application as SIGTERM would and expects a clean stop,
    /// then deletes `config`'s broker names and drops `db`.
    pub async fn stop(self, config: &Config, db: TestDatabase) {
        self.shutdown.cancel();
        self.server
            .await
            .expect("joined")
            .expect("the service stopped cleanly");
        delete_topology(config).await.expect("delete topology");
        db.drop().await.expect("drop database");
    }
}

/// Deletes every exchange and queue of `config`'s namespace.
pub async fn delete_topology(config: &Config) -> anyhow::Result<()> {
    let topology = Topology::new(config.broker_namespace.as_str())?;
    let connection = checkout_messaging::connect(&config.amqp_url, "test-cleanup").await?;
    let channel = connection.create_channel().await?;
    topology
        .delete(&channel, SUBSCRIPTIONS, &config.retry_delays)
        .await?;
    connection
        .close(200, ShortString::from("cleaned up"))
        .await?;
    Ok(())
}

/// A service started as its binary starts it, on a fresh database, a free
/// port and broker names of its own (see [`spawn`]).
#[derive(Debug)]
pub struct Running {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// Its database.
    pub db: TestDatabase,
    config: Config,
    serving: Serving,
}

/// Starts `service` with `build` (its `build` function) and serves it.
pub async fn spawn<F, Fut>(service: &ServiceInfo, migrator: &Migrator, build: F) -> Running
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = anyhow::Result<Application>>,
{
    spawn_with(service, migrator, |_| {}, build).await
}

/// [`spawn`], with the test's changes to the configuration (`configure`),
/// e.g. `|config| config.admin_token = None`.
pub async fn spawn_with<F, Fut>(
    service: &ServiceInfo,
    migrator: &Migrator,
    configure: impl FnOnce(&mut Config),
    build: F,
) -> Running
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = anyhow::Result<Application>>,
{
    let db = TestDatabase::create(service.name, migrator)
        .await
        .expect("a test database (PostgreSQL at TEST_DATABASE_ADMIN_URL)");
    let mut config = isolated_config(service, &db);
    configure(&mut config);
    let app = build(config.clone())
        .await
        .expect("the service starts (RabbitMQ at AMQP_URL)");
    let (address, serving) = serve(app).await;
    Running {
        address,
        db,
        config,
        serving,
    }
}

impl Running {
    /// The configuration it runs with (to publish into its namespace, say).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Its `Authorization` header value for admin endpoints (`Bearer …`).
    pub fn admin_authorization(&self) -> String {
        admin_authorization(&self.config)
    }

    /// Stops the service as SIGTERM would and removes its database and
    /// broker names; panics if it did not stop cleanly.
    pub async fn stop(self) {
        self.serving.stop(&self.config, self.db).await;
    }
}
