//! A fresh database and broker namespace per test, plus a test event.

use checkout_events::{Envelope, Event, Subscription};
use checkout_messaging::{RetryPolicy, Topology, connect};
use checkout_testkit::TestDatabase;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Connection};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::future::Future;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub(crate) const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub(crate) const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The one queue these tests consume from, bound to the test events.
pub(crate) const PROBE: &[Subscription] = &[Subscription {
    service: "probe",
    routing_keys: &["test.happened"],
}];

/// A second subscriber of the test events, declared by the tests that need
/// to see that a message reaches one queue and not the others.
pub(crate) const BYSTANDER: &[Subscription] = &[Subscription {
    service: "bystander",
    routing_keys: &["test.happened"],
}];

/// Short delays, so retry tests take a fraction of a second.
pub(crate) fn retries() -> RetryPolicy {
    RetryPolicy::new(vec![Duration::from_millis(100), Duration::from_millis(200)])
}

/// A test event: which writer wrote it, and its sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Happened {
    pub(crate) writer: u32,
    pub(crate) seq: u32,
}

impl Event for Happened {
    const TYPE: &'static str = "Happened";
    const VERSION: u32 = 1;
    const ROUTING_KEY: &'static str = "test.happened";
}

pub(crate) struct TestEnv {
    pub(crate) pool: PgPool,
    /// The test's database; dropped by [`TestEnv::cleanup`], or by its own
    /// `Drop` when a test fails.
    db: Option<TestDatabase>,
    pub(crate) broker: std::sync::Arc<Connection>,
    pub(crate) channel: Channel,
    pub(crate) topology: Topology,
    /// Set by [`TestEnv::cleanup`]; otherwise (a failed assertion) `Drop`
    /// removes the broker names.
    cleaned: bool,
}

impl TestEnv {
    /// A new database with the messaging tables and a `state` table, and a
    /// declared topology under a fresh namespace.
    pub(crate) async fn new() -> TestEnv {
        let db = TestDatabase::messaging_only("messaging", 20)
            .await
            .expect("a test database (postgres is up)");
        let pool = db.pool().clone();
        sqlx::query("CREATE TABLE state (id UUID PRIMARY KEY, note TEXT NOT NULL)")
            .execute(&pool)
            .await
            .expect("state table");

        let namespace = format!("test-{}", Uuid::now_v7().simple());
        let topology = Topology::new(namespace).expect("valid namespace");
        let broker = connect(AMQP_URL, "messaging-tests")
            .await
            .expect("rabbitmq is up");
        topology
            .provision(&broker, PROBE, &retries())
            .await
            .expect("provision");
        let channel = broker.create_channel().await.expect("channel");
        TestEnv {
            pool,
            db: Some(db),
            broker: std::sync::Arc::new(broker),
            channel,
            topology,
            cleaned: false,
        }
    }

    /// Removes the database and the broker names.
    pub(crate) async fn cleanup(mut self) {
        let _ = self.broker.close(200, ShortString::from("done")).await;
        self.pool.close().await;
        remove(&self.topology).await;
        self.cleaned = true;
        if let Some(db) = self.db.take() {
            db.drop().await.expect("drop the test database");
        }
    }

    /// The test database.
    pub(crate) fn db(&self) -> &TestDatabase {
        self.db.as_ref().expect("the database until cleanup")
    }

    /// The test's database refuses new connections and ends the open ones,
    /// as an outage would; `false` lets them in again.
    pub(crate) async fn refuse_connections(&self, refuse: bool) {
        self.db()
            .refuse_connections(refuse)
            .await
            .expect("alter the test database");
    }

    /// Asserts that `service`'s dead-letter queue holds nothing (what it
    /// holds is taken).
    pub(crate) async fn assert_nothing_dead_lettered(&self, service: &str) {
        let queue = self.topology.dead_letter_queue(service);
        let dead = self.drain(&queue, Duration::ZERO, |_| false).await;
        assert!(dead.is_empty(), "nothing was dead-lettered into {queue}");
    }

    /// Takes messages from `queue` until `done` says enough, or the queue
    /// is empty and the deadline has passed; acks what it takes.
    pub(crate) async fn drain(
        &self,
        queue: &str,
        deadline: Duration,
        done: impl Fn(&[lapin::message::Delivery]) -> bool,
    ) -> Vec<lapin::message::Delivery> {
        let mut got = Vec::new();
        let until = Instant::now() + deadline;
        while !done(&got) {
            match self
                .channel
                .basic_get(ShortString::from(queue), BasicGetOptions::default())
                .await
                .expect("basic_get")
            {
                Some(message) => {
                    message
                        .delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await
                        .expect("ack");
                    got.push(message.delivery);
                }
                None if Instant::now() >= until => break,
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        got
    }

    /// How many messages wait in `queue` (not counting unacked ones).
    pub(crate) async fn ready(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                ShortString::from(queue),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("queue exists")
            .message_count()
    }

    /// Publishes raw bytes to the test exchange, as a misbehaving producer would.
    pub(crate) async fn publish_raw(&self, routing_key: &str, body: &[u8]) {
        self.publish_with(routing_key, body, BasicProperties::default())
            .await;
    }

    /// Publishes an envelope to the test exchange, with the properties the
    /// relay sets.
    pub(crate) async fn publish(&self, envelope: &Envelope) {
        let body = serde_json::to_vec(envelope).expect("serializable");
        let properties = BasicProperties::default()
            .with_message_id(ShortString::from(envelope.id.to_string()))
            .with_type(ShortString::from(envelope.event_type.as_str()))
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(2);
        self.publish_with(Happened::ROUTING_KEY, &body, properties)
            .await;
    }

    async fn publish_with(&self, routing_key: &str, body: &[u8], properties: BasicProperties) {
        self.channel
            .basic_publish(
                ShortString::from(self.topology.exchange()),
                ShortString::from(routing_key),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("publish");
    }

    /// Makes the broker refuse, message by message, whatever is published
    /// with `routing_key`: binds it to a queue that takes nothing (no room,
    /// `x-overflow: reject-publish`), so the broker nacks each such publish
    /// and keeps the channel open. The queue is exclusive to the test's
    /// connection, so it goes when the test does.
    pub(crate) async fn refuse(&self, routing_key: &str) -> String {
        let queue = self.topology.queue(&format!("refuser.{routing_key}"));
        let mut arguments = lapin::types::FieldTable::default();
        arguments.insert(
            ShortString::from("x-max-length"),
            lapin::types::AMQPValue::LongInt(0),
        );
        arguments.insert(
            ShortString::from("x-overflow"),
            lapin::types::AMQPValue::LongString("reject-publish".into()),
        );
        self.channel
            .queue_declare(
                ShortString::from(queue.as_str()),
                lapin::options::QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                arguments,
            )
            .await
            .expect("declare the refusing queue");
        self.channel
            .queue_bind(
                ShortString::from(queue.as_str()),
                ShortString::from(self.topology.exchange()),
                ShortString::from(routing_key),
                lapin::options::QueueBindOptions::default(),
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("bind the refusing queue");
        queue
    }

    /// An exchange without an alternate exchange or any binding, so that a
    /// mandatory publish to it comes back as unroutable. Deleted by
    /// [`TestEnv::cleanup`].
    pub(crate) async fn bare_exchange(&self) -> String {
        let exchange = bare_exchange(&self.topology);
        self.channel
            .exchange_declare(
                ShortString::from(exchange.as_str()),
                lapin::ExchangeKind::Topic,
                lapin::options::ExchangeDeclareOptions::default(),
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("declare the bare exchange");
        exchange
    }

    pub(crate) async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect("count query")
    }
}

impl Drop for TestEnv {
    /// A test that panicked never reached [`TestEnv::cleanup`]: remove its
    /// broker names anyway, on a thread of its own (this one may be a
    /// runtime's). The database removes itself.
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let topology = self.topology.clone();
        let removed = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup")
                .block_on(remove(&topology));
        })
        .join();
        if removed.is_err() {
            eprintln!(
                "could not remove the broker names of {}",
                self.topology.exchange()
            );
        }
    }
}

/// Deletes a test's broker names.
async fn remove(topology: &Topology) {
    let broker = connect(AMQP_URL, "messaging-tests-cleanup")
        .await
        .expect("rabbitmq is up");
    let channel = broker.create_channel().await.expect("channel");
    // Deleting what does not exist is no error: most tests have no bystander.
    topology
        .delete(&channel, BYSTANDER, &retries())
        .await
        .expect("delete the bystander");
    topology
        .delete(&channel, PROBE, &retries())
        .await
        .expect("delete topology");
    // Deleting an exchange that was never declared is not an error.
    channel
        .exchange_delete(
            ShortString::from(bare_exchange(topology).as_str()),
            lapin::options::ExchangeDeleteOptions::default(),
        )
        .await
        .expect("delete the bare exchange");
    let _ = broker.close(200, ShortString::from("done")).await;
}

fn bare_exchange(topology: &Topology) -> String {
    format!("{}.bare", topology.exchange())
}

/// Polls `check` until it returns true or `deadline` passes.
pub(crate) async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
