//! The services' answers as the console reads them: only the fields it
//! shows, so a field a service adds later changes nothing here (no
//! `deny_unknown_fields`: the console is a reader of four APIs, not their
//! contract test).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Money: minor units and an ISO 4217 code.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Amount {
    pub(crate) amount: i64,
    pub(crate) currency: String,
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.amount < 0 { "-" } else { "" };
        let minor = self.amount.unsigned_abs();
        write!(
            f,
            "{sign}{}.{:02} {}",
            minor / 100,
            minor % 100,
            self.currency
        )
    }
}

/// One order in `GET /orders`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct OrderSummary {
    pub(crate) id: Uuid,
    pub(crate) status: String,
    pub(crate) customer_id: String,
    pub(crate) total: Amount,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

/// A page of `GET /orders`, newest first.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct OrderPage {
    pub(crate) items: Vec<OrderSummary>,
    #[serde(default)]
    pub(crate) next_cursor: Option<String>,
}

/// `GET /orders/{id}`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Order {
    pub(crate) status: String,
    pub(crate) customer_id: String,
    #[serde(default)]
    pub(crate) customer_email: Option<String>,
    pub(crate) items: Vec<Line>,
    pub(crate) total: Amount,
    pub(crate) payment: String,
    pub(crate) inventory: String,
    #[serde(default)]
    pub(crate) cancel_reason: Option<String>,
    #[serde(default)]
    pub(crate) trace_id: Option<String>,
    #[serde(default)]
    pub(crate) timeline: Vec<OrderEvent>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

/// One line of an order.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Line {
    pub(crate) sku: String,
    pub(crate) quantity: i64,
    pub(crate) unit_price: Amount,
}

/// One event of the Order service's timeline of an order.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct OrderEvent {
    #[serde(rename = "type")]
    pub(crate) event_type: String,
    pub(crate) occurred_at: DateTime<Utc>,
    /// The emitting binary, e.g. `payment-service`.
    pub(crate) source: String,
    #[serde(default)]
    pub(crate) trace_id: Option<String>,
}

/// `GET /payments?order_id=`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Payment {
    pub(crate) status: String,
    pub(crate) amount: Amount,
    #[serde(default)]
    pub(crate) reason: Option<String>,
    pub(crate) updated_at: DateTime<Utc>,
}

/// `GET /reservations?order_id=`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Reservation {
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) reason: Option<String>,
    pub(crate) items: Vec<ReservedItem>,
    pub(crate) updated_at: DateTime<Utc>,
}

/// One reserved line.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ReservedItem {
    pub(crate) sku: String,
    pub(crate) quantity: i64,
}

/// `GET /emails?order_id=`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Email {
    pub(crate) kind: String,
    pub(crate) recipient: String,
    pub(crate) subject: String,
    pub(crate) status: String,
    pub(crate) created_at: DateTime<Utc>,
    #[serde(default)]
    pub(crate) sent_at: Option<DateTime<Utc>>,
    pub(crate) attempts: i32,
    #[serde(default)]
    pub(crate) last_error: Option<String>,
}

/// `GET /faults` (and the answer of `PUT /faults`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Faults {
    pub(crate) switches: Vec<Switch>,
}

/// One fault switch: its parameter, if it takes one, is its current value.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Switch {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) description: String,
    pub(crate) on: bool,
    #[serde(default)]
    pub(crate) percent: Option<u8>,
    #[serde(default)]
    pub(crate) pattern: Option<String>,
    #[serde(default)]
    pub(crate) latency_ms: Option<u64>,
}

/// The body of `PUT /faults`: a parameter the form left empty is omitted,
/// so the switch keeps its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SwitchChange {
    pub(crate) name: String,
    pub(crate) on: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) percent: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pattern: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) latency_ms: Option<u64>,
}

/// A problem+json answer, as much of it as a person needs to read.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Problem {
    #[serde(default)]
    pub(crate) title: String,
    #[serde(default)]
    pub(crate) detail: Option<String>,
    #[serde(default)]
    pub(crate) errors: Vec<FieldError>,
}

/// One invalid field of a problem.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct FieldError {
    pub(crate) field: String,
    pub(crate) message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        for error in &self.errors {
            write!(f, "; {} {}", error.field, error.message)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_as_money() {
        let amount = |amount| Amount {
            amount,
            currency: "USD".into(),
        };
        assert_eq!(amount(4999).to_string(), "49.99 USD");
        assert_eq!(amount(5).to_string(), "0.05 USD");
        assert_eq!(amount(-150).to_string(), "-1.50 USD");
    }

    #[test]
    fn a_switch_change_omits_the_parameters_left_empty() {
        let change = SwitchChange {
            name: "fail_permanent".into(),
            on: true,
            percent: None,
            pattern: Some("fail-*".into()),
            latency_ms: None,
        };
        assert_eq!(
            serde_json::to_value(&change).expect("json"),
            serde_json::json!({"name": "fail_permanent", "on": true, "pattern": "fail-*"})
        );
    }

    #[test]
    fn a_problem_reads_as_one_line() {
        let problem: Problem = serde_json::from_value(serde_json::json!({
            "type": "/problems/validation", "title": "Invalid request", "status": 422,
            "errors": [{"field": "percent", "message": "must be 0 to 100"}]
        }))
        .expect("a problem");
        assert_eq!(
            problem.to_string(),
            "Invalid request; percent must be 0 to 100"
        );
    }
}
