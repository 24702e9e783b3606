//! How often and how late a transiently failed message is tried again.
//!
//! Retries go through per-service delay queues (see
//! [`Topology::own_plan`](crate::Topology::own_plan)): the failed delivery
//! is acked and a copy waits in the queue for its delay, whose TTL then
//! dead-letters it back to the work queue. So the messages
//! behind a failing one keep flowing while it waits.

use std::fmt;
use std::time::Duration;

/// The delays before each retry; after the last, the message is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    delays: Vec<Duration>,
}

/// A `RETRY_DELAYS` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected a comma-separated list of delays like \"1s,5s,30s,2m\" (units ms, s, m, h), got {0:?}"
)]
pub struct InvalidRetryPolicy(pub String);

impl Default for RetryPolicy {
    /// 1 s, 5 s, 30 s, 2 min: four retries, five attempts in all.
    fn default() -> Self {
        Self::new(
            [1, 5, 30, 120]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        )
    }
}

impl RetryPolicy {
    /// Retries after each of `delays`, in order (whole milliseconds).
    pub fn new(delays: Vec<Duration>) -> Self {
        Self { delays }
    }

    /// Parses `1s,5s,30s,2m` (units `ms`, `s`, `m`, `h`). An empty list
    /// means no retries: a transient failure is dead-lettered at once.
    pub fn parse(raw: &str) -> Result<Self, InvalidRetryPolicy> {
        let invalid = || InvalidRetryPolicy(raw.to_owned());
        let delays = raw
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                let digits = part.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                let value: u64 = digits.parse().map_err(|_| invalid())?;
                let millis = match &part[digits.len()..] {
                    "ms" => value,
                    "s" => value.saturating_mul(1_000),
                    "m" => value.saturating_mul(60_000),
                    "h" => value.saturating_mul(3_600_000),
                    _ => return Err(invalid()),
                };
                if millis == 0 {
                    return Err(invalid());
                }
                Ok(Duration::from_millis(millis))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { delays })
    }

    /// The delay before retry number `retry` (0-based), or `None` when the
    /// retries are used up.
    pub fn delay(&self, retry: u32) -> Option<Duration> {
        self.delays.get(retry as usize).copied()
    }

    /// Every delay, in order.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// How many times a message is tried in all.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }
}

/// A delay as it appears in queue names: `500ms`, `5s`, `2m`.
pub(crate) struct DelayName(pub(crate) Duration);

impl fmt::Display for DelayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1_000) {
            write!(f, "{}s", ms / 1_000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_delays_with_units() {
        let policy = RetryPolicy::parse("200ms, 1s,2m,1h").expect("valid");
        assert_eq!(
            policy.delays(),
            &[
                Duration::from_millis(200),
                Duration::from_secs(1),
                Duration::from_secs(120),
                Duration::from_secs(3600)
            ]
        );
        assert_eq!(policy.max_attempts(), 5);
        assert_eq!(policy.delay(3), Some(Duration::from_secs(3600)));
        assert_eq!(policy.delay(4), None);
        assert_eq!(RetryPolicy::parse("").expect("valid").max_attempts(), 1);
        for bad in ["1", "5x", "s", "0s", "-1s"] {
            assert!(RetryPolicy::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn delays_name_queues_readably() {
        let names: Vec<String> = RetryPolicy::parse("250ms,5s,2m")
            .expect("valid")
            .delays()
            .iter()
            .map(|d| DelayName(*d).to_string())
            .collect();
        assert_eq!(names, ["250ms", "5s", "2m"]);
    }
}
