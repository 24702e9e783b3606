//! The catalog's announcements: every product at start, every change after.

use checkout_events::fixtures::build::usd;
use checkout_events::{ProductUpdated, Sku};
use checkout_messaging::Cause;
use checkout_testkit::{outbox_envelopes, outbox_event_types, with_database};
use inventory_service::MIGRATOR;
use inventory_service::catalog::{self, ProductChange};
use uuid::Uuid;

#[tokio::test]
async fn the_announcement_carries_every_product() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        let announced = catalog::announce(&pool).await.expect("announced");

        assert_eq!(announced, 5);
        assert_eq!(outbox_event_types(&pool).await, ["ProductUpdated"; 5]);
        let envelopes = outbox_envelopes(&pool).await;
        let updates: Vec<ProductUpdated> = envelopes
            .iter()
            .map(|e| e.decode().expect("a ProductUpdated"))
            .collect();
        let skus: Vec<&str> = updates.iter().map(|u| u.sku.as_str()).collect();
        assert_eq!(skus, ["CB-001", "KB-001", "LP-001", "MN-001", "MS-001"]);
        let keyboard = &updates[1];
        assert_eq!(keyboard.name, "Mechanical keyboard");
        assert_eq!(keyboard.unit_price, usd(4999));
        assert_eq!(keyboard.revision, 1);
        assert!(
            envelopes
                .iter()
                .all(|e| e.correlation_id == envelopes[0].correlation_id),
            "one correlation id for the whole announcement"
        );
    })
    .await;
}

#[tokio::test]
async fn a_product_change_bumps_its_revision_and_is_announced() {
    with_database("inventory", &MIGRATOR, |pool| async move {
        let sku = Sku::parse("LP-001").expect("valid");
        let change = ProductChange {
            name: None,
            unit_price: Some(usd(2999)),
            on_hand: None,
        };
        let cause = Cause::Command {
            correlation_id: Uuid::now_v7(),
        };

        let mut tx = pool.begin().await.expect("begin");
        let updated = catalog::update(&mut tx, &sku, &change, cause)
            .await
            .expect("updated");
        let missing = catalog::update(
            &mut tx,
            &Sku::parse("ZZ-999").expect("valid"),
            &change,
            cause,
        )
        .await
        .expect("no error");
        tx.commit().await.expect("commit");

        let updated = updated.expect("LP-001 exists");
        assert_eq!((updated.revision, &updated.unit_price), (2, &usd(2999)));
        assert_eq!(updated.name, "Desk lamp");
        assert_eq!(missing, None);
        assert_eq!(outbox_event_types(&pool).await, ["ProductUpdated"]);
        let emitted: ProductUpdated = outbox_envelopes(&pool).await[0]
            .decode()
            .expect("a ProductUpdated");
        assert_eq!(emitted, updated);
    })
    .await;
}
