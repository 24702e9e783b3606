//! The kinds of fault, what each is called and does, and the parameter
//! each takes.

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
pub(super) enum Parameter {
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
    pub(super) fn default_parameter(self) -> Parameter {
        match self {
            Switch::Decline | Switch::FailTransient => Parameter::Percent(100),
            Switch::FailPermanent => Parameter::Pattern("fail-*".to_owned()),
            Switch::Delay => Parameter::LatencyMs(500),
            Switch::SmtpRefuse | Switch::CrashBeforeAck => Parameter::None,
        }
    }
}
