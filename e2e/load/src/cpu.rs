//! CPU time read from `/proc`, as `scripts/bench` reads it: utime + stime
//! (all threads) of this process, of the broker (every process of the
//! `rabbitmq` user: `beam.smp`, `epmd`, `erl_child_setup`, …) or of
//! PostgreSQL (every process named `postgres`). Only for servers on this
//! machine; elsewhere there is nothing to read.

use std::path::Path;
use std::time::Duration;

/// Whose CPU time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// This process (the bench's client side).
    ThisProcess,
    /// RabbitMQ: the processes of the `rabbitmq` user.
    Broker,
    /// PostgreSQL: the processes named `postgres`.
    Postgres,
}

/// A reading of a family's CPU time so far.
#[derive(Debug, Clone, Copy)]
pub struct CpuTime {
    ticks: u64,
    per_second: u64,
}

impl CpuTime {
    /// Reads it now; `None` when none of the family's processes is visible.
    pub fn now(family: Family) -> Option<Self> {
        let ticks = match family {
            Family::ThisProcess => cpu_ticks(Path::new("/proc/self/stat")),
            Family::Broker => {
                let uid = rabbitmq_uid()?;
                sum_over_processes(|dir| owner(&dir.join("status")) == Some(uid))
            }
            Family::Postgres => sum_over_processes(|dir| {
                std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == "postgres")
            }),
        }?;
        Some(Self {
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

/// The CPU time of every family at once, to take before and after a run.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot([Option<CpuTime>; 3]);

/// What a run cost each family, per message, in µs (NaN where unknown).
#[derive(Debug, Clone, Copy, Default)]
pub struct PerMessage {
    /// This process.
    pub client_us: f64,
    /// RabbitMQ.
    pub broker_us: f64,
    /// PostgreSQL.
    pub postgres_us: f64,
}

const FAMILIES: [Family; 3] = [Family::ThisProcess, Family::Broker, Family::Postgres];

impl Snapshot {
    /// Reads every family now.
    pub fn now() -> Self {
        Self(FAMILIES.map(CpuTime::now))
    }

    /// Each family's CPU time since `earlier`, per message.
    pub fn per_message_since(&self, earlier: &Self, messages: u32) -> PerMessage {
        let [client_us, broker_us, postgres_us] =
            [0, 1, 2].map(|i| match (earlier.0[i], self.0[i]) {
                (Some(before), Some(after)) => {
                    after.since(&before).as_secs_f64() * 1e6 / f64::from(messages.max(1))
                }
                _ => f64::NAN,
            });
        PerMessage {
            client_us,
            broker_us,
            postgres_us,
        }
    }
}

impl std::ops::AddAssign for PerMessage {
    fn add_assign(&mut self, other: Self) {
        self.client_us += other.client_us;
        self.broker_us += other.broker_us;
        self.postgres_us += other.postgres_us;
    }
}

/// The sum of the CPU ticks of the processes `matches` picks. A process
/// may exit between listing and reading: it is skipped.
fn sum_over_processes(matches: impl Fn(&Path) -> bool) -> Option<u64> {
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let dir = entry.path();
        let is_pid = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if is_pid
            && matches(&dir)
            && let Some(ticks) = cpu_ticks(&dir.join("stat"))
        {
            total = Some(total.unwrap_or(0) + ticks);
        }
    }
    total
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
fn owner(status: &Path) -> Option<u32> {
    let status = std::fs::read_to_string(status).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime from `/proc/<pid>/stat`: fields 14 and 15, counted after
/// the command name (which may contain spaces) in parentheses.
fn cpu_ticks(stat: &Path) -> Option<u64> {
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
