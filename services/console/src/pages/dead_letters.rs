//! The Dead letters pages: per service, grouped by reason and error with
//! count and first/last seen; one letter with its headers and masked body;
//! replay one, a group or all, and purge — each change behind a
//! confirmation page, as `checkoutctl dlq purge` wants `--yes`.

use super::{AppState, Flash, csrf_field, forbidden_post, page, see_other, time, trace_link};
use crate::dead_letters::{GroupKey, Letter, Selection, groups};
use crate::dlq::LIST_LIMIT;
use crate::services::NAMES;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

/// The service named in the path, if it is one of the four.
fn known(service: &str) -> Option<&'static str> {
    NAMES.into_iter().find(|name| *name == service)
}

fn no_such_service(service: &str) -> Response {
    let body = html! { p { "No service " code { (service) } "; one of " (NAMES.join(", ")) "." } };
    let mut response = page("Not found", &Flash::default(), body);
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

pub(crate) async fn overview(
    State(state): State<AppState>,
    Query(flash): Query<Flash>,
) -> Response {
    let mut sections = Vec::new();
    for service in NAMES {
        sections.push((service, state.broker.list(service).await));
    }
    let body = html! {
        @for (service, letters) in &sections {
            h2 { a href=(format!("/dead-letters/{service}")) { (service) } }
            @match letters {
                Ok(letters) => (group_table(&state, service, letters)),
                Err(error) => p.error { (error) },
            }
        }
    };
    page("Dead letters", &flash, body)
}

pub(crate) async fn of_service(
    State(state): State<AppState>,
    Path(service): Path<String>,
    Query(flash): Query<Flash>,
) -> Response {
    let Some(service) = known(&service) else {
        return no_such_service(&service);
    };
    let body = match state.broker.list(service).await {
        Err(error) => html! { p.error { (error) } },
        Ok(letters) => html! {
            h2 { "By reason and error" }
            (group_table(&state, service, &letters))
            h2 { "Letters" }
            @if letters.len() >= LIST_LIMIT { p.muted { "The first " (LIST_LIMIT) " only." } }
            (letter_table(&state, service, &letters))
            @if !letters.is_empty() {
                p {
                    (action(&state, service, "replay", "Replay all…", &[("scope", "all")]))
                    " "
                    (action(&state, service, "purge", "Purge all…", &[]))
                }
            }
        },
    };
    page(&format!("Dead letters: {service}"), &flash, body)
}

pub(crate) async fn show(
    State(state): State<AppState>,
    Path((service, id)): Path<(String, String)>,
) -> Response {
    let Some(service) = known(&service) else {
        return no_such_service(&service);
    };
    let body = match state.broker.find(service, &id).await {
        Err(error) => html! { p.error { (error) } },
        Ok(None) => {
            html! { p { "No dead letter " code { (id) } " in " (service) "'s queue (replayed or purged?)." } }
        }
        Ok(Some(letter)) => html! {
            p {
                (action(&state, service, "replay", "Replay…", &[("scope", "one"), ("message_id", &id)]))
                " " (trace_link(state.trace_url(letter.trace_id.as_deref())))
                @if let Some(order) = letter.order_id { " · order " a href=(format!("/orders/{order}")) { code { (order) } } }
            }
            h2 { "Headers" }
            table id="headers" { tbody { @for (key, value) in &letter.headers { tr { th { (key) } td { code { (value) } } } } } }
            h2 { "Body (card tokens masked)" }
            pre id="body" { (letter.body) }
        },
    };
    page(&format!("Dead letter {id}"), &Flash::default(), body)
}

/// A form button that posts to `/dead-letters/{service}/{verb}` with `fields`.
fn action(
    state: &AppState,
    service: &str,
    verb: &str,
    label: &str,
    fields: &[(&str, &str)],
) -> Markup {
    html! {
        form.inline method="post" action=(format!("/dead-letters/{service}/{verb}")) {
            (csrf_field(state))
            @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
            button type="submit" { (label) }
        }
    }
}

fn group_table(state: &AppState, service: &str, letters: &[Letter]) -> Markup {
    let groups = groups(letters);
    html! {
        @if groups.is_empty() {
            p.muted { "No dead letters." }
        } @else {
            table.groups {
                thead { tr { th { "Count" } th { "Reason" } th { "Error" } th { "Events" } th { "First seen" } th { "Last seen" } th {} } }
                tbody {
                    @for group in &groups {
                        tr {
                            td { strong { (group.count) } }
                            td { (group.key.reason) }
                            td { code { (group.key.error) } }
                            td { (group.event_types.join(", ")) }
                            td { (group.first_seen.as_ref().map(time).unwrap_or_default()) }
                            td { (group.last_seen.as_ref().map(time).unwrap_or_default()) }
                            td { (action(state, service, "replay", "Replay group…", &[
                                ("scope", "group"), ("reason", &group.key.reason), ("error", &group.key.error),
                            ])) }
                        }
                    }
                }
            }
        }
    }
}

fn letter_table(state: &AppState, service: &str, letters: &[Letter]) -> Markup {
    html! {
        table id="letters" {
            thead { tr { th { "Message" } th { "Type" } th { "Reason" } th { "Attempts" } th { "Failed at" } th { "Order" } th { "Trace" } } }
            tbody {
                @for letter in letters {
                    @let id = letter.message_id.as_deref().unwrap_or("-");
                    tr {
                        td { a href=(format!("/dead-letters/{service}/letters/{id}")) { code { (id) } } }
                        td { (letter.event_type.as_deref().unwrap_or("-")) }
                        td { (letter.reason.as_deref().unwrap_or("-")) }
                        td { (letter.attempts.map(|n| n.to_string()).unwrap_or_default()) }
                        td { (letter.failed_at.as_deref().unwrap_or("-")) }
                        td { @if let Some(order) = letter.order_id { a href=(format!("/orders/{order}")) { code { (order) } } } }
                        td { (trace_link(state.trace_url(letter.trace_id.as_deref()))) }
                    }
                }
            }
        }
    }
}

/// The form of a replay: what to replay, and whether it is confirmed.
#[derive(Debug, Deserialize)]
pub(crate) struct ReplayForm {
    csrf: String,
    scope: String,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    confirm: Option<String>,
}

impl ReplayForm {
    fn selection(&self) -> Option<Selection> {
        match self.scope.as_str() {
            "one" => self.message_id.clone().map(Selection::One),
            "group" => Some(Selection::Group(GroupKey {
                reason: self.reason.clone().unwrap_or_default(),
                error: self.error.clone().unwrap_or_default(),
            })),
            "all" => Some(Selection::All),
            _ => None,
        }
    }
}

pub(crate) async fn replay(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ReplayForm>,
) -> Response {
    if !state.gate.allows_post(&form.csrf, &headers) {
        return forbidden_post();
    }
    let (Some(service), Some(selection)) = (known(&service), form.selection()) else {
        return no_such_service(&service);
    };
    let back = format!("/dead-letters/{service}");
    if form.confirm.as_deref() != Some("yes") {
        return confirm_replay(&state, service, &form, &selection).await;
    }
    let outcome = state.broker.replay(service, &selection).await.map(|o| {
        let mut text = format!(
            "Replayed {} dead letter(s) to the {service} queue; {} left in the dead-letter queue.",
            o.replayed, o.left
        );
        for (id, why) in &o.not_replayed {
            text.push_str(&format!(" Not replayed {id}: {why}."));
        }
        text
    });
    see_other(&back, outcome)
}

async fn confirm_replay(
    state: &AppState,
    service: &str,
    form: &ReplayForm,
    selection: &Selection,
) -> Response {
    let count = match state.broker.list(service).await {
        Ok(letters) => letters
            .iter()
            .filter(|l| selection.picks(l))
            .count()
            .to_string(),
        Err(error) => format!("an unknown number of (the queue cannot be read: {error})"),
    };
    let mut fields: Vec<(&str, &str)> = vec![("scope", &form.scope), ("confirm", "yes")];
    for (name, value) in [
        ("message_id", &form.message_id),
        ("reason", &form.reason),
        ("error", &form.error),
    ] {
        if let Some(value) = value {
            fields.push((name, value));
        }
    }
    let body = html! {
        p { "Replay " strong id="confirm-count" { (count) } " dead letter(s) of " (service)
            " to its own queue? Each goes back to the " (service)
            " service only; its inbox ignores one it has already applied." }
        @if let Selection::Group(key) = selection { p { "Group: " (key.reason) " · " code { (key.error) } } }
        @if let Selection::One(id) = selection { p { "Message: " code { (id) } } }
        p { (action(state, service, "replay", "Yes, replay", &fields)) " " a href=(format!("/dead-letters/{service}")) { "Cancel" } }
    };
    page("Confirm replay", &Flash::default(), body)
}

/// The form of a purge.
#[derive(Debug, Deserialize)]
pub(crate) struct PurgeForm {
    csrf: String,
    #[serde(default)]
    confirm: Option<String>,
}

pub(crate) async fn purge(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
    Form(form): Form<PurgeForm>,
) -> Response {
    if !state.gate.allows_post(&form.csrf, &headers) {
        return forbidden_post();
    }
    let Some(service) = known(&service) else {
        return no_such_service(&service);
    };
    if form.confirm.as_deref() != Some("yes") {
        let body = html! {
            p { "Purge every dead letter of " (service) "? They are deleted and cannot be replayed afterwards." }
            p { (action(&state, service, "purge", "Yes, purge", &[("confirm", "yes")])) " " a href=(format!("/dead-letters/{service}")) { "Cancel" } }
        };
        return page("Confirm purge", &Flash::default(), body).into_response();
    }
    let outcome = state
        .broker
        .purge(service)
        .await
        .map(|n| format!("Purged {n} dead letter(s) of {service}."));
    see_other(&format!("/dead-letters/{service}"), outcome)
}
