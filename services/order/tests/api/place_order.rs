//! `POST /orders` and `GET /orders/{id}`.

use crate::helpers::{AcceptedView, order_body, spawn_app};
use checkout_runtime::http::Amount;
use serde_json::json;

#[tokio::test]
async fn an_order_is_accepted_priced_from_the_catalog_with_its_event() {
    let app = spawn_app().await;
    app.add_product("KB-001", 4999, 1).await;
    app.add_product("MS-001", 2599, 1).await;

    let response = app
        .post_order(order_body(
            json!([{ "sku": "KB-001", "quantity": 2 }, { "sku": "MS-001", "quantity": 1 }]),
            "tok_visa",
        ))
        .await;
    assert_eq!(response.status(), 202);
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned)
        .expect("a Location header");
    let body: AcceptedView = response.json().await.expect("an accepted order");
    let id = body.id.to_string();
    assert_eq!(location, format!("/orders/{id}"));
    assert_eq!(body.status, "PENDING");

    let order = app.get_order(&id).await;
    assert_eq!(order.status, "PENDING");
    assert_eq!(order.total, Amount::new(2 * 4999 + 2599, "USD"));
    assert_eq!(order.items[0].unit_price.amount, 4999);
    assert_eq!(order.payment, "PENDING");

    let outbox = app.outbox().await;
    let created: Vec<_> = outbox.iter().filter(|(t, _)| t == "OrderCreated").collect();
    assert_eq!(created.len(), 1, "exactly one OrderCreated");
    let envelope = &created[0].1;
    assert_eq!(envelope["correlation_id"], json!(id));
    assert_eq!(envelope["data"]["total"]["amount"], 2 * 4999 + 2599);
    assert_eq!(
        envelope["data"].get("card_token"),
        None,
        "the card token is not for every subscriber of OrderCreated"
    );

    // The token goes to Payment alone, and the outbox keeps it only until
    // the broker has it.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let charge: serde_json::Value = loop {
        let row: Option<(serde_json::Value,)> = sqlx::query_as(
            "SELECT envelope FROM outbox \
             WHERE event_type = 'PaymentRequested' AND published_at IS NOT NULL",
        )
        .fetch_optional(app.db.pool())
        .await
        .expect("outbox query");
        if let Some((envelope,)) = row {
            break envelope;
        }
        assert!(
            std::time::Instant::now() < until,
            "PaymentRequested is published"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(charge["correlation_id"], json!(id));
    assert_eq!(
        charge["data"]["amount"],
        json!({ "amount": 2 * 4999 + 2599, "currency": "USD" })
    );
    assert_eq!(
        charge["data"].get("card_token"),
        None,
        "dropped from the outbox once published"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn invalid_orders_are_refused_with_a_problem_and_leave_nothing() {
    let app = spawn_app().await;
    app.add_product("KB-001", 4999, 1).await;

    let cases = [
        (
            order_body(json!([{ "sku": "NOPE-1", "quantity": 1 }]), "tok_visa"),
            422,
            "items[0].sku",
        ),
        (
            order_body(json!([{ "sku": "KB-001", "quantity": 0 }]), "tok_visa"),
            422,
            "items[0].quantity",
        ),
        (order_body(json!([]), "tok_visa"), 422, "items"),
    ];
    for (body, status, field) in cases {
        let response = app.post_order(body).await;
        assert_eq!(response.status(), status);
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
        let problem: serde_json::Value = response.json().await.expect("json");
        assert_eq!(problem["status"], status);
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }

    // Wrong shape, unknown field, not JSON at all.
    let mut unknown_field = order_body(json!([{ "sku": "KB-001", "quantity": 1 }]), "tok_visa");
    unknown_field["price"] = json!(1);
    assert_eq!(app.post_order(unknown_field).await.status(), 422);
    let not_json = app
        .client
        .post(format!("{}/orders", app.address))
        .header("content-type", "application/json")
        .body("{ nope")
        .send()
        .await
        .expect("sent");
    assert_eq!(not_json.status(), 400);
    let no_content_type = app
        .client
        .post(format!("{}/orders", app.address))
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_eq!(no_content_type.status(), 415);

    assert!(app.outbox().await.iter().all(|(t, _)| t != "OrderCreated"));
    app.cleanup().await;
}

#[tokio::test]
async fn an_unknown_order_is_a_404_problem() {
    let app = spawn_app().await;
    for id in ["0194f0c2-0000-7000-8000-000000000000", "not-a-uuid"] {
        let response = app
            .client
            .get(format!("{}/orders/{id}", app.address))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 404);
    }
    app.cleanup().await;
}
