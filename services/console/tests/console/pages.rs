//! Access, health, and pages whose services are down.

use crate::{Harness, TOKEN};
use reqwest::StatusCode;

#[tokio::test]
async fn the_console_asks_for_the_admin_token_and_probes_need_none() {
    let harness = Harness::start().await;
    let url = |path: &str| format!("{}{path}", harness.base);
    let anonymous = harness
        .http
        .get(url("/orders"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let challenge = anonymous
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok());
    assert_eq!(
        challenge,
        Some("Basic realm=\"Checkout console\", charset=\"UTF-8\"")
    );
    let wrong = harness
        .http
        .get(url("/faults"))
        .basic_auth("admin", Some("not-the-token-at-all"))
        .send()
        .await;
    assert_eq!(wrong.expect("an answer").status(), StatusCode::UNAUTHORIZED);
    let bearer = harness
        .http
        .get(url("/orders"))
        .bearer_auth(TOKEN)
        .send()
        .await;
    assert_eq!(bearer.expect("an answer").status(), StatusCode::OK);

    for probe in ["/health/live", "/health/ready"] {
        let response = harness
            .http
            .get(url(probe))
            .send()
            .await
            .expect("an answer");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{probe}: the broker is reachable"
        );
    }
    harness.finish().await;
}

#[tokio::test]
async fn a_service_that_is_down_is_shown_in_the_page_not_as_a_500() {
    let harness = Harness::start().await;
    let (status, orders) = harness.get("/orders").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        orders.contains("The order service did not answer: no answer"),
        "{orders}"
    );

    let order = uuid::Uuid::now_v7();
    let (status, page) = harness.get(&format!("/orders/{order}")).await;
    assert_eq!(status, StatusCode::OK);
    for service in ["order", "payment", "inventory", "email"] {
        assert!(
            page.contains(&format!("The {service} service did not answer")),
            "{service}: {page}"
        );
    }

    let (status, faults) = harness.get("/faults").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(faults.matches("did not answer").count(), 4, "{faults}");

    let (status, search) = harness.get("/orders?q=not-an-id").await;
    assert_eq!(status, StatusCode::OK);
    assert!(search.contains("is not an order id"), "{search}");
    let (status, location) = harness
        .http_get_location(&format!("/orders?q={order}"))
        .await;
    assert_eq!(
        (status, location),
        (StatusCode::SEE_OTHER, format!("/orders/{order}"))
    );
    harness.finish().await;
}
