//! Faults: connections lost, services stopped and killed in the middle of
//! a stream of orders. Whatever happens, every accepted order ends once —
//! one payment, one reservation, one email — because the outbox keeps
//! what was committed, the broker keeps what was not acked, and the inbox
//! absorbs what is delivered twice.

use crate::{EACH_IN_TURN, card_for, check_exactly_once, order_body};
use e2e::{Options, Service, System};
use uuid::Uuid;

/// Places order number `n` (one cable; every third card declines).
async fn place(system: &System, n: i64, placed: &mut Vec<(Uuid, i64)>) -> anyhow::Result<()> {
    let id = system
        .place_order(&order_body(&[("CB-001", 1)], card_for(n)))
        .await?;
    placed.push((id, n));
    Ok(())
}

async fn check_all(system: &System, placed: &[(Uuid, i64)]) -> anyhow::Result<()> {
    for (id, n) in placed {
        check_exactly_once(system, *id, card_for(*n) == "tok_visa").await?;
    }
    Ok(())
}

#[tokio::test]
async fn orders_survive_losing_the_broker_and_database_connections() -> anyhow::Result<()> {
    let system = System::start(Options::default()).await?;
    let mut placed = Vec::new();
    let (mut closed, mut terminated) = (0, 0);
    for n in 1..=30 {
        if n == 10 {
            closed = system.close_broker_connections().await?;
        }
        if n == 20 {
            terminated = system.terminate_database_connections().await?;
        }
        place(&system, n, &mut placed).await?;
    }
    assert!(
        closed >= 4,
        "every service's broker connection was closed ({closed})"
    );
    assert!(
        terminated >= 4,
        "database connections were terminated ({terminated})"
    );

    check_all(&system, &placed).await?;
    println!(
        "{} orders final after closing {closed} broker connections and terminating {terminated} database connections",
        placed.len()
    );
    system.shutdown().await
}

#[tokio::test]
async fn stopping_or_killing_any_service_mid_stream_loses_nothing() -> anyhow::Result<()> {
    let mut system = System::start(Options::default()).await?;
    let mut placed = Vec::new();
    let mut n = 0;
    for service in EACH_IN_TURN {
        for signal in ["TERM", "KILL"] {
            // Orders in flight when the signal lands.
            for _ in 0..3 {
                n += 1;
                place(&system, n, &mut placed).await?;
            }
            let status = system.signal(service, 0, signal).await?;
            if signal == "TERM" {
                assert!(
                    status.success(),
                    "{} exits 0 on SIGTERM, got {status}",
                    service.binary()
                );
            }
            // Orders placed while a consumer service is down wait for it.
            if service != Service::Order {
                for _ in 0..2 {
                    n += 1;
                    place(&system, n, &mut placed).await?;
                }
            }
            system.restart(service, 0).await?;
        }
    }

    check_all(&system, &placed).await?;
    println!(
        "{} orders final across a SIGTERM and a SIGKILL of each service",
        placed.len()
    );
    system.shutdown().await
}
