//! The Order service's HTTP API: place an order (idempotently), read it
//! with its timeline, list orders page by page, see the catalog. Placing
//! and reading one order are public (an order's id is a UUID v7 with 74
//! random bits: not guessable); the listing shows every customer's orders,
//! so it takes [`Admin`], the `ADMIN_TOKEN` check. Each handler carries its
//! OpenAPI description; `api()` registers route and description together.

use crate::catalog::{self, Product};
use crate::idempotency::{self, Key};
use crate::place::{self, Placed};
use crate::request::PlaceOrder;
use crate::saga::Status;
use crate::settings::Settings;
use crate::view::{OrderSummary, OrderView};
use crate::{store, timeline};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use checkout_runtime::admin::{Admin, AdminProblems};
use checkout_runtime::http::{
    ApiJson, ApiPath, ApiQuery, FieldError, JsonBodyProblems, Problem, ProblemResponse,
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

#[derive(Debug, Clone)]
struct AppState {
    pool: PgPool,
    settings: Arc<Settings>,
}

/// The routes, each with its documentation.
pub(crate) fn api(pool: PgPool, settings: Settings) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(place, list))
        .routes(routes!(show))
        .routes(routes!(list_catalog))
        .with_state(AppState {
            pool,
            settings: Arc::new(settings),
        })
}

/// The answer to `POST /orders`.
#[derive(Debug, Serialize, ToSchema)]
struct Accepted {
    /// The order's id.
    id: Uuid,
    /// `PENDING` for a new order; for a replay, where the order is now.
    #[schema(example = "PENDING")]
    status: Status,
}

/// Places an order: validates it, prices it from the local catalog, and
/// writes it with its OrderCreated in one transaction. The answer is 202:
/// the order is accepted, not yet confirmed; poll `Location`.
///
/// With an `Idempotency-Key`, a retry with the same body gets the same
/// order (header `Idempotent-Replayed: true`, no second order), and the
/// same key with another body is a 422. Keys are kept 24 hours.
#[utoipa::path(post, path = "/orders", tag = "orders",
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1–255 visible ASCII characters, e.g. a UUID; kept 24 hours",
        min_length = 1, max_length = 255, pattern = "^[!-~]{1,255}$")),
    request_body = PlaceOrder,
    responses(
        (status = 202, description = "Accepted (or replayed)", body = Accepted,
            headers(("location" = String, description = "/orders/{id}"))),
        JsonBodyProblems,
    ))]
async fn place(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<PlaceOrder>,
) -> Result<Response, Problem> {
    let key = headers
        .get(idempotency::HEADER)
        .map(|value| Key::parse(value.as_bytes()))
        .transpose()
        .map_err(|error| Problem::validation(vec![error]))?;
    let placed = place::place(&state.pool, key.as_ref(), request).await?;
    Ok(accepted(placed))
}

fn accepted(placed: Placed) -> Response {
    let Placed {
        id,
        status,
        replayed,
    } = placed;
    let mut response = (
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/orders/{id}"))],
        Json(Accepted {
            id: id.as_uuid(),
            status,
        }),
    )
        .into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// One order: status, lines, total, how payment and stock stand, why it
/// was cancelled, the events that moved it, and its trace.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 404, response = ProblemResponse),
    ))]
async fn show(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OrderView>, Problem> {
    let not_found = || Problem::not_found(format!("order {id}"));
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let order = store::order(&state.pool, uuid)
        .await?
        .ok_or_else(not_found)?;
    let entries = timeline::of(&state.pool, uuid).await?;
    let view = OrderView::new(order, entries, |trace| state.settings.trace_url(trace));
    Ok(Json(view))
}

/// The query of `GET /orders`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only orders with this status.
    #[param(inline)]
    status: Option<Status>,
    /// Orders per page: 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page; opaque.
    cursor: Option<String>,
}

/// One page of `GET /orders`.
#[derive(Debug, Serialize, ToSchema)]
struct OrderPage {
    /// Newest first.
    items: Vec<OrderSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

/// Orders, newest first, a page at a time (keyset pagination: a page is
/// stable while new orders arrive, and deep pages cost what the first does).
/// Every customer's orders: for operators, with the `ADMIN_TOKEN`.
#[utoipa::path(get, path = "/orders", tag = "orders",
    params(ListQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of orders", body = OrderPage),
        AdminProblems,
        (status = 422, response = ProblemResponse),
    ))]
async fn list(
    _admin: Admin,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<OrderPage>, Problem> {
    let mut errors = Vec::new();
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        errors.push(FieldError::new(
            "limit",
            format!("must be 1 to {MAX_LIMIT}"),
        ));
    }
    let before = match query.cursor.as_deref().map(decode_cursor) {
        None => None,
        Some(Some(id)) => Some(id),
        Some(None) => {
            errors.push(FieldError::new(
                "cursor",
                "is not a cursor this API returned",
            ));
            None
        }
    };
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    // One more than asked tells whether there is a next page.
    let rows = store::page(&state.pool, query.status, before, limit + 1).await?;
    let mut items: Vec<OrderSummary> = rows.into_iter().map(OrderSummary::from).collect();
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|last| encode_cursor(last.id))
    } else {
        None
    };
    Ok(Json(OrderPage { items, next_cursor }))
}

/// A cursor is the last id of a page; clients must not rely on its form.
fn encode_cursor(id: Uuid) -> String {
    id.simple().to_string()
}

fn decode_cursor(raw: &str) -> Option<Uuid> {
    (raw.len() == 32)
        .then(|| Uuid::try_parse(raw).ok())
        .flatten()
}

/// The products this service can price, as it knows them from Inventory's
/// ProductUpdated events.
#[utoipa::path(get, path = "/catalog", tag = "catalog",
    responses((status = 200, description = "The local catalog, by SKU", body = [Product])))]
async fn list_catalog(State(state): State<AppState>) -> Result<Json<Vec<Product>>, Problem> {
    Ok(Json(catalog::list(&state.pool).await?))
}
