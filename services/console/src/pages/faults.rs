//! The Fault switches page: each service's switches as `GET /faults`
//! reports them, and a form per switch that changes it with `PUT /faults`.
//! A service that refuses (switches disabled, 403) or does not answer is
//! shown as such, in place of its table.

use super::{AppState, Flash, csrf_field, forbidden_post, page, see_other, unavailable};
use crate::api::{Switch, SwitchChange};
use crate::services::NAMES;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

pub(crate) async fn list(State(state): State<AppState>, Query(flash): Query<Flash>) -> Response {
    let answers = all_faults(&state).await;
    let body = html! {
        p.muted { "Switches live in each service's memory, per replica, and reset when it restarts. "
            "Services started without FAULTS_ENABLED=true refuse them." }
        @for (service, answer) in NAMES.iter().zip(&answers) {
            h2 { (service) }
            @match answer {
                Ok(faults) => (switch_table(&state, service, &faults.switches)),
                Err(error) => (unavailable(error)),
            }
        }
    };
    page("Fault switches", &flash, body)
}

/// Every service's switches, asked at once.
async fn all_faults(state: &AppState) -> Vec<crate::services::Answer<crate::api::Faults>> {
    let s = &state.services;
    let (order, payment, inventory, email) = tokio::join!(
        s.faults("order"),
        s.faults("payment"),
        s.faults("inventory"),
        s.faults("email")
    );
    vec![order, payment, inventory, email]
}

fn switch_table(state: &AppState, service: &str, switches: &[Switch]) -> Markup {
    html! {
        table.switches id=(format!("faults-{service}")) {
            thead { tr { th { "Switch" } th { "What it does" } th { "State" } th { "Change" } } }
            tbody {
                @for switch in switches {
                    tr id=(format!("switch-{service}-{}", switch.name)) {
                        td { code { (switch.name) } }
                        td { (switch.description) }
                        td {
                            @if switch.on { span.on { "ON" } } @else { span.off { "off" } }
                            @if let Some(percent) = switch.percent { " · " (percent) "%" }
                            @if let Some(pattern) = &switch.pattern { " · pattern " code { (pattern) } }
                            @if let Some(latency) = switch.latency_ms { " · " (latency) " ms" }
                        }
                        td { (switch_form(state, service, switch)) }
                    }
                }
            }
        }
    }
}

fn switch_form(state: &AppState, service: &str, switch: &Switch) -> Markup {
    html! {
        form.inline method="post" action=(format!("/faults/{service}")) {
            (csrf_field(state))
            input type="hidden" name="name" value=(switch.name);
            @if let Some(percent) = switch.percent {
                label { input type="number" name="percent" min="0" max="100" value=(percent); "% " }
            }
            @if let Some(pattern) = &switch.pattern {
                label { "pattern " input type="text" name="pattern" value=(pattern); " " }
            }
            @if let Some(latency) = switch.latency_ms {
                label { input type="number" name="latency_ms" min="0" value=(latency); " ms " }
            }
            @if switch.on {
                button type="submit" name="on" value="false" { "Switch off" }
                " "
                button type="submit" name="on" value="true" { "Apply" }
            } @else {
                button type="submit" name="on" value="true" { "Switch on" }
            }
        }
    }
}

/// The form of one switch: every field as typed; empty means "keep".
#[derive(Debug, Deserialize)]
pub(crate) struct SwitchForm {
    csrf: String,
    name: String,
    on: String,
    #[serde(default)]
    percent: Option<String>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    latency_ms: Option<String>,
}

impl SwitchForm {
    /// The `PUT /faults` body, or the field that is not a number.
    fn change(&self) -> Result<SwitchChange, String> {
        fn number<T: std::str::FromStr>(
            field: &str,
            raw: &Option<String>,
        ) -> Result<Option<T>, String> {
            match raw.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{field}: {v:?} is not a number")),
            }
        }
        Ok(SwitchChange {
            name: self.name.clone(),
            on: self.on == "true",
            percent: number("percent", &self.percent)?,
            pattern: self.pattern.clone().filter(|p| !p.is_empty()),
            latency_ms: number("latency_ms", &self.latency_ms)?,
        })
    }
}

pub(crate) async fn change(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
    Form(form): Form<SwitchForm>,
) -> Response {
    if !state.gate.allows_post(&form.csrf, &headers) {
        return forbidden_post();
    }
    let Some(service) = NAMES.into_iter().find(|name| *name == service) else {
        return see_other("/faults", Err(format!("no service {service:?}")));
    };
    let change = match form.change() {
        Ok(change) => change,
        Err(error) => return see_other("/faults", Err(error)),
    };
    let outcome = match state.services.set_fault(service, &change).await {
        Ok(_) => {
            tracing::warn!(service, ?change, "fault switch changed from the console");
            Ok(format!(
                "{service}: {} switched {}.",
                change.name,
                if change.on { "on" } else { "off" }
            ))
        }
        Err(error) => Err(format!("{service} refused the change: {}", error.detail)),
    };
    see_other("/faults", outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(on: &str, percent: &str, pattern: &str) -> SwitchForm {
        SwitchForm {
            csrf: String::new(),
            name: "fail_permanent".into(),
            on: on.into(),
            percent: Some(percent.into()),
            pattern: Some(pattern.into()),
            latency_ms: None,
        }
    }

    #[test]
    fn a_form_becomes_a_put_body_keeping_what_it_left_empty() {
        let change = form("true", "", "fail-*").change().expect("valid");
        assert_eq!(
            change,
            SwitchChange {
                name: "fail_permanent".into(),
                on: true,
                percent: None,
                pattern: Some("fail-*".into()),
                latency_ms: None
            }
        );
        assert!(!form("false", "50", "").change().expect("valid").on);
        assert_eq!(
            form("true", " 50 ", "").change().expect("valid").percent,
            Some(50)
        );
        assert!(
            form("true", "half", "")
                .change()
                .expect_err("not a number")
                .contains("percent")
        );
    }
}
