//! One running service binary: the environment it is started with, the log
//! file its output goes to, and the wait until it says it is ready.

use crate::poll::{Probe, eventually};
use crate::resources::RETRY_DELAYS;
use reqwest::StatusCode;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};

/// The four services of the checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// Takes orders and runs the saga (`order-service`).
    Order,
    /// Captures and refunds (`payment-service`).
    Payment,
    /// Owns the catalog and the stock (`inventory-service`).
    Inventory,
    /// Tells customers how their order ended (`email-service`).
    Email,
}

impl Service {
    /// All of them, in the order of the flow.
    pub const ALL: [Service; 4] = [
        Service::Order,
        Service::Payment,
        Service::Inventory,
        Service::Email,
    ];

    /// The binary's name, which is also its `service.name` in traces.
    pub fn binary(self) -> &'static str {
        match self {
            Service::Order => "order-service",
            Service::Payment => "payment-service",
            Service::Inventory => "inventory-service",
            Service::Email => "email-service",
        }
    }

    /// Its short name: its queue `<namespace>.<name>` and broker user are
    /// named after it.
    pub fn name(self) -> &'static str {
        match self {
            Service::Order => "order",
            Service::Payment => "payment",
            Service::Inventory => "inventory",
            Service::Email => "email",
        }
    }

    /// The suffix of its database's name (the name it has in production).
    pub(crate) fn database(self) -> &'static str {
        match self {
            Service::Order => "orders",
            Service::Payment => "payments",
            Service::Inventory => "inventory",
            Service::Email => "email",
        }
    }
}

/// What one process is started with besides its database and port.
#[derive(Debug, Clone)]
pub(crate) struct Environment {
    /// The service's own broker user's URL.
    pub(crate) amqp_url: String,
    pub(crate) broker_namespace: String,
    pub(crate) otlp_endpoint: String,
    /// The Email service's `SMTP_URL` (the others send no mail).
    pub(crate) smtp_url: String,
    pub(crate) rust_log: String,
    /// The Order service's `ORDER_DEADLINE` (the others ignore it).
    pub(crate) order_deadline: String,
    /// `ADMIN_TOKEN` of every service.
    pub(crate) admin_token: String,
    /// `FAULTS_ENABLED` of every service.
    pub(crate) faults_enabled: bool,
}

/// A started service process. `kill_on_drop` makes sure it does not outlive
/// the test, whatever happens to the test.
#[derive(Debug)]
pub(crate) struct ServiceProcess {
    pub(crate) service: Service,
    /// Which of the service's processes it is (0, 1, …).
    pub(crate) replica: usize,
    /// `payment-service-1`: its `service.instance.id` and log file name.
    pub(crate) instance: String,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base_url: String,
    /// Where its stdout and stderr go.
    pub(crate) log: PathBuf,
    child: Child,
}

impl ServiceProcess {
    /// Starts `binary` listening on `port`, with its output in
    /// `<log_dir>/<instance>.log`.
    pub(crate) fn spawn(
        binary: &Path,
        service: Service,
        replica: usize,
        database_url: &str,
        port: u16,
        env: &Environment,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let instance = format!("{}-{replica}", service.binary());
        let log = log_dir.join(format!("{instance}.log"));
        let stdout = File::create(&log)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", log.display()))?;
        let stderr = stdout.try_clone()?;

        let mut command = service_command(binary, service, &instance, database_url, port, env);
        command.stdout(stdout).stderr(stderr);
        let child = command
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", binary.display()))?;
        Ok(Self {
            service,
            replica,
            instance,
            base_url: format!("http://127.0.0.1:{port}"),
            log,
            child,
        })
    }

    /// Polls `GET /health/ready` until it answers 200. Fails at once if the
    /// process exits, quoting the end of its log.
    pub(crate) async fn wait_ready(
        &mut self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let url = format!("{}/health/ready", self.base_url);
        let what = format!("{} to be ready ({url})", self.instance);
        let (child, instance, log) = (&mut self.child, &self.instance, &self.log);
        eventually(&what, timeout, async || {
            if let Some(status) = child.try_wait()? {
                return Err(Exited {
                    instance: instance.clone(),
                    status,
                    log: log.clone(),
                }
                .into());
            }
            Ok(match http.get(&url).send().await {
                Ok(response) if response.status() == StatusCode::OK => Probe::Done(()),
                Ok(response) => Probe::NotYet(format!("HTTP {}", response.status())),
                Err(error) => Probe::NotYet(format!("no answer: {error}")),
            })
        })
        .await
        .map_err(|error| {
            if error.is::<Exited>() {
                error // already quotes the log
            } else {
                anyhow::anyhow!(
                    "{error:#}\nthe end of {}:\n{}",
                    log.display(),
                    tail(log, 20)
                )
            }
        })
    }

    /// Sends `signal` (`TERM`, `KILL`) and waits for the process to exit,
    /// returning how it exited.
    pub(crate) async fn signal(
        &mut self,
        signal: &str,
        timeout: Duration,
    ) -> anyhow::Result<ExitStatus> {
        let pid = self
            .child
            .id()
            .ok_or_else(|| anyhow::anyhow!("{} has already exited", self.instance))?;
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .await?;
        anyhow::ensure!(sent.success(), "kill -{signal} {pid} failed");
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{} did not exit within {timeout:?} of SIG{signal}",
                    self.instance
                )
            })?
            .map_err(Into::into)
    }

    /// Waits for the process to exit by itself (a crash it was told to
    /// have) and returns how it exited.
    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .map_err(|_| anyhow::anyhow!("{} did not exit within {timeout:?}", self.instance))?
            .map_err(Into::into)
    }

    /// Kills the process and waits until it is gone.
    pub(crate) async fn stop(&mut self) -> anyhow::Result<()> {
        self.child
            .kill()
            .await
            .map_err(|e| anyhow::anyhow!("cannot stop {}: {e}", self.instance))
    }

    /// Sends the kill signal without waiting (for `Drop`, which cannot await).
    pub(crate) fn start_kill(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The command that starts `binary` as `instance` with the harness's
/// environment (output not redirected yet).
fn service_command(
    binary: &Path,
    service: Service,
    instance: &str,
    database_url: &str,
    port: u16,
    env: &Environment,
) -> Command {
    let mut command = Command::new(binary);
    // A developer's own OpenTelemetry settings (a service name, a traces
    // endpoint that overrides ours) must not leak into the test.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    command
        .env("DATABASE_URL", database_url)
        .env("AMQP_URL", &env.amqp_url)
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("BROKER_NAMESPACE", &env.broker_namespace)
        .env("RETRY_DELAYS", RETRY_DELAYS)
        .env("ORDER_DEADLINE", &env.order_deadline)
        .env("ADMIN_TOKEN", &env.admin_token)
        .env("FAULTS_ENABLED", env.faults_enabled.to_string())
        // Several processes and tests share one PostgreSQL: keep pools small.
        .env("DATABASE_MAX_CONNECTIONS", "5")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &env.otlp_endpoint)
        // Export every 100 ms instead of every 5 s, so spans arrive quickly.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            format!("service.instance.id={instance}"),
        )
        .env("RUST_LOG", &env.rust_log)
        // Plain text in the log files, no colour escapes.
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if service == Service::Email {
        command.env("SMTP_URL", &env.smtp_url);
    }
    command
}

/// A process ended before it became ready.
#[derive(Debug)]
pub(crate) struct Exited {
    instance: String,
    status: ExitStatus,
    log: PathBuf,
}

impl Exited {
    /// Whether it could not bind its port (another process took the free
    /// port we picked in between): worth one more try on another port.
    pub(crate) fn port_taken(&self) -> bool {
        std::fs::read_to_string(&self.log)
            .is_ok_and(|log| log.contains("cannot listen on HTTP_ADDR"))
    }
}

impl std::fmt::Display for Exited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} exited ({}) before it was ready; the end of {}:\n{}",
            self.instance,
            self.status,
            self.log.display(),
            tail(&self.log, 20)
        )
    }
}

impl std::error::Error for Exited {}

/// A free TCP port on 127.0.0.1, as the OS hands it out. (It is free now;
/// something else can take it before the service binds it, which is what
/// [`Exited::port_taken`] is for.)
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The last `lines` lines of a log file.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}
