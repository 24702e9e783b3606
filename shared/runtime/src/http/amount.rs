//! Money on the wire: the shape every service's API shows money in, with
//! the bounds the services enforce stated in its OpenAPI schema.

use serde::Serialize;
use utoipa::ToSchema;

/// Money on the wire, as in the events: integer minor units and an ISO 4217
/// currency code. The one shape every service's API shows (and, where a
/// client sends a price, reads) money in.
///
/// The schema states what a service accepts where a client sends one
/// (a unit price): `0 ≤ amount ≤` [`Amount::MAX_MINOR_UNITS`] and a
/// currency of three upper-case letters (`checkout_events::Currency`), so
/// a generated client refuses what the server would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Amount {
    /// Minor units, e.g. cents: 0 to 10¹² (ten billion in a two-decimal
    /// currency).
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64, example = 4999)]
    pub amount: i64,
    /// ISO 4217 code: three upper-case letters.
    #[schema(
        pattern = "^[A-Z]{3}$",
        min_length = 3,
        max_length = 3,
        example = "USD"
    )]
    pub currency: String,
}

impl Amount {
    /// The largest amount a client may send, in minor units (10¹²): what
    /// the schema's `maximum` says.
    pub const MAX_MINOR_UNITS: i64 = 1_000_000_000_000;

    /// `amount` minor units of the currency `currency`.
    pub fn new(amount: i64, currency: impl Into<String>) -> Self {
        Self {
            amount,
            currency: currency.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema as _;

    #[test]
    fn the_schema_states_the_bounds_the_services_enforce() {
        let schema = serde_json::to_value(Amount::schema()).expect("a schema is JSON");
        let amount = &schema["properties"]["amount"];
        assert_eq!(amount["minimum"], 0, "{schema}");
        assert_eq!(amount["maximum"], Amount::MAX_MINOR_UNITS, "{schema}");
        let currency = &schema["properties"]["currency"];
        assert_eq!(currency["pattern"], "^[A-Z]{3}$", "{schema}");
        for code in ["USD", "EUR"] {
            assert!(checkout_events::Currency::parse(code).is_ok(), "{code}");
        }
        for not_a_code in ["usd", "US", "USDX"] {
            assert!(
                checkout_events::Currency::parse(not_a_code).is_err(),
                "{not_a_code}"
            );
        }
    }
}
