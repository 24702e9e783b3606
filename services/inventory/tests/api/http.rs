//! The service over HTTP: the start-up announcement, `GET /products`,
//! `GET /reservations`, the documentation and the admin check.

use crate::support::{ItemView, ProductView, ReservationView, apply, parse, product, put};
use checkout_events::OrderId;
use checkout_events::fixtures::build::order_created;
use checkout_runtime::http::Amount;
use checkout_testkit::{
    TestDatabase, admin_authorization, delete_topology, isolated_config, outbox_event_types,
};
use inventory_service::{MIGRATOR, SERVICE};
use uuid::Uuid;

#[tokio::test]
async fn the_service_announces_its_catalog_and_serves_its_state() {
    let db = TestDatabase::create("inventory", &MIGRATOR)
        .await
        .expect("a test database");
    let config = isolated_config(&SERVICE, &db);
    let app = inventory_service::build(config.clone())
        .await
        .expect("the service starts (RabbitMQ at 127.0.0.1:5672)");
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    let announced = outbox_event_types(db.pool()).await;
    let order_id = OrderId::new();
    apply(
        db.pool(),
        order_id,
        &order_created(order_id, &[("MN-001", 3)], 100),
    )
    .await;

    let client = reqwest::Client::new();
    let authorization = admin_authorization(&config);
    let get = |path: String| {
        let request = client
            .get(format!("{address}{path}"))
            .header("authorization", &authorization)
            .send();
        async move {
            let response = request.await.expect("GET");
            let status = response.status().as_u16();
            (status, response.text().await.expect("a body"))
        }
    };
    let products = get("/products".to_owned()).await;
    let reservations = get(format!("/reservations?order_id={order_id}")).await;
    let none = get(format!("/reservations?order_id={}", Uuid::now_v7())).await;
    let invalid = get("/reservations".to_owned()).await;

    shutdown.cancel();
    let stopped = server.await.expect("joined");
    delete_topology(&config).await.expect("delete topology");
    db.drop().await.expect("drop the test database");
    stopped.expect("the service stopped cleanly");

    assert_eq!(announced, ["ProductUpdated"; 5]);
    assert_eq!(products.0, 200);
    let products: Vec<ProductView> = parse(&products.1);
    let skus: Vec<&str> = products.iter().map(|p| p.sku.as_str()).collect();
    assert_eq!(skus, ["CB-001", "KB-001", "LP-001", "MN-001", "MS-001"]);
    assert_eq!(
        products[3],
        ProductView {
            sku: "MN-001".to_owned(),
            name: "27-inch monitor".to_owned(),
            unit_price: Amount::new(24999, "USD"),
            on_hand: 20,
            reserved: 3,
            available: 17,
            revision: 1,
        }
    );
    assert_eq!(reservations.0, 200);
    let reservations: Vec<ReservationView> = parse(&reservations.1);
    let [reservation] = reservations.as_slice() else {
        panic!("one reservation: {reservations:?}")
    };
    assert_eq!(reservation.order_id, order_id.as_uuid());
    assert_eq!(reservation.status, "RESERVED");
    assert_eq!(reservation.reason, None);
    assert_eq!(
        reservation.items,
        [ItemView {
            sku: "MN-001".to_owned(),
            quantity: 3
        }]
    );
    assert!(reservation.created_at <= reservation.updated_at);
    assert_eq!((none.0, none.1.as_str()), (200, "[]"));
    assert_eq!(invalid.0, 422);
}

#[tokio::test]
async fn the_http_api_is_documented_and_random_input_gets_no_server_error() {
    let service = checkout_testkit::spawn(&SERVICE, &MIGRATOR, inventory_service::build).await;
    let samples = vec![product("Desk lamp", 3499, 50), product("New thing", 100, 1)];
    let authorization = service.admin_authorization();
    checkout_testkit::api::check_surface(
        &service.address,
        &authorization,
        &["GET /products", "PUT /products/{sku}", "GET /reservations"],
        samples,
    )
    .await;
    service.stop().await;
}

#[tokio::test]
async fn the_catalog_is_changed_and_reservations_shown_only_with_the_admin_token() {
    let service = checkout_testkit::spawn(&SERVICE, &MIGRATOR, inventory_service::build).await;
    let authorization = service.admin_authorization();
    checkout_testkit::api::check_admin(
        &service.address,
        &authorization,
        &["PUT /products/{sku}", "GET /reservations"],
    )
    .await;
    let address = service.address.clone();
    let client = reqwest::Client::new();
    let before = products(&client, &address).await;

    let anonymous = client
        .put(format!("{address}/products/KB-001"))
        .json(&product("Free keyboard", 0, 1_000_000))
        .send()
        .await
        .expect("sent");
    let challenge = anonymous.headers().get("www-authenticate").cloned();
    let wrong = client
        .put(format!("{address}/products/KB-001"))
        .header("authorization", "Bearer not-the-admin-token-at-all")
        .json(&product("Free keyboard", 0, 1_000_000))
        .send()
        .await
        .expect("sent");
    let after_refused = products(&client, &address).await;
    let (admitted, changed) = put(
        &address,
        &authorization,
        "KB-001",
        product("Keyboard", 4599, 90),
    )
    .await;
    let reservations = client
        .get(format!(
            "{address}/reservations?order_id={}",
            Uuid::now_v7()
        ))
        .header("authorization", &authorization)
        .send()
        .await
        .expect("sent");
    let reservations_status = reservations.status();
    service.stop().await;

    assert_eq!(anonymous.status(), 401);
    assert!(challenge.is_some_and(|c| c.as_bytes().starts_with(b"Bearer")));
    assert_eq!(wrong.status(), 401);
    assert_eq!(after_refused, before, "a refused PUT changed nothing");
    assert_eq!(admitted, 200, "{changed}");
    assert_eq!(
        parse::<ProductView>(&changed).unit_price,
        Amount::new(4599, "USD")
    );
    assert_eq!(reservations_status, 200);
}

#[tokio::test]
async fn without_an_admin_token_the_catalog_cannot_be_changed_and_says_how_to_enable_it() {
    let service = checkout_testkit::spawn_with(
        &SERVICE,
        &MIGRATOR,
        |config| config.admin_token = None,
        inventory_service::build,
    )
    .await;
    let off = checkout_testkit::api::check_admin_off(&service.address).await;
    let listed = reqwest::get(format!("{}/products", service.address))
        .await
        .expect("sent")
        .status();
    service.stop().await;
    assert_eq!(
        off, 2,
        "PUT /products/{{sku}} and GET /reservations are off"
    );
    assert_eq!(listed, 200, "the catalog is still public");
}

/// `GET /products`, public.
async fn products(client: &reqwest::Client, address: &str) -> Vec<ProductView> {
    client
        .get(format!("{address}/products"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("a list of products")
}
