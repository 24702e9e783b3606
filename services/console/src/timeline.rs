//! One order's path across the four services, as one list in time order:
//! what the Order service recorded (every event that moved the order),
//! Payment's payment, Inventory's reservation, Email's mails with their
//! attempts, and the order's dead letters in any service's queue.
//!
//! Retries show where a service's API records them: a mail's attempts, a
//! dead letter's attempts. A delivery that Payment or Inventory retried and
//! then handled leaves no record in their APIs (only in the trace and the
//! retry metrics), so it shows as the trace link of the entry it led to.

use crate::api::{Email, Order, Payment, Reservation};
use crate::dead_letters::Letter;
use chrono::{DateTime, Utc};

/// How an entry went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It happened as the saga wants.
    Done,
    /// A refusal: declined, out of stock, cancelled.
    Failed,
    /// Something taken was given back (refund, release).
    Compensated,
    /// It took more than one attempt.
    Retried,
    /// It left the flow for a dead-letter queue.
    DeadLettered,
    /// Not finished yet.
    Pending,
}

impl Outcome {
    /// The word shown (and the CSS class of the row).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::Compensated => "compensated",
            Outcome::Retried => "retried",
            Outcome::DeadLettered => "dead-lettered",
            Outcome::Pending => "pending",
        }
    }
}

/// One row of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) at: DateTime<Utc>,
    /// `order`, `payment`, `inventory` or `email`.
    pub(crate) service: String,
    pub(crate) what: String,
    pub(crate) outcome: Outcome,
    pub(crate) detail: String,
    /// The trace to link: the entry's own, else the order's.
    pub(crate) trace_id: Option<String>,
}

/// What each service said about one order (each part may be missing when
/// its service did not answer; the page says so separately).
#[derive(Debug, Default)]
pub(crate) struct Parts<'a> {
    pub(crate) order: Option<&'a Order>,
    pub(crate) payments: &'a [Payment],
    pub(crate) reservations: &'a [Reservation],
    pub(crate) emails: &'a [Email],
    pub(crate) dead_letters: &'a [(String, Letter)],
}

/// The entries of `parts`, oldest first.
pub(crate) fn merge(parts: &Parts<'_>) -> Vec<Entry> {
    let order_trace = parts.order.and_then(|o| o.trace_id.clone());
    let mut entries = Vec::new();
    if let Some(order) = parts.order {
        entries.extend(order.timeline.iter().map(|event| Entry {
            at: event.occurred_at,
            service: service_of(&event.source),
            what: event.event_type.clone(),
            outcome: event_outcome(&event.event_type),
            detail: String::new(),
            trace_id: event.trace_id.clone(),
        }));
    }
    entries.extend(parts.payments.iter().map(|p| Entry {
        at: p.updated_at,
        service: "payment".to_owned(),
        what: format!("payment {}", p.status),
        outcome: status_outcome(&p.status),
        detail: join([Some(p.amount.to_string()), p.reason.clone()]),
        trace_id: None,
    }));
    entries.extend(parts.reservations.iter().map(reservation_entry));
    entries.extend(parts.emails.iter().map(email_entry));
    entries.extend(
        parts
            .dead_letters
            .iter()
            .map(|(service, letter)| dead_letter_entry(service, letter)),
    );
    for entry in &mut entries {
        if entry.trace_id.is_none() {
            entry.trace_id = order_trace.clone();
        }
    }
    entries.sort_by_key(|e| e.at);
    entries
}

fn reservation_entry(r: &Reservation) -> Entry {
    let items: Vec<String> = r
        .items
        .iter()
        .map(|i| format!("{} × {}", i.quantity, i.sku))
        .collect();
    Entry {
        at: r.updated_at,
        service: "inventory".to_owned(),
        what: format!("reservation {}", r.status),
        outcome: status_outcome(&r.status),
        detail: join([Some(items.join(", ")), r.reason.clone()]),
        trace_id: None,
    }
}

fn dead_letter_entry(service: &str, l: &Letter) -> Entry {
    Entry {
        at: l.failed_time().unwrap_or(DateTime::<Utc>::MIN_UTC),
        service: service.to_owned(),
        what: format!(
            "dead letter: {} ({})",
            l.event_type.as_deref().unwrap_or("?"),
            l.reason.as_deref().unwrap_or("?")
        ),
        outcome: Outcome::DeadLettered,
        detail: join([
            l.attempts.map(|n| format!("after {n} attempt(s)")),
            l.error.clone(),
        ]),
        trace_id: l.trace_id.clone(),
    }
}

fn email_entry(mail: &Email) -> Entry {
    let outcome = match mail.status.as_str() {
        "failed" => Outcome::Failed,
        "pending" => Outcome::Pending,
        _ if mail.attempts > 1 => Outcome::Retried,
        _ => Outcome::Done,
    };
    Entry {
        at: mail.sent_at.unwrap_or(mail.created_at),
        service: "email".to_owned(),
        what: format!("{} mail {}", mail.kind, mail.status),
        outcome,
        detail: join([
            Some(format!("\"{}\" to {}", mail.subject, mail.recipient)),
            (mail.attempts > 1).then(|| format!("{} attempts", mail.attempts)),
            mail.last_error.clone(),
        ]),
        trace_id: None,
    }
}

/// `payment-service` → `payment`.
fn service_of(source: &str) -> String {
    source.strip_suffix("-service").unwrap_or(source).to_owned()
}

fn event_outcome(event_type: &str) -> Outcome {
    if event_type.ends_with("Refunded") || event_type.ends_with("Released") {
        Outcome::Compensated
    } else if event_type.ends_with("Failed") || event_type.ends_with("Cancelled") {
        Outcome::Failed
    } else {
        Outcome::Done
    }
}

fn status_outcome(status: &str) -> Outcome {
    match status {
        "CAPTURED" | "RESERVED" | "COMMITTED" => Outcome::Done,
        "REFUNDED" | "RELEASED" => Outcome::Compensated,
        "PENDING" => Outcome::Pending,
        _ => Outcome::Failed,
    }
}

fn join<const N: usize>(parts: [Option<String>; N]) -> String {
    parts
        .into_iter()
        .flatten()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Amount, OrderEvent};
    use chrono::Duration;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + Duration::seconds(1_800_000_000 + seconds)
    }

    fn order(timeline: Vec<OrderEvent>) -> Order {
        let usd = Amount {
            amount: 100,
            currency: "USD".into(),
        };
        Order {
            status: "CONFIRMED".into(),
            customer_id: "c".into(),
            customer_email: None,
            items: Vec::new(),
            total: usd,
            payment: "CAPTURED".into(),
            inventory: "RESERVED".into(),
            cancel_reason: None,
            trace_id: Some("a".repeat(32)),
            timeline,
            created_at: at(0),
            updated_at: at(3),
        }
    }

    fn event(kind: &str, source: &str, seconds: i64, trace: Option<&str>) -> OrderEvent {
        OrderEvent {
            event_type: kind.into(),
            occurred_at: at(seconds),
            source: source.into(),
            trace_id: trace.map(str::to_owned),
        }
    }

    #[test]
    fn the_services_entries_merge_in_time_order_with_the_orders_trace_as_fallback() {
        let order = order(vec![
            event("OrderCreated", "order-service", 0, None),
            event(
                "PaymentCaptured",
                "payment-service",
                2,
                Some(&"b".repeat(32)),
            ),
            event("OrderConfirmed", "order-service", 4, None),
        ]);
        let payments = [Payment {
            status: "CAPTURED".into(),
            amount: order.total.clone(),
            reason: None,
            updated_at: at(1),
        }];
        let emails = [Email {
            kind: "confirmation".into(),
            recipient: "ada@example.com".into(),
            subject: "Your order".into(),
            status: "sent".into(),
            created_at: at(5),
            sent_at: Some(at(7)),
            attempts: 3,
            last_error: Some("421 try later".into()),
        }];
        let entries = merge(&Parts {
            order: Some(&order),
            payments: &payments,
            emails: &emails,
            ..Parts::default()
        });
        let rows: Vec<(&str, &str, Outcome)> = entries
            .iter()
            .map(|e| (e.service.as_str(), e.what.as_str(), e.outcome))
            .collect();
        assert_eq!(
            rows,
            [
                ("order", "OrderCreated", Outcome::Done),
                ("payment", "payment CAPTURED", Outcome::Done),
                ("payment", "PaymentCaptured", Outcome::Done),
                ("order", "OrderConfirmed", Outcome::Done),
                ("email", "confirmation mail sent", Outcome::Retried),
            ]
        );
        assert_eq!(entries[2].trace_id, Some("b".repeat(32)), "its own trace");
        assert_eq!(entries[0].trace_id, Some("a".repeat(32)), "the order's");
        assert!(
            entries[4].detail.contains("3 attempts"),
            "{}",
            entries[4].detail
        );
    }

    #[test]
    fn refusals_compensations_and_dead_letters_have_their_own_outcomes() {
        assert_eq!(event_outcome("PaymentFailed"), Outcome::Failed);
        assert_eq!(event_outcome("OrderCancelled"), Outcome::Failed);
        assert_eq!(event_outcome("InventoryReleased"), Outcome::Compensated);
        assert_eq!(status_outcome("DECLINED"), Outcome::Failed);
        let letter = Letter {
            message_id: Some("m".into()),
            event_type: Some("PaymentRequested".into()),
            reason: Some("rejected".into()),
            error: Some("boom".into()),
            handler: None,
            attempts: Some(1),
            failed_at: Some("2027-01-15T08:00:00Z".into()),
            routing_key: None,
            order_id: None,
            trace_id: None,
            headers: Vec::new(),
            body: String::new(),
        };
        let dead = [("payment".to_owned(), letter)];
        let entries = merge(&Parts {
            dead_letters: &dead,
            ..Parts::default()
        });
        assert_eq!(entries[0].outcome, Outcome::DeadLettered);
        assert_eq!(entries[0].what, "dead letter: PaymentRequested (rejected)");
        assert_eq!(entries[0].detail, "after 1 attempt(s) · boom");
    }
}
