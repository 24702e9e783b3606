//! The order's state machine: how the two replies of the saga — payment and
//! inventory — turn a PENDING order into CONFIRMED or CANCELLED.
//!
//! Pure: no I/O. The replies may come in either order and more than once; a
//! reply that finds its leg already settled changes nothing, and a reply
//! after the order is final is recorded for display but decides nothing.
//! An order still pending at its deadline [expires](Saga::expire):
//! cancelled, naming the leg(s) it waited for, so no order — and no money
//! or stock held for one — is ever stranded by a leg that never answers.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where the order stands: the `status` column, the API's `status` and
/// the `status` label of the orders metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Accepted; waiting for payment and stock.
    Pending,
    /// Paid and reserved: final.
    Confirmed,
    /// A leg failed: final; whatever succeeded is compensated.
    Cancelled,
}

/// Where one leg of the saga (payment or inventory) stands: the
/// `payment` and `inventory` columns. The API says it in each leg's own
/// words ([`PaymentLeg`], [`InventoryLeg`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Leg {
    /// No reply yet.
    Pending,
    /// Captured / reserved.
    Succeeded,
    /// Declined / out of stock.
    Failed,
}

/// A reply from one of the two participants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// PaymentCaptured (`Ok`) or PaymentFailed with its reason.
    Payment(Result<(), String>),
    /// InventoryReserved (`Ok`) or InventoryFailed with its reason.
    Inventory(Result<(), String>),
}

/// What applying a reply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The leg was already settled: nothing changed.
    Duplicate,
    /// The leg was recorded; the order waits for the other one.
    Recorded,
    /// The leg was recorded after the order became final; nothing to decide.
    Late,
    /// Both legs succeeded: the order is confirmed.
    Confirmed,
    /// A leg failed: the order is cancelled for this reason.
    Cancelled(String),
}

/// The saga state of one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saga {
    /// Where the order stands.
    pub status: Status,
    /// The payment leg.
    pub payment: Leg,
    /// The inventory leg.
    pub inventory: Leg,
    /// Why the order was cancelled, once it is.
    pub cancel_reason: Option<String>,
}

impl Default for Saga {
    fn default() -> Self {
        Self::new()
    }
}

impl Saga {
    /// A new order: pending on both legs.
    pub fn new() -> Self {
        Self {
            status: Status::Pending,
            payment: Leg::Pending,
            inventory: Leg::Pending,
            cancel_reason: None,
        }
    }

    /// Applies one reply; see [`Transition`].
    pub fn apply(&mut self, reply: Reply) -> Transition {
        let (leg, outcome) = match reply {
            Reply::Payment(outcome) => (
                &mut self.payment,
                outcome.map_err(|r| format!("payment failed: {r}")),
            ),
            Reply::Inventory(outcome) => (
                &mut self.inventory,
                outcome.map_err(|r| format!("inventory failed: {r}")),
            ),
        };
        if *leg != Leg::Pending {
            return Transition::Duplicate;
        }
        *leg = if outcome.is_ok() {
            Leg::Succeeded
        } else {
            Leg::Failed
        };
        if self.status != Status::Pending {
            return Transition::Late;
        }
        match (outcome, self.payment, self.inventory) {
            (Err(reason), _, _) => {
                self.status = Status::Cancelled;
                self.cancel_reason = Some(reason.clone());
                Transition::Cancelled(reason)
            }
            (Ok(()), Leg::Succeeded, Leg::Succeeded) => {
                self.status = Status::Confirmed;
                Transition::Confirmed
            }
            (Ok(()), _, _) => Transition::Recorded,
        }
    }

    /// The order's deadline passed: a pending order is cancelled with a
    /// reason naming the leg(s) that never answered; a final one is left
    /// as it is ([`Transition::Duplicate`]).
    pub fn expire(&mut self) -> Transition {
        if self.status != Status::Pending {
            return Transition::Duplicate;
        }
        let waiting: Vec<&str> = [("payment", self.payment), ("inventory", self.inventory)]
            .into_iter()
            .filter(|(_, leg)| *leg == Leg::Pending)
            .map(|(name, _)| name)
            .collect();
        // A pending order has at least one pending leg: a failed leg cancels
        // at once and two good ones confirm.
        let reason = format!("timed out waiting for {}", waiting.join(" and "));
        self.status = Status::Cancelled;
        self.cancel_reason = Some(reason.clone());
        Transition::Cancelled(reason)
    }
}

impl Status {
    /// Every status, in the order a dashboard lists them.
    pub const ALL: [Status; 3] = [Status::Pending, Status::Confirmed, Status::Cancelled];
}

/// The payment leg as `GET /orders/{id}` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentLeg {
    /// No answer from Payment yet.
    Pending,
    /// The money was taken.
    Captured,
    /// Declined.
    Failed,
}

impl From<Leg> for PaymentLeg {
    fn from(leg: Leg) -> Self {
        match leg {
            Leg::Pending => PaymentLeg::Pending,
            Leg::Succeeded => PaymentLeg::Captured,
            Leg::Failed => PaymentLeg::Failed,
        }
    }
}

/// The inventory leg as `GET /orders/{id}` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InventoryLeg {
    /// No answer from Inventory yet.
    Pending,
    /// The stock is held.
    Reserved,
    /// Out of stock.
    Failed,
}

impl From<Leg> for InventoryLeg {
    fn from(leg: Leg) -> Self {
        match leg {
            Leg::Pending => InventoryLeg::Pending,
            Leg::Succeeded => InventoryLeg::Reserved,
            Leg::Failed => InventoryLeg::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paid() -> Reply {
        Reply::Payment(Ok(()))
    }
    fn declined() -> Reply {
        Reply::Payment(Err("card declined".into()))
    }
    fn reserved() -> Reply {
        Reply::Inventory(Ok(()))
    }
    fn out_of_stock() -> Reply {
        Reply::Inventory(Err("out of stock".into()))
    }

    #[test]
    fn both_good_confirms_in_either_order() {
        for replies in [[paid(), reserved()], [reserved(), paid()]] {
            let mut saga = Saga::new();
            let [first, second] = replies;
            assert_eq!(saga.apply(first), Transition::Recorded);
            assert_eq!(saga.apply(second), Transition::Confirmed);
            assert_eq!(saga.status, Status::Confirmed);
            assert_eq!(saga.cancel_reason, None);
        }
    }

    #[test]
    fn any_failure_cancels_at_once_in_either_order() {
        let cases = [
            (declined(), reserved(), "payment failed: card declined"),
            (reserved(), declined(), "payment failed: card declined"),
            (out_of_stock(), paid(), "inventory failed: out of stock"),
            (paid(), out_of_stock(), "inventory failed: out of stock"),
        ];
        for (first, second, reason) in cases {
            let mut saga = Saga::new();
            let failing_first = matches!(&first, Reply::Payment(Err(_)) | Reply::Inventory(Err(_)));
            let t1 = saga.apply(first);
            let t2 = saga.apply(second);
            let cancelled = Transition::Cancelled(reason.to_owned());
            if failing_first {
                assert_eq!((t1, t2), (cancelled, Transition::Late));
            } else {
                assert_eq!((t1, t2), (Transition::Recorded, cancelled));
            }
            assert_eq!(saga.status, Status::Cancelled);
            assert_eq!(saga.cancel_reason.as_deref(), Some(reason));
        }
    }

    #[test]
    fn duplicates_change_nothing() {
        let mut saga = Saga::new();
        assert_eq!(saga.apply(paid()), Transition::Recorded);
        let before = saga.clone();
        assert_eq!(saga.apply(paid()), Transition::Duplicate);
        assert_eq!(saga.apply(declined()), Transition::Duplicate);
        assert_eq!(saga, before);
    }

    #[test]
    fn the_first_failure_is_the_reason_and_late_replies_decide_nothing() {
        let mut saga = Saga::new();
        assert!(matches!(
            saga.apply(out_of_stock()),
            Transition::Cancelled(_)
        ));
        assert_eq!(saga.apply(declined()), Transition::Late);
        assert_eq!(saga.status, Status::Cancelled);
        assert_eq!(saga.payment, Leg::Failed);
        assert_eq!(
            saga.cancel_reason.as_deref(),
            Some("inventory failed: out of stock")
        );

        let mut confirmed = Saga::new();
        confirmed.apply(paid());
        confirmed.apply(reserved());
        assert_eq!(confirmed.apply(out_of_stock()), Transition::Duplicate);
        assert_eq!(confirmed.status, Status::Confirmed);
    }

    #[test]
    fn the_deadline_cancels_naming_the_missing_legs() {
        let cases = [
            (vec![], "timed out waiting for payment and inventory"),
            (vec![paid()], "timed out waiting for inventory"),
            (vec![reserved()], "timed out waiting for payment"),
        ];
        for (replies, reason) in cases {
            let mut saga = Saga::new();
            for reply in replies {
                saga.apply(reply);
            }
            assert_eq!(saga.expire(), Transition::Cancelled(reason.to_owned()));
            assert_eq!(saga.status, Status::Cancelled);
            assert_eq!(saga.cancel_reason.as_deref(), Some(reason));
        }
    }

    #[test]
    fn a_reply_after_the_deadline_is_late_and_the_deadline_after_a_decision_is_nothing() {
        let mut expired = Saga::new();
        expired.apply(reserved());
        expired.expire();
        assert_eq!(expired.apply(paid()), Transition::Late);
        assert_eq!(expired.status, Status::Cancelled);
        assert_eq!(expired.payment, Leg::Succeeded);
        assert_eq!(expired.expire(), Transition::Duplicate);

        let mut confirmed = Saga::new();
        confirmed.apply(paid());
        confirmed.apply(reserved());
        assert_eq!(confirmed.expire(), Transition::Duplicate);
        assert_eq!(confirmed.status, Status::Confirmed);
    }

    #[test]
    fn each_leg_speaks_its_own_words() {
        let words = |leg: Leg| {
            (
                serde_json::to_value(PaymentLeg::from(leg)).expect("serializable"),
                serde_json::to_value(InventoryLeg::from(leg)).expect("serializable"),
            )
        };
        assert_eq!(words(Leg::Pending), ("PENDING".into(), "PENDING".into()));
        assert_eq!(
            words(Leg::Succeeded),
            ("CAPTURED".into(), "RESERVED".into())
        );
        assert_eq!(words(Leg::Failed), ("FAILED".into(), "FAILED".into()));
    }

    #[test]
    fn every_status_is_listed_once() {
        let names: Vec<_> = Status::ALL
            .iter()
            .map(|s| serde_json::to_value(s).expect("serializable"))
            .collect();
        assert_eq!(names, ["PENDING", "CONFIRMED", "CANCELLED"]);
    }
}
