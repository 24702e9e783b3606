//! `GET /metrics`, and the Grafana dashboard and the Prometheus alerts in
//! `deploy/` checked against it: every metric a panel (or the dashboard's
//! variable) or an alert queries must be one the service really exports,
//! after real traffic of every kind.

use crate::helpers::{TestApp, spawn_app};
use crate::saga::placed_order;
use checkout_events::{Currency, Event, Money, OrderId, PaymentCaptured, PaymentFailed};
use checkout_testkit::{publish, publish_raw};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use uuid::Uuid;

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/grafana/dashboards/checkout.json"
);

const ALERTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/prometheus/alerts.yml"
);

/// Every `checkout_*` name in the alert rules (expressions and comments).
fn alert_metrics() -> BTreeSet<String> {
    let raw = std::fs::read_to_string(ALERTS).expect("the alert rules are readable");
    metric_names(&raw).collect()
}

/// Every `checkout_*` name in the dashboard: panel queries, the variable's
/// query, wherever a PromQL string sits in the JSON.
fn dashboard_metrics() -> BTreeSet<String> {
    fn walk(value: &serde_json::Value, names: &mut BTreeSet<String>) {
        match value {
            serde_json::Value::String(text) => names.extend(metric_names(text)),
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, names)),
            serde_json::Value::Object(map) => map.values().for_each(|v| walk(v, names)),
            _ => {}
        }
    }
    let raw = std::fs::read_to_string(DASHBOARD).expect("the dashboard is readable");
    let dashboard: serde_json::Value = serde_json::from_str(&raw).expect("the dashboard is JSON");
    let mut names = BTreeSet::new();
    walk(&dashboard, &mut names);
    names
}

/// The `checkout_…` identifiers in a PromQL expression.
fn metric_names(promql: &str) -> impl Iterator<Item = String> + '_ {
    promql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("checkout_"))
        .map(str::to_owned)
}

/// The metric names in a Prometheus text exposition.
fn exported(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

async fn scrape(app: &TestApp) -> String {
    let response = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    response.text().await.expect("text")
}

/// Makes one handler run fail transiently, for real: the test holds the
/// order's row lock, waits until the consumer's transaction queues behind
/// it, and cancels that statement (SQLSTATE 57014, a transient error).
async fn force_one_retry(app: &TestApp, order_id: OrderId) {
    let mut blocker = app.db.pool().begin().await.expect("begin");
    sqlx::query("SELECT id FROM orders WHERE id = $1 FOR UPDATE")
        .bind(order_id.as_uuid())
        .execute(&mut *blocker)
        .await
        .expect("lock the order");
    let reply = PaymentCaptured {
        order_id,
        payment_id: Uuid::now_v7(),
        amount: Money::new(4999, Currency::parse("USD").expect("usd")),
    };
    publish(&app.config, &reply).await.expect("published");

    let until = Instant::now() + Duration::from_secs(15);
    let cancelled = loop {
        let cancelled: Option<bool> = sqlx::query_scalar(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock' \
             AND pid <> pg_backend_pid() LIMIT 1",
        )
        .fetch_optional(app.db.pool())
        .await
        .expect("look for the waiting handler");
        if cancelled == Some(true) || Instant::now() >= until {
            break cancelled == Some(true);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    blocker.rollback().await.expect("release the lock");
    assert!(cancelled, "the handler never waited for the order's lock");
}

#[tokio::test]
async fn the_dashboard_and_the_alerts_query_only_series_the_service_exports() {
    let app = spawn_app().await;
    // An order over HTTP: request series, an outbox row, the relay's publish.
    let order_id = placed_order(&app).await;
    // A poison message: dead-lettered.
    publish_raw(
        &app.config,
        PaymentCaptured::ROUTING_KEY,
        b"not an envelope",
    )
    .await
    .expect("published");
    // A reply whose first attempt fails transiently: retried, then consumed.
    force_one_retry(&app, order_id).await;
    // An order that ends: its time to completion is recorded.
    let declined = app.place_keyboard_order().await;
    let failed = PaymentFailed {
        order_id: declined,
        reason: "card declined".to_owned(),
    };
    publish(&app.config, &failed).await.expect("published");

    let wanted = dashboard_metrics();
    assert!(
        wanted.len() >= 8,
        "the dashboard names its metrics: {wanted:?}"
    );
    let alerting = alert_metrics();
    assert!(
        alerting.len() >= 6,
        "the alerts name their metrics: {alerting:?}"
    );
    let wanted: BTreeSet<String> = wanted.union(&alerting).cloned().collect();
    let until = Instant::now() + Duration::from_secs(15);
    let (exposition, missing) = loop {
        let exposition = scrape(&app).await;
        let have = exported(&exposition);
        let missing: Vec<String> = wanted.difference(&have).cloned().collect();
        if missing.is_empty() || Instant::now() >= until {
            break (exposition, missing);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        missing.is_empty(),
        "the dashboard or an alert queries {missing:?}, which the service does not export:\n{exposition}"
    );
    assert!(
        exposition.contains(r#"service="order-service""#),
        "every series carries the service label:\n{exposition}"
    );
    assert!(
        exposition.contains(r#"checkout_orders{status="PENDING",service="order-service"} "#)
            || exposition.contains(r#"checkout_orders{service="order-service",status="PENDING"} "#),
        "orders by status, from the table:\n{exposition}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn labels_never_carry_what_a_client_or_a_publisher_chose() {
    let app = spawn_app().await;
    let nonce = Uuid::now_v7().simple().to_string();
    // A raw path with an id in it, an unrouted path, an invented method.
    let by_id = format!("{}/orders/{}", app.address, Uuid::now_v7());
    let answered = app.client.get(&by_id).send().await.expect("sent").status();
    assert_eq!(answered, 404);
    let nowhere = format!("{}/nowhere-{nonce}", app.address);
    app.client.get(&nowhere).send().await.expect("sent");
    let invented = reqwest::Method::from_bytes(format!("BREW{nonce}").as_bytes()).expect("token");
    let url = format!("{}/orders", app.address);
    app.client
        .request(invented, &url)
        .send()
        .await
        .expect("sent");
    // An envelope of a type no service knows, on a key the service consumes.
    let envelope = serde_json::json!({
        "id": Uuid::now_v7(),
        "type": format!("Evil{nonce}"),
        "version": 1,
        "occurred_at": "2026-01-20T10:00:00Z",
        "source": "payment-service",
        "correlation_id": Uuid::now_v7(),
        "data": {},
    });
    publish_raw(
        &app.config,
        PaymentCaptured::ROUTING_KEY,
        envelope.to_string().as_bytes(),
    )
    .await
    .expect("published");

    // Processed once the consumer counted an unknown type as ignored.
    let ignored_unknown = |exposition: &str| {
        exposition.lines().any(|line| {
            line.starts_with("checkout_messages_consumed_total{")
                && line.contains(r#"event_type="unknown""#)
                && line.contains(r#"outcome="ignored""#)
        })
    };
    let until = Instant::now() + Duration::from_secs(15);
    let exposition = loop {
        let exposition = scrape(&app).await;
        if ignored_unknown(&exposition) || Instant::now() >= until {
            break exposition;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    app.cleanup().await;

    assert!(
        ignored_unknown(&exposition),
        "the unknown type is counted as `unknown`:\n{exposition}"
    );
    assert!(
        !exposition.contains(&nonce),
        "a label carries a client's or publisher's string:\n{exposition}"
    );
    assert!(
        exposition.contains(r#"route="/orders/{id}""#),
        "the route is the matched pattern:\n{exposition}"
    );
}
