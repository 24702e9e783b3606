//! The Orders page: newest first, a status filter, search by id, the
//! counts by status and how many orders ended in the last minute.

use super::{AppState, Flash, page, time, unavailable};
use crate::api::OrderPage;
use crate::orders::{Rate, SCAN_PAGES, STATUSES, status_filter};
use crate::services::Answer;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;

/// Orders per page.
const PAGE_SIZE: u32 = 50;

/// The query of `GET /orders`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    /// An order id to open.
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Response {
    let mut flash = Flash::default();
    if let Some(q) = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        match uuid::Uuid::parse_str(q) {
            Ok(id) => return Redirect::to(&format!("/orders/{id}")).into_response(),
            Err(_) => flash.error = Some(format!("{q:?} is not an order id (a UUID)")),
        }
    }
    let status = status_filter(query.status.as_deref());
    let (orders, counts, rate) = tokio::join!(
        state
            .services
            .orders(status, PAGE_SIZE, query.cursor.as_deref()),
        state.services.order_counts(),
        rate(&state),
    );
    let body = html! {
        (summary(&counts, &rate))
        (filters(status))
        @match &orders {
            Ok(page) => (table(page, status)),
            Err(error) => (unavailable(error)),
        }
    };
    page("Orders", &flash, body)
}

/// Reads the newest orders back far enough to count those that ended in
/// the last minute (see [`crate::orders`]).
async fn rate(state: &AppState) -> Answer<Rate> {
    let now = Utc::now();
    let mut rate = Rate::default();
    let mut cursor: Option<String> = None;
    for _ in 0..SCAN_PAGES {
        let page = state.services.orders(None, 100, cursor.as_deref()).await?;
        if rate.add(&page.items, now) || page.next_cursor.is_none() {
            rate.complete = true;
            return Ok(rate);
        }
        cursor = page.next_cursor;
    }
    Ok(rate)
}

fn summary(counts: &Answer<Vec<(String, u64)>>, rate: &Answer<Rate>) -> Markup {
    html! {
        @match counts {
            Ok(counts) => p.counts {
                @for (status, count) in counts {
                    span { span class=(format!("status {status}")) { (status) } " " strong { (count) } }
                }
            },
            Err(error) => (unavailable(error)),
        }
        @match rate {
            Ok(rate) => p.counts id="rate" {
                span { "Last minute: " }
                span { span.status.CONFIRMED { "CONFIRMED" } " " strong { (rate.confirmed) } "/min" }
                span { span.status.CANCELLED { "CANCELLED" } " " strong { (rate.cancelled) } "/min" }
                @if !rate.complete { span.muted { "(at least: more orders than the console reads)" } }
            },
            Err(error) => (unavailable(error)),
        }
    }
}

fn filters(status: Option<&str>) -> Markup {
    html! {
        form method="get" action="/orders" {
            label { "Status "
                select name="status" {
                    option value="" selected[status.is_none()] { "any" }
                    @for s in STATUSES { option value=(s) selected[status == Some(s)] { (s) } }
                }
            }
            " "
            label { "Order id " input type="text" name="q" placeholder="0199…" style="width:22em"; }
            " "
            button type="submit" { "Show" }
        }
    }
}

fn table(page: &OrderPage, status: Option<&str>) -> Markup {
    html! {
        @if page.items.is_empty() {
            p.muted { "No orders" @if let Some(s) = status { " with status " (s) } "." }
        } @else {
            table id="orders" {
                thead { tr { th { "Order" } th { "Status" } th { "Customer" } th { "Total" } th { "Placed (UTC)" } th { "Last change" } } }
                tbody {
                    @for order in &page.items {
                        tr {
                            td { a href=(format!("/orders/{}", order.id)) { code { (order.id) } } }
                            td { span class=(format!("status {}", order.status)) { (order.status) } }
                            td { (order.customer_id) }
                            td { (order.total) }
                            td { (time(&order.created_at)) }
                            td { (time(&order.updated_at)) }
                        }
                    }
                }
            }
            @if let Some(cursor) = &page.next_cursor {
                @let query = form_urlencoded::Serializer::new(String::new())
                    .append_pair("status", status.unwrap_or(""))
                    .append_pair("cursor", cursor)
                    .finish();
                p { a href=(format!("/orders?{query}")) { "Older orders →" } }
            }
        }
    }
}
