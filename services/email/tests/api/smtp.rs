//! The Email service against a real SMTP server: the receiver in
//! `receiver.rs`, started by each test. The service runs as it does in
//! production (consumer, sender, HTTP), fed through the broker.

use crate::receiver::Receiver;
use checkout_events::fixtures::build::order_confirmed;
use checkout_events::{OrderCancelled, OrderConfirmed, OrderId};
use checkout_runtime::Config;
use checkout_testkit::{
    Serving, TestDatabase, admin_authorization, isolated_config, publish, serve,
};
use chrono::{DateTime, Utc};
use email_service::settings::transport;
use email_service::{MIGRATOR, Notification, SERVICE, Settings};
use serde::Deserialize;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A mail as `GET /emails` shows it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailView {
    id: Uuid,
    order_id: Uuid,
    kind: String,
    recipient: String,
    subject: String,
    body: String,
    created_at: DateTime<Utc>,
    status: String,
    sent_at: Option<DateTime<Utc>>,
    attempts: i32,
    last_error: Option<String>,
}

/// The Email service on a fresh database and namespace, sending to `receiver`.
struct Service {
    address: String,
    db: TestDatabase,
    config: Config,
    serving: Serving,
}

async fn start(receiver: &Receiver) -> Service {
    let db = TestDatabase::create("email", &MIGRATOR)
        .await
        .expect("test database");
    let config = isolated_config(&SERVICE, &db);
    let mut mail = Settings::from_lookup(|_| None).expect("defaults");
    mail.transport = Some(transport(&receiver.url()).expect("receiver url"));
    // Short pauses so a retry happens within the test.
    mail.poll_interval = Duration::from_millis(100);
    mail.retry_delay = Duration::from_millis(50);
    let app = email_service::build_with(config.clone(), mail)
        .await
        .expect("the service starts");
    let (address, serving) = serve(app).await;
    Service {
        address,
        db,
        config,
        serving,
    }
}

impl Service {
    /// `GET /emails?order_id=`, polled until `done` holds or 10 s pass.
    async fn emails_until(
        &self,
        order_id: OrderId,
        done: impl Fn(&[EmailView]) -> bool,
    ) -> Vec<EmailView> {
        let until = Instant::now() + Duration::from_secs(10);
        let client = reqwest::Client::new();
        loop {
            let emails: Vec<EmailView> = client
                .get(format!("{}/emails?order_id={order_id}", self.address))
                .header("authorization", admin_authorization(&self.config))
                .send()
                .await
                .expect("GET /emails")
                .json()
                .await
                .expect("a list of mails");
            if done(&emails) || Instant::now() >= until {
                return emails;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Deliveries the consumer has processed (the inbox's rows).
    async fn processed(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM processed_events")
            .fetch_one(self.db.pool())
            .await
            .expect("count")
    }

    async fn stop(self) {
        self.serving.stop(&self.config, self.db).await;
    }
}

fn status_is(status: &'static str) -> impl Fn(&[EmailView]) -> bool {
    move |emails| emails.len() == 1 && emails[0].status == status
}

fn confirmed(order_id: OrderId) -> OrderConfirmed {
    OrderConfirmed {
        customer_email: Some("ada@example.com".into()),
        ..order_confirmed(order_id, 9998)
    }
}

#[tokio::test]
async fn a_confirmed_order_sends_exactly_this_mail() {
    let receiver = Receiver::start(Vec::new()).await;
    let service = start(&receiver).await;
    let event = confirmed(OrderId::new());

    publish(&service.config, &event).await.expect("published");

    let mails = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1, "one mail: {mails:?}");
    let mail = &mails[0];
    let expected = Notification::confirmed(&event);
    assert_eq!(mail.mail_from, "<orders@checkout.example>");
    assert_eq!(mail.rcpt_to, ["<ada@example.com>"]);
    assert_eq!(
        mail.header("From").as_deref(),
        Some("Checkout <orders@checkout.example>")
    );
    assert_eq!(mail.header("To").as_deref(), Some("ada@example.com"));
    assert_eq!(
        mail.header("Subject"),
        Some(format!("Your order {} is confirmed", event.order_id))
    );
    assert_eq!(mail.body(), expected.body);
    assert_eq!(
        mail.header("Content-Type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    let emails = service
        .emails_until(event.order_id, status_is("sent"))
        .await;
    assert_eq!(emails[0].status, "sent", "{emails:?}");
    assert_eq!(emails[0].attempts, 1);
    let shown = &emails[0];
    assert_eq!(shown.order_id, event.order_id.as_uuid());
    assert_eq!(shown.kind, "confirmation");
    assert_eq!(
        (&shown.recipient, &shown.subject, &shown.body),
        (&expected.recipient, &expected.subject, &expected.body)
    );
    assert!(shown.sent_at.is_some_and(|sent| sent >= shown.created_at));
    assert_eq!(shown.last_error, None);
    // The Message-ID is the notification's: a resend after a crash would carry the same one.
    assert_eq!(
        mail.header("Message-ID"),
        Some(format!("<{}@checkout.example>", emails[0].id))
    );

    // A redelivered event (a new envelope for the same order) sends nothing
    // more: once the consumer has processed it, the sender has nothing due.
    publish(&service.config, &event).await.expect("published");
    let until = Instant::now() + Duration::from_secs(10);
    while service.processed().await < 2 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(service.processed().await, 2, "both deliveries processed");
    let emails = service
        .emails_until(event.order_id, status_is("sent"))
        .await;
    assert_eq!(emails.len(), 1);
    assert_eq!(receiver.mails().len(), 1, "no second mail");
    service.stop().await;
}

#[tokio::test]
async fn a_refused_mail_is_retried_until_the_server_takes_it() {
    let receiver = Receiver::start(vec!["451 4.3.0 try again later", "421 4.3.2 busy"]).await;
    let service = start(&receiver).await;
    let event = OrderCancelled {
        order_id: OrderId::new(),
        customer_id: "c-7".into(),
        customer_email: None,
        reason: "payment declined".into(),
    };

    publish(&service.config, &event).await.expect("published");

    let emails = service
        .emails_until(event.order_id, status_is("sent"))
        .await;
    assert_eq!(emails[0].status, "sent", "{emails:?}");
    assert_eq!(emails[0].attempts, 3, "two refusals, then accepted");
    let mails = receiver.mails();
    assert_eq!(mails.len(), 1, "exactly one mail: {mails:?}");
    assert_eq!(mails[0].rcpt_to, ["<c-7@customers.example>"]);
    assert_eq!(mails[0].body(), Notification::cancelled(&event).body);
    service.stop().await;
}

#[tokio::test]
async fn a_permanent_refusal_gives_the_mail_up_with_the_reason() {
    let receiver = Receiver::start(vec!["550 5.1.1 mailbox unavailable"]).await;
    let service = start(&receiver).await;
    let event = confirmed(OrderId::new());

    publish(&service.config, &event).await.expect("published");

    let emails = service
        .emails_until(event.order_id, status_is("failed"))
        .await;
    assert_eq!(emails[0].status, "failed", "{emails:?}");
    assert_eq!(emails[0].attempts, 1, "not retried");
    let error = emails[0].last_error.as_deref().unwrap_or_default();
    assert!(error.contains("mailbox unavailable"), "{error}");
    assert!(receiver.mails().is_empty());
    service.stop().await;
}

#[tokio::test]
async fn the_smtp_refuse_switch_holds_mail_back_until_it_is_off() {
    let receiver = Receiver::start(Vec::new()).await;
    let service = start(&receiver).await;
    let switch = async |on: bool| {
        let response = reqwest::Client::new()
            .put(format!("{}/faults", service.address))
            .header("authorization", admin_authorization(&service.config))
            .json(&serde_json::json!({ "name": "smtp_refuse", "on": on }))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200, "smtp_refuse {on}");
    };
    switch(true).await;
    let event = confirmed(OrderId::new());

    publish(&service.config, &event).await.expect("published");

    let refused = service
        .emails_until(event.order_id, |emails| {
            emails.len() == 1 && emails[0].attempts >= 2
        })
        .await;
    assert_eq!(refused[0].status, "pending", "{refused:?}");
    let error = refused[0].last_error.as_deref().unwrap_or_default();
    assert!(error.contains("smtp_refuse"), "{error}");
    assert!(receiver.mails().is_empty(), "nothing reached the server");

    switch(false).await;
    let emails = service
        .emails_until(event.order_id, status_is("sent"))
        .await;
    assert_eq!(emails[0].status, "sent", "{emails:?}");
    assert_eq!(receiver.wait_for(1, Duration::from_secs(10)).await.len(), 1);
    service.stop().await;
}
