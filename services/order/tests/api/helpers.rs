//! `spawn_app`: the service on a free port with a fresh database, and
//! helpers that feed its consumer handler the events other services emit.

use checkout_events::{Currency, Envelope, Event, Money, OrderId, ProductUpdated, Sku};
use checkout_messaging::Handler;
use checkout_runtime::Config;
use checkout_runtime::testing::{
    Serving, TestDatabase, admin_authorization, isolated_config, serve,
};
use order_service::handler::OrderHandler;
use order_service::{MIGRATOR, SERVICE, Settings};
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
        let body: serde_json::Value = response.json().await.expect("json");
        let id: Uuid = body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("an id");
        OrderId::from(id)
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

    pub(crate) async fn get_order(&self, id: &str) -> serde_json::Value {
        self.client
            .get(format!("{}/orders/{id}", self.address))
            .send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("json")
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
