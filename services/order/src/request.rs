//! The body of `POST /orders`, and turning it into a [`NewOrder`] — or into
//! a list of every field that is wrong, so a client fixes them all at once.

use checkout_events::{Quantity, Sku};
use checkout_runtime::http::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use utoipa::ToSchema;

/// The request as sent. Unknown fields are refused. (Serialize gives the
/// canonical form an Idempotency-Key is matched on: the request as parsed,
/// so spacing, field order and an explicit `null` do not matter.)
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlaceOrder {
    /// Opaque customer id, 1–64 characters.
    #[schema(min_length = 1, max_length = 64, example = "c-42")]
    pub(crate) customer_id: String,
    /// Where to mail the outcome; optional (the Email service falls back
    /// to `<customer_id>@customers.example`).
    #[serde(default)]
    #[schema(max_length = 254, example = "ada@example.com")]
    pub(crate) customer_email: Option<String>,
    /// 1–50 lines, distinct SKUs.
    #[schema(min_items = 1, max_items = 50)]
    pub(crate) items: Vec<RequestedLine>,
    /// The payment provider's card token (`tok_decline` declines).
    #[schema(min_length = 1, max_length = 64, example = "tok_visa")]
    pub(crate) card_token: String,
}

/// One requested line.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestedLine {
    /// What to order: 1–64 characters of `A-Z`, `0-9` and `-`.
    #[schema(pattern = "^[A-Z0-9-]{1,64}$", example = "KB-001")]
    pub(crate) sku: String,
    /// How many; 1–1000.
    #[schema(minimum = 1, maximum = 1000, example = 2)]
    pub(crate) quantity: i64,
}

/// A valid order request, not yet priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewOrder {
    /// Opaque customer id.
    pub(crate) customer_id: String,
    /// Where to mail the outcome.
    pub(crate) customer_email: Option<String>,
    /// Distinct SKUs with their quantities.
    pub(crate) lines: Vec<(Sku, Quantity)>,
    /// The card token, passed on to Payment and never stored here.
    pub(crate) card_token: String,
}

/// The most lines an order may have.
pub(crate) const MAX_LINES: usize = 50;
/// The longest customer id, in characters.
pub(crate) const MAX_CUSTOMER_ID: usize = 64;
/// The longest e-mail address, in bytes (RFC 5321's path limit).
pub(crate) const MAX_EMAIL: usize = 254;
/// The longest card token, in bytes.
pub(crate) const MAX_CARD_TOKEN: usize = 64;

impl PlaceOrder {
    /// Checks every rule and collects every violation.
    pub(crate) fn validate(self) -> Result<NewOrder, Vec<FieldError>> {
        let mut errors = Vec::new();
        let customer_id = self.customer_id.trim().to_owned();
        if customer_id.is_empty()
            || customer_id.chars().count() > MAX_CUSTOMER_ID
            || has_control(&customer_id)
        {
            errors.push(FieldError::new(
                "customer_id",
                format!("must be 1 to {MAX_CUSTOMER_ID} characters"),
            ));
        }
        let customer_email = self
            .customer_email
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty());
        if customer_email
            .as_deref()
            .is_some_and(|e| !plausible_email(e))
        {
            errors.push(FieldError::new(
                "customer_email",
                "must be an e-mail address",
            ));
        }
        let card_token = self.card_token.trim().to_owned();
        if card_token.is_empty() || card_token.len() > MAX_CARD_TOKEN || has_control(&card_token) {
            errors.push(FieldError::new(
                "card_token",
                format!("must be 1 to {MAX_CARD_TOKEN} characters"),
            ));
        }
        let lines = lines(self.items, &mut errors);
        if errors.is_empty() {
            Ok(NewOrder {
                customer_id,
                customer_email,
                lines,
                card_token,
            })
        } else {
            Err(errors)
        }
    }
}

/// Whether `email` looks like an address: something, `@`, a domain with a dot.
fn plausible_email(email: &str) -> bool {
    email.len() <= MAX_EMAIL
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !email.contains(char::is_whitespace)
                && !has_control(email)
        })
}

/// The valid lines of `items`, each SKU once; what is wrong goes to `errors`.
fn lines(items: Vec<RequestedLine>, errors: &mut Vec<FieldError>) -> Vec<(Sku, Quantity)> {
    if items.is_empty() || items.len() > MAX_LINES {
        errors.push(FieldError::new(
            "items",
            format!("must have 1 to {MAX_LINES} lines"),
        ));
    }
    let mut seen = HashSet::new();
    let mut lines = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let sku = Sku::parse(item.sku.trim());
        let quantity = Quantity::parse(item.quantity);
        if let Err(e) = &sku {
            errors.push(FieldError::new(format!("items[{i}].sku"), e.to_string()));
        }
        if let Err(e) = &quantity {
            errors.push(FieldError::new(
                format!("items[{i}].quantity"),
                e.to_string(),
            ));
        }
        if let (Ok(sku), Ok(quantity)) = (sku, quantity) {
            if seen.insert(sku.clone()) {
                lines.push((sku, quantity));
            } else {
                errors.push(FieldError::new(
                    format!("items[{i}].sku"),
                    format!("{sku} appears more than once; put the total quantity on one line"),
                ));
            }
        }
    }
    lines
}

/// Control characters have no place in these fields, and a NUL would not
/// even fit in a PostgreSQL text column.
fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(items: Vec<(&str, i64)>) -> PlaceOrder {
        PlaceOrder {
            customer_id: "c-42".into(),
            customer_email: Some("ada@example.com".into()),
            items: items
                .into_iter()
                .map(|(sku, quantity)| RequestedLine {
                    sku: sku.into(),
                    quantity,
                })
                .collect(),
            card_token: "tok_visa".into(),
        }
    }

    fn fields(result: Result<NewOrder, Vec<FieldError>>) -> Vec<String> {
        result
            .expect_err("must be invalid")
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_good_request_passes() {
        let order = request(vec![("KB-001", 2), ("MS-001", 1)])
            .validate()
            .expect("valid");
        assert_eq!(order.lines.len(), 2);
        assert_eq!(order.lines[0].1.get(), 2);
    }

    #[test]
    fn every_bad_field_is_reported() {
        let cases: Vec<(PlaceOrder, Vec<&str>)> = vec![
            (request(vec![]), vec!["items"]),
            (request(vec![("KB-001", 0)]), vec!["items[0].quantity"]),
            (request(vec![("KB-001", 1001)]), vec!["items[0].quantity"]),
            (
                request(vec![("kb 1", 1), ("KB-001", -3)]),
                vec!["items[0].sku", "items[1].quantity"],
            ),
            (
                request(vec![("KB-001", 1), ("KB-001", 2)]),
                vec!["items[1].sku"],
            ),
            (
                PlaceOrder {
                    customer_id: "c\u{0}42".into(),
                    card_token: "tok\u{7}".into(),
                    ..request(vec![("KB-001", 1)])
                },
                vec!["customer_id", "card_token"],
            ),
            (
                PlaceOrder {
                    customer_id: " ".into(),
                    customer_email: Some("not-an-address".into()),
                    card_token: String::new(),
                    ..request(vec![("KB-001", 1)])
                },
                vec!["customer_id", "customer_email", "card_token"],
            ),
        ];
        for (req, expected) in cases {
            assert_eq!(fields(req.validate()), expected);
        }
        let too_many: Vec<(String, i64)> = (0..51).map(|i| (format!("SKU-{i}"), 1)).collect();
        let req = request(too_many.iter().map(|(s, q)| (s.as_str(), *q)).collect());
        assert_eq!(fields(req.validate()), vec!["items"]);
    }

    /// The OpenAPI document states the bounds `validate` enforces: the
    /// derive takes literals only, so this pins them to the constants.
    #[test]
    fn the_schema_states_the_bounds_the_code_enforces() {
        let schema = |value: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>| {
            serde_json::to_value(value).expect("serializable")
        };
        let order = schema(<PlaceOrder as utoipa::PartialSchema>::schema());
        let line = schema(<RequestedLine as utoipa::PartialSchema>::schema());
        let field = |schema: &serde_json::Value, name: &str, bound: &str| {
            schema["properties"][name][bound].clone()
        };
        assert_eq!(field(&order, "customer_id", "maxLength"), MAX_CUSTOMER_ID);
        assert_eq!(field(&order, "customer_id", "minLength"), 1);
        assert_eq!(field(&order, "customer_email", "maxLength"), MAX_EMAIL);
        assert_eq!(field(&order, "card_token", "maxLength"), MAX_CARD_TOKEN);
        assert_eq!(field(&order, "card_token", "minLength"), 1);
        assert_eq!(field(&order, "items", "maxItems"), MAX_LINES);
        assert_eq!(field(&order, "items", "minItems"), 1);
        assert_eq!(field(&line, "sku", "pattern"), Sku::PATTERN);
        assert_eq!(field(&line, "quantity", "maximum"), Quantity::MAX);
        assert_eq!(field(&line, "quantity", "minimum"), 1);
    }
}
