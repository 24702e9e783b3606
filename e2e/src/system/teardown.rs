//! Stopping a [`System`] and removing what it created: its processes,
//! broker names and users, databases and (for a passing test) its logs —
//! at [`System::shutdown`], or best-effort on drop when a test failed.

use super::{Options, System};
use crate::process::tail;
use crate::resources::{delete_broker_users, delete_topology, drop_database};
use anyhow::Context as _;
use std::time::Duration;

impl System {
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
    pub(super) async fn stop_and_clean(&mut self) -> anyhow::Result<()> {
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
