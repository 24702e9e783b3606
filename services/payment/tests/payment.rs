//! The Payment handler against a real PostgreSQL, without a broker: each
//! test gets a fresh database, applies events through the handler the
//! consumer runs, and checks the `payments` row and the outbox. One test
//! starts the whole service to check `GET /payments`.

use checkout_events::{
    Currency, Envelope, Event, Money, OrderCancelled, OrderId, PaymentCaptured, PaymentRefunded,
    PaymentRequested,
};
use checkout_messaging::Outcome;
use checkout_runtime::testing::{
    self, TestDatabase, delete_topology, isolated_config, outbox_envelopes, outbox_event_types,
    with_database,
};
use payment_service::{MIGRATOR, PaymentHandler, SERVICE};
use sqlx::PgPool;
use uuid::Uuid;

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::parse("USD").expect("valid"))
}

/// What the Order service asks for a new order of two KB-001.
fn created(order_id: OrderId, card_token: &str) -> PaymentRequested {
    PaymentRequested {
        order_id,
        customer_id: "c-42".to_owned(),
        amount: usd(9998),
        card_token: card_token.to_owned(),
    }
}

fn cancelled(order_id: OrderId) -> OrderCancelled {
    OrderCancelled {
        order_id,
        customer_id: "c-42".to_owned(),
        customer_email: None,
        reason: "out of stock".to_owned(),
    }
}

/// Applies `event` as the consumer does: the handler in one transaction,
/// committed when applied.
async fn apply<E: Event>(pool: &PgPool, order_id: OrderId, event: &E) -> Outcome {
    let envelope =
        Envelope::new(event, "order-service", order_id.as_uuid(), None).expect("serializable");
    testing::handle(pool, &PaymentHandler::default(), &envelope)
        .await
        .expect("handled")
}

#[derive(Debug, sqlx::FromRow)]
struct Payment {
    id: Uuid,
    status: String,
    amount: i64,
    currency: String,
    reason: Option<String>,
}

async fn payments(pool: &PgPool, order_id: OrderId) -> Vec<Payment> {
    sqlx::query_as("SELECT id, status, amount, currency, reason FROM payments WHERE order_id = $1")
        .bind(order_id.as_uuid())
        .fetch_all(pool)
        .await
        .expect("select payments")
}

#[tokio::test]
async fn a_good_card_is_captured() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();

        let outcome = apply(&pool, order_id, &created(order_id, "tok_visa")).await;

        assert_eq!(outcome, Outcome::Applied);
        let rows = payments(&pool, order_id).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, "CAPTURED");
        assert_eq!((rows[0].amount, rows[0].currency.as_str()), (9998, "USD"));
        assert_eq!(rows[0].reason, None);
        assert_eq!(outbox_event_types(&pool).await, ["PaymentCaptured"]);
        let envelopes = outbox_envelopes(&pool).await;
        let captured: PaymentCaptured = envelopes[0].decode().expect("a PaymentCaptured");
        assert_eq!(captured.order_id, order_id);
        assert_eq!(captured.payment_id, rows[0].id);
        assert_eq!(captured.amount, usd(9998));
        assert_eq!(envelopes[0].source, "payment-service");
        assert_eq!(envelopes[0].correlation_id, order_id.as_uuid());
        assert!(envelopes[0].causation_id.is_some());
    })
    .await;
}

#[tokio::test]
async fn the_decline_token_is_declined() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();

        apply(&pool, order_id, &created(order_id, "tok_decline")).await;

        let rows = payments(&pool, order_id).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, "DECLINED");
        assert_eq!(rows[0].reason.as_deref(), Some("card declined"));
        assert_eq!(outbox_event_types(&pool).await, ["PaymentFailed"]);
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_order_is_refunded_once() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();
        apply(&pool, order_id, &created(order_id, "tok_visa")).await;

        apply(&pool, order_id, &cancelled(order_id)).await;
        apply(&pool, order_id, &cancelled(order_id)).await;

        let rows = payments(&pool, order_id).await;
        assert_eq!(rows[0].status, "REFUNDED");
        assert_eq!(rows[0].reason.as_deref(), Some("out of stock"));
        assert_eq!(
            outbox_event_types(&pool).await,
            ["PaymentCaptured", "PaymentRefunded"]
        );
        let refunded: PaymentRefunded = outbox_envelopes(&pool).await[1]
            .decode()
            .expect("a PaymentRefunded");
        assert_eq!(refunded.payment_id, rows[0].id);
        assert_eq!(refunded.amount, usd(9998));
    })
    .await;
}

#[tokio::test]
async fn a_declined_payment_has_nothing_to_refund() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();
        apply(&pool, order_id, &created(order_id, "tok_decline")).await;

        apply(&pool, order_id, &cancelled(order_id)).await;

        assert_eq!(payments(&pool, order_id).await[0].status, "DECLINED");
        assert_eq!(outbox_event_types(&pool).await, ["PaymentFailed"]);
    })
    .await;
}

#[tokio::test]
async fn a_cancellation_before_the_order_leaves_a_tombstone() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();

        apply(&pool, order_id, &cancelled(order_id)).await;
        apply(&pool, order_id, &created(order_id, "tok_visa")).await;

        let rows = payments(&pool, order_id).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, "VOIDED");
        assert_eq!((rows[0].amount, rows[0].currency.as_str()), (0, "XXX"));
        assert!(
            outbox_event_types(&pool).await.is_empty(),
            "nothing is charged or refunded"
        );
    })
    .await;
}

#[tokio::test]
async fn a_duplicate_order_is_charged_once() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();
        let event = created(order_id, "tok_visa");

        // Two envelopes (new ids), so the inbox would not catch the second.
        apply(&pool, order_id, &event).await;
        let first = payments(&pool, order_id).await;
        apply(&pool, order_id, &event).await;

        let rows = payments(&pool, order_id).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id, first[0].id);
        assert_eq!(outbox_event_types(&pool).await, ["PaymentCaptured"]);
    })
    .await;
}

#[tokio::test]
async fn other_events_are_ignored() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();
        let event = PaymentCaptured {
            order_id,
            payment_id: Uuid::now_v7(),
            amount: usd(1),
        };

        assert_eq!(apply(&pool, order_id, &event).await, Outcome::Ignored);
        assert!(payments(&pool, order_id).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_cancellation_racing_its_order_refunds_it() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let order_id = OrderId::new();
        let created = Envelope::new(
            &created(order_id, "tok_visa"),
            "order-service",
            order_id.as_uuid(),
            None,
        )
        .expect("serializable");
        let cancelled = Envelope::new(
            &cancelled(order_id),
            "order-service",
            order_id.as_uuid(),
            None,
        )
        .expect("serializable");

        // The charge is written but not committed when the cancellation
        // looks: it finds no row, and its tombstone claim waits for the charge.
        checkout_runtime::testing::race(&pool, PaymentHandler::default(), &created, cancelled)
            .await;

        assert_eq!(payments(&pool, order_id).await[0].status, "REFUNDED");
        assert_eq!(
            outbox_event_types(&pool).await,
            ["PaymentCaptured", "PaymentRefunded"]
        );
    })
    .await;
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
    let authorization = testing::admin_authorization(&config);
    let order_id = OrderId::new();
    apply(db.pool(), order_id, &created(order_id, "tok_visa")).await;

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
            let body: serde_json::Value = response.json().await.expect("a JSON body");
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
    assert_eq!(body.as_array().map(Vec::len), Some(1), "{body}");
    let payment = &body[0];
    assert_eq!(payment["order_id"], order_id.to_string());
    assert_eq!(payment["status"], "CAPTURED");
    assert_eq!(
        payment["amount"],
        serde_json::json!({ "amount": 9998, "currency": "USD" })
    );
    assert!(payment["reason"].is_null());
    for field in ["id", "created_at", "updated_at"] {
        assert!(payment[field].is_string(), "{field} in {payment}");
    }
    assert_eq!((unknown.0, unknown.2), (200, serde_json::json!([])));
    assert_eq!(invalid.0, 422);
    assert_eq!(invalid.1.as_deref(), Some("application/problem+json"));
}

/// An order's events at Payment, in causal order.
enum Step {
    Created(PaymentRequested),
    Cancelled(OrderCancelled),
}

#[tokio::test]
async fn events_duplicated_and_shuffled_leave_no_money_held_for_cancelled_orders() {
    with_database("payment", &MIGRATOR, |pool| async move {
        // (card, cancelled?) for each order; every event delivered twice.
        let cases = [
            ("tok_visa", false),
            ("tok_visa", true),
            ("tok_decline", true),
        ];
        let mut steps = Vec::new();
        let mut orders = Vec::new();
        for _ in 0..4 {
            for (card, cancel) in cases {
                let order_id = OrderId::new();
                orders.push((order_id, card, cancel));
                for _ in 0..2 {
                    steps.push((order_id, Step::Created(created(order_id, card))));
                    if cancel {
                        steps.push((order_id, Step::Cancelled(cancelled(order_id))));
                    }
                }
            }
        }
        for (order_id, step) in checkout_runtime::testing::shuffled(steps, 7) {
            match step {
                Step::Created(event) => apply(&pool, order_id, &event).await,
                Step::Cancelled(event) => apply(&pool, order_id, &event).await,
            };
        }

        let events = outbox_envelopes(&pool).await;
        let count = |order_id: OrderId, event_type: &str| {
            events
                .iter()
                .filter(|e| {
                    e.event_type == event_type && e.data["order_id"] == serde_json::json!(order_id)
                })
                .count()
        };
        for (order_id, card, cancel) in orders {
            let rows = payments(&pool, order_id).await;
            assert_eq!(rows.len(), 1, "one payment row per order");
            let captured = count(order_id, "PaymentCaptured");
            let refunded = count(order_id, "PaymentRefunded");
            assert!(
                captured <= 1 && refunded <= 1,
                "{order_id}: captured {captured}, refunded {refunded}"
            );
            match (card, cancel) {
                // As in order: captured once, never refunded.
                ("tok_visa", false) => {
                    assert_eq!(
                        (rows[0].status.as_str(), captured, refunded),
                        ("CAPTURED", 1, 0)
                    );
                }
                // In order it would be REFUNDED; when the cancel came first
                // it is VOIDED and nothing was captured. Either way no money is held.
                ("tok_visa", true) => {
                    assert!(matches!(rows[0].status.as_str(), "REFUNDED" | "VOIDED"));
                    assert_eq!(captured, refunded, "{order_id}: every capture refunded");
                }
                _ => {
                    assert!(matches!(rows[0].status.as_str(), "DECLINED" | "VOIDED"));
                    assert_eq!((captured, refunded), (0, 0));
                }
            }
        }
    })
    .await;
}

#[tokio::test]
async fn the_handler_applies_every_event_fixture_it_claims() {
    with_database("payment", &MIGRATOR, |pool| async move {
        checkout_runtime::testing::contract::check_consumer(
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
    let service =
        checkout_runtime::testing::spawn(&SERVICE, &MIGRATOR, payment_service::build).await;
    checkout_runtime::testing::api::check_openapi(&service.address, &["GET /payments"]).await;
    let authorization = service.admin_authorization();
    let report =
        checkout_runtime::testing::fuzz::fuzz(&service.address, Some(&authorization), vec![]).await;
    assert_eq!(report.server_errors, 0);
    service.stop().await;
}

#[tokio::test]
async fn payments_are_shown_only_with_the_admin_token() {
    let service =
        checkout_runtime::testing::spawn(&SERVICE, &MIGRATOR, payment_service::build).await;
    let authorization = service.admin_authorization();
    checkout_runtime::testing::api::check_admin(
        &service.address,
        &authorization,
        &["GET /payments"],
    )
    .await;
    let url = format!("{}/payments?order_id={}", service.address, Uuid::now_v7());
    let client = reqwest::Client::new();
    let anonymous = client.get(&url).send().await.expect("sent");
    let challenge = anonymous.headers().get("www-authenticate").cloned();
    let admitted = client
        .get(&url)
        .header("authorization", &authorization)
        .send()
        .await
        .expect("sent");
    let (admitted_status, listed) = (
        admitted.status(),
        admitted.json::<serde_json::Value>().await,
    );
    service.stop().await;

    assert_eq!(anonymous.status(), 401);
    assert!(challenge.is_some_and(|c| c.as_bytes().starts_with(b"Bearer")));
    assert_eq!(admitted_status, 200);
    assert_eq!(listed.expect("json"), serde_json::json!([]));
}

#[tokio::test]
async fn without_an_admin_token_the_payments_are_off_and_say_how_to_enable_them() {
    let service = checkout_runtime::testing::spawn_with(
        &SERVICE,
        &MIGRATOR,
        |config| config.admin_token = None,
        payment_service::build,
    )
    .await;
    let off = checkout_runtime::testing::api::check_admin_off(&service.address).await;
    service.stop().await;
    assert_eq!(off, 1, "GET /payments is off");
}

#[tokio::test]
async fn the_decline_switch_declines_a_good_card_while_it_is_on() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let faults = checkout_runtime::Faults::new(SERVICE.name, true);
        faults.offer(&[checkout_runtime::Switch::Decline]);
        let handler = PaymentHandler::new(faults.clone());
        let switch = |on: bool| checkout_runtime::faults::Change {
            name: "decline".to_owned(),
            on: Some(on),
            ..Default::default()
        };
        let mut statuses = Vec::new();
        for on in [true, false] {
            faults.apply(&switch(on)).expect("a valid change");
            let order_id = OrderId::new();
            let event = created(order_id, "tok_visa");
            let envelope = Envelope::new(&event, "order-service", order_id.as_uuid(), None)
                .expect("serializable");
            testing::handle(&pool, &handler, &envelope)
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

#[tokio::test]
async fn the_fault_switches_answer_only_when_enabled_and_name_a_bad_field() {
    let enabled =
        checkout_runtime::testing::spawn(&SERVICE, &MIGRATOR, payment_service::build).await;
    let disabled = checkout_runtime::testing::spawn_with(
        &SERVICE,
        &MIGRATOR,
        |config| config.faults_enabled = false,
        payment_service::build,
    )
    .await;
    let client = reqwest::Client::new();
    let put = async |service: &checkout_runtime::testing::Running, body: serde_json::Value| {
        let response = client
            .put(format!("{}/faults", service.address))
            .header("authorization", service.admin_authorization())
            .json(&body)
            .send()
            .await
            .expect("sent");
        let status = response.status().as_u16();
        (
            status,
            response.json::<serde_json::Value>().await.expect("json"),
        )
    };
    let on = put(
        &enabled,
        serde_json::json!({"name": "decline", "on": true, "percent": 50}),
    )
    .await;
    let bad = put(&enabled, serde_json::json!({"name": "delay", "percent": 5})).await;
    let unknown = put(
        &enabled,
        serde_json::json!({"name": "smtp_refuse", "on": true}),
    )
    .await;
    let off = put(
        &disabled,
        serde_json::json!({"name": "decline", "on": true}),
    )
    .await;
    let listed: serde_json::Value = client
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
        serde_json::json!({
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
