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
mod tests {
    use super::*;
    use crate::admin::{Admin, AdminToken};
    use axum::routing::get;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;
    use tokio_util::sync::CancellationToken;

    /// `service` assembled as the runtime does, served on a free port of
    /// loopback; cancel the token to stop it.
    async fn start(
        service: Router,
        limits: HttpLimits,
        admin: Option<&str>,
    ) -> (String, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let token = admin.map(|t| AdminToken::parse(t).expect("a valid token"));
        let operations = Router::new().route("/health/live", get(|| async { "live" }));
        let app = assemble(service, operations, &limits, AdminGate(token), |r| r);
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(serve(listener, app, limits.header_timeout, async move {
            stopped.cancelled().await;
        }));
        (address.to_string(), stop)
    }

    /// Sends `bytes` on a new connection, then waits (at most `within`)
    /// until the server closes it; returns what it answered and how long
    /// the close took. Blocking I/O on its own thread: the client side of
    /// the test must not depend on the runtime it is testing.
    async fn until_closed(
        address: &str,
        bytes: &'static [u8],
        within: Duration,
    ) -> (String, Duration) {
        let address = address.to_owned();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let mut stream = std::net::TcpStream::connect(&address).expect("connect");
            stream.set_read_timeout(Some(within)).expect("read timeout");
            // The server may close before it has read everything (it
            // refuses an oversized head): what it answered is still read.
            if let Err(e) = stream.write_all(bytes) {
                let closed = [
                    std::io::ErrorKind::BrokenPipe,
                    std::io::ErrorKind::ConnectionReset,
                ];
                assert!(closed.contains(&e.kind()), "write: {e}");
            }
            let mut answer = Vec::new();
            match stream.read_to_end(&mut answer) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Err(e) => panic!("the server did not close the connection within {within:?}: {e}"),
            }
            (
                String::from_utf8_lossy(&answer).into_owned(),
                started.elapsed(),
            )
        })
        .await
        .expect("the client thread")
    }

    fn limits(header: u64, request: u64, concurrent: usize) -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_millis(header),
            request_timeout: Duration::from_millis(request),
            max_concurrent_requests: concurrent,
        }
    }

    #[tokio::test]
    async fn a_client_that_stalls_mid_request_line_is_disconnected_after_the_header_timeout() {
        let service = Router::new().route("/x", get(|| async { "x" }));
        let (address, stop) = start(service, limits(300, 10_000, 8), None).await;

        let (answer, took) = until_closed(&address, b"GET /x HT", Duration::from_secs(10)).await;
        assert!(!answer.contains("200 OK"), "{answer}");
        assert!(
            took >= Duration::from_millis(250),
            "closed too early: {took:?}"
        );
        assert!(took < Duration::from_secs(5), "closed after {took:?}");

        // An idle connection that never sends a byte goes the same way.
        let (_, took) = until_closed(&address, b"", Duration::from_secs(10)).await;
        assert!(
            took < Duration::from_secs(5),
            "idle connection closed after {took:?}"
        );

        // A whole request on time is served.
        let (answer, _) = until_closed(
            &address,
            b"GET /x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            Duration::from_secs(10),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        stop.cancel();
    }

    #[tokio::test]
    async fn a_request_over_the_time_limit_gets_a_503_problem() {
        let service = Router::new().route("/slow", get(std::future::pending::<&'static str>));
        let (address, stop) = start(service, limits(5_000, 200, 8), None).await;
        let started = Instant::now();
        let response = reqwest::get(format!("http://{address}/slow"))
            .await
            .expect("sent");
        assert_eq!(response.status(), 503);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(
            response.headers()["content-type"],
            crate::http::PROBLEM_JSON
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn a_body_that_never_finishes_gets_a_503_within_the_request_timeout() {
        let service = Router::new().route(
            "/body",
            axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        );
        let (address, stop) = start(service, limits(5_000, 300, 8), None).await;
        let (answer, took) = until_closed(
            &address,
            b"POST /body HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"a\":",
            Duration::from_secs(10),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(took < Duration::from_secs(5), "answered after {took:?}");
        stop.cancel();
    }

    #[tokio::test]
    async fn an_oversized_request_head_is_refused_and_the_server_goes_on() {
        let service = Router::new().route("/x", get(|| async { "x" }));
        let (address, stop) = start(service, HttpLimits::default(), None).await;
        let huge: &'static [u8] = Box::leak(
            format!(
                "GET /x HTTP/1.1\r\nhost: x\r\nx-filler: {}\r\n\r\n",
                "a".repeat(1 << 20)
            )
            .into_bytes()
            .into_boxed_slice(),
        );
        let (answer, _) = until_closed(&address, huge, Duration::from_secs(10)).await;
        // A reset may overtake the answer; if one arrived, it is a 431.
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "{answer}"
        );
        let (answer, _) = until_closed(
            &address,
            b"GET /x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            Duration::from_secs(10),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        stop.cancel();
    }

    #[tokio::test]
    async fn requests_over_the_concurrency_bound_get_a_503_at_once_and_health_still_answers() {
        let entered = Arc::new(AtomicUsize::new(0));
        // A gate with no permits: each handler waits for one.
        let release = Arc::new(Semaphore::new(0));
        let service = Router::new().route(
            "/hold",
            get({
                let (entered, release) = (entered.clone(), release.clone());
                move || async move {
                    entered.fetch_add(1, Ordering::SeqCst);
                    if let Ok(permit) = release.acquire().await {
                        permit.forget();
                    }
                    "released"
                }
            }),
        );
        let (address, stop) = start(service, limits(5_000, 30_000, 2), None).await;
        let client = reqwest::Client::new();
        let held: Vec<_> = (0..2)
            .map(|_| tokio::spawn(client.get(format!("http://{address}/hold")).send()))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while entered.load(Ordering::SeqCst) < 2 {
            assert!(Instant::now() < deadline, "the two requests never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        let started = Instant::now();
        let over = client
            .get(format!("http://{address}/hold"))
            .send()
            .await
            .expect("sent");
        assert_eq!(over.status(), 503);
        assert_eq!(over.headers()["retry-after"], "1");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "not answered at once"
        );
        assert_eq!(entered.load(Ordering::SeqCst), 2, "the third never ran");
        let health = client
            .get(format!("http://{address}/health/live"))
            .send()
            .await
            .expect("sent");
        assert_eq!(health.status(), 200, "health is not bounded");

        release.add_permits(2);
        for request in held {
            let response = request.await.expect("joined").expect("answered");
            assert_eq!(response.status(), 200);
        }
        let again = client.get(format!("http://{address}/hold"));
        let again = tokio::spawn(again.send());
        while entered.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "the permits were not given back");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        release.add_permits(1);
        assert_eq!(
            again.await.expect("joined").expect("answered").status(),
            200
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn an_admin_route_needs_the_bearer_token() {
        const TOKEN: &str = "0123456789abcdef-admin";
        let service = || Router::new().route("/secret", get(|_: Admin| async { "in" }));
        let (on, stop_on) = start(service(), HttpLimits::default(), Some(TOKEN)).await;
        let (off, stop_off) = start(service(), HttpLimits::default(), None).await;
        let client = reqwest::Client::new();
        let send = |base: &str, auth: Option<&str>| {
            let mut request = client.get(format!("http://{base}/secret"));
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            request.send()
        };

        let missing = send(&on, None).await.expect("sent");
        assert_eq!(missing.status(), 401);
        assert_eq!(
            missing.headers()["www-authenticate"],
            r#"Bearer realm="checkout""#
        );
        for wrong in [
            "Bearer 0123456789abcdef-admiN".to_owned(),
            "Bearer 0123456789abcdef".to_owned(),
            format!("Bearer {TOKEN}x"),
            format!("Basic {TOKEN}"),
        ] {
            let response = send(&on, Some(&wrong)).await.expect("sent");
            assert_eq!(response.status(), 401, "{wrong}");
            let challenge = response.headers()["www-authenticate"]
                .to_str()
                .expect("ascii");
            assert!(challenge.starts_with("Bearer"), "{wrong}: {challenge}");
        }
        let right = send(&on, Some(&format!("Bearer {TOKEN}")))
            .await
            .expect("sent");
        assert_eq!(right.status(), 200);
        assert_eq!(right.text().await.expect("text"), "in");
        let lower = send(&on, Some(&format!("bearer {TOKEN}")))
            .await
            .expect("sent");
        assert_eq!(lower.status(), 200, "the scheme is case-insensitive");
        // Two Authorization headers, the right one among them: ambiguous.
        let twice = client
            .get(format!("http://{on}/secret"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("authorization", "Bearer something-else-entirely")
            .send()
            .await
            .expect("sent");
        assert_eq!(twice.status(), 401, "two Authorization headers");

        let disabled = send(&off, Some(&format!("Bearer {TOKEN}")))
            .await
            .expect("sent");
        assert_eq!(disabled.status(), 403);
        let problem: serde_json::Value = disabled.json().await.expect("json");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("ADMIN_TOKEN"),
            "says how to enable: {problem}"
        );
        stop_on.cancel();
        stop_off.cancel();
    }
}
