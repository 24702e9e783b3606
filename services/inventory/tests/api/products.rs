//! `PUT /products/{sku}`: creating and changing products.

use crate::support::{ProblemView, ProductView, apply, parse, product, put};
use checkout_events::fixtures::build::order_created;
use checkout_events::{OrderId, ProductUpdated};
use checkout_testkit::{outbox_envelopes, outbox_event_types};
use inventory_service::{MIGRATOR, SERVICE};

#[tokio::test]
async fn products_are_created_and_changed_with_put_and_each_change_is_announced() {
    let service = checkout_testkit::spawn(&SERVICE, &MIGRATOR, inventory_service::build).await;
    let pool = service.db.pool().clone();
    let announced = outbox_event_types(&pool).await.len();
    let address = service.address.clone();
    let authorization = service.admin_authorization();

    let (status, new) = put(
        &address,
        &authorization,
        "HD-001",
        product("Headset", 7999, 30),
    )
    .await;
    assert_eq!(status, 201, "{new}");
    let new: ProductView = parse(&new);
    assert_eq!((new.revision, new.available), (1, 30));
    let (status, again) = put(
        &address,
        &authorization,
        "HD-001",
        product("Headset", 7999, 30),
    )
    .await;
    assert_eq!(
        (status, parse::<ProductView>(&again).revision),
        (200, 1),
        "unchanged: no new revision"
    );
    let (status, repriced) = put(
        &address,
        &authorization,
        "HD-001",
        product("Headset", 6999, 30),
    )
    .await;
    assert_eq!((status, parse::<ProductView>(&repriced).revision), (200, 2));
    let (_, restocked) = put(
        &address,
        &authorization,
        "HD-001",
        product("Headset", 6999, 45),
    )
    .await;
    let restocked: ProductView = parse(&restocked);
    assert_eq!((restocked.revision, restocked.on_hand), (3, 45));

    let events: Vec<ProductUpdated> = outbox_envelopes(&pool).await[announced..]
        .iter()
        .map(|e| e.decode().expect("a ProductUpdated"))
        .collect();
    let revisions: Vec<(i64, i64)> = events
        .iter()
        .map(|e| (e.revision, e.unit_price.amount))
        .collect();
    assert_eq!(revisions, [(1, 7999), (2, 6999), (3, 6999)]);

    // Stock cannot go below what orders hold.
    let order_id = OrderId::new();
    apply(
        &pool,
        order_id,
        &order_created(order_id, &[("HD-001", 5)], 100),
    )
    .await;
    let (status, problem) = put(
        &address,
        &authorization,
        "HD-001",
        product("Headset", 6999, 4),
    )
    .await;
    assert_eq!(status, 422);
    let problem: ProblemView = parse(&problem);
    assert_eq!(problem.errors[0].field, "on_hand", "{problem:?}");

    let invalid = serde_json::json!({
        "name": " ",
        "unit_price": { "amount": -1, "currency": "usd" },
        "on_hand": -5,
    });
    let (status, problem) = put(&address, &authorization, "bad sku", invalid).await;
    assert_eq!(status, 422);
    let problem: ProblemView = parse(&problem);
    let fields: Vec<&str> = problem.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "sku",
            "name",
            "unit_price.amount",
            "unit_price.currency",
            "on_hand"
        ]
    );
    service.stop().await;
}
