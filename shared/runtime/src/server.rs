//! The HTTP server of every service, and the limits that keep one client
//! from taking it from the others ([`HttpLimits`]):
//!
//! - **Header read timeout** (`HTTP_HEADER_TIMEOUT`, 5 s): a connection
//!   that has not sent a whole request head within it — after opening, or
//!   after its last response — is closed. Without it a client that sends
//!   half a request line and stalls (slowloris) holds a connection and a
//!   task forever. `axum::serve` (0.8) sets no timer on hyper, so no such
//!   timeout exists there; this module runs hyper's HTTP/1 connection
//!   itself, with `header_read_timeout`, and shuts connections down
//!   gracefully as `axum::serve` does.
//! - **Request timeout** (`HTTP_REQUEST_TIMEOUT`, 10 s): a request not
//!   answered in time (a slow body, a query stuck on a lock) gets a 503
//!   problem with `Retry-After`, and its handler is dropped — an open
//!   transaction rolls back.
//! - **Concurrency bound** (`HTTP_MAX_CONCURRENT_REQUESTS`, 512): one more
//!   request than that is answered 503 with `Retry-After` at once, not
//!   queued: a queue would only turn an overload into timeouts for
//!   everyone. Health and metrics routes are exempt, so probes and
//!   scrapes still answer while the service sheds load.
//!
//! What it does not limit: the number of connections (each costs a task
//! and a socket, and the header timeout closes those that do nothing) or
//! the request rate of one client; that is a proxy's job.

use crate::admin::AdminGate;
use crate::config::HttpLimits;
use crate::http::Problem;
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// What a client told to come back is told to wait, in seconds, when the
/// service is saturated or a request ran out of time.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The application as served: `service` (a service's own routes and its
/// API documentation) under the request timeout and the concurrency
/// bound, `operations` (health, metrics) under the request timeout only,
/// and the admin token in every request's extensions. `layers` adds the
/// route layers that must see the limits' answers (tracing, metrics),
/// applied to the service routes outside the limits.
pub(crate) fn assemble(
    service: Router,
    operations: Router,
    limits: &HttpLimits,
    admin: AdminGate,
    layers: impl FnOnce(Router) -> Router,
) -> Router {
    let permits = Arc::new(Semaphore::new(limits.max_concurrent_requests));
    let service = service
        .route_layer(from_fn_with_state(limits.request_timeout, time_limit))
        .route_layer(from_fn_with_state(permits, concurrency_limit));
    let operations = operations.route_layer(from_fn_with_state(limits.request_timeout, time_limit));
    layers(service)
        .merge(operations)
        .layer(axum::Extension(admin))
}

/// Middleware: answers 503 when the handler has not answered within `limit`.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                ?limit,
                "request not answered in time (HTTP_REQUEST_TIMEOUT); answering 503"
            );
            Problem::unavailable(
                BUSY_RETRY_AFTER,
                format!(
                    "the request was not answered within {limit:?} and was abandoned; \
                     try again (with the same Idempotency-Key, for an order)"
                ),
            )
            .into_response()
        }
    }
}

/// Middleware: runs the request if a permit is free, else answers 503 at once.
async fn concurrency_limit(
    State(permits): State<Arc<Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    match permits.try_acquire() {
        Ok(_permit) => next.run(request).await,
        Err(_) => {
            tracing::debug!(
                "too many requests in flight (HTTP_MAX_CONCURRENT_REQUESTS); answering 503"
            );
            Problem::unavailable(
                BUSY_RETRY_AFTER,
                "the service is handling as many requests as it may at once; try again shortly",
            )
            .into_response()
        }
    }
}

/// Serves `app` on `listener` over HTTP/1.1 until `shutdown` resolves,
/// closing connections that do not send a request head within
/// `header_timeout`; then stops accepting, lets requests in flight finish
/// and closes idle connections, and returns once every connection is gone.
/// (Public for a process without a database, such as the console, which
/// cannot use [`Runtime`](crate::Runtime) but serves the same way.)
pub async fn serve(
    mut listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connections = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // axum's accept retries (and logs) failed accepts, pausing when the
        // process is out of file descriptors.
        let (stream, _) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = connections.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that goes away, or one the header timeout closed.
            if let Err(error) = connection.await {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
}

#[cfg(test)]
mod tests;
