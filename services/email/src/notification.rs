//! What a customer is told: the mail for a confirmed or cancelled order.

use checkout_events::{OrderCancelled, OrderConfirmed};
use serde::Serialize;
use utoipa::ToSchema;

/// Which mail: the `kind` column and the API's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type, ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Kind {
    /// The order is confirmed.
    Confirmation,
    /// The order is cancelled.
    Cancellation,
}

/// A mail to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Which mail it is.
    pub kind: Kind,
    /// The address it goes to.
    pub recipient: String,
    /// Its subject line.
    pub subject: String,
    /// Its plain-text body.
    pub body: String,
}

/// Customers who gave no address get one derived from their id, so the demo
/// always has somewhere to send (the mail catcher accepts anything).
fn recipient(customer_id: &str, email: Option<&str>) -> String {
    match email {
        Some(address) if !address.trim().is_empty() => address.trim().to_owned(),
        _ => format!("{customer_id}@customers.example"),
    }
}

impl Notification {
    /// The confirmation mail.
    pub fn confirmed(event: &OrderConfirmed) -> Self {
        Self {
            kind: Kind::Confirmation,
            recipient: recipient(&event.customer_id, event.customer_email.as_deref()),
            subject: format!("Your order {} is confirmed", event.order_id),
            body: format!(
                "Good news: your order {} is confirmed.\n\nWe charged {} and your items are on their way.\n",
                event.order_id, event.total
            ),
        }
    }

    /// The cancellation notice.
    pub fn cancelled(event: &OrderCancelled) -> Self {
        Self {
            kind: Kind::Cancellation,
            recipient: recipient(&event.customer_id, event.customer_email.as_deref()),
            subject: format!("Your order {} was cancelled", event.order_id),
            body: format!(
                "We are sorry: your order {} was cancelled.\n\nReason: {}\n\nAny payment taken has been refunded.\n",
                event.order_id, event.reason
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkout_events::{Currency, Money, OrderId};

    #[test]
    fn falls_back_to_a_per_customer_address() {
        let event = OrderCancelled {
            order_id: OrderId::new(),
            customer_id: "c-42".to_owned(),
            customer_email: None,
            reason: "payment declined".to_owned(),
        };
        let mail = Notification::cancelled(&event);
        assert_eq!(mail.recipient, "c-42@customers.example");
        assert!(mail.body.contains("payment declined"));
    }

    #[test]
    fn confirmation_states_the_total() {
        let event = OrderConfirmed {
            order_id: OrderId::new(),
            customer_id: "c-42".to_owned(),
            customer_email: Some("ada@example.com".to_owned()),
            total: Money::new(9998, Currency::parse("USD").expect("valid")),
        };
        let mail = Notification::confirmed(&event);
        assert_eq!(mail.recipient, "ada@example.com");
        assert_eq!(mail.kind, Kind::Confirmation);
        assert!(mail.body.contains("99.98 USD"), "{}", mail.body);
    }
}
