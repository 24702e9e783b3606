//! The fault switches of the Payment service: `decline` in the handler, and
//! `GET/PUT /faults` over HTTP (answered only with `FAULTS_ENABLED=true`).

use crate::support::payments;
use checkout_events::OrderId;
use checkout_events::fixtures::build::payment_requested;
use checkout_runtime::faults::Change;
use checkout_runtime::{Faults, Switch};
use checkout_testkit::{Running, spawn, spawn_with, with_database};
use payment_service::{MIGRATOR, PaymentHandler, SERVICE};
use serde_json::{Value, json};

#[tokio::test]
async fn the_decline_switch_declines_a_good_card_while_it_is_on() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let faults = Faults::new(SERVICE.name, true);
        faults.offer(&[Switch::Decline]);
        let handler = PaymentHandler::new(faults.clone());
        let mut statuses = Vec::new();
        for on in [true, false] {
            let change = Change {
                name: "decline".to_owned(),
                on: Some(on),
                ..Default::default()
            };
            faults.apply(&change).expect("a valid change");
            let order_id = OrderId::new();
            let event = payment_requested(order_id, 9998, "tok_visa");
            let envelope = checkout_testkit::from_order(order_id, &event);
            checkout_testkit::handle(&pool, &handler, &envelope)
                .await
                .expect("handled");
            let rows = payments(&pool, order_id).await;
            statuses.push((rows[0].status.clone(), rows[0].reason.clone()));
        }
        assert_eq!(
            statuses,
            [
                (
                    "DECLINED".to_owned(),
                    Some("declined by the fault switch decline".to_owned())
                ),
                ("CAPTURED".to_owned(), None),
            ]
        );
    })
    .await;
}

/// `PUT /faults` with `body`: the status and the JSON answer.
async fn put(service: &Running, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .put(format!("{}/faults", service.address))
        .header("authorization", service.admin_authorization())
        .json(&body)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

#[tokio::test]
async fn the_fault_switches_answer_only_when_enabled_and_name_a_bad_field() {
    let enabled = spawn(&SERVICE, &MIGRATOR, payment_service::build).await;
    let disabled = spawn_with(
        &SERVICE,
        &MIGRATOR,
        |config| config.faults_enabled = false,
        payment_service::build,
    )
    .await;
    let on = put(
        &enabled,
        json!({"name": "decline", "on": true, "percent": 50}),
    )
    .await;
    let bad = put(&enabled, json!({"name": "delay", "percent": 5})).await;
    let unknown = put(&enabled, json!({"name": "smtp_refuse", "on": true})).await;
    let off = put(&disabled, json!({"name": "decline", "on": true})).await;
    let listed: Value = reqwest::Client::new()
        .get(format!("{}/faults", enabled.address))
        .header("authorization", enabled.admin_authorization())
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    enabled.stop().await;
    disabled.stop().await;

    assert_eq!(on.0, 200, "{}", on.1);
    assert_eq!(on.1["service"], "payment");
    assert_eq!(
        on.1["switches"][0],
        json!({
            "name": "decline", "description": "Declines this percentage of payments.",
            "on": true, "percent": 50,
        })
    );
    let listed = listed["switches"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        listed.len(),
        5,
        "decline, the delivery faults, delay, crash: {listed:?}"
    );
    assert_eq!(
        (bad.0, bad.1["errors"][0]["field"].as_str()),
        (422, Some("percent")),
        "{}",
        bad.1
    );
    assert_eq!(
        (unknown.0, unknown.1["errors"][0]["field"].as_str()),
        (422, Some("name"))
    );
    assert_eq!(off.0, 403, "{}", off.1);
    assert_eq!(off.1["title"], "Fault switches are disabled");
}
