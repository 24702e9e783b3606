//! The console's pages, server-rendered with maud (escaped by default; no
//! script, no font, no stylesheet from anywhere but the page itself). Each
//! module is one page (or a family) with its handlers and its markup.

mod dead_letters;
mod faults;
mod order;
mod orders;

use crate::auth::Gate;
use crate::dlq::Broker;
use crate::services::{Services, Unavailable};
use crate::settings::Settings;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use std::sync::Arc;

/// What every handler reads.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) services: Services,
    pub(crate) broker: Broker,
    pub(crate) settings: Arc<Settings>,
    pub(crate) gate: Arc<Gate>,
}

impl AppState {
    /// The Jaeger link of a trace, if one can be made.
    pub(crate) fn trace_url(&self, trace_id: Option<&str>) -> Option<String> {
        self.settings.trace_url(trace_id?)
    }
}

/// Every page, behind the admin check.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/orders") }))
        .route("/orders", get(orders::list))
        .route("/orders/{id}", get(order::show))
        .route("/dead-letters", get(dead_letters::overview))
        .route("/dead-letters/{service}", get(dead_letters::of_service))
        .route(
            "/dead-letters/{service}/letters/{id}",
            get(dead_letters::show),
        )
        .route("/dead-letters/{service}/replay", post(dead_letters::replay))
        .route("/dead-letters/{service}/purge", post(dead_letters::purge))
        .route("/faults", get(faults::list))
        .route("/faults/{service}", post(faults::change))
        .route_layer(axum::middleware::from_fn_with_state(
            state.gate.clone(),
            crate::auth::require_admin,
        ))
        .with_state(state)
}

/// `?notice=` and `?error=` after a form's redirect: what the change did.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Flash {
    #[serde(default)]
    notice: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// A redirect to `path` that shows `notice` (or `error`) there.
pub(crate) fn see_other(path: &str, outcome: Result<String, String>) -> Response {
    let (key, text) = match &outcome {
        Ok(notice) => ("notice", notice),
        Err(error) => ("error", error),
    };
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair(key, text)
        .finish();
    Redirect::to(&format!("{path}?{query}")).into_response()
}

/// 403 for a form post without the console's form token or from another origin.
pub(crate) fn forbidden_post() -> Response {
    (
        StatusCode::FORBIDDEN,
        "This form post did not come from the console's own page; reload the page and try again.\n",
    )
        .into_response()
}

/// The page around `body`: the navigation, the stylesheet, and any flash.
pub(crate) fn page(title: &str, flash: &Flash, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Checkout console" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                nav {
                    strong { "Checkout console" }
                    a href="/orders" { "Orders" }
                    a href="/dead-letters" { "Dead letters" }
                    a href="/faults" { "Fault switches" }
                }
                main {
                    h1 { (title) }
                    @if let Some(notice) = &flash.notice { p.notice { (notice) } }
                    @if let Some(error) = &flash.error { p.error { (error) } }
                    (body)
                }
            }
        }
    };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        markup.into_string(),
    )
        .into_response()
}

/// A box saying which service did not answer, and why.
pub(crate) fn unavailable(error: &Unavailable) -> Markup {
    html! { p.error { "The " (error.service) " service did not answer: " (error.detail) } }
}

/// The hidden field every form carries.
pub(crate) fn csrf_field(state: &AppState) -> Markup {
    html! { input type="hidden" name="csrf" value=(state.gate.csrf()); }
}

/// A time as the pages show it: UTC, to the millisecond.
pub(crate) fn time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// A link to the trace in Jaeger, or a dash.
pub(crate) fn trace_link(url: Option<String>) -> Markup {
    html! {
        @match url {
            Some(url) => a.trace href=(url) target="_blank" rel="noopener" { "trace" },
            None => span.muted { "—" },
        }
    }
}

const STYLE: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2330;background:#f6f7f9}\
nav{display:flex;gap:1.2em;align-items:center;padding:.7em 1.5em;background:#1d2330}\
nav strong{color:#fff}nav a{color:#c9d3e6;text-decoration:none}nav a:hover{color:#fff}\
main{padding:1em 1.5em;max-width:1200px}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;width:100%;background:#fff;margin:.5em 0}\
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #e3e6eb;vertical-align:top}\
th{background:#eef0f4;font-weight:600}code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}\
pre{background:#fff;border:1px solid #e3e6eb;padding:.7em;overflow:auto;max-height:30em}\
.notice{background:#e6f4ea;border-left:4px solid #2e7d32;padding:.5em .8em}\
.error{background:#fdecea;border-left:4px solid #c62828;padding:.5em .8em}\
.muted{color:#7a8394}.counts>span{display:inline-block;margin-right:1.5em}\
.status{font-weight:600}.CONFIRMED,.done{color:#2e7d32}.CANCELLED,.failed,.dead-lettered{color:#c62828}\
.PENDING,.pending,.retried{color:#b26a00}.compensated{color:#1565c0}\
form.inline{display:inline}button{cursor:pointer}input[type=text],input[type=number]{width:8em}\
.on{color:#c62828;font-weight:600}.off{color:#7a8394}";
