//! A whole checkout started for one test: fresh databases, a private broker
//! namespace, the four binaries, a trace receiver, and the HTTP helpers a
//! test drives it with. Stopping it removes everything it created.
//!
//! The parts: [`Options`] (how to start one), this module (starting,
//! restarting and addressing the processes), `backstage` (what a test
//! does behind the services' backs: broker and database faults, queue
//! depths, dead letters), `switches` (the services' fault switches) and
//! `teardown` (stopping and removing it all).

mod backstage;
mod options;
mod switches;
mod teardown;

pub use options::Options;

use crate::DEMO_SKUS;
use crate::binaries::{self, Binaries};
use crate::otlp::OtlpReceiver;
use crate::poll::Probe;
use crate::process::{Environment, Exited, Service, ServiceProcess, free_port};
use crate::resources::{self, create_database};
use crate::smtp::MailSink;
use anyhow::Context as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use uuid::Uuid;

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
    /// Where the Email service sends its mail (`SMTP_URL`).
    mail: MailSink,
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
            mail: MailSink::start().await?,
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
            smtp_url: self.mail.url(),
            rust_log: self.options.rust_log.clone(),
            order_deadline: format!("{}ms", self.options.order_deadline.as_millis()),
            admin_token: self.admin_token.clone(),
            faults_enabled: self.options.fault_switches,
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

    /// The mail sink the Email service sends to.
    pub fn mail(&self) -> &MailSink {
        &self.mail
    }

    /// The trace receiver every service exports to.
    pub fn otlp(&self) -> &OtlpReceiver {
        &self.receiver
    }
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
