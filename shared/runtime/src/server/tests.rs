//! The limits against a real server on a loopback port: stalled and slow
//! clients, oversized heads, the concurrency bound, the admin gate.

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
async fn until_closed(address: &str, bytes: &'static [u8], within: Duration) -> (String, Duration) {
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

/// A well-formed request still gets its 200: what was refused before it
/// was the bad connection alone, not the server.
async fn assert_serves(address: &str) {
    let (answer, _) = until_closed(
        address,
        b"GET /x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
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
    assert_serves(&address).await;
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
    assert_serves(&address).await;
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
