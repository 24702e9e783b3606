//! Test support for service crates (feature `testing`, for
//! `[dev-dependencies]` only): a fresh, migrated database per test and a
//! configuration whose broker names and port are the test's own, so tests
//! run in parallel and leave nothing behind; and checks of a running
//! service's HTTP surface ([`api`]: its OpenAPI document against its
//! router; [`fuzz`]: random requests, no 5xx) and of its consumer
//! ([`contract`]: every event fixture it claims is applied).

pub mod api;
pub mod contract;
pub mod fuzz;

use crate::Application;
use crate::admin::AdminToken;
use crate::config::{Config, ServiceInfo};
use anyhow::Context as _;
use checkout_events::{Envelope, Event, SUBSCRIPTIONS};
use checkout_messaging::{RetryPolicy, Topology};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, PgPool};
use std::future::Future;
use std::net::SocketAddr;
use uuid::Uuid;

/// Where tests create their databases: `TEST_DATABASE_ADMIN_URL`, by
/// default the local `postgres` database as user `postgres`.
fn admin_url() -> String {
    std::env::var("TEST_DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    pool: PgPool,
}

impl TestDatabase {
    /// Creates `test_<prefix>_<uuid>` with the messaging tables and `migrator`'s.
    pub async fn create(prefix: &str, migrator: &Migrator) -> anyhow::Result<Self> {
        let name = format!("test_{prefix}_{}", Uuid::now_v7().simple());
        let admin = admin_url();
        let mut conn = PgConnection::connect(&admin)
            .await
            .context("connect to PostgreSQL (TEST_DATABASE_ADMIN_URL)")?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        let url = match admin.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => anyhow::bail!("TEST_DATABASE_ADMIN_URL has no database path: {admin}"),
        };
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect(&url)
            .await?;
        checkout_messaging::migrate(&pool).await?;
        migrator.run(&pool).await?;
        Ok(Self { name, url, pool })
    }

    /// Its URL, for `DATABASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A pool on it.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Makes the database refuse new connections and ends every open one
    /// (`refuse`), as an outage does — or lets connections in again.
    pub async fn refuse_connections(&self, refuse: bool) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect(&admin_url()).await?;
        sqlx::query(AssertSqlSafe(format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS {refuse}",
            self.name,
            refuse = !refuse
        )))
        .execute(&mut conn)
        .await?;
        if refuse {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&self.name)
            .execute(&mut conn)
            .await?;
        }
        Ok(())
    }

    /// Drops the database, closing whatever still uses it.
    pub async fn drop(self) -> anyhow::Result<()> {
        self.pool.close().await;
        let mut conn = PgConnection::connect(&admin_url()).await?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await?;
        Ok(())
    }
}

/// Runs `test` on a fresh database (see [`TestDatabase::create`]) and drops
/// the database afterwards — also when the test fails: it runs as a task,
/// so its panic is caught, the database dropped, and the panic re-raised.
pub async fn with_database<F, Fut>(prefix: &str, migrator: &Migrator, test: F)
where
    F: FnOnce(PgPool) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = TestDatabase::create(prefix, migrator)
        .await
        .expect("a test database (PostgreSQL at TEST_DATABASE_ADMIN_URL)");
    let outcome = tokio::spawn(test(db.pool().clone())).await;
    db.drop().await.expect("drop the test database");
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// A configuration for `service` on `database`: a free port on loopback,
/// a broker namespace of its own, and an `ADMIN_TOKEN` of its own
/// (`config.admin_token`; send it with [`admin_authorization`]).
pub fn isolated_config(service: &ServiceInfo, database: &TestDatabase) -> Config {
    Config {
        database_url: database.url.clone(),
        amqp_url: std::env::var("AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        broker_namespace: format!("test-{}-{}", service.name, Uuid::now_v7().simple()),
        database_max_connections: 5,
        consumer_prefetch: 16,
        retry_delays: RetryPolicy::parse("100ms,200ms").unwrap_or_default(),
        shutdown_timeout: std::time::Duration::from_secs(5),
        admin_token: Some(new_admin_token()),
        http_limits: crate::HttpLimits::default(),
        // Every switch starts off; tests may switch them on through /faults.
        faults_enabled: true,
    }
}

/// A fresh admin token for a test service: different on every call (a
/// UUID v7), not a secret worth more than that.
pub fn new_admin_token() -> AdminToken {
    AdminToken::parse(&format!("test-{}", Uuid::now_v7().simple()))
        .expect("37 visible characters are a valid token")
}

/// `config`'s admin token as a client sends it, the value of the
/// `Authorization` header: `Bearer <token>`. Panics when there is none.
pub fn admin_authorization(config: &Config) -> String {
    let token = config
        .admin_token
        .as_ref()
        .expect("the configuration has an ADMIN_TOKEN");
    format!("Bearer {}", token.secret())
}

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

/// `items` in a pseudo-random order fixed by `seed` (a tiny LCG: tests
/// that shuffle stay reproducible without a randomness crate).
pub fn shuffled<T>(mut items: Vec<T>, seed: u64) -> Vec<T> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for i in (1..items.len()).rev() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = usize::try_from((state >> 33) % (i as u64 + 1)).unwrap_or(0);
        items.swap(i, j);
    }
    items
}

/// Publishes `event` in a fresh envelope to `config`'s exchange, as its
/// owner's relay would (the envelope's `source` is the owner's, without
/// trace headers), and returns the envelope.
pub async fn publish<E: Event>(config: &Config, event: &E) -> anyhow::Result<Envelope> {
    let source = checkout_events::owner_of(E::TYPE).map_or("test", |owner| owner.source);
    let envelope = Envelope::new(event, source, Uuid::now_v7(), None)?;
    publish_raw(config, E::ROUTING_KEY, &serde_json::to_vec(&envelope)?).await?;
    Ok(envelope)
}

/// Publishes `body` with `routing_key` to `config`'s exchange and waits for
/// the broker's confirm: a misbehaving producer's bytes, or an envelope.
pub async fn publish_raw(config: &Config, routing_key: &str, body: &[u8]) -> anyhow::Result<()> {
    let topology = Topology::new(config.broker_namespace.as_str())?;
    let connection = checkout_messaging::connect(&config.amqp_url, "test-publisher").await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let confirmation = channel
        .basic_publish(
            ShortString::from(topology.exchange()),
            ShortString::try_new(routing_key.to_owned())
                .map_err(|_| anyhow::anyhow!("routing key too long: {routing_key}"))?,
            BasicPublishOptions::default(),
            body,
            BasicProperties::default()
                .with_content_type(ShortString::from("application/json"))
                .with_delivery_mode(2),
        )
        .await?
        .await?;
    connection
        .close(200, ShortString::from("published"))
        .await?;
    match confirmation {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        other => anyhow::bail!("the broker did not take the message: {other:?}"),
    }
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
    Fut: Future<Output = anyhow::Result<crate::Application>>,
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
    Fut: Future<Output = anyhow::Result<crate::Application>>,
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

/// Applies `envelope` with `handler` in one transaction and commits it
/// when the handler succeeds — what the consumer does, minus the inbox row,
/// so a test can deliver one event twice and see the handler's own guard.
pub async fn handle<H: checkout_messaging::Handler>(
    pool: &PgPool,
    handler: &H,
    envelope: &Envelope,
) -> Result<checkout_messaging::Outcome, checkout_messaging::HandlerError> {
    let mut tx = pool.begin().await?;
    let outcome = handler.handle(envelope, &mut tx).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Makes a race deterministic: applies `first` with `handler` in a
/// transaction left open, starts `second` in a transaction of its own,
/// waits (polling `pg_stat_activity`, with a deadline) until `second` is
/// blocked on a lock `first` holds, then commits `first` and lets `second`
/// finish. `second` must conflict with `first`, or the wait times out.
pub async fn race<H>(pool: &PgPool, handler: H, first: &Envelope, second: Envelope)
where
    H: checkout_messaging::Handler + Clone,
{
    let mut open = pool.begin().await.expect("begin");
    handler
        .handle(first, &mut open)
        .await
        .expect("the first event is handled");
    let racer = tokio::spawn({
        let (pool, handler) = (pool.clone(), handler.clone());
        async move {
            let mut tx = pool.begin().await.expect("begin");
            handler
                .handle(&second, &mut tx)
                .await
                .expect("the second event is handled");
            tx.commit().await.expect("commit");
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second event never waited for the first one's lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    open.commit().await.expect("commit");
    racer.await.expect("the second event finished");
}

/// The envelopes in `pool`'s outbox, oldest first: what a service has emitted.
pub async fn outbox_envelopes(pool: &PgPool) -> Vec<Envelope> {
    let rows: Vec<sqlx::types::Json<Envelope>> =
        sqlx::query_scalar("SELECT envelope FROM outbox ORDER BY id")
            .fetch_all(pool)
            .await
            .expect("read the outbox");
    rows.into_iter().map(|row| row.0).collect()
}

/// The event types in `pool`'s outbox, oldest first.
pub async fn outbox_event_types(pool: &PgPool) -> Vec<String> {
    outbox_envelopes(pool)
        .await
        .into_iter()
        .map(|envelope| envelope.event_type)
        .collect()
}
