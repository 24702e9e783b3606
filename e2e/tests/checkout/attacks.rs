//! The attacks a security reviewer would try first, against the real
//! binaries, each with the outcome the README's Security table promises.
//! Forged events (by routing key and by source) are in `forged.rs`; the
//! broker permissions, one by one, in the messaging tests
//! (`permissions.rs`); the HTTP limits, with short timeouts, in the
//! runtime's own tests.

use crate::order_body;
use e2e::{Options, Service, System};
use reqwest::StatusCode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

/// A card token no other test uses, to look for in every place it must not be.
const TOKEN: &str = "tok_attack_4242_visa";

/// `method url` with `authorization` (if any): the status and the
/// `WWW-Authenticate` header.
async fn call(
    system: &System,
    method: reqwest::Method,
    url: &str,
    authorization: Option<&str>,
) -> anyhow::Result<(StatusCode, Option<String>)> {
    let mut request = system.http().request(method.clone(), url);
    if method == reqwest::Method::PUT {
        request = request.json(&serde_json::json!({
            "name": "Keyboard",
            "unit_price": { "amount": 0, "currency": "USD" },
            "on_hand": 1000
        }));
    }
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await?;
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((response.status(), challenge))
}

#[tokio::test]
async fn customer_data_and_the_catalog_are_closed_to_anyone_without_the_admin_token()
-> anyhow::Result<()> {
    let system = System::start(Options::default()).await?;
    let id = system
        .place_order(&order_body(&[("KB-001", 1)], "tok_visa"))
        .await?;
    system.wait_for_final_status(id).await?;
    let keyboard = system.product("KB-001").await?;

    let get = reqwest::Method::GET;
    let admin_only = [
        (get.clone(), system.url(Service::Order, "/orders")),
        (
            get.clone(),
            system.url(Service::Payment, &format!("/payments?order_id={id}")),
        ),
        (
            get.clone(),
            system.url(Service::Email, &format!("/emails?order_id={id}")),
        ),
        (
            get.clone(),
            system.url(Service::Inventory, &format!("/reservations?order_id={id}")),
        ),
        // The price-zero attack: every later order would cost nothing.
        (
            reqwest::Method::PUT,
            system.url(Service::Inventory, "/products/KB-001"),
        ),
    ];
    let wrong = format!("{}x", system.admin_authorization());
    for (method, url) in &admin_only {
        for authorization in [None, Some("Bearer guess"), Some(wrong.as_str())] {
            let (status, challenge) = call(&system, method.clone(), url, authorization).await?;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {url} {authorization:?}"
            );
            assert!(
                challenge.is_some_and(|c| c.starts_with("Bearer")),
                "{method} {url}: 401 with a Bearer challenge"
            );
        }
    }
    assert_eq!(
        system.product("KB-001").await?.unit_price,
        keyboard.unit_price,
        "the price is unchanged"
    );
    // The customer's own order, by its unguessable id, stays public.
    let (status, _) = call(
        &system,
        get.clone(),
        &system.url(Service::Order, &format!("/orders/{id}")),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    system.shutdown().await
}

#[tokio::test]
async fn the_card_token_is_in_no_log_no_outbox_and_no_dead_letter_shown() -> anyhow::Result<()> {
    let system =
        System::start(Options::default().with_order_deadline(Duration::from_secs(3))).await?;
    // A bug in Payment for orders of 7 cables: their charge is dead-lettered.
    let cable = system.product("CB-001").await?.unit_price.amount;
    system
        .execute_in(
            Service::Payment,
            &format!(
                "CREATE FUNCTION e2e_bug() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'e2e: a bug for this amount'; END $$; \
                 CREATE TRIGGER e2e_bug BEFORE INSERT ON payments \
                 FOR EACH ROW WHEN (NEW.amount = {}) EXECUTE FUNCTION e2e_bug();",
                cable * 7
            ),
        )
        .await?;
    let paid = system
        .place_order(&order_body(&[("CB-001", 1)], TOKEN))
        .await?;
    let dead = system
        .place_order(&order_body(&[("CB-001", 7)], TOKEN))
        .await?;
    assert_eq!(
        system.wait_for_final_status(paid).await?.status,
        "CONFIRMED"
    );
    let cancelled = system.wait_for_final_status(dead).await?;
    assert_eq!(
        cancelled.cancel_reason.as_deref(),
        Some("timed out waiting for payment")
    );
    system.wait_for_email(paid, "confirmation").await?;
    system.wait_for_email(dead, "cancellation").await?;

    // The outbox keeps the token only until the broker has the event.
    let unpublished = "SELECT count(*) FROM outbox WHERE published_at IS NULL";
    system
        .eventually("the Order outbox to be published", async || {
            let left = system.count_in(Service::Order, unpublished).await?;
            Ok(if left == 0 {
                e2e::Probe::Done(())
            } else {
                e2e::Probe::not_yet(left)
            })
        })
        .await?;
    let in_outbox = format!("SELECT count(*) FROM outbox WHERE envelope::text LIKE '%{TOKEN}%'");
    for service in Service::ALL {
        assert_eq!(
            system.count_in(service, &in_outbox).await?,
            0,
            "{service:?}'s outbox"
        );
    }

    // The dead letter keeps the event whole (to be replayed), but what an
    // operator is shown masks the token.
    let letters = system.dead_letters(Service::Payment).await?;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.event_type.as_deref(), Some("PaymentRequested"));
    assert!(String::from_utf8_lossy(&letter.body).contains(TOKEN));
    assert!(
        !letter.masked_body().contains(TOKEN),
        "{}",
        letter.masked_body()
    );

    // No service logged it.
    for entry in std::fs::read_dir(system.log_dir())? {
        let path = entry?.path();
        let log = std::fs::read_to_string(&path)?;
        assert!(
            !log.contains(TOKEN),
            "{} logs the card token",
            path.display()
        );
    }
    system.shutdown().await
}

#[tokio::test]
async fn a_database_down_is_a_503_and_a_stalled_client_is_cut_off() -> anyhow::Result<()> {
    let system = System::start(Options::default()).await?;

    system.refuse_database(Service::Order, true).await?;
    let response = system
        .post_order(&order_body(&[("KB-001", 1)], "tok_visa"))
        .await?;
    let status = response.status();
    let retry_after = response.headers().get("retry-after").cloned();
    system.refuse_database(Service::Order, false).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "not a 500");
    assert!(retry_after.is_some(), "503 says when to try again");
    let id: Uuid = system
        .place_order(&order_body(&[("KB-001", 1)], "tok_visa"))
        .await?;
    assert_eq!(system.wait_for_final_status(id).await?.status, "CONFIRMED");

    // Slowloris: half a request head, then nothing. The server closes the
    // connection at HTTP_HEADER_TIMEOUT (5 s by default).
    let address = system
        .url(Service::Order, "")
        .trim_start_matches("http://")
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await?;
    stream
        .write_all(b"GET /orders HTTP/1.1\r\nHost: x\r\n")
        .await?;
    let started = Instant::now();
    let mut buffer = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buffer)).await;
    let waited = started.elapsed();
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the connection is closed, not answered: {read:?}"
    );
    assert!(waited < Duration::from_secs(15), "closed after {waited:?}");
    system.shutdown().await
}
