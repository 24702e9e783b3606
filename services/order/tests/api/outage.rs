//! The Order service's own database down, as a client of its HTTP API
//! meets it: every answer is a 503 with `Retry-After` — the request was
//! fine and will work later — never a 500, and orders are taken again as
//! soon as the database is back.

use crate::helpers::{TestApp, order_body, spawn_app};
use checkout_testkit::api::assert_problem_content_type;
use serde_json::json;
use std::time::{Duration, Instant};

/// Asserts `response` is a 503 problem with a `Retry-After` in seconds.
async fn assert_unavailable(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), 503, "{what}");
    assert_problem_content_type(&response, what);
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        retry_after.is_some_and(|s| s >= 1),
        "{what}: Retry-After {retry_after:?}"
    );
    let problem: serde_json::Value = response.json().await.expect("a problem");
    assert_eq!(problem["status"], 503, "{what}: {problem}");
}

async fn post(app: &TestApp) -> reqwest::Response {
    app.post_order(order_body(
        json!([{ "sku": "KB-001", "quantity": 1 }]),
        "tok_visa",
    ))
    .await
}

#[tokio::test]
async fn an_unavailable_database_is_a_503_with_retry_after_never_a_500() {
    let app = spawn_app().await;
    app.add_product("KB-001", 4999, 1).await;
    let placed = app.place_keyboard_order().await;

    // Refuse new connections and end the open ones, the pool's included.
    app.db.refuse_connections(true).await.expect("refuse");
    for attempt in 0..5 {
        assert_unavailable(post(&app).await, &format!("POST /orders #{attempt}")).await;
    }
    let by_id = app
        .client
        .get(format!("{}/orders/{placed}", app.address))
        .send()
        .await
        .expect("sent");
    assert_unavailable(by_id, "GET /orders/{id}").await;
    let listing = app
        .client
        .get(format!("{}/orders", app.address))
        .header("authorization", app.admin_authorization())
        .send()
        .await
        .expect("sent");
    assert_unavailable(listing, "GET /orders").await;
    let (ready, _) = app.get_json("/health/ready").await;
    assert_eq!(ready, 503, "not ready while the database is down");

    app.db.refuse_connections(false).await.expect("allow");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = post(&app).await;
        let status = response.status().as_u16();
        if status == 202 {
            break;
        }
        assert_eq!(status, 503, "only 503 until the pool reconnects");
        assert!(Instant::now() < deadline, "orders are not taken again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.cleanup().await;
}
