//! The catalog as the rest of the system learns it: every change to a
//! product's name or price bumps its revision and emits `ProductUpdated`
//! in the same transaction, and every start announces the whole catalog.
//!
//! This is the only place ProductUpdated is written (`publish`), so the
//! start-up announcement and a later change cannot disagree on its shape.
//! Stock levels are not part of it: they are this service's alone — but a
//! stock change through the admin API bumps the revision all the same, so
//! every change to a product is one revision (see [`put`]).

use crate::{OUTBOX, store};
use checkout_events::{Currency, Money, ProductUpdated, Sku};
use checkout_messaging::Cause;
use checkout_runtime::http::{FieldError, Problem};
use sqlx::{FromRow, PgConnection, PgPool};
use tracing::instrument;
use uuid::Uuid;

/// A product's catalog facts, as stored.
#[derive(Debug, FromRow)]
struct Product {
    #[sqlx(try_from = "String")]
    sku: Sku,
    name: String,
    unit_price: i64,
    #[sqlx(try_from = "String")]
    currency: Currency,
    revision: i64,
}

impl Product {
    fn to_event(&self) -> ProductUpdated {
        ProductUpdated {
            sku: self.sku.clone(),
            name: self.name.clone(),
            unit_price: Money::new(self.unit_price, self.currency.clone()),
            revision: self.revision,
        }
    }
}

/// Writes `product` into the outbox as ProductUpdated, in the caller's
/// transaction.
async fn publish(
    tx: &mut PgConnection,
    product: &Product,
    cause: Cause<'_>,
) -> Result<ProductUpdated, sqlx::Error> {
    let event = product.to_event();
    OUTBOX.emit(tx, &event, cause).await?;
    Ok(event)
}

/// Announces every product, at its current revision, in one transaction
/// and under one correlation id. Run on every start, so an Order service
/// with an empty (or lost) catalog learns it; the Order service discards
/// revisions it already holds, so repeating it is harmless. Returns how
/// many products were announced.
#[instrument(skip_all)]
pub async fn announce(pool: &PgPool) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let products: Vec<Product> = sqlx::query_as(
        "SELECT sku, name, unit_price, currency, revision FROM products ORDER BY sku",
    )
    .fetch_all(&mut *tx)
    .await?;
    let cause = Cause::Command {
        correlation_id: Uuid::now_v7(),
    };
    for product in &products {
        publish(&mut tx, product, cause).await?;
    }
    checkout_messaging::outbox::commit(tx).await?;
    tracing::info!(products = products.len(), "catalog announced");
    Ok(products.len())
}

/// A change to a product; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductChange {
    /// A new display name.
    pub name: Option<String>,
    /// A new unit price.
    pub unit_price: Option<Money>,
    /// A new count of units in the warehouse.
    pub on_hand: Option<i64>,
}

/// Applies `change` to the product `sku`, bumps its revision and emits
/// ProductUpdated, all in the caller's transaction. Returns the event, or
/// `None` when there is no such product. `on_hand` must not fall below
/// what is reserved (the table's CHECK refuses it; [`put`] checks first).
#[instrument(skip_all, fields(sku = %sku))]
pub async fn update(
    tx: &mut PgConnection,
    sku: &Sku,
    change: &ProductChange,
    cause: Cause<'_>,
) -> Result<Option<ProductUpdated>, sqlx::Error> {
    let product: Option<Product> = sqlx::query_as(
        "UPDATE products SET name = COALESCE($2, name), \
             unit_price = COALESCE($3, unit_price), currency = COALESCE($4, currency), \
             on_hand = COALESCE($5, on_hand), revision = revision + 1, updated_at = now() \
         WHERE sku = $1 \
         RETURNING sku, name, unit_price, currency, revision",
    )
    .bind(sku.as_str())
    .bind(change.name.as_deref())
    .bind(change.unit_price.as_ref().map(|price| price.amount))
    .bind(
        change
            .unit_price
            .as_ref()
            .map(|price| price.currency.as_str()),
    )
    .bind(change.on_hand)
    .fetch_optional(&mut *tx)
    .await?;
    match product {
        Some(product) => publish(tx, &product, cause).await.map(Some),
        None => Ok(None),
    }
}

/// A product as `PUT /products/{sku}` states it: all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductSpec {
    /// The display name.
    pub name: String,
    /// The price of one unit.
    pub unit_price: Money,
    /// Units in the warehouse.
    pub on_hand: i64,
}

/// What [`put`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// A new product, at revision 1, announced.
    Created(ProductUpdated),
    /// A changed product, at its next revision, announced.
    Changed(ProductUpdated),
    /// The product already was exactly so: no new revision, no event.
    Unchanged,
    /// Refused: fewer units on hand than are reserved for orders.
    BelowReserved {
        /// The units reserved now.
        reserved: i64,
    },
}

#[derive(Debug, FromRow)]
struct Current {
    name: String,
    unit_price: i64,
    currency: String,
    on_hand: i64,
    reserved: i64,
}

/// Creates or changes the product `sku` to be `spec`, in the caller's
/// transaction. Every change — name, price or stock — bumps the revision
/// and emits ProductUpdated; putting what is already there changes
/// nothing, so a retried PUT announces nothing new.
#[instrument(skip_all, fields(sku = %sku))]
pub async fn put(
    tx: &mut PgConnection,
    sku: &Sku,
    spec: &ProductSpec,
    cause: Cause<'_>,
) -> Result<Put, sqlx::Error> {
    // Twice at most: a concurrent PUT may create the product between our
    // look and our insert; then it is a change.
    for _ in 0..2 {
        let current: Option<Current> = sqlx::query_as(
            "SELECT name, unit_price, currency, on_hand, reserved FROM products \
             WHERE sku = $1 FOR UPDATE",
        )
        .bind(sku.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(current) = current else {
            let created: Option<Product> = sqlx::query_as(
                "INSERT INTO products (sku, name, unit_price, currency, on_hand) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sku) DO NOTHING \
                 RETURNING sku, name, unit_price, currency, revision",
            )
            .bind(sku.as_str())
            .bind(&spec.name)
            .bind(spec.unit_price.amount)
            .bind(spec.unit_price.currency.as_str())
            .bind(spec.on_hand)
            .fetch_optional(&mut *tx)
            .await?;
            match created {
                Some(product) => return publish(tx, &product, cause).await.map(Put::Created),
                None => continue,
            }
        };
        let same = current.name == spec.name
            && current.unit_price == spec.unit_price.amount
            && current.currency == spec.unit_price.currency.as_str()
            && current.on_hand == spec.on_hand;
        if same {
            return Ok(Put::Unchanged);
        }
        if spec.on_hand < current.reserved {
            return Ok(Put::BelowReserved {
                reserved: current.reserved,
            });
        }
        let change = ProductChange {
            name: Some(spec.name.clone()),
            unit_price: Some(spec.unit_price.clone()),
            on_hand: Some(spec.on_hand),
        };
        if let Some(event) = update(tx, sku, &change, cause).await? {
            return Ok(Put::Changed(event));
        }
    }
    Err(sqlx::Error::RowNotFound)
}

/// Why a product was not put.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PutError {
    /// Fewer units on hand than are reserved for orders.
    #[error("{reserved} units are reserved for orders; on_hand cannot be fewer")]
    BelowReserved {
        /// The units reserved now.
        reserved: i64,
    },
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<PutError> for Problem {
    fn from(error: PutError) -> Self {
        match error {
            PutError::BelowReserved { .. } => {
                Problem::validation(vec![FieldError::new("on_hand", error.to_string())])
            }
            PutError::Database(error) => error.into(),
        }
    }
}

/// The command behind `PUT /products/{sku}`: [`put`] in its own
/// transaction, answering what it did and the product as it now is.
pub(crate) async fn put_product(
    pool: &PgPool,
    sku: &Sku,
    spec: &ProductSpec,
) -> Result<(Put, store::Product), PutError> {
    let mut tx = pool.begin().await?;
    let cause = Cause::Command {
        correlation_id: Uuid::now_v7(),
    };
    let put = put(&mut tx, sku, spec, cause).await?;
    if let Put::BelowReserved { reserved } = put {
        return Err(PutError::BelowReserved { reserved });
    }
    let product = store::product(&mut tx, sku).await?;
    checkout_messaging::outbox::commit(tx).await?;
    Ok((put, product))
}
