//! The HTTP surface as a client meets it: the OpenAPI document matches the
//! router, every error is a problem, and random input never gets a 5xx.

use crate::helpers::{order_body, spawn_app, spawn_app_configured};
use checkout_testkit::api::{
    assert_problem_content_type, check_admin, check_admin_off, check_openapi,
};
use checkout_testkit::fuzz::fuzz;
use order_service::Settings;
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
    let report = fuzz(&app.address, Some(&app.admin_authorization()), samples).await;
    assert_eq!(report.server_errors, 0);
    let live = app.get_json("/health/live").await;
    assert_eq!(live.0, 200, "the service still answers");
    app.cleanup().await;
}

#[tokio::test]
async fn the_order_listing_needs_the_admin_token_and_one_order_by_its_id_does_not() {
    let app = spawn_app().await;
    app.add_product("KB-001", 4999, 1).await;
    let authorization = app.admin_authorization();
    check_admin(&app.address, &authorization, &["GET /orders"]).await;
    let id = app.place_keyboard_order().await;
    let listing = format!("{}/orders", app.address);

    let anonymous = app.client.get(&listing).send().await.expect("sent");
    assert_eq!(anonymous.status(), 401);
    assert_problem_content_type(&anonymous, "GET /orders without a token");
    let challenge = anonymous.headers().get("www-authenticate").cloned();
    assert!(challenge.is_some_and(|c| c.as_bytes().starts_with(b"Bearer")));
    let problem: serde_json::Value = anonymous.json().await.expect("json");
    assert!(problem.get("items").is_none(), "no orders leak: {problem}");
    let wrong = app
        .client
        .get(&listing)
        .header("authorization", "Bearer not-the-admin-token-at-all")
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong.status(), 401);

    let (status, page) = app.get_admin_json("/orders").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["id"], json!(id));
    let (status, order) = app.get_json(&format!("/orders/{id}")).await;
    assert_eq!((status, &order["id"]), (200, &json!(id)), "public by id");
    app.cleanup().await;
}

#[tokio::test]
async fn without_an_admin_token_the_order_listing_is_off_and_says_how_to_enable_it() {
    let app = spawn_app_configured(Settings::default(), |config| config.admin_token = None).await;
    let off = check_admin_off(&app.address).await;
    let placed = app
        .post_order(order_body(
            json!([{ "sku": "NOPE-1", "quantity": 1 }]),
            "tok_visa",
        ))
        .await
        .status();
    app.cleanup().await;
    assert_eq!(off, 1, "GET /orders is off");
    assert_eq!(placed, 422, "placing orders stays public (and validated)");
}
