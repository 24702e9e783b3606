//! What the Orders page computes from the Order service's answers: the
//! counts by status and how many orders ended in the last minute.
//!
//! The rate is read from the newest orders (`GET /orders`, newest first):
//! an order that ended in the last minute was placed at most a minute plus
//! the Order service's deadline (30 s by default) before now, so the scan
//! stops at orders older than [`SCAN_BACK`] — or after [`SCAN_PAGES`] pages,
//! in which case the page says the count is a lower bound.

use crate::api::OrderSummary;
use chrono::{DateTime, Duration, Utc};

/// The statuses of an order, in the order they are shown.
pub(crate) const STATUSES: [&str; 3] = ["PENDING", "CONFIRMED", "CANCELLED"];

/// The window of the rate.
pub(crate) const WINDOW: Duration = Duration::seconds(60);

/// How far back the scan for the rate looks at orders' creation: the
/// window plus a generous order deadline.
pub(crate) const SCAN_BACK: Duration = Duration::seconds(300);

/// At most this many pages of 100 orders are read for the rate.
pub(crate) const SCAN_PAGES: usize = 5;

/// How many orders reached CONFIRMED and CANCELLED in the last [`WINDOW`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rate {
    pub(crate) confirmed: usize,
    pub(crate) cancelled: usize,
    /// False when the scan stopped at [`SCAN_PAGES`] before reaching
    /// [`SCAN_BACK`]: the counts are then lower bounds.
    pub(crate) complete: bool,
}

impl Rate {
    /// Adds the orders of one page (newest first); returns whether the
    /// scan has gone back far enough.
    pub(crate) fn add(&mut self, page: &[OrderSummary], now: DateTime<Utc>) -> bool {
        for order in page {
            if order.updated_at < now - WINDOW {
                continue;
            }
            match order.status.as_str() {
                "CONFIRMED" => self.confirmed += 1,
                "CANCELLED" => self.cancelled += 1,
                _ => {}
            }
        }
        page.last()
            .is_some_and(|oldest| oldest.created_at < now - SCAN_BACK)
    }
}

/// The `checkout_orders{status="…"}` gauges of a Prometheus text
/// exposition, in [`STATUSES`] order (a status the text lacks counts 0).
pub(crate) fn counts_from_metrics(text: &str) -> Vec<(String, u64)> {
    STATUSES
        .iter()
        .map(|status| {
            let label = format!("status=\"{status}\"");
            let count = text
                .lines()
                .filter(|line| line.starts_with("checkout_orders{") && line.contains(&label))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .map(|value| value.max(0.0) as u64)
                .next()
                .unwrap_or(0);
            ((*status).to_owned(), count)
        })
        .collect()
}

/// The status filter of the Orders page: one of [`STATUSES`], or none.
pub(crate) fn status_filter(raw: Option<&str>) -> Option<&'static str> {
    let raw = raw?.trim();
    STATUSES
        .iter()
        .find(|status| status.eq_ignore_ascii_case(raw))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Amount;

    fn order(status: &str, created_ago: i64, updated_ago: i64, now: DateTime<Utc>) -> OrderSummary {
        OrderSummary {
            id: uuid::Uuid::now_v7(),
            status: status.to_owned(),
            customer_id: "c".to_owned(),
            total: Amount {
                amount: 1,
                currency: "USD".to_owned(),
            },
            created_at: now - Duration::seconds(created_ago),
            updated_at: now - Duration::seconds(updated_ago),
        }
    }

    #[test]
    fn the_rate_counts_orders_that_ended_within_the_window() {
        let now = Utc::now();
        let mut rate = Rate::default();
        let done = rate.add(
            &[
                order("CONFIRMED", 5, 4, now),
                order("PENDING", 10, 10, now),
                order("CANCELLED", 80, 50, now),
                order("CONFIRMED", 90, 89, now),
            ],
            now,
        );
        assert_eq!((rate.confirmed, rate.cancelled), (1, 1));
        assert!(
            !done,
            "orders up to SCAN_BACK old may still have ended just now"
        );
        assert!(rate.add(&[order("CONFIRMED", 400, 399, now)], now));
        assert_eq!(rate.confirmed, 1);
    }

    #[test]
    fn counts_come_from_the_orders_gauge() {
        let text = "# HELP checkout_orders Orders by status\n\
            # TYPE checkout_orders gauge\n\
            checkout_orders{service=\"order-service\",status=\"CONFIRMED\"} 12\n\
            checkout_orders{service=\"order-service\",status=\"PENDING\"} 3\n\
            checkout_orders_timed_out_total{service=\"order-service\"} 7\n";
        assert_eq!(
            counts_from_metrics(text),
            vec![
                ("PENDING".to_owned(), 3),
                ("CONFIRMED".to_owned(), 12),
                ("CANCELLED".to_owned(), 0)
            ]
        );
    }

    #[test]
    fn the_status_filter_takes_known_statuses_only() {
        assert_eq!(status_filter(Some("confirmed")), Some("CONFIRMED"));
        assert_eq!(status_filter(Some("")), None);
        assert_eq!(status_filter(Some("SHIPPED")), None);
        assert_eq!(status_filter(None), None);
    }
}
