//! The simulated card provider: a pure, deterministic rule, so the demo and
//! its tests can make a payment fail on purpose.
//!
//! It owns the decision only. Recording the payment and telling the others
//! is the handler's job; a real provider would be called there, with the
//! payment id as the idempotency key.

use checkout_runtime::{Faults, Switch};

/// The card token that is always declined.
pub const DECLINED_TOKEN: &str = "tok_decline";

/// What the provider answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    /// The amount was taken.
    Captured,
    /// Nothing was taken.
    Declined {
        /// Why, in words a customer may read.
        reason: String,
    },
}

/// Charges the card behind `card_token`: [`DECLINED_TOKEN`] declines,
/// anything else captures.
pub fn charge(card_token: &str) -> Charge {
    if card_token == DECLINED_TOKEN {
        Charge::Declined {
            reason: "card declined".to_owned(),
        }
    } else {
        Charge::Captured
    }
}

/// [`charge`], unless the `decline` fault switch of `faults` strikes
/// first: then the card is declined as a provider would decline it.
pub fn charge_unless_declined(card_token: &str, faults: &Faults) -> Charge {
    if faults.strikes(Switch::Decline) {
        return Charge::Declined {
            reason: "declined by the fault switch decline".to_owned(),
        };
    }
    charge(card_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decline_token_declines() {
        assert_eq!(
            charge("tok_decline"),
            Charge::Declined {
                reason: "card declined".to_owned()
            }
        );
    }

    #[test]
    fn any_other_token_captures() {
        for token in [
            "tok_visa",
            "tok_mastercard",
            "",
            "TOK_DECLINE",
            "tok_decline ",
        ] {
            assert_eq!(charge(token), Charge::Captured, "{token:?}");
        }
    }
}
