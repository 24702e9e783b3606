//! A whole checkout started for one test: fresh databases, a private broker
//! namespace, the four binaries, a trace receiver, and the HTTP helpers a
//! test drives it with. Stopping it removes everything it created.

use crate::DEMO_SKUS;
use crate::binaries::{self, Binaries};
use crate::otlp::OtlpReceiver;
use crate::poll::Probe;
use crate::process::{Environment, Exited, Service, ServiceProcess, free_port, tail};
use crate::resources::{
    self, create_database, delete_broker_users, delete_topology, drop_database,
};
use anyhow::Context as _;
use checkout_operator::dlq::{self as dead_letter, DeadLetter};
use lapin::types::ShortString;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use uuid::Uuid;

/// How to start a [`System`].
#[derive(Debug, Clone)]
pub struct Options {
    /// How many processes of each consumer service (Payment, Inventory,
    /// Email) to run against the same database and queue. The Order
    /// service, which the test talks to, runs once. Default 1.
    pub consumer_replicas: usize,
    /// How long any wait (readiness, an order's outcome, a trace) may take
    /// before the test fails. Default 30 s.
    pub timeout: Duration,
    /// The PostgreSQL server, without a database name; the role must be
    /// allowed to create databases. Default `$E2E_POSTGRES_URL`, else
    /// `postgres://postgres@127.0.0.1:5432`.
    pub postgres_url: String,
    /// The broker, as an administrator: the harness provisions each
    /// system's namespace and users with it (and `rabbitmqctl`), and the
    /// services get users of their own. Default `$E2E_AMQP_URL`, else
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub amqp_url: String,
    /// `RUST_LOG` of every service. Default `$E2E_RUST_LOG`, else `info`.
    pub rust_log: String,
    /// The Order service's `ORDER_DEADLINE`. Default 30 s, the service's own.
    pub order_deadline: Duration,
}

impl Default for Options {
    fn default() -> Self {
        let env = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        Self {
            consumer_replicas: 1,
            timeout: Duration::from_secs(30),
            postgres_url: env("E2E_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432"),
            amqp_url: env("E2E_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            rust_log: env("E2E_RUST_LOG", "info"),
            order_deadline: Duration::from_secs(30),
        }
    }
}

impl Options {
    /// Runs `replicas` processes of each consumer service.
    pub fn with_consumer_replicas(mut self, replicas: usize) -> Self {
        self.consumer_replicas = replicas.max(1);
        self
    }

    /// Cancels orders still pending after `deadline`.
    pub fn with_order_deadline(mut self, deadline: Duration) -> Self {
        self.order_deadline = deadline;
        self
    }

    fn replicas(&self, service: Service) -> usize {
        match service {
            Service::Order => 1,
            Service::Payment | Service::Inventory | Service::Email => self.consumer_replicas.max(1),
        }
    }
}

/// A running checkout of our own.
///
/// Call [`System::shutdown`] at the end of a test: it stops the processes,
/// deletes the broker names and drops the databases, and reports any
/// failure to do so. If a test fails before that, `Drop` does the same on a
/// best-effort basis and prints where the service logs are.
#[derive(Debug)]
pub struct System {
    id: String,
    /// The `ADMIN_TOKEN` every service of this system runs with.
    admin_token: String,
    options: Options,
    http: reqwest::Client,
    receiver: OtlpReceiver,
    log_dir: PathBuf,
    /// The databases created so far (so a failed start drops exactly those).
    databases: Vec<(Service, String)>,
    /// Each service's broker password (its user is `<id>.<service>`).
    broker_passwords: HashMap<Service, String>,
    /// The console's broker password (its user is `<id>.console`).
    console_broker_password: String,
    processes: Vec<ServiceProcess>,
    stopped: bool,
}

impl System {
    /// Builds the binaries (once per test process), creates the databases,
    /// starts the trace receiver and every service process, and waits until
    /// each is ready and the Order service knows the demo catalog.
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        let binaries = binaries::ensure_built().await?;
        let id = format!("e2e_{}", short_id());
        let log_dir = logs_root().join(&id);
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("cannot create {}", log_dir.display()))?;
        eprintln!("e2e: system {id}: service logs in {}", log_dir.display());

        let mut system = System {
            id,
            admin_token: format!("e2e-admin-{}", Uuid::now_v7().simple()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            receiver: OtlpReceiver::start().await?,
            log_dir,
            databases: Vec::new(),
            broker_passwords: HashMap::new(),
            console_broker_password: Uuid::now_v7().simple().to_string(),
            processes: Vec::new(),
            stopped: false,
            options,
        };
        if let Err(error) = system.boot(&binaries).await {
            if let Err(cleanup) = system.stop_and_clean().await {
                eprintln!("e2e: cleaning up after the failed start failed too: {cleanup:#}");
            }
            return Err(error.context(format!(
                "system {} did not start; service logs in {}",
                system.id,
                system.log_dir.display()
            )));
        }
        Ok(system)
    }

    async fn boot(&mut self, binaries: &Binaries) -> anyhow::Result<()> {
        for service in Service::ALL {
            let name = format!("{}_{}", self.id, service.database());
            create_database(&self.options.postgres_url, &name).await?;
            self.databases.push((service, name));
        }

        // The broker first, as a deployment's administrator does: every
        // queue exists before any service publishes (so Inventory's catalog
        // waits in the Order queue), and each service gets a user of its
        // own that may touch only its own names.
        self.broker_passwords = resources::provision_broker(
            &self.options.amqp_url,
            &self.id,
            &self.console_broker_password,
        )
        .await
        .context("cannot provision the broker namespace")?;

        // Then everything at once, as an orchestrator would: the order
        // does not matter.
        for service in Service::ALL {
            for replica in 0..self.options.replicas(service) {
                let process = self.spawn(binaries, service, replica)?;
                self.processes.push(process);
            }
        }
        for index in 0..self.processes.len() {
            self.wait_ready(binaries, index).await?;
        }

        // The Order service learns the catalog from Inventory's events after
        // start; an order placed before that is refused as unknown.
        self.eventually(
            "the Order service's catalog to list the demo SKUs",
            async || {
                let catalog = self.catalog().await?;
                let missing: Vec<&str> = DEMO_SKUS
                    .into_iter()
                    .filter(|sku| !catalog.iter().any(|entry| entry.sku == *sku))
                    .collect();
                Ok(if missing.is_empty() {
                    Probe::Done(())
                } else {
                    Probe::NotYet(format!("missing {missing:?}"))
                })
            },
        )
        .await
    }

    fn spawn(
        &self,
        binaries: &Binaries,
        service: Service,
        replica: usize,
    ) -> anyhow::Result<ServiceProcess> {
        let database = self
            .databases
            .iter()
            .find(|(owner, _)| *owner == service)
            .map(|(_, name)| format!("{}/{name}", self.options.postgres_url))
            .context("no database for the service")?;
        let env = Environment {
            amqp_url: self.broker_url(service)?,
            broker_namespace: self.id.clone(),
            otlp_endpoint: self.receiver.endpoint().to_owned(),
            rust_log: self.options.rust_log.clone(),
            order_deadline: format!("{}ms", self.options.order_deadline.as_millis()),
            admin_token: self.admin_token.clone(),
        };
        ServiceProcess::spawn(
            binaries.path(service)?,
            service,
            replica,
            &database,
            free_port()?,
            &env,
            &self.log_dir,
        )
    }

    /// Waits for process `index`; if it lost the race for its port, starts
    /// it again on another one (at most twice).
    async fn wait_ready(&mut self, binaries: &Binaries, index: usize) -> anyhow::Result<()> {
        let mut retries = 2;
        loop {
            let process = &mut self.processes[index];
            let (service, replica) = (process.service, process.replica);
            match process.wait_ready(&self.http, self.options.timeout).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    let port_taken = error
                        .downcast_ref::<Exited>()
                        .is_some_and(Exited::port_taken);
                    if !port_taken || retries == 0 {
                        return Err(error);
                    }
                    retries -= 1;
                    self.processes[index] = self.spawn(binaries, service, replica)?;
                }
            }
        }
    }

    /// Sends `signal` (`"TERM"` or `"KILL"`) to replica `replica` of
    /// `service`, waits for it to exit and returns its exit status.
    pub async fn signal(
        &mut self,
        service: Service,
        replica: usize,
        signal: &str,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let timeout = self.options.timeout;
        self.process_mut(service, replica)?
            .signal(signal, timeout)
            .await
    }

    /// Starts replica `replica` of `service` again (on a new port) and
    /// waits until it is ready.
    pub async fn restart(&mut self, service: Service, replica: usize) -> anyhow::Result<()> {
        let binaries = binaries::ensure_built().await?;
        let index = self
            .processes
            .iter()
            .position(|p| p.service == service && p.replica == replica)
            .context("no such process")?;
        self.processes[index] = self.spawn(&binaries, service, replica)?;
        self.wait_ready(&binaries, index).await
    }

    /// Closes this system's broker connections (all services), as
    /// `rabbitmqctl close_connection` does. Returns how many.
    pub async fn close_broker_connections(&self) -> anyhow::Result<usize> {
        resources::close_broker_connections(&self.id).await
    }

    /// Terminates every database connection of this system's services, as
    /// `pg_terminate_backend` does. Returns how many.
    pub async fn terminate_database_connections(&self) -> anyhow::Result<i64> {
        resources::terminate_database_connections(&self.options.postgres_url, &self.id).await
    }

    /// Makes `service`'s database refuse new connections and ends the open
    /// ones (`refuse`), as an outage would, or lets connections in again.
    pub async fn refuse_database(&self, service: Service, refuse: bool) -> anyhow::Result<()> {
        let name = self.database_of(service)?;
        resources::refuse_connections(&self.options.postgres_url, &name, refuse).await
    }

    /// Runs `sql` in `service`'s own database (to inject a fault there).
    pub async fn execute_in(&self, service: Service, sql: &str) -> anyhow::Result<()> {
        let name = self.database_of(service)?;
        resources::execute_in(&self.options.postgres_url, &name, sql).await
    }

    /// The one `bigint` that `sql` selects in `service`'s own database
    /// (`SELECT count(*) …`), to look where no API shows.
    pub async fn count_in(&self, service: Service, sql: &str) -> anyhow::Result<i64> {
        let name = self.database_of(service)?;
        resources::count_in(&self.options.postgres_url, &name, sql).await
    }

    /// How many messages wait in the broker queue `queue`.
    pub async fn queue_depth(&self, queue: &str) -> anyhow::Result<u32> {
        resources::queue_depth(&self.options.amqp_url, queue).await
    }

    /// This system's broker names.
    pub fn topology(&self) -> anyhow::Result<checkout_messaging::Topology> {
        Ok(checkout_messaging::Topology::new(self.id.as_str())?)
    }

    /// The broker URL `service` is started with: the administrator's URL
    /// with the service's own user (`<id>.<service>`) and password.
    pub fn broker_url(&self, service: Service) -> anyhow::Result<String> {
        let password = self
            .broker_passwords
            .get(&service)
            .context("the broker is not provisioned yet")?;
        let user = checkout_messaging::access::service_user_name(&self.topology()?, service.name());
        with_credentials(&self.options.amqp_url, &user, password)
    }

    /// The broker URL of the console's own user (`<id>.console`).
    pub fn console_broker_url(&self) -> anyhow::Result<String> {
        let user = checkout_messaging::access::console_user(&self.topology()?).name;
        with_credentials(&self.options.amqp_url, &user, &self.console_broker_password)
    }

    /// The broker URL of the administrator the harness provisions with.
    pub fn admin_broker_url(&self) -> &str {
        &self.options.amqp_url
    }

    /// The messages in `service`'s dead-letter queue, left there (each is
    /// fetched and given back), as `checkoutctl dlq list` shows them.
    pub async fn dead_letters(&self, service: Service) -> anyhow::Result<Vec<DeadLetter>> {
        let queue = self.topology()?.dead_letter_queue(service.name());
        let connection = checkout_messaging::connect(&self.options.amqp_url, "e2e dead letters")
            .await
            .context("cannot connect to the broker")?;
        let channel = connection.create_channel().await?;
        let letters = dead_letter::peek(&channel, &queue, 1000).await;
        let _ = connection.close(200, ShortString::from("done")).await;
        Ok(letters?)
    }

    fn database_of(&self, service: Service) -> anyhow::Result<String> {
        self.databases
            .iter()
            .find(|(owner, _)| *owner == service)
            .map(|(_, name)| name.clone())
            .context("no database for the service")
    }

    fn process_mut(
        &mut self,
        service: Service,
        replica: usize,
    ) -> anyhow::Result<&mut ServiceProcess> {
        self.processes
            .iter_mut()
            .find(|p| p.service == service && p.replica == replica)
            .context("no such process")
    }

    /// The `Authorization` header value of an operator of this system:
    /// `Bearer <ADMIN_TOKEN>` (a fresh token per system).
    pub fn admin_authorization(&self) -> String {
        format!("Bearer {}", self.admin_token)
    }

    /// The system's id: the prefix of its databases and its broker namespace.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where each process's stdout and stderr go (`<instance>.log`).
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// The HTTP client the helpers use, for requests they do not cover.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `http://127.0.0.1:<port><path>` of `service` (its first replica:
    /// replicas share one database, so any of them gives the same answer).
    pub fn url(&self, service: Service, path: &str) -> String {
        let base = self
            .processes
            .iter()
            .find(|process| process.service == service)
            .map_or("http://service-not-started", |process| &process.base_url);
        format!("{base}{path}")
    }

    /// How long any wait may take (see [`Options::timeout`]).
    pub fn timeout(&self) -> Duration {
        self.options.timeout
    }

    /// The trace receiver every service exports to.
    pub fn otlp(&self) -> &OtlpReceiver {
        &self.receiver
    }

    /// Stops the processes, deletes the broker names, drops the databases,
    /// and removes the logs (unless `E2E_KEEP_LOGS` is set). If cleaning up
    /// fails, the logs are kept and the error says what was left behind.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop_and_clean()
            .await
            .with_context(|| format!("logs kept in {}", self.log_dir.display()))?;
        if std::env::var_os("E2E_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
        Ok(())
    }

    /// Everything `shutdown` does but the logs. Runs at most once.
    async fn stop_and_clean(&mut self) -> anyhow::Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let mut failures = Vec::new();
        // Stop the services first, so nothing re-declares or reconnects.
        for process in &mut self.processes {
            if let Err(error) = process.stop().await {
                failures.push(format!("{error:#}"));
            }
        }
        let databases = self
            .databases
            .iter()
            .map(|(_, name)| name.clone())
            .collect();
        failures.extend(cleanup(&self.options, &self.id, databases).await);
        anyhow::ensure!(
            failures.is_empty(),
            "cleanup failed: {}",
            failures.join("; ")
        );
        Ok(())
    }
}

impl Drop for System {
    /// The test ended without [`System::shutdown`] (it failed): kill the
    /// processes, clean up on a helper thread (async work cannot run in
    /// `drop`), and point at the logs.
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        for process in &mut self.processes {
            process.start_kill();
        }
        let (options, id) = (self.options.clone(), self.id.clone());
        let databases = self
            .databases
            .iter()
            .map(|(_, name)| name.clone())
            .collect();
        let cleaned = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| vec![format!("cannot start a runtime to clean up: {e}")])?;
            let failures = runtime.block_on(cleanup(&options, &id, databases));
            if failures.is_empty() {
                Ok(())
            } else {
                Err(failures)
            }
        })
        .join();
        match cleaned {
            Ok(Ok(())) => {}
            Ok(Err(failures)) => eprintln!(
                "e2e: cleanup of {} failed: {}",
                self.id,
                failures.join("; ")
            ),
            Err(_) => eprintln!("e2e: cleanup of {} panicked", self.id),
        }

        eprintln!(
            "\ne2e: system {} was not shut down cleanly; service logs kept in {}",
            self.id,
            self.log_dir.display()
        );
        for process in &self.processes {
            eprintln!(
                "--- last lines of {} ---\n{}",
                process.log.display(),
                tail(&process.log, 10)
            );
        }
    }
}

/// `url` (`amqp://user:password@host…`) with `user` and `password` instead.
fn with_credentials(url: &str, user: &str, password: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .with_context(|| format!("not a URL: {url}"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    // Names and passwords are [a-z0-9._] (the harness makes them): no
    // percent-encoding needed.
    Ok(format!("{scheme}://{user}:{password}@{host}{path}"))
}

/// Deletes the broker names and users and drops the databases; returns
/// what failed. Each step has a deadline, so an unreachable server cannot
/// hang a test.
async fn cleanup(options: &Options, namespace: &str, databases: Vec<String>) -> Vec<String> {
    const STEP_TIMEOUT: Duration = Duration::from_secs(10);
    let mut failures = Vec::new();
    match tokio::time::timeout(STEP_TIMEOUT, delete_broker_users(namespace)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => failures.push(format!("{error:#}")),
        Err(_) => failures.push(format!(
            "deleting the broker users of {namespace} timed out"
        )),
    }
    let topology = delete_topology(&options.amqp_url, namespace);
    match tokio::time::timeout(STEP_TIMEOUT, topology).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => failures.push(format!("{error:#}")),
        Err(_) => failures.push(format!(
            "deleting the broker names of {namespace} timed out"
        )),
    }
    for name in databases {
        let dropped = drop_database(&options.postgres_url, &name);
        match tokio::time::timeout(STEP_TIMEOUT, dropped).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failures.push(format!("{error:#}")),
            Err(_) => failures.push(format!("dropping database {name} timed out")),
        }
    }
    failures
}

/// 12 hex digits that differ between systems, even ones started in the same
/// millisecond (the tail of a UUID v7 is random).
fn short_id() -> String {
    let id = Uuid::now_v7().simple().to_string();
    id[id.len() - 12..].to_owned()
}

/// `<target dir>/e2e-logs`: cargo marks its target directory with a
/// `CACHEDIR.TAG`, and the test executable lives below it.
fn logs_root() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|dir| dir.join("CACHEDIR.TAG").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(std::env::temp_dir)
        .join("e2e-logs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_url_keeps_the_host_and_takes_its_own_credentials() {
        for (admin, expected) in [
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "amqp://ns.order:pw@127.0.0.1:5672/%2f",
            ),
            ("amqp://localhost:5672", "amqp://ns.order:pw@localhost:5672"),
            ("amqps://a:b@broker/vh", "amqps://ns.order:pw@broker/vh"),
        ] {
            assert_eq!(
                with_credentials(admin, "ns.order", "pw").expect("a URL"),
                expected
            );
        }
    }
}
