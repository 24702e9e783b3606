//! The services' fault switches, as an operator flips them: `PUT /faults`
//! on every replica of a service (switches are per process), the count of
//! faults injected from `/metrics`, and the wait for a process that a
//! switch told to crash.

use super::System;
use crate::process::Service;
use anyhow::Context as _;
use serde_json::Value;
use std::process::ExitStatus;

impl System {
    /// `PUT /faults` with `change` (`{"name": "delay", "on": true,
    /// "latency_ms": 200}`) on every replica of `service`, requiring 200;
    /// returns the first replica's answer (all its switches).
    pub async fn switch_fault(&self, service: Service, change: &Value) -> anyhow::Result<Value> {
        let mut answers = Vec::new();
        for process in self.processes.iter().filter(|p| p.service == service) {
            let url = format!("{}/faults", process.base_url);
            let response = self
                .http()
                .put(&url)
                .header("authorization", self.admin_authorization())
                .json(change)
                .send()
                .await
                .with_context(|| format!("PUT {url}"))?;
            let status = response.status();
            let body: Value = response.json().await?;
            anyhow::ensure!(
                status.is_success(),
                "PUT {url} {change} answered {status}: {body}"
            );
            answers.push(body);
        }
        answers
            .into_iter()
            .next()
            .context("no process of the service runs")
    }

    /// Faults injected by the switch `switch` of `service`, summed over its
    /// replicas (`checkout_faults_injected_total`; a restarted process
    /// starts again from 0).
    pub async fn faults_injected(&self, service: Service, switch: &str) -> anyhow::Result<u64> {
        let label = format!("switch=\"{switch}\"");
        let total = self
            .metric(service, "checkout_faults_injected_total", &label)
            .await?;
        Ok(total as u64)
    }

    /// The sum of the series of the metric `name` whose labels contain
    /// `label` (`outcome="duplicate"`), over the `/metrics` of every
    /// replica of `service`.
    pub async fn metric(&self, service: Service, name: &str, label: &str) -> anyhow::Result<f64> {
        let mut total = 0.0;
        for process in self.processes.iter().filter(|p| p.service == service) {
            let url = format!("{}/metrics", process.base_url);
            let text = self
                .http()
                .get(&url)
                .send()
                .await
                .with_context(|| format!("GET {url}"))?
                .text()
                .await?;
            total += sum_of(&text, name, label);
        }
        Ok(total)
    }

    /// Waits until replica `replica` of `service` exits by itself (as
    /// `crash_before_ack` makes it) and returns how it exited.
    pub async fn wait_for_exit(
        &mut self,
        service: Service,
        replica: usize,
    ) -> anyhow::Result<ExitStatus> {
        let timeout = self.timeout();
        self.process_mut(service, replica)?.wait_exit(timeout).await
    }
}

/// The sum of the series of `name` whose labels contain `label` in a
/// Prometheus text exposition; 0 when there is none.
fn sum_of(exposition: &str, name: &str, label: &str) -> f64 {
    let prefix = format!("{name}{{");
    exposition
        .lines()
        .filter(|line| line.starts_with(&prefix) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_is_summed_over_the_series_with_the_label() {
        let exposition = "\
# TYPE checkout_faults_injected_total counter
checkout_faults_injected_total{service=\"payment-service\",switch=\"decline\"} 7
checkout_faults_injected_total{service=\"payment-service\",switch=\"delay\"} 3
checkout_fault_switch_on{service=\"payment-service\",switch=\"decline\"} 1
";
        let injected = |switch: &str| {
            let label = format!("switch=\"{switch}\"");
            sum_of(exposition, "checkout_faults_injected_total", &label)
        };
        assert_eq!(injected("decline"), 7.0);
        assert_eq!(injected("delay"), 3.0);
        assert_eq!(injected("crash_before_ack"), 0.0);
        assert_eq!(
            sum_of(exposition, "checkout_faults_injected_total", ""),
            10.0
        );
    }
}
