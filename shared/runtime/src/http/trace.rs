//! The SERVER span of every request, continuing the caller's trace, with
//! the stable HTTP semantic conventions' attributes: `http.request.method`,
//! `http.route`, `url.scheme`, `url.path`, `server.address`, `server.port`,
//! `user_agent.original`, `http.response.status_code`, and `error.type`
//! (the status code) with an error status on a 5xx.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use checkout_telemetry::propagation::{adopt_parent, extract_http, record_error};
use http::header::{HOST, USER_AGENT};
use tracing::Instrument;
use tracing::field::Empty;

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
        http.request.method = %method,
        http.route = %route,
        url.scheme = request.uri().scheme_str().unwrap_or("http"),
        url.path = %request.uri().path(),
        server.address = Empty,
        server.port = Empty,
        user_agent.original = Empty,
        http.response.status_code = Empty,
        error.type = Empty,
        trace_id = Empty,
    );
    if let Some((address, port)) = server(&request) {
        span.record("server.address", address.as_str());
        if let Some(port) = port {
            span.record("server.port", port);
        }
    }
    if let Some(agent) = request
        .headers()
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        span.record("user_agent.original", agent);
    }
    adopt_parent(&span, extract_http(request.headers()));
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        record_error(
            &span,
            status.as_str(),
            status.canonical_reason().unwrap_or("server error"),
        );
    }
    response
}

/// The host and port the client addressed (`Host`, else the URI's
/// authority), as the conventions' `server.address` and `server.port`.
fn server(request: &Request) -> Option<(String, Option<u16>)> {
    let raw = match request.headers().get(HOST) {
        Some(host) => host.to_str().ok()?,
        None => request.uri().authority()?.as_str(),
    };
    let authority: http::uri::Authority = raw.parse().ok()?;
    Some((authority.host().to_owned(), authority.port_u16()))
}
