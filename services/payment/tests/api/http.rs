//! The HTTP API: `GET /payments`, its documentation and its admin check.

use crate::support::apply;
use checkout_events::OrderId;
use checkout_events::fixtures::build::payment_requested;
use checkout_runtime::http::Amount;
use checkout_testkit::{self, TestDatabase, delete_topology, isolated_config, with_database};
use chrono::{DateTime, Utc};
use payment_service::{MIGRATOR, PaymentHandler, SERVICE};
use serde::Deserialize;
use uuid::Uuid;

/// A payment as `GET /payments` shows it; unknown fields are refused, so
/// a field added to the API without a test fails here.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PaymentView {
    id: Uuid,
    order_id: Uuid,
    status: String,
    amount: Amount,
    reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[tokio::test]
async fn the_api_lists_the_payment_of_an_order() {
    let db = TestDatabase::create("payment", &MIGRATOR)
        .await
        .expect("a test database");
    let config = isolated_config(&SERVICE, &db);
    let app = payment_service::build(config.clone())
        .await
        .expect("the service starts (RabbitMQ at 127.0.0.1:5672)");
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let authorization = checkout_testkit::admin_authorization(&config);
    let order_id = OrderId::new();
    apply(
        db.pool(),
        order_id,
        &payment_requested(order_id, 9998, "tok_visa"),
    )
    .await;

    let get = |query: String| {
        let request = client
            .get(format!("{address}/payments?{query}"))
            .header("authorization", &authorization)
            .send();
        async move {
            let response = request.await.expect("GET /payments");
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response.text().await.expect("a body");
            (status, content_type, body)
        }
    };
    let listed = get(format!("order_id={order_id}")).await;
    let unknown = get(format!("order_id={}", Uuid::now_v7())).await;
    let invalid = get("order_id=nope".to_owned()).await;

    shutdown.cancel();
    let stopped = server.await.expect("joined");
    delete_topology(&config).await.expect("delete topology");
    db.drop().await.expect("drop the test database");
    stopped.expect("the service stopped cleanly");

    let (status, _, body) = listed;
    assert_eq!(status, 200);
    let listed: Vec<PaymentView> = serde_json::from_str(&body).expect("a list of payments");
    let [payment] = listed.as_slice() else {
        panic!("one payment: {body}")
    };
    assert_eq!(payment.order_id, order_id.as_uuid());
    assert_eq!(payment.status, "CAPTURED");
    assert_eq!(payment.amount, Amount::new(9998, "USD"));
    assert_eq!(payment.reason, None);
    assert!(payment.created_at <= payment.updated_at);
    assert_ne!(payment.id, order_id.as_uuid());
    assert_eq!((unknown.0, unknown.2.as_str()), (200, "[]"));
    assert_eq!(invalid.0, 422);
    assert_eq!(invalid.1.as_deref(), Some("application/problem+json"));
}

#[tokio::test]
async fn the_handler_applies_every_event_fixture_it_claims() {
    with_database("payment", &MIGRATOR, |pool| async move {
        checkout_testkit::contract::check_consumer(
            &pool,
            SERVICE.name,
            &PaymentHandler::default(),
            async || Uuid::now_v7(),
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn the_http_api_is_documented_and_random_input_gets_no_server_error() {
    let service = checkout_testkit::spawn(&SERVICE, &MIGRATOR, payment_service::build).await;
    let authorization = service.admin_authorization();
    checkout_testkit::api::check_surface(
        &service.address,
        &authorization,
        &["GET /payments"],
        vec![],
    )
    .await;
    service.stop().await;
}

#[tokio::test]
async fn payments_are_shown_only_with_the_admin_token() {
    let service = checkout_testkit::spawn(&SERVICE, &MIGRATOR, payment_service::build).await;
    let authorization = service.admin_authorization();
    checkout_testkit::api::check_admin_list(&service.address, &authorization, "/payments").await;
    service.stop().await;
}

#[tokio::test]
async fn without_an_admin_token_the_payments_are_off_and_say_how_to_enable_them() {
    let service = checkout_testkit::spawn_with(
        &SERVICE,
        &MIGRATOR,
        |config| config.admin_token = None,
        payment_service::build,
    )
    .await;
    let off = checkout_testkit::api::check_admin_off(&service.address).await;
    service.stop().await;
    assert_eq!(off, 1, "GET /payments is off");
}
