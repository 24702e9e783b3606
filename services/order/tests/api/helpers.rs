//! `spawn_app`: the service on a free port with a fresh database, and
//! helpers that feed its consumer handler the events other services emit.

use checkout_events::{Currency, Envelope, Event, Money, OrderId, ProductUpdated, Sku};
use checkout_messaging::Handler;
use checkout_runtime::Config;
use checkout_runtime::http::Amount;
use checkout_testkit::{Serving, TestDatabase, admin_authorization, isolated_config, serve};
use chrono::{DateTime, Utc};
use order_service::handler::OrderHandler;
use order_service::{MIGRATOR, SERVICE, Settings};
use serde::Deserialize;
use uuid::Uuid;

pub(crate) struct TestApp {
    pub(crate) address: String,
    pub(crate) db: TestDatabase,
    pub(crate) client: reqwest::Client,
    pub(crate) config: Config,
    serving: Serving,
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(Settings::default(), None).await
}

/// The service with `settings`, on the broker namespace `namespace` when
/// given (to meet another service of the same test there).
pub(crate) async fn spawn_app_with(settings: Settings, namespace: Option<&str>) -> TestApp {
    spawn_app_configured(settings, |config| {
        if let Some(namespace) = namespace {
            namespace.clone_into(&mut config.broker_namespace);
        }
    })
    .await
}

/// The service with `settings` and the test's changes to its configuration.
pub(crate) async fn spawn_app_configured(
    settings: Settings,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let db = TestDatabase::create("order", &MIGRATOR)
        .await
        .expect("test database");
    let mut config = isolated_config(&SERVICE, &db);
    configure(&mut config);
    let app = order_service::build_with(config.clone(), settings)
        .await
        .expect("the service starts");
    let (address, serving) = serve(app).await;
    TestApp {
        address,
        db,
        client: reqwest::Client::new(),
        config,
        serving,
    }
}

impl TestApp {
    pub(crate) async fn cleanup(self) {
        self.serving.stop(&self.config, self.db).await;
    }

    /// Runs the consumer handler on `event` as if it had been delivered.
    pub(crate) async fn deliver<E: Event>(&self, event: &E) -> Envelope {
        let envelope = Envelope::new(event, "test", Uuid::now_v7(), None).expect("envelope");
        self.deliver_envelope(&envelope).await;
        envelope
    }

    pub(crate) async fn deliver_envelope(&self, envelope: &Envelope) {
        let mut tx = self.db.pool().begin().await.expect("begin");
        OrderHandler
            .handle(envelope, &mut tx)
            .await
            .expect("handled");
        tx.commit().await.expect("commit");
    }

    pub(crate) async fn add_product(&self, sku: &str, price: i64, revision: i64) {
        self.deliver(&ProductUpdated {
            sku: Sku::parse(sku).expect("sku"),
            name: format!("Product {sku}"),
            unit_price: Money::new(price, Currency::parse("USD").expect("currency")),
            revision,
        })
        .await;
    }

    pub(crate) async fn post_order(&self, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(format!("{}/orders", self.address))
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    /// Places an order for one KB-001 (which the catalog must know) and
    /// returns its id.
    pub(crate) async fn place_keyboard_order(&self) -> OrderId {
        let response = self
            .post_order(order_body(
                serde_json::json!([{ "sku": "KB-001", "quantity": 1 }]),
                "tok_visa",
            ))
            .await;
        assert_eq!(response.status(), 202);
        let accepted: AcceptedView = response.json().await.expect("an accepted order");
        OrderId::from(accepted.id)
    }

    pub(crate) async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json"))
    }

    /// `GET path` as an operator, with the admin token.
    pub(crate) async fn get_admin_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.address))
            .header("authorization", self.admin_authorization())
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json"))
    }

    /// The `Authorization` header value of an operator: `Bearer <ADMIN_TOKEN>`.
    pub(crate) fn admin_authorization(&self) -> String {
        admin_authorization(&self.config)
    }

    /// `GET /orders/{id}` of an order that exists.
    pub(crate) async fn get_order(&self, id: &str) -> OrderView {
        self.client
            .get(format!("{}/orders/{id}", self.address))
            .send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("an order")
    }

    /// The event types in the outbox, oldest first.
    pub(crate) async fn outbox(&self) -> Vec<(String, serde_json::Value)> {
        sqlx::query_as("SELECT event_type, envelope FROM outbox ORDER BY id")
            .fetch_all(self.db.pool())
            .await
            .expect("outbox query")
    }
}

pub(crate) fn order_body(items: serde_json::Value, card: &str) -> serde_json::Value {
    serde_json::json!({
        "customer_id": "c-42",
        "customer_email": "ada@example.com",
        "items": items,
        "card_token": card,
    })
}

/// An order as `GET /orders/{id}` shows it; unknown fields are refused, so
/// a field added to the API without a test fails here.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrderView {
    pub(crate) id: Uuid,
    pub(crate) status: String,
    pub(crate) customer_id: String,
    pub(crate) customer_email: Option<String>,
    pub(crate) items: Vec<LineView>,
    pub(crate) total: Amount,
    pub(crate) payment: String,
    pub(crate) inventory: String,
    pub(crate) cancel_reason: Option<String>,
    pub(crate) compensation: Option<CompensationView>,
    pub(crate) trace_id: Option<String>,
    pub(crate) jaeger_url: Option<String>,
    pub(crate) timeline: Vec<EntryView>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl OrderView {
    /// The event types of the timeline, oldest first.
    pub(crate) fn timeline_types(&self) -> Vec<&str> {
        self.timeline
            .iter()
            .map(|e| e.event_type.as_str())
            .collect()
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LineView {
    pub(crate) sku: String,
    pub(crate) quantity: i64,
    pub(crate) unit_price: Amount,
}

/// What a cancelled order gave back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompensationView {
    pub(crate) payment: String,
    pub(crate) inventory: String,
}

impl CompensationView {
    pub(crate) fn new(payment: &str, inventory: &str) -> Self {
        Self {
            payment: payment.to_owned(),
            inventory: inventory.to_owned(),
        }
    }
}

/// One event of an order's timeline.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntryView {
    #[serde(rename = "type")]
    pub(crate) event_type: String,
    pub(crate) occurred_at: DateTime<Utc>,
    pub(crate) source: String,
    pub(crate) event_id: Uuid,
    pub(crate) trace_id: Option<String>,
}

/// The answer to `POST /orders`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcceptedView {
    pub(crate) id: Uuid,
    pub(crate) status: String,
}
