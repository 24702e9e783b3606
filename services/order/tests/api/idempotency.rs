//! `Idempotency-Key` on `POST /orders`: a retry gets the original order.

use crate::helpers::{TestApp, order_body, spawn_app};
use serde_json::json;

async fn post_with_key(app: &TestApp, key: &str, body: &str) -> (u16, serde_json::Value, bool) {
    let response = app
        .client
        .post(format!("{}/orders", app.address))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(body.to_owned())
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    let replayed = response.headers().contains_key("idempotent-replayed");
    (status, response.json().await.expect("json"), replayed)
}

fn created_count(outbox: &[(String, serde_json::Value)]) -> usize {
    outbox.iter().filter(|(t, _)| t == "OrderCreated").count()
}

#[tokio::test]
async fn the_same_key_and_body_return_the_original_order_and_another_body_is_a_422() {
    let app = spawn_app().await;
    app.add_product("KB-001", 4999, 1).await;
    let body = order_body(json!([{ "sku": "KB-001", "quantity": 2 }]), "tok_visa");
    let compact = body.to_string();
    // The same request, spaced and ordered differently.
    let reordered = r#"{ "card_token": "tok_visa", "items": [{"quantity": 2, "sku": "KB-001"}],
        "customer_email": "ada@example.com", "customer_id": "c-42" }"#;

    let (first, original, replayed) = post_with_key(&app, "key-1", &compact).await;
    assert_eq!((first, replayed), (202, false));
    let (again, replay, replayed) = post_with_key(&app, "key-1", reordered).await;
    assert_eq!((again, replayed), (202, true));
    assert_eq!(replay["id"], original["id"]);

    let mut other = body.clone();
    other["items"][0]["quantity"] = json!(3);
    let (status, problem, _) = post_with_key(&app, "key-1", &other.to_string()).await;
    assert_eq!(status, 422);
    assert_eq!(problem["type"], "/problems/idempotency-key-reused");

    let (status, problem, _) = post_with_key(&app, "bad key", &compact).await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");

    // A new key is a new order.
    let (status, fresh, _) = post_with_key(&app, "key-2", &compact).await;
    assert_eq!(status, 202);
    assert_ne!(fresh["id"], original["id"]);
    assert_eq!(created_count(&app.outbox().await), 2);
    app.cleanup().await;
}

#[tokio::test]
async fn the_same_key_from_another_customer_is_another_order() {
    let app = spawn_app().await;
    app.add_product("KB-001", 4999, 1).await;
    let ada = order_body(json!([{ "sku": "KB-001", "quantity": 1 }]), "tok_visa");
    let mut grace = ada.clone();
    grace["customer_id"] = json!("c-43");

    let (status, for_ada, _) = post_with_key(&app, "shared-key", &ada.to_string()).await;
    assert_eq!(status, 202, "{for_ada}");
    let (status, for_grace, replayed) = post_with_key(&app, "shared-key", &grace.to_string()).await;
    assert_eq!((status, replayed), (202, false), "{for_grace}");
    assert_ne!(for_grace["id"], for_ada["id"], "not Ada's order");
    // Each customer's retry still gets their own order back.
    let (_, again, replayed) = post_with_key(&app, "shared-key", &grace.to_string()).await;
    assert_eq!(
        (again["id"].clone(), replayed),
        (for_grace["id"].clone(), true)
    );
    let (_, again, replayed) = post_with_key(&app, "shared-key", &ada.to_string()).await;
    assert_eq!(
        (again["id"].clone(), replayed),
        (for_ada["id"].clone(), true)
    );
    assert_eq!(created_count(&app.outbox().await), 2);
    app.cleanup().await;
}

#[tokio::test]
async fn concurrent_duplicates_create_one_order() {
    let app = spawn_app().await;
    app.add_product("KB-001", 4999, 1).await;
    let body = order_body(json!([{ "sku": "KB-001", "quantity": 1 }]), "tok_visa").to_string();

    let attempts = (0..8).map(|_| post_with_key(&app, "race-1", &body));
    let answers = futures::future::join_all(attempts).await;

    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|(status, body, _)| {
            assert_eq!(*status, 202, "{body}");
            body["id"].as_str().expect("an id").to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "every duplicate gets the one order");
    assert_eq!(
        answers.iter().filter(|(_, _, replayed)| !replayed).count(),
        1
    );
    assert_eq!(created_count(&app.outbox().await), 1);
    app.cleanup().await;
}

#[tokio::test]
async fn an_expired_key_places_a_new_order() {
    let app = spawn_app().await;
    app.add_product("KB-001", 4999, 1).await;
    let body = order_body(json!([{ "sku": "KB-001", "quantity": 1 }]), "tok_visa").to_string();
    let (_, first, _) = post_with_key(&app, "old-key", &body).await;
    // Age the key past the retention period.
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        .execute(app.db.pool())
        .await
        .expect("update");

    let (status, second, replayed) = post_with_key(&app, "old-key", &body).await;
    assert_eq!((status, replayed), (202, false));
    assert_ne!(second["id"], first["id"]);
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(app.db.pool())
        .await
        .expect("count");
    assert_eq!(keys, 1, "the expired row was taken over, not duplicated");
    app.cleanup().await;
}

#[tokio::test]
async fn a_claim_prunes_the_expired_keys_of_others() {
    let app = spawn_app().await;
    app.add_product("KB-001", 4999, 1).await;
    let body = order_body(json!([{ "sku": "KB-001", "quantity": 1 }]), "tok_visa").to_string();
    post_with_key(&app, "old-key", &body).await;
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        .execute(app.db.pool())
        .await
        .expect("update");

    let (status, _, replayed) = post_with_key(&app, "new-key", &body).await;

    assert_eq!((status, replayed), (202, false));
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys")
        .fetch_all(app.db.pool())
        .await
        .expect("keys");
    assert_eq!(keys, ["new-key"]);
    app.cleanup().await;
}

#[tokio::test]
async fn keys_stored_before_the_per_customer_scope_keep_working_after_the_migration() {
    const MIGRATION: &str =
        include_str!("../../migrations/20261201000001_idempotency_per_customer.sql");
    let app = spawn_app().await;
    app.add_product("KB-001", 4999, 1).await;
    let body = order_body(json!([{ "sku": "KB-001", "quantity": 1 }]), "tok_visa").to_string();
    let (_, original, _) = post_with_key(&app, "before-upgrade", &body).await;
    // Back to the global key space, as a database from before the migration...
    sqlx::raw_sql(
        "ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey; \
         ALTER TABLE idempotency_keys DROP COLUMN customer_id; \
         ALTER TABLE idempotency_keys ADD PRIMARY KEY (key);",
    )
    .execute(app.db.pool())
    .await
    .expect("the old schema");
    // ...and forward again.
    sqlx::raw_sql(MIGRATION)
        .execute(app.db.pool())
        .await
        .expect("the migration runs on existing rows");

    let owner: String = sqlx::query_scalar("SELECT customer_id FROM idempotency_keys")
        .fetch_one(app.db.pool())
        .await
        .expect("the key's row");
    assert_eq!(owner, "c-42", "the key belongs to its order's customer");
    let (status, replay, replayed) = post_with_key(&app, "before-upgrade", &body).await;
    assert_eq!((status, replayed), (202, true));
    assert_eq!(replay["id"], original["id"]);
    app.cleanup().await;
}
