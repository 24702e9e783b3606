//! The broker's CPU time, read from `/proc` as `scripts/bench` reads it:
//! utime + stime (all threads) of every process of the `rabbitmq` user
//! (`beam.smp`, `epmd`, `erl_child_setup`, `inet_gethost`). Only for a
//! broker on this machine; elsewhere there is nothing to read.

use std::time::Duration;

/// A reading of the broker's CPU time so far.
#[derive(Debug, Clone, Copy)]
pub struct BrokerCpu {
    ticks: u64,
    per_second: u64,
}

impl BrokerCpu {
    /// Reads it now; `None` when no process of a `rabbitmq` user is visible.
    pub fn now() -> Option<Self> {
        let uid = rabbitmq_uid()?;
        let mut ticks = 0;
        let mut seen = false;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let dir = entry.path();
            if dir
                .file_name()
                .and_then(|n| n.to_str())
                .is_none_or(|n| !n.bytes().all(|b| b.is_ascii_digit()))
            {
                continue;
            }
            // A process may exit between listing and reading: skip it.
            if owner(&dir.join("status")) == Some(uid)
                && let Some(t) = cpu_ticks(&dir.join("stat"))
            {
                ticks += t;
                seen = true;
            }
        }
        seen.then(|| Self {
            ticks,
            per_second: clock_ticks_per_second(),
        })
    }

    /// The CPU time spent between `earlier` and this reading. Processes
    /// started in between count whole; ones that exited are lost.
    pub fn since(&self, earlier: &Self) -> Duration {
        let ticks = self.ticks.saturating_sub(earlier.ticks);
        Duration::from_secs_f64(ticks as f64 / self.per_second.max(1) as f64)
    }
}

fn rabbitmq_uid() -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some("rabbitmq"))
            .then(|| fields.nth(1)?.parse().ok())
            .flatten()
    })
}

/// The real uid from `/proc/<pid>/status`.
fn owner(status: &std::path::Path) -> Option<u32> {
    let status = std::fs::read_to_string(status).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime from `/proc/<pid>/stat`: fields 14 and 15, counted after
/// the command name (which may contain spaces) in parentheses.
fn cpu_ticks(stat: &std::path::Path) -> Option<u64> {
    let stat = std::fs::read_to_string(stat).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `getconf CLK_TCK`, 100 (Linux's usual value) if it cannot be run.
fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}
