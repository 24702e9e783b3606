//! One order: its lines, total and status, and one timeline across the
//! four services (see [`crate::timeline`]), each entry linked to its trace.

use super::{AppState, Flash, page, time, trace_link, unavailable};
use crate::api::Order;
use crate::dead_letters::Letter;
use crate::services::{Answer, NAMES};
use crate::timeline::{Parts, merge};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use uuid::Uuid;

pub(crate) async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return not_found(&id);
    };
    let (order, payments, reservations, emails) = tokio::join!(
        state.services.order(id),
        state.services.payments(id),
        state.services.reservations(id),
        state.services.emails(id),
    );
    let order = match order {
        Ok(None) => return not_found(&id.to_string()),
        Ok(Some(order)) => Ok(order),
        Err(error) => Err(error),
    };
    let (dead_letters, dead_letter_errors) = dead_letters_of(&state, id).await;
    let unanswered: Vec<_> = [
        order.as_ref().err(),
        payments.as_ref().err(),
        reservations.as_ref().err(),
        emails.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let entries = merge(&Parts {
        order: order.as_ref().ok(),
        payments: ok_or_empty(&payments),
        reservations: ok_or_empty(&reservations),
        emails: ok_or_empty(&emails),
        dead_letters: &dead_letters,
    });
    let body = html! {
        @for error in &unanswered { (unavailable(error)) }
        @for error in &dead_letter_errors { p.error { "Dead letters: " (error) } }
        @if let Ok(order) = &order { (details(&state, order)) }
        h2 { "Timeline" }
        table id="timeline" {
            thead { tr { th { "Time (UTC)" } th { "Service" } th { "What" } th { "Outcome" } th { "Detail" } th { "Trace" } } }
            tbody {
                @for entry in &entries {
                    tr class=(entry.outcome.as_str()) {
                        td { (time(&entry.at)) }
                        td { (entry.service) }
                        td { (entry.what) }
                        td { span class=(entry.outcome.as_str()) { (entry.outcome.as_str()) } }
                        td { (entry.detail) }
                        td { (trace_link(state.trace_url(entry.trace_id.as_deref()))) }
                    }
                }
            }
        }
    };
    page(&format!("Order {id}"), &Flash::default(), body)
}

fn ok_or_empty<T>(answer: &Answer<Vec<T>>) -> &[T] {
    answer.as_deref().unwrap_or(&[])
}

/// The order's dead letters in every service's queue, and the queues that
/// could not be read.
async fn dead_letters_of(state: &AppState, id: Uuid) -> (Vec<(String, Letter)>, Vec<String>) {
    let mut letters = Vec::new();
    let mut errors = Vec::new();
    for service in NAMES {
        match state.broker.list(service).await {
            Ok(found) => letters.extend(
                found
                    .into_iter()
                    .filter(|l| l.order_id == Some(id))
                    .map(|l| (service.to_owned(), l)),
            ),
            Err(error) => errors.push(format!("{service}: {error}")),
        }
    }
    (letters, errors)
}

fn details(state: &AppState, order: &Order) -> Markup {
    html! {
        p id="order-status" {
            "Status " span class=(format!("status {}", order.status)) { (order.status) }
            " · payment " strong { (order.payment) }
            " · stock " strong { (order.inventory) }
            @if let Some(reason) = &order.cancel_reason { " · cancelled: " (reason) }
            " · " (trace_link(state.trace_url(order.trace_id.as_deref())))
        }
        p.muted {
            "Customer " (order.customer_id)
            @if let Some(email) = &order.customer_email { " <" (email) ">" }
            " · placed " (time(&order.created_at)) " · last change " (time(&order.updated_at))
            @if order.trace_id.is_none() { " · no trace recorded" }
        }
        table id="lines" {
            thead { tr { th { "SKU" } th { "Quantity" } th { "Unit price" } } }
            tbody {
                @for line in &order.items {
                    tr { td { (line.sku) } td { (line.quantity) } td { (line.unit_price) } }
                }
                tr { th colspan="2" { "Total" } th { (order.total) } }
            }
        }
    }
}

fn not_found(id: &str) -> Response {
    let body = html! { p { "No order " code { (id) } ". " a href="/orders" { "All orders" } } };
    let mut response = page("Order not found", &Flash::default(), body);
    *response.status_mut() = StatusCode::NOT_FOUND;
    response.into_response()
}
