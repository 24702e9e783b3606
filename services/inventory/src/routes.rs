//! The Inventory service's HTTP API: the catalog with its stock
//! (`GET /products`, public), its administration (`PUT /products/{sku}`),
//! and what an order holds (`GET /reservations?order_id=`: a list, empty
//! until the order is seen, one reservation after). The last two are for
//! operators: they take [`Admin`], the `ADMIN_TOKEN` check. Each handler
//! carries its OpenAPI description; `api()` registers route and
//! description together.

use crate::catalog::{self, ProductSpec, Put};
use crate::store::{self, Reservation};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use checkout_events::{Currency, Money, Sku};
use checkout_runtime::admin::{Admin, AdminProblems};
use checkout_runtime::http::{
    Amount, ApiJson, ApiPath, ApiQuery, FieldError, JsonBodyProblems, Problem, ProblemResponse,
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The routes, each with its documentation.
pub(crate) fn api(pool: PgPool) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(products))
        .routes(routes!(put_product))
        .routes(routes!(reservations))
        .with_state(pool)
}

/// A product with its stock.
#[derive(Debug, Serialize, ToSchema)]
struct Product {
    /// The SKU.
    sku: String,
    /// Its display name.
    name: String,
    /// The price of one unit.
    unit_price: Amount,
    /// Units in the warehouse.
    on_hand: i64,
    /// Units held for orders that are not final yet.
    reserved: i64,
    /// What can still be sold: on hand minus reserved.
    available: i64,
    /// Grows by one on every change.
    revision: i64,
}

impl From<store::Product> for Product {
    fn from(row: store::Product) -> Self {
        Self {
            sku: row.sku.into(),
            name: row.name,
            unit_price: Amount::new(row.unit_price, row.currency),
            on_hand: row.on_hand,
            reserved: row.reserved,
            available: row.available,
            revision: row.revision,
        }
    }
}

/// The catalog with its stock, by SKU.
#[utoipa::path(get, path = "/products", tag = "catalog",
    responses((status = 200, description = "Every product", body = [Product])))]
async fn products(State(pool): State<PgPool>) -> Result<Json<Vec<Product>>, Problem> {
    let products = store::products(&pool).await?;
    Ok(Json(products.into_iter().map(Product::from).collect()))
}

/// The body of `PUT /products/{sku}`: the whole product.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ProductBody {
    /// Display name, 1–200 characters.
    #[schema(min_length = 1, max_length = 200, example = "Mechanical keyboard")]
    name: String,
    /// The price of one unit: 0 to 10¹² minor units.
    unit_price: Amount,
    /// Units in the warehouse: 0 to 10⁹, and not fewer than are reserved.
    #[schema(minimum = 0, maximum = 1_000_000_000, example = 100)]
    on_hand: i64,
}

/// The highest unit price, in minor units.
const MAX_PRICE: i64 = 1_000_000_000_000;
/// The most units a product may have on hand.
const MAX_STOCK: i64 = 1_000_000_000;
/// The longest product name, in characters.
const MAX_NAME: usize = 200;

impl ProductBody {
    /// Checks every rule and collects every violation.
    fn validate(self, sku: &str) -> Result<(Sku, ProductSpec), Vec<FieldError>> {
        let mut errors = Vec::new();
        let sku = Sku::parse(sku).map_err(|e| errors.push(FieldError::new("sku", e.to_string())));
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.contains(char::is_control) {
            errors.push(FieldError::new(
                "name",
                format!("must be 1 to {MAX_NAME} characters, without control characters"),
            ));
        }
        if !(0..=MAX_PRICE).contains(&self.unit_price.amount) {
            errors.push(FieldError::new(
                "unit_price.amount",
                format!("must be 0 to {MAX_PRICE} minor units"),
            ));
        }
        let currency = Currency::parse(self.unit_price.currency)
            .map_err(|e| errors.push(FieldError::new("unit_price.currency", e.to_string())));
        if !(0..=MAX_STOCK).contains(&self.on_hand) {
            errors.push(FieldError::new(
                "on_hand",
                format!("must be 0 to {MAX_STOCK}"),
            ));
        }
        match (sku, currency) {
            (Ok(sku), Ok(currency)) if errors.is_empty() => Ok((
                sku,
                ProductSpec {
                    name,
                    unit_price: Money::new(self.unit_price.amount, currency),
                    on_hand: self.on_hand,
                },
            )),
            _ => Err(errors),
        }
    }
}

/// Creates the product `sku` or changes its name, price or stock. Every
/// change bumps the revision and announces it (ProductUpdated, through the
/// outbox); putting what is already there changes nothing. For operators,
/// with the `ADMIN_TOKEN`.
#[utoipa::path(put, path = "/products/{sku}", tag = "catalog",
    params(("sku" = String, Path, description = "1–64 characters of A-Z, 0-9 and -",
        pattern = "^[A-Z0-9-]{1,64}$")),
    request_body = ProductBody,
    security(("admin_token" = [])),
    responses(
        AdminProblems,
        (status = 200, description = "Changed (or already so)", body = Product),
        (status = 201, description = "Created", body = Product,
            headers(("location" = String, description = "/products/{sku}"))),
        JsonBodyProblems,
    ))]
async fn put_product(
    _admin: Admin,
    State(pool): State<PgPool>,
    ApiPath(sku): ApiPath<String>,
    ApiJson(body): ApiJson<ProductBody>,
) -> Result<Response, Problem> {
    let (sku, spec) = body.validate(&sku).map_err(Problem::validation)?;
    let (put, row) = catalog::put_product(&pool, &sku, &spec).await?;
    let product = Json(Product::from(row));
    Ok(match put {
        Put::Created(_) => (
            StatusCode::CREATED,
            [(header::LOCATION, format!("/products/{sku}"))],
            product,
        )
            .into_response(),
        _ => product.into_response(),
    })
}

/// The query of `GET /reservations`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct Filter {
    /// The order whose reservation to show.
    order_id: Uuid,
}

/// The reservation of an order: empty until the order is seen here. For
/// operators, with the `ADMIN_TOKEN`.
#[utoipa::path(get, path = "/reservations", tag = "reservations",
    params(Filter),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Zero or one reservation", body = [Reservation]),
        AdminProblems,
        (status = 422, response = ProblemResponse),
    ))]
async fn reservations(
    _admin: Admin,
    State(pool): State<PgPool>,
    ApiQuery(filter): ApiQuery<Filter>,
) -> Result<Json<Vec<Reservation>>, Problem> {
    Ok(Json(store::reservations_of(&pool, filter.order_id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI document states the bounds `validate` enforces: the
    /// derive takes literals only, so this pins them to the constants.
    #[tokio::test]
    async fn the_schema_states_the_bounds_the_code_enforces() {
        let body = serde_json::to_value(<ProductBody as utoipa::PartialSchema>::schema())
            .expect("serializable");
        let field = |name: &str, bound: &str| body["properties"][name][bound].clone();
        assert_eq!(field("name", "maxLength"), MAX_NAME);
        assert_eq!(field("name", "minLength"), 1);
        assert_eq!(field("on_hand", "maximum"), MAX_STOCK);
        assert_eq!(field("on_hand", "minimum"), 0);

        // A pool that never connects: only the routes' documents are read.
        let pool = PgPool::connect_lazy("postgres://127.0.0.1/unused").expect("a lazy pool");
        let document = serde_json::to_value(api(pool).into_openapi()).expect("serializable");
        let sku = &document["paths"]["/products/{sku}"]["put"]["parameters"][0];
        assert_eq!(sku["schema"]["pattern"], Sku::PATTERN, "{sku}");
    }
}
