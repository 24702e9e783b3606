//! The consumer side of the event contract: a service's real handler,
//! against its real database, applies every fixture of the events its
//! queue is bound to — as checked in, and with fields added that no
//! version has yet.

use checkout_events::fixtures::claimed_by;
use checkout_messaging::{Handler, Outcome};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// Feeds `handler` (the consumer handler of the service named `service`)
/// each fixture it claims, twice (as sent; with unknown fields), each in
/// its own committed transaction and about the order `order_for` returns
/// (a new id, or an order the test placed), and asserts each is applied.
pub async fn check_consumer<H: Handler>(
    pool: &PgPool,
    service: &str,
    handler: &H,
    mut order_for: impl AsyncFnMut() -> Uuid,
) {
    let fixtures = claimed_by(service);
    assert!(!fixtures.is_empty(), "{service} claims no events");
    for fixture in fixtures {
        for extended in [false, true] {
            let name = format!(
                "{service} consuming {}.v{}{}",
                fixture.event_type,
                fixture.version,
                if extended { " with unknown fields" } else { "" }
            );
            let order_id = order_for().await;
            let point_at_order = |value: &mut Value| {
                value["id"] = json!(Uuid::now_v7());
                if value["data"].get("order_id").is_some() {
                    value["data"]["order_id"] = json!(order_id);
                    value["correlation_id"] = json!(order_id);
                }
            };
            let envelope = if extended {
                fixture.envelope_with_unknown_fields(point_at_order)
            } else {
                fixture.envelope_with(point_at_order)
            };
            let outcome = super::handle(pool, handler, &envelope)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(outcome, Outcome::Applied, "{name}");
        }
    }
}
