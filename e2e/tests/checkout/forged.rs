//! Nobody gets in where they don't belong: a pending order cannot be
//! confirmed by a payment that its owner did not send. Another service's
//! broker user cannot publish it at all (the broker refuses the routing
//! key), and a message that claims the wrong source — published with the
//! owner's own credentials or the administrator's — is dead-lettered
//! `forbidden` by the Order service and changes nothing.

use crate::{check_exactly_once, order_body};
use checkout_events::{Currency, Envelope, Event, Money, OrderId, PaymentCaptured};
use e2e::{Options, Probe, Service, System};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation};
use uuid::Uuid;

/// Publishes `envelope` to the system's events exchange with its routing
/// key, as the user of `url`; the broker's answer (a refusal as text).
async fn publish_as(url: &str, exchange: &str, envelope: &Envelope) -> Result<(), String> {
    let connection = checkout_messaging::connect(url, "e2e forger")
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let published = async {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let body = serde_json::to_vec(envelope).unwrap_or_default();
        channel
            .basic_publish(
                ShortString::from(exchange),
                ShortString::from(PaymentCaptured::ROUTING_KEY),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default()
                    .with_message_id(ShortString::from(envelope.id.to_string()))
                    .with_type(ShortString::from(envelope.event_type.as_str()))
                    .with_content_type(ShortString::from("application/json"))
                    .with_delivery_mode(2),
            )
            .await?
            .await
    }
    .await;
    let _ = connection.close(200, ShortString::from("done")).await;
    match published {
        Ok(Confirmation::Ack(None)) => Ok(()),
        Ok(other) => Err(format!("not acked: {other:?}")),
        Err(error) => Err(error.to_string()),
    }
}

#[tokio::test]
async fn a_forged_payment_neither_reaches_nor_confirms_a_pending_order() -> anyhow::Result<()> {
    let system = System::start(Options::default()).await?;
    // Payment's database is down: the order waits for its payment, with
    // its stock reserved — exactly when a forged PaymentCaptured would
    // confirm it.
    system.refuse_database(Service::Payment, true).await?;
    let id = system
        .place_order(&order_body(&[("KB-001", 1)], "tok_visa"))
        .await?;
    let waiting = system
        .eventually("the order to wait for its payment only", async || {
            let order = system.order(id).await?;
            Ok(if order.inventory == "RESERVED" {
                Probe::Done(order)
            } else {
                Probe::not_yet(order)
            })
        })
        .await?;
    let forged = |source: &str| {
        let event = PaymentCaptured {
            order_id: OrderId::from(id),
            payment_id: Uuid::now_v7(),
            amount: Money::new(waiting.total.amount, Currency::parse("USD").expect("USD")),
        };
        Envelope::new(&event, source, id, None).expect("an envelope")
    };
    let exchange = system.topology()?.exchange();

    // The Order service's own user may not publish payment.captured at all.
    let by_order = publish_as(
        &system.broker_url(Service::Order)?,
        &exchange,
        &forged("payment-service"),
    )
    .await;
    // The broker lets the owner's user and the administrator publish it;
    // the source gives them away.
    let by_owner = forged("order-service");
    let by_admin = forged("checkoutctl");
    publish_as(&system.broker_url(Service::Payment)?, &exchange, &by_owner)
        .await
        .map_err(anyhow::Error::msg)?;
    publish_as(system.admin_broker_url(), &exchange, &by_admin)
        .await
        .map_err(anyhow::Error::msg)?;

    let letters = system
        .eventually("both forgeries in the Order service's DLQ", async || {
            let letters = system.dead_letters(Service::Order).await?;
            Ok(if letters.len() >= 2 {
                Probe::Done(letters)
            } else {
                Probe::not_yet(letters.len())
            })
        })
        .await?;
    let still = system.order(id).await?;

    // Payment's database back: the real payment confirms the order, once.
    system.refuse_database(Service::Payment, false).await?;
    check_exactly_once(&system, id, true).await?;

    match by_order {
        Err(error) => assert!(
            error.contains("ACCESS_REFUSED") && error.contains("payment.captured"),
            "{error}"
        ),
        Ok(()) => panic!("the Order service's user published payment.captured"),
    }
    assert_eq!(
        (still.status.as_str(), still.payment.as_str()),
        ("PENDING", "PENDING"),
        "the forgeries changed the order: {still:#?}"
    );
    let mut forged_ids: Vec<String> = letters
        .iter()
        .map(|letter| {
            assert_eq!(letter.reason.as_deref(), Some("forbidden"), "{letter:?}");
            letter.message_id.clone().unwrap_or_default()
        })
        .collect();
    forged_ids.sort();
    let mut expected = vec![by_owner.id.to_string(), by_admin.id.to_string()];
    expected.sort();
    assert_eq!(forged_ids, expected);
    system.shutdown().await
}
