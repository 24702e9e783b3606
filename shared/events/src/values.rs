//! Value types shared by the events: parsed once at the edge, valid forever after.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// Why a raw value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// A SKU must be 1–64 characters of `A-Z`, `0-9` and `-`.
    #[error("a SKU is 1 to 64 characters of A-Z, 0-9 and '-', got {0:?}")]
    Sku(String),
    /// A quantity must be 1–1000.
    #[error("a quantity is 1 to 1000, got {0}")]
    Quantity(i64),
    /// A currency must be an ISO 4217 code: three upper-case letters.
    #[error("a currency is three upper-case letters (ISO 4217), got {0:?}")]
    Currency(String),
}

/// The id of an order: a UUID v7, so ids sort by creation time (to the
/// millisecond), and its other 74 bits are random, so an id cannot be
/// guessed — which is what lets `GET /orders/{id}` be public.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(Uuid);

impl OrderId {
    /// A new id: the current millisecond and 74 random bits (OS randomness).
    ///
    /// Not `Uuid::now_v7()`: for monotonicity within a millisecond that
    /// spends 42 of the 74 bits on a counter (random at each new
    /// millisecond, then +1 per id), so an order placed in the same
    /// millisecond as one a client knows would differ from it in only 32
    /// unpredictable bits. Orders of one millisecond therefore sort in
    /// random order among themselves; nothing relies on more.
    pub fn new() -> Self {
        Self(Uuid::new_v7(uuid::Timestamp::now(uuid::NoContext)))
    }

    /// The underlying UUID (for storage and correlation ids).
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for OrderId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for OrderId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A stock-keeping unit, e.g. `KB-001`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sku(String);

impl Sku {
    /// The longest SKU, in characters.
    pub const MAX_LEN: usize = 64;
    /// The rule [`Sku::parse`] applies, as a regular expression (for API
    /// documents): 1 to [`Sku::MAX_LEN`] of `A-Z`, `0-9` and `-`.
    pub const PATTERN: &'static str = "^[A-Z0-9-]{1,64}$";

    /// Parses a SKU; see [`ValueError::Sku`] for the rule.
    pub fn parse(raw: impl Into<String>) -> Result<Self, ValueError> {
        let raw = raw.into();
        let valid = (1..=Self::MAX_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(Self(raw))
        } else {
            Err(ValueError::Sku(raw))
        }
    }

    /// The SKU as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sku {
    type Error = ValueError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<Sku> for String {
    fn from(sku: Sku) -> Self {
        sku.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many units of one SKU a line asks for: 1 to 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Quantity(u16);

impl Quantity {
    /// The largest quantity one line may ask for.
    pub const MAX: i64 = 1000;

    /// Parses a quantity; see [`ValueError::Quantity`] for the rule.
    pub fn parse(raw: i64) -> Result<Self, ValueError> {
        match u16::try_from(raw) {
            Ok(q) if (1..=Self::MAX).contains(&raw) => Ok(Self(q)),
            _ => Err(ValueError::Quantity(raw)),
        }
    }

    /// The quantity as a number, for arithmetic and storage.
    pub fn get(self) -> i64 {
        i64::from(self.0)
    }
}

impl TryFrom<i64> for Quantity {
    type Error = ValueError;
    fn try_from(raw: i64) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<Quantity> for i64 {
    fn from(q: Quantity) -> Self {
        q.get()
    }
}

/// An ISO 4217 currency code such as `USD`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

impl Currency {
    /// Parses a currency code; see [`ValueError::Currency`] for the rule.
    pub fn parse(raw: impl Into<String>) -> Result<Self, ValueError> {
        let raw = raw.into();
        if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(raw))
        } else {
            Err(ValueError::Currency(raw))
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = ValueError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a sum of money could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Amounts in different currencies cannot be added.
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(Currency, Currency),
    /// The result does not fit in 64 bits of minor units.
    #[error("amount out of range")]
    Overflow,
}

/// An amount of money: integer minor units (cents) and a currency. No floats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// Minor units, e.g. cents for USD.
    pub amount: i64,
    /// The currency the amount is in.
    pub currency: Currency,
}

impl Money {
    /// `amount` minor units of `currency`.
    pub fn new(amount: i64, currency: Currency) -> Self {
        Self { amount, currency }
    }

    /// This amount times a quantity.
    pub fn times(&self, quantity: Quantity) -> Result<Money, MoneyError> {
        let amount = self
            .amount
            .checked_mul(quantity.get())
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency.clone()))
    }

    /// The sum of two amounts in the same currency.
    pub fn plus(&self, other: &Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(
                self.currency.clone(),
                other.currency.clone(),
            ));
        }
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency.clone()))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.amount < 0 { "-" } else { "" };
        let abs = self.amount.unsigned_abs();
        write!(f, "{sign}{}.{:02} {}", abs / 100, abs % 100, self.currency)
    }
}

/// One line of an order, priced by the Order service from its catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    /// What was ordered.
    pub sku: Sku,
    /// How many.
    pub quantity: Quantity,
    /// The price of one unit when the order was placed.
    pub unit_price: Money,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(amount: i64) -> Money {
        Money::new(amount, Currency::parse("USD").expect("valid"))
    }

    #[test]
    fn order_ids_of_one_millisecond_do_not_count_up() {
        // The 42 bits below the version that `Uuid::now_v7` uses as a
        // counter (12 of rand_a, 30 of rand_b past the variant).
        fn parts(id: OrderId) -> (u128, u128) {
            let bits = id.as_uuid().as_u128();
            let millis = bits >> 80;
            let rand_a = (bits >> 64) & 0xfff;
            let rand_b_top = (bits >> 32) & 0x3fff_ffff;
            (millis, (rand_a << 30) | rand_b_top)
        }
        let ids: Vec<OrderId> = (0..10_000).map(|_| OrderId::new()).collect();
        let mut same_millisecond = 0;
        for pair in ids.windows(2) {
            let ((ms1, c1), (ms2, c2)) = (parts(pair[0]), parts(pair[1]));
            assert_eq!(pair[0].as_uuid().get_version_num(), 7);
            if ms1 == ms2 {
                same_millisecond += 1;
                assert_ne!(c2.wrapping_sub(c1), 1, "{} then {}", pair[0], pair[1]);
            }
        }
        assert!(same_millisecond > 0, "no two ids fell in one millisecond");
    }

    #[test]
    fn skus_are_validated() {
        assert!(Sku::parse("KB-001").is_ok());
        for bad in ["", "kb-001", "KB 001", &"A".repeat(65)] {
            assert!(Sku::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn quantities_are_bounded() {
        assert_eq!(Quantity::parse(1).map(Quantity::get), Ok(1));
        assert_eq!(Quantity::parse(1000).map(Quantity::get), Ok(1000));
        for bad in [0, -1, 1001, i64::MAX] {
            assert!(Quantity::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn money_adds_only_in_one_currency() {
        assert_eq!(usd(150).plus(&usd(250)), Ok(usd(400)));
        let eur = Money::new(1, Currency::parse("EUR").expect("valid"));
        assert!(matches!(
            usd(1).plus(&eur),
            Err(MoneyError::CurrencyMismatch(..))
        ));
        assert_eq!(usd(i64::MAX).plus(&usd(1)), Err(MoneyError::Overflow));
    }

    #[test]
    fn money_multiplies_and_displays() {
        let q = Quantity::parse(3).expect("valid");
        assert_eq!(usd(4999).times(q), Ok(usd(14997)));
        assert_eq!(usd(14997).to_string(), "149.97 USD");
        assert_eq!(usd(-5).to_string(), "-0.05 USD");
    }

    #[test]
    fn invalid_values_are_refused_when_deserialized() {
        let bad = serde_json::json!({ "sku": "kb", "quantity": 1, "unit_price": { "amount": 1, "currency": "USD" } });
        assert!(serde_json::from_value::<LineItem>(bad).is_err());
        let bad = serde_json::json!({ "sku": "KB", "quantity": 0, "unit_price": { "amount": 1, "currency": "USD" } });
        assert!(serde_json::from_value::<LineItem>(bad).is_err());
    }
}
