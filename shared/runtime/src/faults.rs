//! Fault switches: failures an operator switches on while the system runs,
//! to watch the retries, dead letters, compensations and duplicates the
//! design promises to survive — in the console, in Jaeger, in Grafana.
//!
//! Each service has a board of [`Switch`]es: `delay` and
//! `crash_before_ack` on every service, the others where the service
//! offers them ([`Runtime::offer_faults`](crate::Runtime::offer_faults)).
//! The board lives in memory, per process, and starts with every switch
//! off; it is served at `GET/PUT /faults` ([`api`]) behind the admin token
//! and only when `FAULTS_ENABLED=true` — production leaves it unset, and
//! then nothing can switch a fault on. Every change is logged at WARN and
//! every injection is logged and counted:
//!
//! - `checkout_fault_switch_on{switch}`: 1 while a switch is on;
//! - `checkout_faults_injected_total{switch}`: faults injected.
//!
//! Where the faults strike: the delivery faults in a wrapper around the
//! service's consumer handler ([`delivery`]); `decline` in Payment's
//! provider decision; `smtp_refuse` in Email's sender. This module owns
//! the state and the decisions, not the failure modes themselves.

pub(crate) mod api;
mod change;
pub(crate) mod delivery;
mod glob;
mod switch;

pub use change::{Change, Document, SwitchView};
pub use glob::glob_matches;
pub use switch::{MAX_LATENCY_MS, MAX_PATTERN_CHARS, Switch};

use change::{validate, view};
use switch::Parameter;

use crate::http::FieldError;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// 1 while a switch is on, by `switch`.
pub const SWITCH_ON: &str = "checkout_fault_switch_on";
/// Faults injected, by `switch`.
pub const INJECTED: &str = "checkout_faults_injected_total";

/// The exit code of `crash_before_ack`: EX_SOFTWARE, so an orchestrator
/// restarts the process as it would after any crash.
pub const CRASH_EXIT_CODE: i32 = 70;

/// A source of random numbers: each call returns a fresh `u64`. Tests
/// inject a fixed sequence.
pub type Random = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A switch's state.
#[derive(Debug, Clone)]
struct Setting {
    switch: Switch,
    on: bool,
    parameter: Parameter,
}

struct Board {
    service: &'static str,
    enabled: bool,
    settings: Mutex<Vec<Setting>>,
    random: Random,
}

/// A service's board of fault switches. Cheap to clone: clones share the
/// state. The default board is disabled and offers nothing, so whatever
/// holds it never injects a fault (what a handler built in a test gets).
#[derive(Clone)]
pub struct Faults(Arc<Board>);

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("service", &self.0.service)
            .field("enabled", &self.0.enabled)
            .finish_non_exhaustive()
    }
}

impl Default for Faults {
    fn default() -> Self {
        Self::new("", false)
    }
}

impl Faults {
    /// The board of `service` (its short name), offering `delay` and
    /// `crash_before_ack`, every switch off. Unless `enabled`
    /// (`FAULTS_ENABLED`), no switch can be turned on.
    pub fn new(service: &'static str, enabled: bool) -> Self {
        Self::with_random(service, enabled, Arc::new(random))
    }

    /// [`Faults::new`] drawing percentages from `random`.
    pub fn with_random(service: &'static str, enabled: bool, random: Random) -> Self {
        let board = Self(Arc::new(Board {
            service,
            enabled,
            settings: Mutex::new(Vec::new()),
            random,
        }));
        if !service.is_empty() {
            board.offer(&[Switch::Delay, Switch::CrashBeforeAck]);
        }
        board
    }

    /// Adds `switches` to the board (off); one already there stays as it is.
    pub fn offer(&self, switches: &[Switch]) {
        let mut settings = self.settings();
        for &switch in switches {
            if !settings.iter().any(|s| s.switch == switch) {
                settings.push(Setting {
                    switch,
                    on: false,
                    parameter: switch.default_parameter(),
                });
                // Both series from the start, so a dashboard's rate() has
                // a zero to start from.
                metrics::gauge!(SWITCH_ON, "switch" => switch.name()).set(0.0);
                metrics::counter!(INJECTED, "switch" => switch.name()).increment(0);
            }
        }
        settings.sort_by_key(|s| s.switch);
    }

    /// Whether `FAULTS_ENABLED=true`: the API answers and switches may go on.
    pub fn is_enabled(&self) -> bool {
        self.0.enabled
    }

    /// Whether `switch` strikes now: it is on and, for a percentage
    /// switch, this call falls within the percentage. A strike is logged
    /// and counted.
    pub fn strikes(&self, switch: Switch) -> bool {
        let Some(parameter) = self.parameter_if_on(switch) else {
            return false;
        };
        let strikes = match parameter {
            Parameter::Percent(percent) => within(percent, (self.0.random)()),
            Parameter::None => true,
            Parameter::Pattern(_) | Parameter::LatencyMs(_) => false,
        };
        if strikes {
            injected(switch, "");
        }
        strikes
    }

    /// Whether the pattern switch `switch` is on and its pattern matches
    /// `subject` (a `customer_id`); a strike is logged and counted.
    pub fn strikes_on(&self, switch: Switch, subject: &str) -> bool {
        let strikes = matches!(
            self.parameter_if_on(switch),
            Some(Parameter::Pattern(pattern)) if glob_matches(&pattern, subject)
        );
        if strikes {
            injected(switch, subject);
        }
        strikes
    }

    /// The latency of `delay` while it is on (counted as a strike).
    pub fn latency(&self) -> Option<Duration> {
        match self.parameter_if_on(Switch::Delay)? {
            Parameter::LatencyMs(ms) => {
                injected(Switch::Delay, "");
                Some(Duration::from_millis(u64::from(ms)))
            }
            _ => None,
        }
    }

    /// The board as `GET /faults` shows it.
    pub fn document(&self) -> Document {
        let switches = self.settings().iter().map(view).collect();
        Document {
            service: self.0.service.to_owned(),
            switches,
        }
    }

    /// Applies `change` (all of it, or nothing: every invalid field is
    /// reported) and returns the board as it is now. The change is logged
    /// at WARN with its parameters.
    pub fn apply(&self, change: &Change) -> Result<Document, Vec<FieldError>> {
        let mut settings = self.settings();
        let Some(setting) = Switch::from_name(&change.name)
            .and_then(|switch| settings.iter_mut().find(|s| s.switch == switch))
        else {
            let offered: Vec<&str> = settings.iter().map(|s| s.switch.name()).collect();
            return Err(vec![FieldError::new(
                "name",
                format!(
                    "{:?} is not a switch of this service; it has {}",
                    change.name,
                    offered.join(", ")
                ),
            )]);
        };
        let parameter = validate(&setting.parameter, change)?;
        setting.parameter = parameter;
        setting.on = change.on.unwrap_or(setting.on);
        let shown = view(setting);
        metrics::gauge!(SWITCH_ON, "switch" => setting.switch.name()).set(if setting.on {
            1.0
        } else {
            0.0
        });
        tracing::warn!(
            switch = shown.name,
            on = shown.on,
            percent = shown.percent,
            pattern = shown.pattern,
            latency_ms = shown.latency_ms,
            "fault switch {} turned {}",
            shown.name,
            if shown.on { "on" } else { "off" }
        );
        drop(settings);
        Ok(self.document())
    }

    fn settings(&self) -> std::sync::MutexGuard<'_, Vec<Setting>> {
        // A panic while holding the lock leaves consistent data (every
        // write is a single assignment): carry on.
        self.0
            .settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn parameter_if_on(&self, switch: Switch) -> Option<Parameter> {
        if !self.0.enabled {
            return None;
        }
        self.settings()
            .iter()
            .find(|s| s.switch == switch && s.on)
            .map(|s| s.parameter.clone())
    }
}

/// Whether a draw of `roll` falls within `percent` of all draws.
fn within(percent: u8, roll: u64) -> bool {
    roll % 100 < u64::from(percent)
}

/// Logs and counts one injected fault (`subject`: what it matched, if anything).
fn injected(switch: Switch, subject: &str) {
    metrics::counter!(INJECTED, "switch" => switch.name()).increment(1);
    match switch {
        Switch::Delay => tracing::info!(switch = switch.name(), "fault injected"),
        _ => tracing::warn!(switch = switch.name(), subject, "fault injected"),
    }
}

/// A random `u64` from the standard library's randomly keyed hasher.
fn random() -> u64 {
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one(DRAWS.fetch_add(1, Ordering::Relaxed))
}

/// Registers the metrics' descriptions.
pub(crate) fn describe() {
    metrics::describe_gauge!(SWITCH_ON, "1 while a fault switch is on, by switch");
    metrics::describe_counter!(INJECTED, "Faults injected by the fault switches, by switch");
}

#[cfg(test)]
mod tests;
