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
pub(crate) mod delivery;
mod glob;

pub use glob::glob_matches;

use crate::http::FieldError;
use serde::Serialize;
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

/// The longest `delay` a switch accepts: a delivery holds its transaction
/// (and a pooled connection) that long, and shutdown waits for it.
pub const MAX_LATENCY_MS: u32 = 30_000;
/// The longest `pattern` a switch accepts.
pub const MAX_PATTERN_CHARS: usize = 200;

/// One kind of fault. The order is the order of a board's listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Switch {
    /// Payment: the provider declines this percentage of payments.
    Decline,
    /// Email: the SMTP server refuses every send temporarily.
    SmtpRefuse,
    /// This percentage of deliveries fail with a transient error.
    FailTransient,
    /// Deliveries whose event's `customer_id` matches the pattern fail
    /// permanently.
    FailPermanent,
    /// Each delivery's handling waits this long first.
    Delay,
    /// The process exits with code 70 after committing a delivery and
    /// before acking it.
    CrashBeforeAck,
}

/// The parameter a switch takes, with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Parameter {
    None,
    /// 0–100.
    Percent(u8),
    /// A glob over `customer_id` (see [`glob_matches`]).
    Pattern(String),
    LatencyMs(u32),
}

impl Switch {
    /// Every switch there is.
    pub const ALL: [Switch; 6] = [
        Switch::Decline,
        Switch::SmtpRefuse,
        Switch::FailTransient,
        Switch::FailPermanent,
        Switch::Delay,
        Switch::CrashBeforeAck,
    ];

    /// Its name in the API, the logs and the metrics' `switch` label.
    pub fn name(self) -> &'static str {
        match self {
            Switch::Decline => "decline",
            Switch::SmtpRefuse => "smtp_refuse",
            Switch::FailTransient => "fail_transient",
            Switch::FailPermanent => "fail_permanent",
            Switch::Delay => "delay",
            Switch::CrashBeforeAck => "crash_before_ack",
        }
    }

    /// The switch called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Switch> {
        Switch::ALL.into_iter().find(|s| s.name() == name)
    }

    /// What it does, for the console.
    pub fn description(self) -> &'static str {
        match self {
            Switch::Decline => "Declines this percentage of payments.",
            Switch::SmtpRefuse => {
                "The SMTP server refuses every mail temporarily; the sender retries with backoff."
            }
            Switch::FailTransient => {
                "This percentage of deliveries fail transiently and are retried through the delay queues."
            }
            Switch::FailPermanent => {
                "Deliveries whose event's customer_id matches the pattern (* = any characters) fail permanently and are dead-lettered."
            }
            Switch::Delay => "Each delivery's handling waits this long first.",
            Switch::CrashBeforeAck => {
                "The process exits (code 70) right after committing a delivery and before acking it; the broker redelivers it."
            }
        }
    }

    /// The parameter it takes, at its starting value.
    fn default_parameter(self) -> Parameter {
        match self {
            Switch::Decline | Switch::FailTransient => Parameter::Percent(100),
            Switch::FailPermanent => Parameter::Pattern("fail-*".to_owned()),
            Switch::Delay => Parameter::LatencyMs(500),
            Switch::SmtpRefuse | Switch::CrashBeforeAck => Parameter::None,
        }
    }
}

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

/// A requested change of one switch: `PUT /faults`' body, read as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// The switch's name.
    #[schema(example = "decline")]
    pub name: String,
    /// On or off; omitted, it stays as it is.
    pub on: Option<bool>,
    /// For a percentage switch: 0–100.
    pub percent: Option<i64>,
    /// For `fail_permanent`: a glob over `customer_id`.
    pub pattern: Option<String>,
    /// For `delay`: milliseconds, 0–30000.
    pub latency_ms: Option<i64>,
}

/// A board as `GET /faults` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Document {
    /// The service's short name (`payment`).
    pub service: String,
    /// Its switches, in a fixed order.
    pub switches: Vec<SwitchView>,
}

/// One switch as `GET /faults` shows it: the parameter fields appear only
/// on the switches that take them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SwitchView {
    /// Its name.
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    /// Whether it is on.
    pub on: bool,
    /// The percentage, for a percentage switch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    /// The `customer_id` glob, for `fail_permanent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The latency in milliseconds, for `delay`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u32>,
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

/// The parameter `change` asks for, checked against what the switch takes
/// (`current`); omitted, the current value.
fn validate(current: &Parameter, change: &Change) -> Result<Parameter, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut refuse = |field: &str, given: bool| {
        if given {
            errors.push(FieldError::new(
                field,
                format!("the switch {} takes no {field}", change.name),
            ));
        }
    };
    refuse(
        "percent",
        change.percent.is_some() && !matches!(current, Parameter::Percent(_)),
    );
    refuse(
        "pattern",
        change.pattern.is_some() && !matches!(current, Parameter::Pattern(_)),
    );
    refuse(
        "latency_ms",
        change.latency_ms.is_some() && !matches!(current, Parameter::LatencyMs(_)),
    );
    let parameter = match (current, change) {
        (
            Parameter::Percent(_),
            Change {
                percent: Some(p), ..
            },
        ) => match u8::try_from(*p) {
            Ok(p) if p <= 100 => Parameter::Percent(p),
            _ => {
                errors.push(FieldError::new(
                    "percent",
                    "must be an integer from 0 to 100",
                ));
                current.clone()
            }
        },
        (
            Parameter::Pattern(_),
            Change {
                pattern: Some(p), ..
            },
        ) => {
            if p.is_empty()
                || p.chars().count() > MAX_PATTERN_CHARS
                || p.chars().any(char::is_control)
            {
                errors.push(FieldError::new(
                    "pattern",
                    format!("must be 1–{MAX_PATTERN_CHARS} characters, no control characters"),
                ));
            }
            Parameter::Pattern(p.clone())
        }
        (
            Parameter::LatencyMs(_),
            Change {
                latency_ms: Some(ms),
                ..
            },
        ) => match u32::try_from(*ms) {
            Ok(ms) if ms <= MAX_LATENCY_MS => Parameter::LatencyMs(ms),
            _ => {
                errors.push(FieldError::new(
                    "latency_ms",
                    format!("must be an integer from 0 to {MAX_LATENCY_MS}"),
                ));
                current.clone()
            }
        },
        _ => current.clone(),
    };
    if errors.is_empty() {
        Ok(parameter)
    } else {
        Err(errors)
    }
}

fn view(setting: &Setting) -> SwitchView {
    let (mut percent, mut pattern, mut latency_ms) = (None, None, None);
    match &setting.parameter {
        Parameter::None => {}
        Parameter::Percent(p) => percent = Some(*p),
        Parameter::Pattern(p) => pattern = Some(p.clone()),
        Parameter::LatencyMs(ms) => latency_ms = Some(*ms),
    }
    SwitchView {
        name: setting.switch.name(),
        description: setting.switch.description(),
        on: setting.on,
        percent,
        pattern,
        latency_ms,
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
