//! What a run measured: counters and HDR latency histograms, and the two
//! ways of reporting them (a table for people, JSON for scripts).
//!
//! Latencies are recorded in microseconds from the moment the order was
//! *due* (its slot in an open loop, the previous order's end in a closed
//! one), so a stalled client still shows up in the tail instead of quietly
//! sending less (coordinated omission).

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// One latency distribution.
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

impl Latency {
    /// An empty histogram from 1 µs to one hour, three significant digits.
    pub fn new() -> Self {
        // The bounds are constants that hdrhistogram accepts; a failure here
        // would be a programming error caught by the first test.
        #[allow(clippy::expect_used)]
        let histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        Self(histogram)
    }

    /// Records one duration (saturating at the upper bound).
    pub fn record(&mut self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.max(1));
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The value at `quantile` (0–1), in milliseconds.
    pub fn ms(&self, quantile: f64) -> f64 {
        // Microseconds to milliseconds for display; precision is the histogram's.
        self.0.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// The largest recorded value, in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.0.max() as f64 / 1000.0
    }

    fn json(&self) -> Value {
        json!({
            "count": self.count(),
            "p50_ms": self.ms(0.50),
            "p90_ms": self.ms(0.90),
            "p99_ms": self.ms(0.99),
            "max_ms": self.max_ms(),
        })
    }
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything one run counted.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// POSTs answered `202 Accepted`.
    pub accepted: u64,
    /// Accepted orders whose final state arrived while the load ran.
    pub final_during_load: u64,
    /// Orders that reached CONFIRMED.
    pub confirmed: u64,
    /// Orders that reached CANCELLED.
    pub cancelled: u64,
    /// Orders that ended other than their kind says they must (a good order
    /// cancelled, a declined one confirmed).
    pub unexpected: u64,
    /// Failed POSTs, by status code or transport error.
    pub errors: BTreeMap<String, u64>,
    /// Open loop only: slots skipped because `max_in_flight` POSTs were
    /// already outstanding (the client, or the service, could not keep up).
    pub skipped: u64,
    /// Accepted orders still not final when the run gave up waiting.
    pub not_final: u64,
    /// POST round trip.
    pub post: Latency,
    /// POST sent → final state seen, whatever the state.
    pub to_final: Latency,
    /// POST sent → CONFIRMED.
    pub to_confirmed: Latency,
    /// POST sent → CANCELLED.
    pub to_cancelled: Latency,
}

impl Stats {
    /// Orders that reached a final state.
    pub fn finals(&self) -> u64 {
        self.confirmed + self.cancelled
    }

    /// Failed POSTs of every kind.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// A finished run and how it was driven.
#[derive(Debug, Clone)]
pub struct Report {
    /// `"open"` or `"closed"`.
    pub mode: &'static str,
    /// The open loop's target rate, or the closed loop's client count.
    pub load: f64,
    /// How long orders were placed.
    pub duration: Duration,
    /// The counters and histograms.
    pub stats: Stats,
}

impl Report {
    fn per_second(&self, count: u64) -> f64 {
        count as f64 / self.duration.as_secs_f64().max(f64::EPSILON)
    }

    /// Accepted orders per second of load.
    pub fn accepted_per_second(&self) -> f64 {
        self.per_second(self.stats.accepted)
    }

    /// Orders per second that reached a final state while the load ran:
    /// the throughput the system sustained, backlog excluded.
    pub fn final_per_second(&self) -> f64 {
        self.per_second(self.stats.final_during_load)
    }

    /// The report as one JSON object (`--json`).
    pub fn json(&self) -> Value {
        let s = &self.stats;
        json!({
            "mode": self.mode,
            "load": self.load,
            "duration_s": self.duration.as_secs_f64(),
            "accepted": s.accepted,
            "accepted_per_s": self.accepted_per_second(),
            "final_during_load": s.final_during_load,
            "final_per_s": self.final_per_second(),
            "confirmed": s.confirmed,
            "cancelled": s.cancelled,
            "unexpected_outcome": s.unexpected,
            "errors": s.error_count(),
            "errors_by_kind": s.errors,
            "skipped": s.skipped,
            "not_final": s.not_final,
            "latency": {
                "post": s.post.json(),
                "post_to_final": s.to_final.json(),
                "post_to_confirmed": s.to_confirmed.json(),
                "post_to_cancelled": s.to_cancelled.json(),
            },
        })
    }

    /// The report as a table for a terminal.
    pub fn table(&self) -> String {
        let s = &self.stats;
        let mut out = String::new();
        let load = match self.mode {
            "open" => format!("open loop at {:.0} orders/s", self.load),
            _ => format!("closed loop with {:.0} clients", self.load),
        };
        let _ = writeln!(out, "{load} for {:.0} s\n", self.duration.as_secs_f64());
        let _ = writeln!(
            out,
            "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "p50", "p90", "p99", "max"
        );
        for (name, latency) in [
            ("POST", &s.post),
            ("POST -> final", &s.to_final),
            ("POST -> CONFIRMED", &s.to_confirmed),
            ("POST -> CANCELLED", &s.to_cancelled),
        ] {
            let _ = writeln!(
                out,
                "{name:<22} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                latency.count(),
                latency.ms(0.50),
                latency.ms(0.90),
                latency.ms(0.99),
                latency.max_ms()
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "accepted              {:>9}  ({:.1}/s)",
            s.accepted,
            self.accepted_per_second()
        );
        let _ = writeln!(
            out,
            "final during load     {:>9}  ({:.1}/s)",
            s.final_during_load,
            self.final_per_second()
        );
        let _ = writeln!(
            out,
            "confirmed / cancelled {:>9} / {}",
            s.confirmed, s.cancelled
        );
        let _ = writeln!(out, "unexpected outcome    {:>9}", s.unexpected);
        let errors = if s.errors.is_empty() {
            String::new()
        } else {
            format!("  {:?}", s.errors)
        };
        let _ = writeln!(out, "POST errors           {:>9}{errors}", s.error_count());
        if self.mode == "open" {
            let _ = writeln!(out, "skipped (in flight)   {:>9}", s.skipped);
        }
        let _ = writeln!(out, "not final by deadline {:>9}", s.not_final);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_back_in_milliseconds() {
        let mut latency = Latency::new();
        for ms in 1..=100 {
            latency.record(Duration::from_millis(ms));
        }
        assert_eq!(latency.count(), 100);
        assert!((latency.ms(0.5) - 50.0).abs() < 0.1);
        assert!((latency.max_ms() - 100.0).abs() < 0.1);
    }

    #[test]
    fn rates_are_per_second_of_load() {
        let report = Report {
            mode: "open",
            load: 10.0,
            duration: Duration::from_secs(4),
            stats: Stats {
                accepted: 40,
                final_during_load: 20,
                ..Stats::default()
            },
        };
        assert!((report.accepted_per_second() - 10.0).abs() < 1e-9);
        assert!((report.final_per_second() - 5.0).abs() < 1e-9);
        assert_eq!(report.json()["final_per_s"], 5.0);
    }
}
