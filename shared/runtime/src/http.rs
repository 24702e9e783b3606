//! What every service's HTTP side needs: RFC 9457 problem details, the
//! extractors whose every rejection is a problem (JSON body, query string,
//! path), the problems for a wrong route or method, the server span of a
//! request, and the health routes.
//!
//! The rule it serves: whatever a client sends, the answer is a 2xx or a
//! 4xx `application/problem+json` naming what to fix — never a 5xx. A
//! dependency that is down is a 503 with `Retry-After` (see the
//! `From<sqlx::Error>` conversion of [`Problem`]); only a bug is a 500.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use checkout_telemetry::propagation::{adopt_parent, extract_http};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderName, HeaderValue, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::Instrument;
use utoipa::{IntoResponses, ToResponse, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The media type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The largest request body any service reads (64 KiB: an order of 50
/// lines is a few KiB). A larger one is refused with a 413 problem before
/// it is parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Money on the wire, as in the events: integer minor units and an ISO 4217
/// currency code. The one shape every service's API shows (and, where a
/// client sends a price, reads) money in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Amount {
    /// Minor units, e.g. cents.
    #[schema(example = 4999)]
    pub amount: i64,
    /// ISO 4217 code: three upper-case letters.
    #[schema(pattern = "^[A-Z]{3}$", example = "USD")]
    pub currency: String,
}

impl Amount {
    /// `amount` minor units of the currency `currency`.
    pub fn new(amount: i64, currency: impl Into<String>) -> Self {
        Self {
            amount,
            currency: currency.into(),
        }
    }
}

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

/// A JSON request body. Every rejection is a [`Problem`]: 415 without a
/// JSON content type, 413 above [`MAX_BODY_BYTES`], 400 for malformed
/// JSON, and 422 for JSON of the wrong shape — naming the field
/// (`items[0].quantity`), as a validation problem does.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .with_detail("the body must be JSON, sent with content-type: application/json"));
        }
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                Problem::new(rejection.status()).with_detail(rejection.body_text())
            })?;
        let mut deserializer = serde_json::Deserializer::from_slice(&body);
        let malformed = |error: &serde_json::Error| {
            Problem::new(StatusCode::BAD_REQUEST)
                .with_type("/problems/malformed-json")
                .with_title("The request body is not valid JSON")
                .with_detail(error.to_string())
        };
        let value = match serde_path_to_error::deserialize(&mut deserializer) {
            Ok(value) => value,
            Err(error) if error.inner().is_data() => {
                return Err(shape_problem(
                    "The request body does not have the expected shape",
                    &error.path().to_string(),
                    error.inner(),
                ));
            }
            Err(error) => return Err(malformed(error.inner())),
        };
        // Trailing characters after the value make the body malformed too.
        deserializer.end().map_err(|error| malformed(&error))?;
        Ok(Self(value))
    }
}

/// `application/json` or any `application/*+json`, parameters ignored.
fn is_json(headers: &http::HeaderMap) -> bool {
    let Some(Ok(value)) = headers.get(CONTENT_TYPE).map(|v| v.to_str()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// A 422 for a value serde refused at `path` (`.` is the whole value).
fn shape_problem(title: &str, path: &str, error: &dyn std::fmt::Display) -> Problem {
    let field = if path == "." { "body" } else { path };
    Problem::validation(vec![FieldError::new(field, error.to_string())]).with_title(title)
}

/// A query string. Every rejection is a 422 validation [`Problem`] naming
/// the parameter (unknown parameters are refused when `T` denies them).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Self)
            .map_err(|error| {
                let path = error.path().to_string();
                let field = if path == "." { "query" } else { path.as_str() };
                Problem::validation(vec![FieldError::new(field, error.inner().to_string())])
                    .with_title("The query string is not valid")
            })
    }
}

/// Path parameters. A rejection (a parameter that is not valid UTF-8 once
/// percent-decoded, or not of type `T`) is a 400 [`Problem`]; handlers
/// that take a `String` decide themselves what a malformed id means.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value))
            .map_err(|rejection: PathRejection| {
                Problem::new(StatusCode::BAD_REQUEST).with_detail(rejection.body_text())
            })
    }
}

/// Middleware: the SERVER span of a request, continuing the caller's trace
/// from its `traceparent` header. Apply with `Router::route_layer` so the
/// matched route is known.
pub async fn trace_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    let span = tracing::info_span!(
        "request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = %route,
        url.path = %request.uri().path(),
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    adopt_parent(&span, extract_http(request.headers()));
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}

#[derive(Debug, Clone)]
struct Probes {
    pool: PgPool,
    broker_up: Arc<AtomicBool>,
}

/// The answer of `/health/live`.
#[derive(Debug, Serialize, ToSchema)]
struct Liveness {
    /// Always `live`.
    status: &'static str,
}

/// The answer of `/health/ready`.
#[derive(Debug, Serialize, ToSchema)]
struct Readiness {
    /// `ready` or `not ready`.
    status: &'static str,
    /// Each dependency, `true` when it answers.
    checks: Checks,
}

/// What readiness depends on.
#[derive(Debug, Serialize, ToSchema)]
struct Checks {
    /// The database answers `SELECT 1`.
    database: bool,
    /// The broker connection is up.
    broker: bool,
}

/// The health routes with their documentation, for [`health_routes`] and
/// the service's OpenAPI document alike.
fn health_api() -> OpenApiRouter<Probes> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
}

/// `/health/live` (the process answers) and `/health/ready` (the database
/// answers and a broker session is running).
pub fn health_routes(pool: PgPool, broker_up: Arc<AtomicBool>) -> Router {
    let (router, _) = health_api()
        .with_state(Probes { pool, broker_up })
        .split_for_parts();
    router
}

/// The OpenAPI paths of [`health_routes`].
pub(crate) fn health_openapi() -> utoipa::openapi::OpenApi {
    health_api().into_openapi()
}

/// Liveness: the process answers HTTP.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "The process is alive", body = Liveness)))]
async fn live() -> Json<Liveness> {
    Json(Liveness { status: "live" })
}

/// Readiness: the database answers and the broker connection is up.
#[utoipa::path(get, path = "/health/ready", tag = "health", responses(
    (status = 200, description = "Ready to take traffic", body = Readiness),
    (status = 503, description = "A dependency is down", body = Readiness),
))]
async fn ready(State(probes): State<Probes>) -> Response {
    let database = sqlx::query("SELECT 1").execute(&probes.pool).await.is_ok();
    let broker = probes.broker_up.load(Ordering::SeqCst);
    let ready = database && broker;
    let body = Readiness {
        status: if ready { "ready" } else { "not ready" },
        checks: Checks { database, broker },
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The fallback for routes that do not exist: a 404 problem.
pub async fn no_such_route(request: Request) -> Problem {
    Problem::new(StatusCode::NOT_FOUND)
        .with_type("/problems/no-such-route")
        .with_detail(format!(
            "no route for {} {}",
            request.method(),
            request.uri().path()
        ))
}

/// The fallback for a route that exists but not with this method: a 405
/// problem (axum keeps the `Allow` header listing the methods there are).
pub async fn method_not_allowed(request: Request) -> Problem {
    Problem::new(StatusCode::METHOD_NOT_ALLOWED).with_detail(format!(
        "{} is not allowed on {}",
        request.method(),
        request.uri().path()
    ))
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
