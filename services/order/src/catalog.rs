//! The Order service's copy of the catalog, kept from Inventory's
//! ProductUpdated events, and the pricing of a new order from it.
//!
//! Prices are the server's, never the client's. A revision older than (or
//! equal to) the one held is discarded, so redelivered or reordered
//! updates cannot roll a price back.

use checkout_events::{Currency, LineItem, Money, ProductUpdated, Quantity, Sku};
use checkout_runtime::http::{Amount, FieldError};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgPool};
use utoipa::ToSchema;

/// Applies an update unless it is stale. Returns whether it was applied.
pub async fn apply(tx: &mut PgConnection, update: &ProductUpdated) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO catalog (sku, name, unit_price, currency, revision) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, unit_price = EXCLUDED.unit_price, \
             currency = EXCLUDED.currency, revision = EXCLUDED.revision, updated_at = now() \
         WHERE catalog.revision < EXCLUDED.revision",
    )
    .bind(update.sku.as_str())
    .bind(&update.name)
    .bind(update.unit_price.amount)
    .bind(update.unit_price.currency.as_str())
    .bind(update.revision)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Why an order could not be priced: every offending line.
#[derive(Debug)]
pub enum PricingError {
    /// Unknown SKUs, mixed currencies or an overflowing total, per field.
    Invalid(Vec<FieldError>),
    /// The database failed.
    Database(sqlx::Error),
}

impl From<sqlx::Error> for PricingError {
    fn from(error: sqlx::Error) -> Self {
        PricingError::Database(error)
    }
}

/// Priced lines and their total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    /// The lines with their unit prices.
    pub items: Vec<LineItem>,
    /// The sum, in the lines' one currency.
    pub total: Money,
}

#[derive(Debug, FromRow)]
struct Price {
    sku: String,
    unit_price: i64,
    currency: String,
}

/// Prices `lines` from the catalog.
pub async fn price(
    tx: &mut PgConnection,
    lines: &[(Sku, Quantity)],
) -> Result<Priced, PricingError> {
    let skus: Vec<&str> = lines.iter().map(|(sku, _)| sku.as_str()).collect();
    let prices: Vec<Price> =
        sqlx::query_as("SELECT sku, unit_price, currency FROM catalog WHERE sku = ANY($1)")
            .bind(&skus)
            .fetch_all(&mut *tx)
            .await?;

    let mut errors = Vec::new();
    let mut items = Vec::with_capacity(lines.len());
    let mut total: Option<Money> = None;
    for (i, (sku, quantity)) in lines.iter().enumerate() {
        let field = format!("items[{i}].sku");
        let Some(price) = prices.iter().find(|p| p.sku == sku.as_str()) else {
            errors.push(FieldError::new(field, format!("unknown SKU {sku}")));
            continue;
        };
        let Ok(currency) = Currency::parse(price.currency.as_str()) else {
            errors.push(FieldError::new(field, format!("{sku} has no valid price")));
            continue;
        };
        let unit_price = Money::new(price.unit_price, currency);
        let sum = unit_price.times(*quantity).and_then(|line| match &total {
            Some(t) => t.plus(&line),
            None => Ok(line),
        });
        match sum {
            Ok(sum) => total = Some(sum),
            Err(e) => errors.push(FieldError::new(field, e.to_string())),
        }
        items.push(LineItem {
            sku: sku.clone(),
            quantity: *quantity,
            unit_price,
        });
    }
    match total {
        Some(total) if errors.is_empty() => Ok(Priced { items, total }),
        _ => Err(PricingError::Invalid(errors)),
    }
}

/// One product as the Order service knows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Product {
    /// The SKU.
    sku: String,
    /// Its display name.
    name: String,
    /// The price of one unit.
    unit_price: Amount,
    /// The revision of Inventory's ProductUpdated this comes from.
    revision: i64,
}

#[derive(Debug, FromRow)]
struct ProductRow {
    #[sqlx(try_from = "String")]
    sku: Sku,
    name: String,
    unit_price: i64,
    #[sqlx(try_from = "String")]
    currency: Currency,
    revision: i64,
}

/// The whole local catalog, by SKU.
pub async fn list(pool: &PgPool) -> Result<Vec<Product>, sqlx::Error> {
    let rows: Vec<ProductRow> = sqlx::query_as(
        "SELECT sku, name, unit_price, currency, revision FROM catalog ORDER BY sku",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Product {
            sku: row.sku.into(),
            name: row.name,
            unit_price: Amount::new(row.unit_price, row.currency),
            revision: row.revision,
        })
        .collect())
}
