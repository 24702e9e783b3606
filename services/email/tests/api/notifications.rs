//! One notification per order and kind, whatever is redelivered or replayed.

use checkout_events::{Currency, Envelope, Event, Money, OrderCancelled, OrderConfirmed, OrderId};
use checkout_messaging::Outcome;
use checkout_testkit::TestDatabase;
use email_service::MIGRATOR;
use email_service::handler::Notifier;
use uuid::Uuid;

async fn deliver<E: Event>(db: &TestDatabase, event: &E) -> Outcome {
    // A fresh envelope each time: the inbox cannot catch it, the unique key must.
    let envelope = Envelope::new(event, "test", Uuid::now_v7(), None).expect("envelope");
    checkout_testkit::handle(db.pool(), &Notifier::default(), &envelope)
        .await
        .expect("handled")
}

async fn mails(db: &TestDatabase, order_id: OrderId) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT kind, recipient, subject FROM notifications WHERE order_id = $1 ORDER BY kind",
    )
    .bind(order_id.as_uuid())
    .fetch_all(db.pool())
    .await
    .expect("query")
}

#[tokio::test]
async fn each_order_gets_one_mail_per_kind() {
    let db = TestDatabase::create("email", &MIGRATOR)
        .await
        .expect("database");
    let order_id = OrderId::new();
    let confirmed = OrderConfirmed {
        order_id,
        customer_id: "c-1".into(),
        customer_email: Some("ada@example.com".into()),
        total: Money::new(4999, Currency::parse("USD").expect("usd")),
    };
    assert_eq!(deliver(&db, &confirmed).await, Outcome::Applied);
    assert_eq!(deliver(&db, &confirmed).await, Outcome::Applied);
    let cancelled = OrderCancelled {
        order_id,
        customer_id: "c-1".into(),
        customer_email: None,
        reason: "test".into(),
    };
    deliver(&db, &cancelled).await;

    let mails = mails(&db, order_id).await;
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert_eq!(mails[0].0, "cancellation");
    assert_eq!(mails[0].1, "c-1@customers.example");
    assert_eq!(
        mails[1],
        (
            "confirmation".into(),
            "ada@example.com".into(),
            format!("Your order {order_id} is confirmed")
        )
    );
    db.drop().await.expect("drop");
}

#[tokio::test]
async fn other_events_are_ignored() {
    let db = TestDatabase::create("email", &MIGRATOR)
        .await
        .expect("database");
    let released = checkout_events::InventoryReleased {
        order_id: OrderId::new(),
    };
    assert_eq!(deliver(&db, &released).await, Outcome::Ignored);
    db.drop().await.expect("drop");
}

#[tokio::test]
async fn the_handler_applies_every_event_fixture_it_claims() {
    checkout_testkit::with_database("email", &MIGRATOR, |pool| async move {
        checkout_testkit::contract::check_consumer(
            &pool,
            email_service::SERVICE.name,
            &Notifier::default(),
            async || Uuid::now_v7(),
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn the_http_api_is_documented_and_random_input_gets_no_server_error() {
    let service =
        checkout_testkit::spawn(&email_service::SERVICE, &MIGRATOR, email_service::build).await;
    let authorization = service.admin_authorization();
    checkout_testkit::api::check_surface(
        &service.address,
        &authorization,
        &["GET /emails"],
        vec![],
    )
    .await;
    service.stop().await;
}

#[tokio::test]
async fn mails_are_shown_only_with_the_admin_token() {
    let service =
        checkout_testkit::spawn(&email_service::SERVICE, &MIGRATOR, email_service::build).await;
    let authorization = service.admin_authorization();
    checkout_testkit::api::check_admin_list(&service.address, &authorization, "/emails").await;
    service.stop().await;
}

#[tokio::test]
async fn without_an_admin_token_the_mails_are_off_and_say_how_to_enable_them() {
    let service = checkout_testkit::spawn_with(
        &email_service::SERVICE,
        &MIGRATOR,
        |config| config.admin_token = None,
        email_service::build,
    )
    .await;
    let off = checkout_testkit::api::check_admin_off(&service.address).await;
    service.stop().await;
    assert_eq!(off, 1, "GET /emails is off");
}

#[tokio::test]
async fn recording_a_mail_is_one_statement() {
    checkout_testkit::with_database("email", &MIGRATOR, |pool| async move {
        let event = checkout_events::fixtures::build::order_confirmed(OrderId::new(), 4999);
        let envelope = Envelope::new(&event, "test", Uuid::now_v7(), None).expect("envelope");

        // The handler's own: the consumer adds a SAVEPOINT per event and a
        // BEGIN, an inbox INSERT and a COMMIT per batch.
        let statements =
            checkout_testkit::handler_statements(&pool, &Notifier::default(), &envelope).await;

        assert_eq!(statements, 1);
        let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(recorded, 1);
    })
    .await;
}
