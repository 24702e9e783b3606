//! The reservation rule: an order gets every line it asks for, or nothing.
//!
//! Pure: it sees the requested lines and the stock available per SKU
//! (on hand minus already reserved), and decides. Locking the stock it
//! looked at and moving it is the store's job.

use checkout_events::{ReservedItem, Sku};
use std::collections::BTreeMap;

/// What the rule decided for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Every line fits: hold them all.
    Reserved,
    /// A line does not fit, so nothing is held.
    OutOfStock {
        /// The first SKU (in the order's line order) that is short.
        sku: Sku,
        /// How many units the order asks for, over all its lines of the SKU.
        requested: i64,
        /// How many can be sold; 0 for a SKU the catalog does not know.
        available: i64,
    },
}

impl Reservation {
    /// Why nothing was held, in words a customer may read; `None` when reserved.
    pub fn reason(&self) -> Option<String> {
        match self {
            Reservation::Reserved => None,
            Reservation::OutOfStock {
                sku,
                requested,
                available,
            } if *available <= 0 => Some(format!("{sku} is out of stock, {requested} requested")),
            Reservation::OutOfStock {
                sku,
                requested,
                available,
            } => Some(format!(
                "only {available} of {sku} in stock, {requested} requested"
            )),
        }
    }
}

/// Decides whether `lines` can all be held from `available` (on hand minus
/// reserved, per SKU). A SKU missing from `available` has none.
pub fn decide(lines: &[ReservedItem], available: &BTreeMap<Sku, i64>) -> Reservation {
    for (sku, requested) in totals(lines) {
        let available = available.get(&sku).copied().unwrap_or(0);
        if requested > available {
            return Reservation::OutOfStock {
                sku,
                requested,
                available,
            };
        }
    }
    Reservation::Reserved
}

/// The units asked for per SKU, in order of first appearance. The Order
/// service refuses duplicate SKUs, but should two lines name one SKU they
/// are judged, and held, together.
pub(crate) fn totals(lines: &[ReservedItem]) -> Vec<(Sku, i64)> {
    let mut totals: Vec<(Sku, i64)> = Vec::with_capacity(lines.len());
    for line in lines {
        match totals.iter_mut().find(|(sku, _)| *sku == line.sku) {
            Some((_, total)) => *total += line.quantity.get(),
            None => totals.push((line.sku.clone(), line.quantity.get())),
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkout_events::Quantity;

    fn sku(raw: &str) -> Sku {
        Sku::parse(raw).expect("valid sku")
    }

    fn line(raw: &str, quantity: i64) -> ReservedItem {
        ReservedItem {
            sku: sku(raw),
            quantity: Quantity::parse(quantity).expect("valid quantity"),
        }
    }

    fn stock() -> BTreeMap<Sku, i64> {
        BTreeMap::from([(sku("KB-001"), 10), (sku("MN-001"), 3), (sku("CB-001"), 0)])
    }

    fn short(raw: &str, requested: i64, available: i64) -> Reservation {
        Reservation::OutOfStock {
            sku: sku(raw),
            requested,
            available,
        }
    }

    #[test]
    fn all_or_none() {
        let cases = [
            (
                "all fit",
                vec![line("KB-001", 2), line("MN-001", 1)],
                Reservation::Reserved,
            ),
            (
                "exact fit",
                vec![line("KB-001", 10), line("MN-001", 3)],
                Reservation::Reserved,
            ),
            ("no lines", vec![], Reservation::Reserved),
            (
                "one line short",
                vec![line("KB-001", 1), line("MN-001", 5)],
                short("MN-001", 5, 3),
            ),
            ("none left", vec![line("CB-001", 1)], short("CB-001", 1, 0)),
            (
                "unknown sku",
                vec![line("KB-001", 1), line("ZZ-999", 1)],
                short("ZZ-999", 1, 0),
            ),
            (
                "first short line wins",
                vec![line("MN-001", 4), line("ZZ-999", 1)],
                short("MN-001", 4, 3),
            ),
            (
                "repeated sku is summed",
                vec![line("MN-001", 2), line("MN-001", 2)],
                short("MN-001", 4, 3),
            ),
        ];
        for (name, lines, expected) in cases {
            assert_eq!(decide(&lines, &stock()), expected, "{name}");
        }
    }

    #[test]
    fn the_reason_names_the_shortage() {
        assert_eq!(
            short("MN-001", 5, 3).reason().as_deref(),
            Some("only 3 of MN-001 in stock, 5 requested")
        );
        assert_eq!(
            short("ZZ-999", 1, 0).reason().as_deref(),
            Some("ZZ-999 is out of stock, 1 requested")
        );
        assert_eq!(Reservation::Reserved.reason(), None);
    }

    #[test]
    fn totals_merge_repeated_skus_in_first_appearance_order() {
        let lines = [line("MN-001", 2), line("KB-001", 1), line("MN-001", 3)];
        assert_eq!(totals(&lines), vec![(sku("MN-001"), 5), (sku("KB-001"), 1)]);
    }
}
