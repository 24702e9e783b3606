//! RFC 9457 problem details: the one shape of every error answer, how a
//! database error becomes one (an outage is a 503 with `Retry-After`, a
//! bug a bland 500 logged once), and their OpenAPI documentation.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, HeaderValue, StatusCode};
use serde::Serialize;
use std::time::Duration;
use utoipa::{IntoResponses, ToResponse, ToSchema};

/// The media type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// A JSON pointer-like path, e.g. `items[1].quantity`.
    pub field: String,
    /// What is wrong, in words a client developer can act on.
    pub message: String,
}

impl FieldError {
    /// `field` is wrong because `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem-details response (`application/problem+json`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem (`about:blank` when the
    /// status says it all, e.g. `/problems/validation`).
    #[serde(rename = "type")]
    kind: String,
    /// A short summary of the kind of problem.
    title: String,
    /// The HTTP status code.
    status: u16,
    /// What went wrong this time, for the developer of the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    /// For validation failures: every invalid field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
    /// Response headers that belong to the problem (`Retry-After`,
    /// `WWW-Authenticate`); not part of the body.
    #[serde(skip)]
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// How long a client should wait before retrying when the database is
/// unavailable: about the consumer's first probe backoffs, so a short
/// blip costs a client one retry.
pub const DATABASE_RETRY_AFTER: Duration = Duration::from_secs(2);

impl Problem {
    /// A problem with `status` and its standard title.
    pub fn new(status: StatusCode) -> Self {
        Self {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: None,
            errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// A 422 listing the invalid fields.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        Self::new(StatusCode::UNPROCESSABLE_ENTITY)
            .with_type("/problems/validation")
            .with_title("The request is not valid")
            .with_detail(detail)
            .with_errors(errors)
    }

    /// A 404 for `what` (e.g. "order 0194…").
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND).with_detail(format!("{what} does not exist"))
    }

    /// A 500 with a bland body; the cause is logged once, here.
    pub fn internal(error: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %ErrorChain(error), "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR)
            .with_detail("something went wrong on our side; it has been logged")
    }

    /// A 503: something the service depends on is unavailable (its
    /// database, or its own capacity), so the same request may well work
    /// later. `Retry-After` says when, in whole seconds (at least 1).
    pub fn unavailable(retry_after: Duration, detail: impl Into<String>) -> Self {
        let seconds = retry_after.as_secs().max(1);
        Self::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail(detail)
            .with_header(RETRY_AFTER, HeaderValue::from(seconds))
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Adds a response header (e.g. `WWW-Authenticate`) sent with the problem.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Sets the `type` URI reference.
    pub fn with_type(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// Sets the short, human-readable summary.
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Sets the explanation of this occurrence.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Sets the field-level errors.
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(mut self) -> Response {
        let status = self.status();
        let headers = std::mem::take(&mut self.headers);
        let mut response = (status, Json(self)).into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

/// A database error in a handler: `?` turns it into the right answer.
///
/// The database being unavailable — no connection from the pool within
/// its timeout, a refused or lost connection, the server shutting down or
/// out of resources (`checkout_messaging::is_outage`, the same decision
/// the consumer pauses on) — is a 503 with `Retry-After`, logged as a
/// warning: nothing is wrong with the request or the code, and a retry
/// will work once the database is back. Anything else (a constraint the
/// code did not expect, a malformed statement) is a bug: a bland 500,
/// its cause logged once.
impl From<sqlx::Error> for Problem {
    fn from(error: sqlx::Error) -> Self {
        if checkout_messaging::is_outage(&error) {
            tracing::warn!(error = %ErrorChain(&error), "the database is unavailable; answering 503");
            Problem::unavailable(
                DATABASE_RETRY_AFTER,
                "the service's database is unavailable; try again shortly",
            )
        } else {
            Problem::internal(&error)
        }
    }
}

/// A [`Problem`] as a documented response: write
/// `(status = 422, response = ProblemResponse)` in a handler's
/// `#[utoipa::path(responses(...))]`.
#[derive(Debug, ToResponse)]
#[response(
    description = "A problem (RFC 9457): `detail` says what is wrong; a validation problem lists every invalid field in `errors`",
    content_type = "application/problem+json"
)]
pub struct ProblemResponse(pub Problem);

/// The problems of every handler that takes an [`ApiJson`] body, as
/// documented responses: list `JsonBodyProblems` in its
/// `#[utoipa::path(responses(...))]`.
#[derive(Debug, IntoResponses)]
pub enum JsonBodyProblems {
    /// The body is not JSON.
    #[response(status = 400, content_type = "application/problem+json")]
    Malformed(Problem),
    /// The body is over the size limit.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// The body is not sent as JSON.
    #[response(status = 415, content_type = "application/problem+json")]
    NotJson(Problem),
    /// A field is missing, unknown, of the wrong type or invalid: `errors`
    /// lists each.
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(Problem),
}

/// Displays an error with its whole `source()` chain: `a: b: c`.
#[derive(Debug)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_database_is_a_503_with_retry_after_and_a_bug_a_500() {
        for outage in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into()),
        ] {
            let what = outage.to_string();
            let response = Problem::from(outage).into_response();
            assert_eq!(response.status(), 503, "{what}");
            assert_eq!(response.headers()[RETRY_AFTER], "2", "{what}");
            assert_eq!(response.headers()[CONTENT_TYPE], PROBLEM_JSON, "{what}");
        }
        let bug = Problem::from(sqlx::Error::RowNotFound).into_response();
        assert_eq!(bug.status(), 500);
        assert!(!bug.headers().contains_key(RETRY_AFTER));
    }

    #[test]
    fn headers_of_a_problem_go_with_the_response_not_into_the_body() {
        let problem = Problem::unavailable(Duration::from_millis(10), "busy");
        let body = serde_json::to_value(&problem).expect("serializable");
        assert_eq!(body["status"], 503);
        assert!(body.get("headers").is_none(), "{body}");
        let response = problem.into_response();
        assert_eq!(response.headers()[RETRY_AFTER], "1", "at least a second");
    }
}
