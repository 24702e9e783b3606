//! The HTTP surface as a client meets it: the OpenAPI document matches the
//! router, every error is a problem, and random input never gets a 5xx.

use crate::helpers::{order_body, spawn_app};
use checkout_runtime::testing::api::{assert_problem_content_type, check_openapi};
use checkout_runtime::testing::fuzz::fuzz;
use serde_json::json;

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let app = spawn_app().await;
    check_openapi(
        &app.address,
        &[
            "POST /orders",
            "GET /orders",
            "GET /orders/{id}",
            "GET /catalog",
        ],
    )
    .await;
    let docs = app
        .client
        .get(format!("{}/docs", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(docs.status(), 200);
    let page = docs.text().await.expect("html");
    assert!(page.contains("api-reference") && page.contains("/orders/{id}"));
    app.cleanup().await;
}

#[tokio::test]
async fn every_error_a_client_can_cause_is_a_problem() {
    let app = spawn_app().await;
    let url = format!("{}/orders", app.address);
    let huge = json!({ "customer_id": "x".repeat(70 * 1024) }).to_string();
    let cases = [
        (app.client.delete(&url), 405, "about:blank"),
        (
            app.client.get(format!("{}/nowhere", app.address)),
            404,
            "/problems/no-such-route",
        ),
        (app.client.post(&url).body("{}"), 415, "about:blank"),
        (
            app.client
                .post(&url)
                .header("content-type", "text/plain")
                .body("{}"),
            415,
            "about:blank",
        ),
        (
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .body(huge),
            413,
            "about:blank",
        ),
        (
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .body("{ nope"),
            400,
            "/problems/malformed-json",
        ),
        (
            app.client.get(format!("{}/orders/%FF", app.address)),
            400,
            "about:blank",
        ),
    ];
    for (request, status, kind) in cases {
        let response = request.send().await.expect("sent");
        let what = format!("expected {status}");
        assert_eq!(response.status(), status, "{what}");
        assert_problem_content_type(&response, &what);
        let problem: serde_json::Value = response.json().await.expect("json");
        assert_eq!(problem["status"], status, "{problem}");
        assert_eq!(problem["type"], kind, "{problem}");
        assert!(problem["title"].is_string() && problem["detail"].is_string());
    }

    // The wrong shape names the field.
    let mut body = order_body(json!([{ "sku": "KB-001", "quantity": "two" }]), "tok_visa");
    let response = app.post_order(body.clone()).await;
    let problem: serde_json::Value = response.json().await.expect("json");
    assert_eq!(problem["status"], 422);
    assert_eq!(
        problem["errors"][0]["field"], "items[0].quantity",
        "{problem}"
    );
    body["items"][0]["quantity"] = json!(1);
    body["coupon"] = json!("FREE");
    let problem: serde_json::Value = app.post_order(body).await.json().await.expect("json");
    assert_eq!(problem["errors"][0]["field"], "coupon", "{problem}");
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("coupon"))
    );
    app.cleanup().await;
}

#[tokio::test]
async fn random_requests_never_get_a_server_error() {
    let app = spawn_app().await;
    app.add_product("KB-001", 4999, 1).await;
    let samples = vec![
        order_body(json!([{ "sku": "KB-001", "quantity": 2 }]), "tok_visa"),
        order_body(json!([{ "sku": "KB-001", "quantity": 1 }]), "tok_decline"),
    ];
    let report = fuzz(&app.address, None, samples).await;
    assert_eq!(report.server_errors, 0);
    let live = app.get_json("/health/live").await;
    assert_eq!(live.0, 200, "the service still answers");
    app.cleanup().await;
}
