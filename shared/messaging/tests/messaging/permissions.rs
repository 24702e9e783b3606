//! Nobody gets in where they don't belong, on the real broker: each
//! service's own user (as `checkoutctl broker definitions` makes it) may
//! publish only its own events and reach only its own queues, and a
//! consumer refuses an event whose `source` is not its owner's — whoever
//! published it.
//!
//! Each test provisions a namespace of its own the way a deployment is
//! provisioned — the definitions imported with `rabbitmqctl
//! import_definitions` (users, permissions, topic permissions, topology),
//! then the topology declared by an administrator — and removes the
//! namespace and its users at the end, also when it fails.

use crate::dead_letters::try_put;
use crate::support::{ADMIN_URL, AMQP_URL};
use checkout_events::{
    Currency, Envelope, Event, Money, OrderConfirmed, OrderId, PUBLISHERS, PaymentCaptured,
    SUBSCRIPTIONS,
};
use checkout_messaging::access::{self, BrokerUser};
use checkout_messaging::{RetryPolicy, Topology};
use lapin::options::ConfirmSelectOptions;
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection as _, PgConnection, PgPool};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// Short, so a retry comes back within the test.
pub(crate) fn retries() -> RetryPolicy {
    RetryPolicy::new(vec![Duration::from_millis(100)])
}

/// A namespace provisioned as a deployment is, with a user per service.
pub(crate) struct Secured {
    pub(crate) topology: Topology,
    /// `service` → its user's password.
    pub(crate) passwords: HashMap<&'static str, String>,
    pub(crate) db_name: Option<String>,
    pub(crate) cleaned: bool,
}

impl Secured {
    pub(crate) async fn new() -> Secured {
        let topology = Topology::new(format!("test-acl-{}", Uuid::now_v7().simple()))
            .expect("valid namespace");
        let mut secured = Secured {
            topology,
            passwords: HashMap::new(),
            db_name: None,
            cleaned: false,
        };
        let users: Vec<(BrokerUser, String)> = access::deployment_users(&secured.topology, None)
            .into_iter()
            .zip(PUBLISHERS)
            .map(|((user, _variable), publisher)| {
                let password = Uuid::now_v7().simple().to_string();
                secured
                    .passwords
                    .insert(publisher.service, password.clone());
                (user, password)
            })
            .collect();
        let plan = secured.topology.plan(SUBSCRIPTIONS, &retries());
        let definitions = access::definitions(&plan, &users);
        rabbitmqctl(&["import_definitions"], Some(definitions.to_string()))
            .await
            .expect("rabbitmqctl import_definitions");
        // What was imported is what the code declares: a queue with other
        // arguments would fail here with PRECONDITION_FAILED.
        let admin = connect_as_admin().await;
        secured
            .topology
            .provision(&admin, SUBSCRIPTIONS, &retries())
            .await
            .expect("the imported definitions are the code's topology");
        let _ = admin.close(200, ShortString::from("done")).await;
        secured
    }

    /// A connection as `service`'s own user, once the broker knows it
    /// (an import may still be settling).
    pub(crate) async fn connect_as(&self, service: &str) -> Connection {
        let user = access::service_user_name(&self.topology, service);
        let url = format!(
            "amqp://{user}:{}@127.0.0.1:5672/%2f",
            self.passwords[service]
        );
        let mut last = String::new();
        for _ in 0..100 {
            match checkout_messaging::connect(&url, &format!("acl-test {user}")).await {
                Ok(connection) => return connection,
                Err(error) => last = error.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{user} cannot connect: {last}");
    }

    /// A database with the messaging tables and a `state` table.
    pub(crate) async fn database(&mut self) -> PgPool {
        let name = format!("test_acl_{}", Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(ADMIN_URL)
            .await
            .expect("postgres is up");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create database");
        self.db_name = Some(name.clone());
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect(&format!("postgres://postgres@127.0.0.1:5432/{name}"))
            .await
            .expect("connect");
        checkout_messaging::migrate(&pool).await.expect("migrate");
        sqlx::query("CREATE TABLE state (id UUID PRIMARY KEY, note TEXT NOT NULL)")
            .execute(&pool)
            .await
            .expect("state table");
        pool
    }

    pub(crate) async fn cleanup(mut self) {
        remove(&self.topology, self.db_name.take()).await;
        self.cleaned = true;
    }
}

impl Drop for Secured {
    /// A failed test still removes its names, users and database.
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let (topology, db_name) = (self.topology.clone(), self.db_name.take());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup")
                .block_on(remove(&topology, db_name));
        })
        .join();
    }
}

pub(crate) async fn remove(topology: &Topology, db_name: Option<String>) {
    let admin = connect_as_admin().await;
    let channel = admin.create_channel().await.expect("channel");
    topology
        .delete(&channel, SUBSCRIPTIONS, &retries())
        .await
        .expect("delete the namespace");
    let _ = admin.close(200, ShortString::from("done")).await;
    for publisher in PUBLISHERS {
        let user = access::service_user_name(topology, publisher.service);
        rabbitmqctl(&["delete_user", &user], None)
            .await
            .expect("delete a test user");
    }
    if let Some(name) = db_name {
        let mut admin = PgConnection::connect(ADMIN_URL)
            .await
            .expect("postgres is up");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .expect("drop database");
    }
}

pub(crate) async fn connect_as_admin() -> Connection {
    checkout_messaging::connect(AMQP_URL, "acl-test admin")
        .await
        .expect("rabbitmq is up")
}

/// Runs `rabbitmqctl` (as the broker's administrator on this machine), with
/// `stdin` piped in. A user already gone counts as deleted (exit 67).
pub(crate) async fn rabbitmqctl(args: &[&str], stdin: Option<String>) -> Result<String, String> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = std::process::Command::new("rabbitmqctl")
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .map_err(|e| format!("rabbitmqctl stdin: {e}"))?;
        }
        let output = child
            .wait_with_output()
            .map_err(|e| format!("rabbitmqctl: {e}"))?;
        let gone = args.first().map(String::as_str) == Some("delete_user")
            && output.status.code() == Some(67);
        if output.status.success() || gone {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "rabbitmqctl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    })
    .await
    .expect("joined")
}

/// Publishes `body` and waits for the confirm, on a fresh channel (a
/// refusal closes the channel). The broker's refusal as text, if refused.
pub(crate) async fn publish(
    connection: &Connection,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
) -> Result<(), String> {
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let persistent = BasicProperties::default().with_delivery_mode(2);
    let confirmed = try_put(&channel, exchange, routing_key, body, persistent).await;
    match confirmed {
        Ok(Confirmation::Ack(None)) => Ok(()),
        Ok(other) => Err(format!("not acked: {other:?}")),
        Err(error) => Err(error.to_string()),
    }
}

pub(crate) fn refused(outcome: &Result<(), String>, what: &str) {
    match outcome {
        Err(error) if error.contains("ACCESS_REFUSED") => {}
        other => panic!("{what}: expected ACCESS_REFUSED, got {other:?}"),
    }
}

pub(crate) async fn fresh(connection: &Connection) -> Channel {
    connection.create_channel().await.expect("channel")
}

pub(crate) async fn depth(admin: &Connection, queue: &str) -> u32 {
    fresh(admin)
        .await
        .queue_declare(
            ShortString::from(queue),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the queue exists")
        .message_count()
}

pub(crate) fn envelope<E: Event>(event: &E, source: &str) -> Vec<u8> {
    serde_json::to_vec(&Envelope::new(event, source, Uuid::now_v7(), None).expect("envelope"))
        .expect("json")
}

pub(crate) fn captured() -> PaymentCaptured {
    PaymentCaptured {
        order_id: OrderId::new(),
        payment_id: Uuid::now_v7(),
        amount: Money::new(4999, Currency::parse("USD").expect("currency")),
    }
}

pub(crate) fn confirmed() -> OrderConfirmed {
    OrderConfirmed {
        order_id: OrderId::new(),
        customer_id: "c-42".to_owned(),
        customer_email: None,
        total: Money::new(4999, Currency::parse("USD").expect("currency")),
    }
}

#[tokio::test]
async fn the_payment_service_cannot_publish_order_confirmed() {
    let env = Secured::new().await;
    let payment = env.connect_as("payment").await;
    let exchange = env.topology.exchange();

    let forged = publish(
        &payment,
        &exchange,
        OrderConfirmed::ROUTING_KEY,
        &envelope(&confirmed(), "order-service"),
    )
    .await;
    let own = publish(
        &payment,
        &exchange,
        PaymentCaptured::ROUTING_KEY,
        &envelope(&captured(), "payment-service"),
    )
    .await;

    let _ = payment.close(200, ShortString::from("done")).await;
    env.cleanup().await;
    refused(&forged, "payment publishing order.confirmed");
    let forged = forged.expect_err("refused");
    assert!(
        forged.contains("access to topic 'order.confirmed'"),
        "{forged}"
    );
    own.expect("payment publishes its own payment.captured");
}
