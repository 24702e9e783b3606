//! The operator console next to a [`System`]: the real `console-service`
//! binary, started like the services (its own port, its log file in the
//! system's log directory, killed with the test), as the system's own
//! console broker user and with the system's admin token.

use crate::System;
use crate::binaries;
use crate::poll::{Probe, eventually};
use crate::process::{Service, free_port, tail};
use std::fs::File;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::process::{Child, Command};

/// Where the console's trace links point (nothing needs to answer there).
pub const JAEGER_UI_URL: &str = "http://jaeger.invalid:16686";

/// A running console.
#[derive(Debug)]
pub struct Console {
    child: Child,
    port: u16,
    token: String,
    log: PathBuf,
}

impl Console {
    /// `path` on the console, with the admin's credentials in the URL (a
    /// browser then sends them as basic auth, and keeps them for the site).
    pub fn url(&self, path: &str) -> String {
        format!("http://admin:{}@127.0.0.1:{}{path}", self.token, self.port)
    }

    /// `path` on the console, without credentials.
    pub fn plain_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Stops the console.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child
            .kill()
            .await
            .map_err(|e| anyhow::anyhow!("cannot stop the console: {e}"))
    }
}

impl System {
    /// Starts the console against this system's services and broker and
    /// waits until it is ready.
    pub async fn start_console(&self) -> anyhow::Result<Console> {
        let binaries = binaries::ensure_built().await?;
        let port = free_port()?;
        let log = self.log_dir().join("console-service-0.log");
        let stdout = File::create(&log)?;
        let stderr = stdout.try_clone()?;
        let token = self
            .admin_authorization()
            .trim_start_matches("Bearer ")
            .to_owned();
        let mut command = Command::new(binaries.console());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("OTEL_") {
                command.env_remove(name);
            }
        }
        command
            .env("AMQP_URL", self.console_broker_url()?)
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("BROKER_NAMESPACE", self.id())
            .env("ADMIN_TOKEN", &token)
            .env("ORDER_URL", self.url(Service::Order, ""))
            .env("PAYMENT_URL", self.url(Service::Payment, ""))
            .env("INVENTORY_URL", self.url(Service::Inventory, ""))
            .env("EMAIL_URL", self.url(Service::Email, ""))
            .env("JAEGER_UI_URL", JAEGER_UI_URL)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", self.otlp().endpoint())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let url = format!("http://127.0.0.1:{port}/health/ready");
        let http = self.http();
        eventually("the console to be ready", self.timeout(), async || {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("the console exited ({status}):\n{}", tail(&log, 20));
            }
            Ok(match http.get(&url).send().await {
                Ok(response) if response.status().is_success() => Probe::Done(()),
                Ok(response) => Probe::NotYet(format!("HTTP {}", response.status())),
                Err(error) => Probe::NotYet(error.to_string()),
            })
        })
        .await?;
        Ok(Console {
            child,
            port,
            token,
            log,
        })
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!("e2e: the console's log: {}", self.log.display());
        }
    }
}
