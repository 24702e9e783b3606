//! What `PUT /faults` asks for and what `GET /faults` shows: a requested
//! change, checked against the switch it names, and a board as a document.

use super::{MAX_LATENCY_MS, MAX_PATTERN_CHARS, Parameter, Setting};
use crate::http::FieldError;
use serde::Serialize;

/// A requested change of one switch: `PUT /faults`' body, read as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// The switch's name.
    #[schema(example = "decline")]
    pub name: String,
    /// On or off; omitted, it stays as it is.
    pub on: Option<bool>,
    /// For a percentage switch: 0–100.
    pub percent: Option<i64>,
    /// For `fail_permanent`: a glob over `customer_id`.
    pub pattern: Option<String>,
    /// For `delay`: milliseconds, 0–30000.
    pub latency_ms: Option<i64>,
}

/// A board as `GET /faults` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Document {
    /// The service's short name (`payment`).
    pub service: String,
    /// Its switches, in a fixed order.
    pub switches: Vec<SwitchView>,
}

/// One switch as `GET /faults` shows it: the parameter fields appear only
/// on the switches that take them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SwitchView {
    /// Its name.
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    /// Whether it is on.
    pub on: bool,
    /// The percentage, for a percentage switch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    /// The `customer_id` glob, for `fail_permanent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The latency in milliseconds, for `delay`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u32>,
}

/// The parameter `change` asks for, checked against what the switch takes
/// (`current`); omitted, the current value. Every invalid field is reported.
pub(super) fn validate(current: &Parameter, change: &Change) -> Result<Parameter, Vec<FieldError>> {
    let mut errors = not_taken(current, change);
    let requested = match current {
        Parameter::Percent(_) => change.percent.map(percent).transpose(),
        Parameter::Pattern(_) => change.pattern.as_deref().map(pattern).transpose(),
        Parameter::LatencyMs(_) => change.latency_ms.map(latency).transpose(),
        Parameter::None => Ok(None),
    };
    match requested {
        Ok(requested) if errors.is_empty() => Ok(requested.unwrap_or_else(|| current.clone())),
        Ok(_) => Err(errors),
        Err(error) => {
            errors.push(error);
            Err(errors)
        }
    }
}

/// The parameters `change` gives that the switch does not take.
fn not_taken(current: &Parameter, change: &Change) -> Vec<FieldError> {
    let takes = |field: &str| {
        matches!(
            (field, current),
            ("percent", Parameter::Percent(_))
                | ("pattern", Parameter::Pattern(_))
                | ("latency_ms", Parameter::LatencyMs(_))
        )
    };
    [
        ("percent", change.percent.is_some()),
        ("pattern", change.pattern.is_some()),
        ("latency_ms", change.latency_ms.is_some()),
    ]
    .into_iter()
    .filter(|(field, given)| *given && !takes(field))
    .map(|(field, _)| {
        FieldError::new(
            field,
            format!("the switch {} takes no {field}", change.name),
        )
    })
    .collect()
}

fn percent(raw: i64) -> Result<Parameter, FieldError> {
    match u8::try_from(raw) {
        Ok(percent) if percent <= 100 => Ok(Parameter::Percent(percent)),
        _ => Err(FieldError::new(
            "percent",
            "must be an integer from 0 to 100",
        )),
    }
}

fn pattern(raw: &str) -> Result<Parameter, FieldError> {
    let length = raw.chars().count();
    if length == 0 || length > MAX_PATTERN_CHARS || raw.chars().any(char::is_control) {
        return Err(FieldError::new(
            "pattern",
            format!("must be 1–{MAX_PATTERN_CHARS} characters, no control characters"),
        ));
    }
    Ok(Parameter::Pattern(raw.to_owned()))
}

fn latency(raw: i64) -> Result<Parameter, FieldError> {
    match u32::try_from(raw) {
        Ok(ms) if ms <= MAX_LATENCY_MS => Ok(Parameter::LatencyMs(ms)),
        _ => Err(FieldError::new(
            "latency_ms",
            format!("must be an integer from 0 to {MAX_LATENCY_MS}"),
        )),
    }
}

pub(super) fn view(setting: &Setting) -> SwitchView {
    let (mut percent, mut pattern, mut latency_ms) = (None, None, None);
    match &setting.parameter {
        Parameter::None => {}
        Parameter::Percent(p) => percent = Some(*p),
        Parameter::Pattern(p) => pattern = Some(p.clone()),
        Parameter::LatencyMs(ms) => latency_ms = Some(*ms),
    }
    SwitchView {
        name: setting.switch.name(),
        description: setting.switch.description(),
        on: setting.on,
        percent,
        pattern,
        latency_ms,
    }
}
