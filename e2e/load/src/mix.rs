//! Which orders the load tool places: good ones, declined cards and
//! out-of-stock quantities, in configurable proportions.
//!
//! Stock depletes under load: every confirmed order takes its items out of
//! Inventory for good. So a good order buys one unit of one SKU, taking the
//! SKUs in turn (default `CB-001`, `KB-001`, `MS-001`, `LP-001`), and the
//! caller makes sure they hold enough stock for the run (`scripts/bench`
//! gives its fresh inventory database 10⁸ units of each; `scripts/load`
//! tops the local one up). An out-of-stock order asks for more of another
//! SKU than Inventory has (default 1,000 × `MN-001`, of which the demo
//! catalog holds 20), which no good order touches, so it stays out of stock
//! however long the run.
//!
//! Why several SKUs: Inventory locks a product's row from the reservation
//! until its transaction commits, so every order for one SKU queues behind
//! the previous one's commit. With one SKU the run measures that row, not
//! the checkout (about 250 orders/s here); `--sku CB-001` shows it.

use serde_json::{Value, json};

/// What one order is meant to test, and so how it must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A payable order for stock that exists: must be CONFIRMED.
    Good,
    /// Paid with `tok_decline`: must be CANCELLED.
    Declined,
    /// More than Inventory holds: must be CANCELLED.
    OutOfStock,
}

impl Kind {
    /// Whether an order of this kind must end CONFIRMED (else CANCELLED).
    pub fn should_confirm(self) -> bool {
        self == Kind::Good
    }
}

/// The proportions of each kind and the SKUs they use.
#[derive(Debug, Clone)]
pub struct Mix {
    /// Percent of orders paid with a declined card.
    pub declined_pct: f64,
    /// Percent of orders for more than is in stock.
    pub out_of_stock_pct: f64,
    /// The SKUs good (and declined) orders buy one unit of, in turn.
    pub skus: Vec<String>,
    /// The SKU an out-of-stock order asks too many of.
    pub out_of_stock_sku: String,
    /// How many units an out-of-stock order asks for (at most 1,000).
    pub out_of_stock_quantity: u32,
}

/// The golden ratio's fractional part: `n × φ mod 1` spreads consecutive
/// orders evenly over [0, 1), so any window of the run holds the configured
/// proportions without a random number generator.
const PHI_FRACTION: f64 = 0.618_033_988_749_895;

impl Mix {
    /// The kind of the `n`th order of the run.
    pub fn kind(&self, n: u64) -> Kind {
        let position = (n as f64 * PHI_FRACTION).fract() * 100.0;
        if position < self.declined_pct {
            Kind::Declined
        } else if position < self.declined_pct + self.out_of_stock_pct {
            Kind::OutOfStock
        } else {
            Kind::Good
        }
    }

    /// The `POST /orders` body of the `n`th order, of kind `kind`.
    pub fn body(&self, n: u64, kind: Kind) -> Value {
        // Mix::skus is never empty (the CLI requires one); the fallback
        // only keeps this total.
        let sku = usize::try_from(n)
            .ok()
            .and_then(|n| self.skus.get(n % self.skus.len().max(1)))
            .map_or("CB-001", String::as_str);
        let (sku, quantity, card) = match kind {
            Kind::Good => (sku, 1, "tok_visa"),
            Kind::Declined => (sku, 1, "tok_decline"),
            Kind::OutOfStock => (
                self.out_of_stock_sku.as_str(),
                self.out_of_stock_quantity,
                "tok_visa",
            ),
        };
        json!({
            "customer_id": format!("load-{}", n % 1000),
            "items": [ { "sku": sku, "quantity": quantity } ],
            "card_token": card,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(declined: f64, out_of_stock: f64) -> Mix {
        Mix {
            declined_pct: declined,
            out_of_stock_pct: out_of_stock,
            skus: vec!["CB-001".into(), "KB-001".into()],
            out_of_stock_sku: "MN-001".into(),
            out_of_stock_quantity: 1000,
        }
    }

    #[test]
    fn proportions_hold_over_a_short_window() {
        let mix = mix(10.0, 20.0);
        let kinds: Vec<Kind> = (0..1000).map(|n| mix.kind(n)).collect();
        let count = |k| kinds.iter().filter(|&&x| x == k).count();
        assert!((95..=105).contains(&count(Kind::Declined)));
        assert!((195..=205).contains(&count(Kind::OutOfStock)));
    }

    #[test]
    fn all_good_when_no_failures_are_asked_for() {
        let mix = mix(0.0, 0.0);
        assert!((0..1000).all(|n| mix.kind(n) == Kind::Good));
    }

    #[test]
    fn bodies_say_what_the_kind_needs() {
        let mix = mix(0.0, 0.0);
        assert_eq!(mix.body(1, Kind::Declined)["card_token"], "tok_decline");
        assert_eq!(mix.body(1, Kind::OutOfStock)["items"][0]["quantity"], 1000);
        assert_eq!(mix.body(0, Kind::Good)["items"][0]["sku"], "CB-001");
        assert_eq!(mix.body(1, Kind::Good)["items"][0]["sku"], "KB-001");
    }
}
