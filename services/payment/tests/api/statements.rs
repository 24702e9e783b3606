//! What each event costs the Payment database, in statements (the
//! handler's own; the consumer adds a `SAVEPOINT` per event and a `BEGIN`,
//! an inbox `INSERT` and a `COMMIT` per batch).

use checkout_events::OrderId;
use checkout_events::fixtures::build::{order_cancelled, payment_requested};
use checkout_testkit::{from_order, handler_statements, with_database};
use payment_service::{MIGRATOR, PaymentHandler};

#[tokio::test]
async fn each_event_of_an_order_costs_the_fewest_statements() {
    with_database("payment", &MIGRATOR, |pool| async move {
        let handler = PaymentHandler::default();
        let order_id = OrderId::new();
        let requested = from_order(order_id, &payment_requested(order_id, 4999, "tok_visa"));
        let cancelled = from_order(order_id, &order_cancelled(order_id, "out of stock"));

        // The claim with the provider's answer, then the outbox row.
        let charge = handler_statements(&pool, &handler, &requested).await;
        // The refund of the captured payment, then the outbox row.
        let refund = handler_statements(&pool, &handler, &cancelled).await;

        assert_eq!((charge, refund), (2, 2));
        let status: String = sqlx::query_scalar("SELECT status FROM payments")
            .fetch_one(&pool)
            .await
            .expect("the payment");
        assert_eq!(status, "REFUNDED");
    })
    .await;
}
